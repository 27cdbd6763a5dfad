"""RMSProp as the tutorial applies it, on the C++ kernel."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from . import _core


class RMSProp:
    """``opt.step(policy, grads)``: the tutorial's gradient-ascent RMSProp update, in place.

    ``grads`` is a :class:`GradientBuffer` or a ``{"W1": (H, D), "W2": (H,)}`` dict; like the
    tutorial's grad_buffer it is zeroed by the step. The squared-gradient cache starts at zero and
    is created on the first step to match the policy's shapes.
    """

    def __init__(self, learning_rate: float = 1e-4, decay_rate: float = 0.99):
        # The kernel steps in float32: a rate beyond float32's range would become inf there.
        if not _is_number(learning_rate) or not 0 < learning_rate <= _FLOAT32_MAX:
            raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")
        if not _is_number(decay_rate) or not 0 <= decay_rate < 1:
            raise ValueError(f"decay_rate must be in [0, 1), got {decay_rate!r}")
        self.learning_rate = float(learning_rate)
        self.decay_rate = float(decay_rate)
        self.cache: _core.GradientBuffer | None = None

    def step(self, policy, grads) -> None:
        if self.cache is None:
            self.cache = _core.GradientBuffer(policy.hidden, policy.input_size)
        if isinstance(grads, Mapping):
            buffer = _core.GradientBuffer(policy.hidden, policy.input_size)
            try:
                buffer.load_model(grads)
            except ValueError as error:  # the kernel calls its argument "model"; here it is grads
                raise ValueError(str(error).replace("model", "grads", 1)) from None
            _core.rmsprop_step(policy, buffer, self.cache, self.learning_rate, self.decay_rate)
            for value in grads.values():
                if isinstance(value, np.ndarray) and value.flags.writeable:
                    value[...] = 0
            return
        _core.rmsprop_step(policy, grads, self.cache, self.learning_rate, self.decay_rate)

    def __repr__(self) -> str:
        return f"RMSProp(learning_rate={self.learning_rate}, decay_rate={self.decay_rate})"


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
