"""Optimizers on the C++ kernels: the tutorial's RMSProp and Keras' Adam, both gradient ascent.

``opt.step(policy, grads)`` moves the weights along ``grads`` (which point uphill, the way the
policies' ``accumulate_gradient`` and ``backward`` produce them) and zeroes ``grads``, like the
tutorial's grad_buffer. ``policy`` is the tutorial's :class:`fastpong.Policy` (``grads`` a
:class:`GradientBuffer` or a ``{"W1": (H, D), "W2": (H,)}`` dict) or any policy with
``parameters()``, a dict of float32 arrays that are its weights (``grads`` then a dict of
float32 arrays with the same names and shapes, such as ``policy.gradient_buffer()``).

Optimizer state (``state()`` / ``load_state()``) is a dict of plain numpy arrays, ready for
``numpy.savez``: one array per state tensor, named ``"<slot>_<parameter name>"`` (RMSProp:
``cache_W1``, ``cache_W2`` for the tutorial's Policy, ``cache_dense_0/kernel``... for others;
Adam: ``m_<name>``, ``v_<name>`` and ``step``). The tutorial's tensors are in its layout, W1 as
(H, D). An optimizer that has not stepped yet has no tensors; loaded ones are checked against the
policy at the next step (or at once with ``load_state(state, policy)``), before anything changes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .. import _core


class RMSProp:
    """``opt.step(policy, grads)``: the tutorial's gradient-ascent RMSProp update, in place.

    For each weight: cache = decay * cache + (1 - decay) * g^2; w += lr * g / (sqrt(cache) + 1e-5).
    The squared-gradient cache starts at zero and is created on the first step to match the
    policy's shapes (a :class:`GradientBuffer` for the tutorial's Policy, a dict of arrays for
    others).
    """

    def __init__(self, learning_rate: float = 1e-4, decay_rate: float = 0.99):
        _check_learning_rate(learning_rate)
        if not _is_number(decay_rate) or not 0 <= decay_rate < 1:
            raise ValueError(f"decay_rate must be in [0, 1), got {decay_rate!r}")
        self.learning_rate = float(learning_rate)
        self.decay_rate = float(decay_rate)
        self.cache: _core.GradientBuffer | dict | None = None
        self._pending: dict | None = None  # loaded state not yet matched to a policy

    def step(self, policy, grads) -> None:
        if self.cache is None or self._pending is not None:
            self.cache = _slots_for(policy, ("cache",), self._pending)["cache"]
            self._pending = None
        if not _is_tutorial(policy):
            names, weights, grad_list = _array_arguments(policy, grads)
            _check_slot_names(self.cache, names, "cache")
            _core.rmsprop_step_arrays(names, weights, grad_list, [self.cache[n] for n in names],
                                      self.learning_rate, self.decay_rate)
            return
        _check_tutorial_slot(self.cache, "cache")
        if _steps_in_place(policy, grads):  # the tutorial's dict, as Policy.backward returns it
            _core.rmsprop_step_model(policy, grads["W1"], grads["W2"], self.cache, self.learning_rate,
                                     self.decay_rate)
            return
        buffer, to_zero = _tutorial_gradients(policy, grads)
        _core.rmsprop_step(policy, buffer, self.cache, self.learning_rate, self.decay_rate)
        _zero(to_zero)

    def state(self) -> dict:
        """{"cache_<name>": array}: empty before the first step."""
        if self._pending is not None:
            return _export(self._pending)
        return {} if self.cache is None else _export({"cache": self.cache})

    def load_state(self, state: Mapping, policy=None) -> None:
        """Replaces the cache with ``state``'s (as ``state()`` gives it), validated: every array
        finite and >= 0; with ``policy`` (or once stepped) its names and shapes too."""
        parsed = _parse_state(state, ("cache",), "RMSProp state")
        for name, value in parsed["cache"].items():
            if np.any(value < 0):
                raise ValueError(f"RMSProp state['cache_{name}'] must be >= 0 (a mean of squares)")
        self._load(parsed, policy if policy is not None else self._policy_like())

    def _policy_like(self):
        return None if self.cache is None else _SlotShapes(self.cache)

    def _load(self, parsed: dict, policy) -> None:
        if policy is None:
            self.cache, self._pending = None, parsed
        else:
            self.cache = _slots_for(policy, ("cache",), parsed)["cache"]
            self._pending = None

    def __repr__(self) -> str:
        return f"RMSProp(learning_rate={self.learning_rate}, decay_rate={self.decay_rate})"


class Adam:
    """``opt.step(policy, grads)``: Adam as Keras 3 applies it (``keras.optimizers.Adam``), as an
    ascent step, in place, then ``grads`` zeroed.

    With t the step count from 1, for each weight w and its gradient g (float32 arithmetic, the
    scalar factors in float64)::

        m += (1 - beta_1) * (g - m)
        v += (1 - beta_2) * (g**2 - v)
        w += learning_rate * sqrt(1 - beta_2**t) / (1 - beta_1**t) * m / (sqrt(v) + epsilon)

    ``epsilon`` (default 1e-7, Keras') is Kingma and Ba's "epsilon hat": it is added to sqrt(v),
    not to the bias-corrected sqrt(v_hat). That equals the textbook update
    ``w += lr * m_hat / (sqrt(v_hat) + eps')`` with ``eps' = epsilon / sqrt(1 - beta_2**t)``.
    m and v start at zero, created on the first step to match the policy.
    """

    def __init__(self, learning_rate: float = 1e-3, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7):
        _check_learning_rate(learning_rate)
        for name, value in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not _is_number(value) or not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        if not _is_number(epsilon) or not 0 < epsilon <= _FLOAT32_MAX:
            raise ValueError(f"epsilon must be a positive number, got {epsilon!r}")
        self.learning_rate = float(learning_rate)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.iterations = 0  # steps taken (Keras' optimizer.iterations)
        self.m: _core.GradientBuffer | dict | None = None
        self.v: _core.GradientBuffer | dict | None = None
        self._pending: dict | None = None

    def _settings(self) -> tuple:
        return (self.learning_rate, self.beta_1, self.beta_2, self.epsilon, self.iterations + 1)

    def step(self, policy, grads) -> None:
        if self.m is None or self._pending is not None:
            slots = _slots_for(policy, ("m", "v"), self._pending)
            self.m, self.v, self._pending = slots["m"], slots["v"], None
        if _is_tutorial(policy):
            _check_tutorial_slot(self.m, "m")
            buffer, to_zero = _tutorial_gradients(policy, grads)
            _core.adam_step(policy, buffer, self.m, self.v, *self._settings())
            _zero(to_zero)
        else:
            names, weights, grad_list = _array_arguments(policy, grads)
            _check_slot_names(self.m, names, "m")
            _core.adam_step_arrays(names, weights, grad_list, [self.m[n] for n in names],
                                   [self.v[n] for n in names], *self._settings())
        self.iterations += 1

    def state(self) -> dict:
        """{"step": int64 array, "m_<name>": array, "v_<name>": array}."""
        if self._pending is not None:
            tensors = _export(self._pending)
        else:
            tensors = {} if self.m is None else _export({"m": self.m, "v": self.v})
        return {"step": np.array(self.iterations, dtype=np.int64), **tensors}

    def load_state(self, state: Mapping, policy=None) -> None:
        """Replaces step count, m and v with ``state``'s (as ``state()`` gives it), validated:
        ``step`` an integer >= 0, m and v finite with the same names and shapes, v >= 0, present
        once step > 0; with ``policy`` (or once stepped) their names and shapes too."""
        if not isinstance(state, Mapping):
            raise ValueError(f"Adam state must be a mapping, got {type(state).__name__}")
        if "step" not in state:
            raise ValueError("Adam state is missing 'step'")
        step = np.asarray(state["step"])
        if step.shape != () or step.dtype.kind not in "iu" or int(step) < 0:
            raise ValueError(f"Adam state['step'] must be an integer >= 0, got {state['step']!r}")
        parsed = _parse_state({k: v for k, v in state.items() if k != "step"}, ("m", "v"),
                              "Adam state")
        if parsed["m"].keys() != parsed["v"].keys():
            raise ValueError(f"Adam state must have m_ and v_ for the same names, got m for "
                             f"{sorted(parsed['m'])} and v for {sorted(parsed['v'])}")
        for name in parsed["m"]:
            if parsed["m"][name].shape != parsed["v"][name].shape:
                raise ValueError(f"Adam state['m_{name}'] and ['v_{name}'] must have the same "
                                 f"shape, got {parsed['m'][name].shape} and "
                                 f"{parsed['v'][name].shape}")
            if np.any(parsed["v"][name] < 0):
                raise ValueError(f"Adam state['v_{name}'] must be >= 0 (a mean of squares)")
        if int(step) > 0 and not parsed["m"]:
            raise ValueError(f"Adam state has step {int(step)} but no m_ and v_ arrays")
        if policy is None and self.m is not None:
            policy = _SlotShapes(self.m)
        if not parsed["m"]:
            self.m = self.v = self._pending = None
        elif policy is None:
            self.m = self.v = None
            self._pending = parsed
        else:
            slots = _slots_for(policy, ("m", "v"), parsed)
            self.m, self.v, self._pending = slots["m"], slots["v"], None
        self.iterations = int(step)

    def __repr__(self) -> str:
        return (f"Adam(learning_rate={self.learning_rate}, beta_1={self.beta_1}, "
                f"beta_2={self.beta_2}, epsilon={self.epsilon})")


# --- shared by both optimizers -------------------------------------------------------------------

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_TUTORIAL_NAMES = ("W1", "W2")


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _check_learning_rate(learning_rate) -> None:
    # The kernels step in float32: a rate beyond float32's range would become inf there.
    if not _is_number(learning_rate) or not 0 < learning_rate <= _FLOAT32_MAX:
        raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")


def _is_tutorial(policy) -> bool:
    return isinstance(policy, (_core._Policy, _TutorialShapes))


def _parameters(policy) -> dict:
    if not hasattr(policy, "parameters"):
        raise ValueError("policy must be a fastpong.Policy or have parameters() (a dict of "
                         f"float32 arrays), got {type(policy).__name__}")
    return policy.parameters()


def _steps_in_place(policy, grads) -> bool:
    """Whether the kernel can read (and zero) the tutorial's gradient dict where it lies: float32
    arrays of the policy's shapes that it may write. Anything else is copied into a
    GradientBuffer first, which converts it or says what is wrong with it."""
    if not isinstance(policy, _core._Policy) or not isinstance(grads, Mapping):
        return False
    shapes = {"W1": (policy.hidden, policy.input_size), "W2": (policy.hidden,)}
    for name, shape in shapes.items():
        g = grads.get(name)
        if not (isinstance(g, np.ndarray) and g.dtype == np.float32 and g.shape == shape
                and g.flags.c_contiguous and g.flags.writeable and g.flags.aligned):
            return False
    return True


def _tutorial_gradients(policy, grads):
    """grads as a GradientBuffer, and the dict whose arrays are to be zeroed after the step."""
    if not isinstance(grads, Mapping):
        return grads, None
    buffer = _core.GradientBuffer(policy.hidden, policy.input_size)
    try:
        buffer.load_model(grads)
    except ValueError as error:  # the kernel calls its argument "model"; here it is grads
        raise ValueError(str(error).replace("model", "grads", 1)) from None
    return buffer, grads


def _zero(grads) -> None:
    for value in (grads or {}).values():
        if isinstance(value, np.ndarray) and value.flags.writeable:
            value[...] = 0


def _array_arguments(policy, grads):
    """(names, weights, grads) lists in the policy's parameter order, names checked."""
    params = _parameters(policy)
    if not isinstance(grads, Mapping):
        raise ValueError("grads must be a dict of name -> float32 array (policy.gradient_buffer())"
                         f", got {type(grads).__name__}")
    names = list(params)
    if set(grads) != set(names):
        raise ValueError(f"grads must have the policy's names {names}, got {list(grads)}")
    return names, [params[n] for n in names], [grads[n] for n in names]


def _check_slot_names(slot, names: list, what: str) -> None:
    if isinstance(slot, _core.GradientBuffer) or list(slot) != names:
        made_for = ["W1", "W2"] if isinstance(slot, _core.GradientBuffer) else list(slot)
        raise ValueError(f"the optimizer's {what} was made for parameters {made_for}, but this "
                         f"policy has {names}")


def _check_tutorial_slot(slot, what: str) -> None:
    if not isinstance(slot, _core.GradientBuffer):
        raise ValueError(f"the optimizer's {what} was made for parameters {list(slot)}, but this "
                         "policy is the tutorial's (W1, W2)")


class _SlotShapes:
    """Stands for the policy an optimizer has stepped, so that loaded state can be checked
    against the shapes it already has."""

    def __new__(cls, slot):
        if isinstance(slot, _core.GradientBuffer):
            return _TutorialShapes(slot.hidden, slot.input_size)
        return object.__new__(cls)

    def __init__(self, slot):
        self._params = {n: np.zeros_like(v) for n, v in slot.items()}

    def parameters(self) -> dict:
        return self._params


class _TutorialShapes:
    def __init__(self, hidden: int, input_size: int):
        self.hidden, self.input_size = hidden, input_size


def _slots_for(policy, slots: tuple, loaded: dict | None) -> dict:
    """State tensors named `slots` for this policy: zeros, or `loaded` ({slot: {name: array}})
    after checking its names and shapes against the policy."""
    if _is_tutorial(policy):
        out = {s: _core.GradientBuffer(policy.hidden, policy.input_size) for s in slots}
        expected = {"W1": (policy.hidden, policy.input_size), "W2": (policy.hidden,)}
    else:
        params = _parameters(policy)
        out = {s: {n: np.zeros(p.shape, np.float32) for n, p in params.items()} for s in slots}
        expected = {n: p.shape for n, p in params.items()}
    if loaded is None:
        return out
    for s in slots:
        if set(loaded[s]) != set(expected):
            raise ValueError(f"optimizer state has {s}_ arrays for {sorted(loaded[s])}, but the "
                             f"policy's parameters are {sorted(expected)}")
        for name, shape in expected.items():
            if loaded[s][name].shape != tuple(shape):
                raise ValueError(f"optimizer state['{s}_{name}'] must have shape {tuple(shape)}, "
                                 f"got {loaded[s][name].shape}")
        if isinstance(out[s], _core.GradientBuffer):
            out[s].load_model(loaded[s])
        else:
            for name in expected:
                out[s][name][...] = loaded[s][name]
    return out


def _export(slots: dict) -> dict:
    out = {}
    for slot, tensors in slots.items():
        model = tensors.to_model() if isinstance(tensors, _core.GradientBuffer) else tensors
        for name, value in model.items():
            out[f"{slot}_{name}"] = np.array(value, dtype=np.float32)
    return out


def _parse_state(state, slots: tuple, what: str) -> dict:
    """{slot: {name: float32 array}} from {"<slot>_<name>": array}; unknown keys and non-finite
    values are refused."""
    if not isinstance(state, Mapping):
        raise ValueError(f"{what} must be a mapping, got {type(state).__name__}")
    parsed = {s: {} for s in slots}
    for key, value in state.items():
        slot = next((s for s in slots if str(key).startswith(s + "_")), None)
        if slot is None:
            expected = ", ".join(f"'{s}_<name>'" for s in slots)
            raise ValueError(f"{what} has an unknown key {key!r} (expected {expected})")
        array = np.asarray(value)
        if array.dtype.kind not in "fiu":
            raise ValueError(f"{what}[{key!r}] must be a real array, got {array.dtype}")
        array = array.astype(np.float32)
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{what}[{key!r}] must be finite (in float32)")
        parsed[slot][str(key)[len(slot) + 1:]] = array
    return parsed
