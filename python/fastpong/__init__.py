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
    lab_frame_change,
    lab_preprocess,
    sample_actions,
    set_num_threads,
    standardize,
)
from .nn.actor_critic import ActorCriticCNN
from .nn.categorical import CategoricalPolicy
from .nn.conv_policy import ConvPolicy, LabFrameDifferencer
from .nn.optim import Adam, RMSProp
from .nn.policy import Policy

__version__ = "0.1.0"

# The driver functions pull in gymnasium, matplotlib or imageio: loaded on first use, so that
# `import fastpong` stays quick for kernel work.
_LAZY = {
    "train": ("train", "train"),
    "TrainConfig": ("config", "TrainConfig"),
    "evaluate": ("watch.evaluate", "evaluate"),
    "record_video": ("watch.evaluate", "record_video"),
    "plot_runs": ("watch.plot", "plot_runs"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fastpong' has no attribute {name!r}")


__all__ = [
    "ActorCriticCNN",
    "Adam",
    "CategoricalPolicy",
    "ConvPolicy",
    "EpisodeBatch",
    "EpisodeBuffer",
    "FrameDifferencer",
    "GradientBuffer",
    "LabFrameDifferencer",
    "Policy",
    "TrainConfig",
    "RMSProp",
    "SparseFrames",
    "discount_rewards",
    "evaluate",
    "frame_preprocessing",
    "get_num_threads",
    "has_openmp",
    "lab_frame_change",
    "lab_preprocess",
    "plot_runs",
    "record_video",
    "reference",
    "sample_actions",
    "set_num_threads",
    "standardize",
    "train",
]
