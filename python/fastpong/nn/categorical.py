"""The MIT lab's dense softmax policy over any number of actions, on the C++ kernels."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .. import _core
from ..reference import lab


class CategoricalPolicy(_core._DensePolicy):
    """Dense ReLU layers with biases, then logits; actions are drawn from their softmax.

    ``CategoricalPolicy(input_size=4, hidden=(32,), num_actions=2, seed=None)`` is the lab's
    CartPole network, initialized as Keras does (Glorot-uniform kernels, zero biases) from
    ``numpy.random.default_rng(seed)``: the same seed gives ``reference.lab.init_model``'s weights
    in float32.

    - ``forward(obs)``: obs float32 (N, D) or (D,) -> probabilities (N, A) or (A,);
      ``log_probs(obs)`` the log-softmax of the logits, same shapes.
    - ``gradient_buffer()``: {name: zeroed float32 array}; ``accumulate_gradient(obs (T, D),
      actions (T,), advantages (T,), grads, scale=1/T)`` adds
      ``scale * sum_t advantages[t] * d log pi(actions[t] | obs[t]) / d theta`` into it: the
      ascent direction (minus the gradient of the lab's loss), as the optimizers expect.
    - ``parameters()``: {name: float32 array} over the weights themselves, Keras' names and layout
      (``"dense_0/kernel"`` (D, H0), ``"dense_0/bias"``, ..., ``"logits/kernel"`` (H, A),
      ``"logits/bias"`` (A,)); ``to_model()`` copies them, ``from_model()`` builds a policy.
    """

    def __init__(self, input_size: int = 4, hidden=(32,), num_actions: int = 2, seed=None):
        hidden = _check_shapes(input_size, hidden, num_actions)
        super().__init__(input_size, list(hidden), num_actions)
        self.load_model(lab.init_model(input_size, hidden, num_actions, seed))

    @classmethod
    def from_model(cls, model: Mapping) -> "CategoricalPolicy":
        """A policy holding the given weights (converted to float32), shapes read from them."""
        if not isinstance(model, Mapping):
            raise ValueError(f"model must be a mapping of name -> array, got {type(model).__name__}")
        num_hidden = sum(1 for k in model if str(k).startswith("dense_") and str(k).endswith("/kernel"))
        kernels = []
        for name in lab.layer_names(num_hidden):
            key = f"{name}/kernel"
            if key not in model:
                raise ValueError(f"model is missing {key!r} (keys: {sorted(model)})")
            kernel = np.asarray(model[key])
            if kernel.ndim != 2:
                raise ValueError(f"model[{key!r}] must have 2 dimensions, got {kernel.dtype} "
                                 f"{kernel.shape}")
            kernels.append(kernel)
        policy = cls.__new__(cls)
        hidden = tuple(int(k.shape[1]) for k in kernels[:-1])
        _check_shapes(int(kernels[0].shape[0]), hidden, int(kernels[-1].shape[1]))
        _core._DensePolicy.__init__(policy, int(kernels[0].shape[0]), list(hidden),
                                    int(kernels[-1].shape[1]))
        policy.load_model(model)
        return policy

    def load_model(self, model: Mapping) -> None:
        """Overwrites the weights from {name: array} (every parameter, this policy's shapes)."""
        if not isinstance(model, Mapping):
            raise ValueError(f"model must be a mapping of name -> array, got {type(model).__name__}")
        params = self.parameters()
        unknown = sorted(set(model) - set(params))
        if unknown:
            raise ValueError(f"model has names this policy lacks: {unknown} (expected "
                             f"{list(params)})")
        values = {}
        for name, target in params.items():
            if name not in model:
                raise ValueError(f"model is missing {name!r}")
            value = np.asarray(model[name])
            if value.dtype.kind not in "fiu" or value.shape != target.shape:
                raise ValueError(f"model[{name!r}] must be a real array of shape {target.shape}, "
                                 f"got {value.dtype} {value.shape}")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"model[{name!r}] must be finite")
            values[name] = value
        for name, value in values.items():  # all checked first: a bad model changes nothing
            params[name][...] = value

    def to_model(self) -> dict:
        """{name: float32 copy} of every parameter, Keras' layout and names."""
        return {name: value.copy() for name, value in self.parameters().items()}

    def __repr__(self) -> str:
        return (f"CategoricalPolicy(input_size={self.input_size}, hidden={self.hidden}, "
                f"num_actions={self.num_actions})")


def _check_shapes(input_size, hidden, num_actions) -> tuple:
    _check_size("input_size", input_size)
    _check_size("num_actions", num_actions)
    if isinstance(hidden, (int, np.integer)) and not isinstance(hidden, bool):
        hidden = (hidden,)
    try:
        hidden = tuple(hidden)
    except TypeError:
        raise ValueError(f"hidden must be a sequence of positive integers, got {hidden!r}") from None
    for size in hidden:
        _check_size("every hidden size", size)
    return tuple(int(h) for h in hidden)


def _check_size(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
