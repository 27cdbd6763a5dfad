"""fastpong: Karpathy's policy gradient for Pong from pixels, with C++ kernels.

The fast path (float32, C++ with SIMD and OpenMP) and ``fastpong.reference`` (the NumPy tutorial's
algorithm, float64) compute the same things; the tests hold them to each other.
"""

from . import reference
from ._core import (
    EpisodeBatch,
    EpisodeBuffer,
    FrameDifferencer,
    GradientBuffer,
    SparseFrames,
    discount_rewards,
    frame_preprocessing,
    get_num_threads,
    has_openmp,
    set_num_threads,
    standardize,
)
from .optim import RMSProp
from .policy import Policy

__version__ = "0.1.0"

__all__ = [
    "EpisodeBatch",
    "EpisodeBuffer",
    "FrameDifferencer",
    "GradientBuffer",
    "Policy",
    "RMSProp",
    "SparseFrames",
    "discount_rewards",
    "frame_preprocessing",
    "get_num_threads",
    "has_openmp",
    "reference",
    "set_num_threads",
    "standardize",
]
