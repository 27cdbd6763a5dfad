"""The MIT lab's CNN Pong policy on fastpong's C++ kernels.

Input: 40x40 frame changes (``lab_frame_change(prev_frames, frames)``), output: a categorical
distribution over Pong's six actions. Float32 throughout; ``fastpong.reference.cnn`` is the float64
spec it is tested against. Parameters live in C++ and are exposed as writable NumPy views in Keras'
names and layouts, so an optimizer can step them in place and weights can move to and from the
lab's Keras model.
"""

from __future__ import annotations

import threading

import numpy as np

from .. import _core
from ..reference import cnn as _reference
from ..reference.ppo import CHANGE, FRAME_AND_CHANGE, check_observation

__all__ = ["ConvPolicy", "LabFrameDifferencer"]

_FRAME_SHAPE = (210, 160, 3)  # ALE's RGB frames


class ConvPolicy:
    """The MIT lab's Pong CNN (its ``create_pong_model``): ``Conv2D 32@5x5/2, 48@5x5/2,
    64@3x3/2, 64@3x3/2`` ('same', ReLU), Flatten (576), Dense 128 ReLU, Dense 6 logits. The convolutions run on fastpong's
    conv kernels (cpp/conv.cpp), the dense head on CategoricalPolicy's (cpp/dense.cpp).

    ``seed`` draws Keras' initialization (Glorot-uniform kernels, zero biases) exactly as
    ``reference.cnn.init_params(seed)`` does, rounded to float32.
    """

    #: Names of the parameters, in Keras' order (kernel then bias, layer by layer).
    PARAMETER_NAMES = tuple(_core._ConvPolicy.tensor_names)
    #: Their shapes: conv kernels (kh, kw, in, out), dense kernels (in, out), biases (out,).
    PARAMETER_SHAPES = {name: tuple(shape) for name, shape in
                        zip(_core._ConvPolicy.tensor_names, _core._ConvPolicy.tensor_shapes)}
    num_actions = _reference.ACTIONS
    #: One observation: a 40x40 frame change (a trailing channel axis of 1 is accepted too).
    input_shape = (_reference.FRAME_SIDE, _reference.FRAME_SIDE)

    def __init__(self, seed=None):
        self._net = _core._ConvPolicy()
        self.load_model(_reference.init_params(seed))

    # --- acting ---------------------------------------------------------------------------------

    def forward(self, obs) -> np.ndarray:
        """Frame changes (N, 40, 40) or (N, 40, 40, 1) -> action probabilities (N, 6), float32."""
        return self._net.forward(obs)

    def log_probs(self, obs) -> np.ndarray:
        """log pi(. | obs), (N, 6): the log-softmax of the logits (what the lab's Keras model
        returns, up to a constant per row), computed stably rather than as log(forward(obs))."""
        return self._net.log_probs(obs)

    # --- learning -------------------------------------------------------------------------------

    def gradient_buffer(self) -> dict:
        """Zeros shaped like the parameters: {name: float32 array}, for accumulate_gradient."""
        return {name: np.zeros(shape, dtype=np.float32)
                for name, shape in self.PARAMETER_SHAPES.items()}

    def accumulate_gradient(self, obs, actions, advantages, grads: dict, scale=None,
                            entropy_coef: float = 0.0) -> None:
        """grads += scale * sum_t (advantages[t] * grad log pi(actions[t] | obs[t])
        + entropy_coef * grad H(pi(. | obs[t]))).

        With the default scale 1/T this is the gradient of J = mean_t A_t log pi(a_t|s_t), the
        ascent direction (minus the gradient of the lab's loss); an entropy_coef > 0 adds the
        entropy bonus mean_t beta H_t (A3C's, which keeps the policy from collapsing). obs (T, 40,
        40[, 1]), actions (T,) integers in [0, 6), advantages (T,); grads from gradient_buffer(),
        written in place. The forward pass is recomputed from obs, a chunk of steps at a time.
        """
        steps = int(np.shape(obs)[0]) if np.ndim(obs) > 0 else 0
        if scale is None:
            scale = 1.0 / steps if steps > 0 else 0.0
        self._net.accumulate_gradient(obs, actions, advantages, grads, float(scale), float(entropy_coef))

    def parameters(self) -> dict:
        """{name: writable float32 view} of the live parameters: writing one changes the policy."""
        return self._net.parameters()

    # --- weights in Keras' layout ---------------------------------------------------------------

    def to_model(self) -> dict:
        """{name: float32 copy} in Keras' names and layouts (``model.get_weights()`` order)."""
        return {name: value.copy() for name, value in self.parameters().items()}

    def load_model(self, model) -> None:
        """Overwrites every parameter from a mapping with all of PARAMETER_NAMES, shapes as
        PARAMETER_SHAPES, finite values (any real dtype; converted to float32)."""
        values = checked_model(model, self.PARAMETER_NAMES, self.PARAMETER_SHAPES)
        views = self.parameters()
        for name, value in values.items():  # all checked first: a bad model changes nothing
            views[name][...] = value

    @classmethod
    def from_model(cls, model) -> "ConvPolicy":
        """A policy holding the given weights (see load_model)."""
        policy = cls.__new__(cls)
        policy._net = _core._ConvPolicy()
        policy.load_model(model)
        return policy

    def __repr__(self) -> str:
        count = sum(int(np.prod(s)) for s in self.PARAMETER_SHAPES.values())
        return f"ConvPolicy({count:,} parameters, kernels={_core.conv_kernel()!r})"


