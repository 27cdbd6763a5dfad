"""The policy network of the tutorial, on the C++ kernels."""

from __future__ import annotations

import numpy as np

from .. import _core
from ..reference import INPUT_SIZE, init_model


class Policy(_core._Policy):
    """h = relu(W1 x), p = sigmoid(W2 . h): the probability of moving the paddle up.

    ``Policy(hidden=200, input_size=6400, seed=None)`` draws the tutorial's scaled-normal weights
    from ``numpy.random.default_rng(seed)``, so the same seed gives the reference's weights in
    float32. Weights live in a transposed layout that suits sparse inputs; ``to_model()`` and
    ``from_model()`` speak the tutorial's ``{"W1": (H, D), "W2": (H,)}``.
    """

    def __init__(self, hidden: int = 200, input_size: int = INPUT_SIZE, seed=None):
        _check_size("hidden", hidden)
        _check_size("input_size", input_size)
        super().__init__(hidden, input_size)
        self.load_model(init_model(hidden, input_size, seed))

    @classmethod
    def from_model(cls, model) -> "Policy":
        """A policy holding the given weights (converted to float32)."""
        try:
            w1 = np.asarray(model["W1"])
        except (KeyError, TypeError, IndexError):
            raise ValueError(
                "model must be a mapping with 'W1' of shape (H, D) and 'W2' of shape (H,), "
                f"got {type(model).__name__}"
            ) from None
        if w1.ndim != 2:
            raise ValueError(f"model['W1'] must have shape (H, D), got {w1.dtype} {w1.shape}")
        policy = cls.__new__(cls)
        _core._Policy.__init__(policy, int(w1.shape[0]), int(w1.shape[1]))
        policy.load_model(model)
        return policy

    def gradient_buffer(self) -> _core.GradientBuffer:
        """A zeroed buffer shaped like this policy's weights."""
        return _core.GradientBuffer(self.hidden, self.input_size)

    def __repr__(self) -> str:
        return f"Policy(hidden={self.hidden}, input_size={self.input_size})"


def _check_size(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
