"""Type stubs for fastpong._core, the compiled kernels (C++ behind pybind11).

Kept in step with the module by tests/test_stubs.py: every name here exists in _core and every
name _core exports is here, for the module and for each class.
"""

from collections.abc import Mapping, Sequence
from typing import Any, SupportsFloat, SupportsIndex, SupportsInt

import numpy as np
import numpy.typing as npt

_Float32Array = npt.NDArray[np.float32]
_ArrayLike = npt.ArrayLike
_Int = SupportsInt | SupportsIndex
_Float = SupportsFloat | SupportsIndex

# --- runtime -------------------------------------------------------------------------------------

def get_num_threads() -> int:
    """Threads the batched kernels use."""

def set_num_threads(threads: _Int) -> None:
    """Sets the threads the batched kernels use (1 without OpenMP); 1 to 1024."""

def has_openmp() -> bool:
    """True when the kernels were compiled with OpenMP."""

def _objects_in_use() -> int:
    """For tests: how many objects calls that released the GIL are reading or changing now."""

# --- frames --------------------------------------------------------------------------------------

def frame_preprocessing(frame: _ArrayLike) -> _Float32Array:
    """uint8 (210, 160, 3) or (N, 210, 160, 3) -> float32 (80, 80) or (N, 80, 80) in {0, 1}."""

def _preprocess_kernels() -> list[str]:
    """Preprocessing kernels this CPU can run, best first."""

def _preprocess_kernel() -> str:
    """The preprocessing kernel in use."""

def _use_preprocess_kernel(name: str) -> None:
    """Switches preprocessing to that kernel."""

class SparseFrames:
    """Rows of {-1, 0, +1} network inputs stored as nonzero pixels and signs."""

    @staticmethod
    def from_dense(x: _ArrayLike) -> SparseFrames:
        """From a dense (D,) or (N, D) array of -1, 0, 1."""
    def to_dense(self, input_size: _Int = 6400) -> _Float32Array: ...
    def __len__(self) -> int: ...
    @property
    def nonzeros(self) -> int: ...
    @property
    def offsets(self) -> npt.NDArray[np.int64]: ...
    @property
    def indices(self) -> npt.NDArray[np.int32]: ...
    @property
    def values(self) -> npt.NDArray[np.int8]: ...

class FrameDifferencer:
    """Each environment's previous binary frame; new frames become SparseFrames differences."""

    def __init__(self, num_envs: _Int) -> None: ...
    @property
    def num_envs(self) -> int: ...
    def step(self, frames: _ArrayLike) -> SparseFrames:
        """frames uint8 (num_envs, 210, 160, 3) -> SparseFrames, a row each."""
    def reset(self, env: _Int) -> None: ...
    def reset_all(self) -> None: ...

# --- the tutorial's policy -----------------------------------------------------------------------

class GradientBuffer:
    """Tensors shaped like the tutorial policy's weights, in its fast layout (W1 transposed)."""

    def __init__(self, hidden: _Int = 200, input_size: _Int = 6400) -> None: ...
    @property
    def hidden(self) -> int: ...
    @property
    def input_size(self) -> int: ...
    def zero(self) -> None: ...
    def to_model(self) -> dict[str, _Float32Array]:
        """{'W1': (H, D), 'W2': (H,)} float32 copies."""
    def load_model(self, model: Mapping[str, _ArrayLike]) -> None:
        """Overwrites the values from {'W1': (H, D), 'W2': (H,)}."""

class _Policy:
    """h = relu(W1 x), p = sigmoid(W2 . h); base of fastpong.Policy."""

    def __init__(self, hidden: _Int, input_size: _Int) -> None: ...
    @property
    def hidden(self) -> int: ...
    @property
    def input_size(self) -> int: ...
    def to_model(self) -> dict[str, _Float32Array]: ...
    def load_model(self, model: Mapping[str, _ArrayLike]) -> None: ...
    def forward(self, x: _ArrayLike | SparseFrames) -> tuple[Any, _Float32Array]:
        """x (D,) -> (p: float, h (H,)); x (N, D) or SparseFrames -> (p (N,), h (N, H))."""
    def backward(self, eph: _ArrayLike, epx: _ArrayLike, epdlogp: _ArrayLike
                 ) -> dict[str, _Float32Array]:
        """The tutorial's policy_backward: {'W1': (H, D), 'W2': (H,)} for one episode."""
    def accumulate_gradient(self, episode: EpisodeBuffer, advantages: _ArrayLike,
                            grads: GradientBuffer) -> None:
        """grads += backward pass of an EpisodeBuffer with dlogp scaled by advantages."""