def checked_model(model, names: tuple, shapes: dict) -> dict:
    """{name: array} of a model mapping once every one of `names` is there with its shape in
    `shapes`, a real dtype and finite values; ValueError naming the first that is not. Shared by
    the lab's CNN and the actor-critic on it, whose load_model change nothing before it passes."""
    if not hasattr(model, "keys") or not hasattr(model, "__getitem__"):
        raise ValueError(f"model must be a mapping of {len(names)} arrays keyed {names[0]!r}..., "
                         f"got {type(model).__name__}")
    missing = [name for name in names if name not in model]
    if missing:
        raise ValueError(f"model is missing {missing} (expected keys {list(names)})")
    values = {}
    for name in names:
        value = np.asarray(model[name])
        if value.dtype.kind not in "fiu":
            raise ValueError(f"model[{name!r}] must be a real numeric array, got {value.dtype}")
        if value.shape != shapes[name]:
            raise ValueError(f"model[{name!r}] must have shape {shapes[name]}, got {value.shape}")
        if not np.all(np.isfinite(value)):
            raise ValueError(f"model[{name!r}] must be finite")
        values[name] = value
    return values


class LabFrameDifferencer:
    """The lab's network input for N environments stepped together: keeps each one's previous
    40x40 image and turns the next frames into ``lab_frame_change(previous, frames)`` (N, 40, 40),
    zeros for an environment whose episode starts (after construction or ``reset(env)``), as the
    lab's rollout does with its first frame.

    ``observation="frame-and-change"`` (the actor-critic's ``--observation``) subtracts the current
    40x40 image from the change, so that still objects show too (``reference.ppo.frame_and_change``:
    values in {-2, -1, 0, 1}); a game's first step is then minus its image."""

    #: As FrameDifferencer's limit (src/checks.hpp kMaxEnvironments): more is a mistake.
    MAX_ENVS = 1 << 16

    def __init__(self, num_envs: int, observation: str = CHANGE):
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or \
                not 1 <= num_envs <= self.MAX_ENVS:
            raise ValueError(f"num_envs must be an integer in [1, {self.MAX_ENVS}], got {num_envs!r}")
        self.observation = check_observation(observation)
        self.num_envs = int(num_envs)
        self._previous = None
        self._starting = np.ones(num_envs, dtype=bool)
        # Held by the step or reset in progress. lab_preprocess releases the GIL mid-step, so a
        # second thread's step could replace the previous images under the first: that thread
        # gets RuntimeError instead, as the C++ objects' guard gives (src/use_guard.hpp).
        self._busy = threading.Lock()

    def _enter(self) -> None:
        if not self._busy.acquire(blocking=False):
            raise RuntimeError(
                "LabFrameDifferencer is being changed by another thread. It keeps each "
                "environment's previous image: give each thread its own, or hold a lock "
                "(README: Threads)")

    def step(self, frames: np.ndarray) -> np.ndarray:
        self._enter()
        try:
            frames = np.asarray(frames)
            expected = (self.num_envs, *_FRAME_SHAPE)
            # Checked before anything is kept, so a refused step leaves the differencer as it was.
            if frames.dtype != np.uint8 or frames.shape != expected:
                raise ValueError(f"frames must be uint8 of shape {expected}, got "
                                 f"{frames.dtype} {frames.shape}")
            # Each frame is preprocessed once and its 40x40 image kept for the next step's
            # change, rather than the RGB frame (100 KB, copied each step) preprocessed twice.
            # The images are 0 or 1, so the differences below are exact: the same bits as
            # lab_frame_change(previous frames, frames).
            images = _core.lab_preprocess(frames)
            if self._previous is None:
                self._previous = images.copy()
            self._previous[self._starting] = images[self._starting]
            self._starting[:] = False
            if self.observation == FRAME_AND_CHANGE:
                observation = self._previous - 2.0 * images
            else:
                observation = self._previous - images
            self._previous = images
            return observation
        finally:
            self._busy.release()

    def reset(self, env: int) -> None:
        if isinstance(env, bool) or not isinstance(env, (int, np.integer)) or \
                not 0 <= env < self.num_envs:
            raise ValueError(f"env must be an integer in [0, {self.num_envs}), got {env!r}")
        self._enter()
        try:
            self._starting[env] = True
        finally:
            self._busy.release()