# --- training-time kernels -----------------------------------------------------------------------

def discount_rewards(r: _ArrayLike, gamma: _Float, reset_at_points: bool = True) -> _Float32Array:
    """Discounted returns; with reset_at_points the sum restarts at every nonzero reward."""

def standardize(values: _ArrayLike) -> _Float32Array:
    """(values - mean) / std as float32; all zeros when std is 0."""

class EpisodeBuffer:
    """One episode as the tutorial's backward pass needs it (sparse inputs, h, dlogp, reward)."""

    def __init__(self, hidden: _Int = 200, input_size: _Int = 6400) -> None: ...
    @staticmethod
    def from_arrays(epx: _ArrayLike, eph: _ArrayLike, epdlogp: _ArrayLike,
                    rewards: _ArrayLike) -> EpisodeBuffer: ...
    def append(self, x: SparseFrames, h: _ArrayLike, dlogp: _Float) -> None: ...
    def set_last_reward(self, reward: _Float) -> None: ...
    def clear(self) -> None: ...
    def __len__(self) -> int: ...
    @property
    def hidden(self) -> int: ...
    @property
    def input_size(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def inputs(self) -> SparseFrames: ...
    @property
    def rewards(self) -> _Float32Array: ...
    @property
    def dlogps(self) -> _Float32Array: ...
    @property
    def hidden_states(self) -> _Float32Array: ...

class EpisodeBatch:
    """One EpisodeBuffer per environment, filled a step at a time."""

    def __init__(self, num_envs: _Int, hidden: _Int = 200, input_size: _Int = 6400) -> None: ...
    def __len__(self) -> int: ...
    def append(self, x: SparseFrames, h: _ArrayLike, dlogps: _ArrayLike) -> None: ...
    def set_last_rewards(self, rewards: _ArrayLike) -> None: ...
    def episode(self, env: _Int) -> EpisodeBuffer: ...

def rmsprop_step(policy: _Policy, grads: GradientBuffer, cache: GradientBuffer,
                 learning_rate: _Float, decay_rate: _Float) -> None:
    """The tutorial's RMSProp ascent step in place: updates cache and weights, zeroes grads."""

def rmsprop_step_model(policy: _Policy, grad_w1: npt.NDArray[np.float32], grad_w2: npt.NDArray[np.float32],
                       cache: GradientBuffer, learning_rate: _Float, decay_rate: _Float) -> None:
    """rmsprop_step with the gradient as the tutorial's float32 W1 (H, D) and W2 (H,) arrays, zeroed by the step."""

# --- the MIT lab's dense softmax policy ----------------------------------------------------------

class _DensePolicy:
    """Dense ReLU layers with biases, then logits; base of fastpong.CategoricalPolicy."""

    def __init__(self, input_size: _Int, hidden: Sequence[_Int], num_actions: _Int) -> None: ...
    @property
    def input_size(self) -> int: ...
    @property
    def num_actions(self) -> int: ...
    @property
    def hidden(self) -> tuple[int, ...]: ...
    def parameters(self) -> dict[str, _Float32Array]:
        """{name: float32 array} over the policy's own weights (writing them changes it)."""
    def gradient_buffer(self) -> dict[str, _Float32Array]:
        """{name: zeroed float32 array} shaped like each parameter."""
    def forward(self, obs: _ArrayLike) -> _Float32Array:
        """obs (N, D) or (D,) -> action probabilities (N, A) or (A,)."""
    def log_probs(self, obs: _ArrayLike) -> _Float32Array:
        """obs (N, D) or (D,) -> log-softmax of the logits, (N, A) or (A,)."""
    def accumulate_gradient(self, obs: _ArrayLike, actions: _ArrayLike, advantages: _ArrayLike,
                            grads: dict[str, _Float32Array], scale: _Float | None = None,
                            input_grad: _Float32Array | None = None) -> None:
        """grads[k] += scale * sum_t advantages[t] * d log pi(actions[t]|obs[t]) / d theta_k;
        input_grad (T, D), if given, is overwritten with d J / d obs."""

def sample_actions(probs: _ArrayLike, uniforms: _ArrayLike) -> npt.NDArray[np.int32]:
    """probs (N, A), uniforms (N,) in [0, 1) -> int32 actions (N,) by the inverse CDF."""

# --- Adam, and RMSProp over arrays ---------------------------------------------------------------

def adam_step(policy: _Policy, grads: GradientBuffer, m: GradientBuffer, v: GradientBuffer,
              learning_rate: _Float, beta_1: _Float, beta_2: _Float, epsilon: _Float,
              step: _Int) -> None:
    """Keras 3's Adam as an ascent step on the tutorial's Policy; zeroes grads."""

def adam_step_arrays(names: Sequence[str], weights: Sequence[_Float32Array],
                     grads: Sequence[_Float32Array], m: Sequence[_Float32Array],
                     v: Sequence[_Float32Array], learning_rate: _Float, beta_1: _Float,
                     beta_2: _Float, epsilon: _Float, step: _Int) -> None:
    """adam_step over lists of float32 arrays, one per name."""

def rmsprop_step_arrays(names: Sequence[str], weights: Sequence[_Float32Array],
                        grads: Sequence[_Float32Array], cache: Sequence[_Float32Array],
                        learning_rate: _Float, decay_rate: _Float) -> None:
    """The tutorial's RMSProp ascent step over lists of float32 arrays, one per name."""

# --- the MIT lab's CNN Pong policy and its 40x40 frame changes -----------------------------------

def lab_preprocess(frames: _ArrayLike) -> _Float32Array:
    """uint8 (210, 160, 3) or (N, 210, 160, 3) -> the lab's 40x40 image(s) in {0, 1}."""

def lab_frame_change(prev_frames: _ArrayLike, frames: _ArrayLike) -> _Float32Array:
    """lab_preprocess(prev_frames) - lab_preprocess(frames), in {-1, 0, 1}."""

def conv_kernels() -> list[str]:
    """The CNN's GEMM kernel variants this CPU runs, best first ("avx512", "avx2", "portable")."""

def conv_kernel() -> str:
    """The CNN's GEMM kernel variant in use."""

def use_conv_kernel(name: str) -> bool:
    """Switches the CNN's GEMM kernel variant; False (no change) for an unknown name."""

def set_zero_frame_skipping(on: bool) -> None:
    """Whether batched CNN forwards copy the zero frame's conv outputs where nothing changes."""

def zero_frame_skipping() -> bool:
    """The switch of set_zero_frame_skipping."""

class _ConvPolicy:
    """The lab's CNN (dense head on _DensePolicy's kernels); what fastpong.ConvPolicy wraps."""

    @property
    def tensor_names(self) -> list[str]:
        """The 12 parameter names, Keras' order (also on the class)."""
    @property
    def tensor_shapes(self) -> list[list[int]]:
        """Their shapes: conv kernels (kh, kw, in, out), dense (in, out), biases (out,)."""
    def __init__(self) -> None: ...
    def parameters(self) -> dict[str, _Float32Array]:
        """{name: writable float32 view} of every tensor, Keras' names and layouts."""
    def forward(self, obs: _ArrayLike) -> _Float32Array:
        """obs (N, 40, 40) or (N, 40, 40, 1) -> action probabilities (N, 6)."""
    def log_probs(self, obs: _ArrayLike) -> _Float32Array:
        """obs (N, 40, 40) or (N, 40, 40, 1) -> log-softmax of the logits, (N, 6)."""
    def accumulate_gradient(self, obs: _ArrayLike, actions: _ArrayLike, advantages: _ArrayLike,
                            grads: dict[str, _Float32Array], scale: _Float,
                            entropy_coef: _Float = 0.0) -> None:
        """grads[k] += scale * sum_t (advantages[t] * d log pi(actions[t]|obs[t]) / d theta_k
        + entropy_coef * d H(pi(.|obs[t])) / d theta_k)."""
    @property
    def feature_size(self) -> int:
        """Width of the flattened conv output (576), also on the class."""
    def features(self, obs: _ArrayLike, keep: bool = False) -> _Float32Array:
        """obs (N, 40, 40[, 1]) -> the flattened conv output (N, 576); keep: keep the batch's
        activations for the next accumulate_feature_gradient on the same frames and weights."""
    def accumulate_feature_gradient(self, obs: _ArrayLike, flat_grad: _ArrayLike,
                                    grads: dict[str, _Float32Array]) -> None:
        """grads[conv tensors] += the gradient of sum(flat_grad * features(obs))."""
