"""Fuzzing the boundary: every bound function and class gets arrays of every dtype, shape, stride
and alignment, empty arrays, NaN, infinity, huge values and objects that are not arrays at all.
Only two outcomes pass: a correct result (checked against the NumPy reference, with the input left
untouched), or a ValueError/TypeError with a message. A crash, a MemoryError, any other exception,
a wrong result, or a valid input refused fails the test.

Each argument is drawn with a verdict: valid (the call must succeed and be right), invalid (the call
must be refused) or either (say float32 values near its maximum, whose results may overflow: any
result or a refusal passes, a crash does not). The verdicts come from the drawn array itself
(shape, dtype, values), not from how it was drawn.

Adding a bound function (say a kernel from another branch) is one entry in CASES:
``"name": Case(call, (argument strategies...), check)``, where ``call(*values)`` makes the call,
each argument strategy comes from array_arg/int_arg/float_arg/junk below, and
``check(result, *values)`` asserts the result is right (it only runs when every argument was valid).
Set FASTPONG_FUZZ_EXAMPLES to change the examples per entry (.ci/sanitize.sh raises it).
"""

from __future__ import annotations

import functools
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastpong
from fastpong import reference as ref
from fastpong.categorical import CategoricalPolicy
from fastpong.reference import cnn, lab
from fastpong.reference import ppo as ppo_ref

EXAMPLES = int(os.environ.get("FASTPONG_FUZZ_EXAMPLES", "60"))
FRAME = (210, 160, 3)
H, D, T = 5, 70, 3  # D crosses the forward kernel's 64-value blocks
F32_EPS = float(np.finfo(np.float32).eps)
F32_MAX = float(np.finfo(np.float32).max)
#: Valid values are drawn up to this magnitude: the results then stay inside float32's range, so
#: they can be held to the float64 reference. Larger finite values are "either" (see above).
CHECKED_MAGNITUDE = 1e12

REAL_DTYPES = ("int8", "uint8", "int16", "int32", "int64", "uint64", "float16", "float32", "float64",
               "longdouble")
OTHER_DTYPES = ("bool", "complex64", "complex128", "U2", "S2", "object", "datetime64[s]",
                "struct")
LAYOUTS = ("C", "fortran", "strided", "reversed", "misaligned", "readonly", "broadcast")


@dataclass
class Arg:
    """A drawn argument and its verdict: True valid, False invalid, None either."""

    value: object
    valid: bool | None
    note: str = ""

    def __repr__(self) -> str:
        return f"Arg({self.note or type(self.value).__name__}, valid={self.valid})"


# --- argument strategies ---------------------------------------------------------------------


def _values(rng: np.random.Generator, shape, pattern: str, kind: str) -> np.ndarray:
    """float64 values of one pattern: what each kind of argument looks like, and the extremes."""
    n = int(np.prod(shape))
    if pattern == "typical":
        if kind == "frame":
            v = rng.choice([0, 144, 109, 17, 236, 92, 255], size=n, p=[.2, .4, .2, .05, .05, .05, .05])
        elif kind == "ternary":
            v = rng.choice([-1.0, 0.0, 1.0], size=n, p=[0.1, 0.8, 0.1])
        elif kind in ("probability", "unit"):
            v = rng.uniform(0.0, 1.0, size=n)
        else:
            v = rng.standard_normal(n) * rng.choice([1e-3, 1.0, 1e3])
    elif pattern == "zeros":
        v = np.zeros(n)
    elif pattern == "large":  # the largest magnitude still checked
        v = rng.choice([-1.0, 1.0], size=n) * CHECKED_MAGNITUDE
    elif pattern == "denormal":
        v = rng.choice([0.0, 1e-40, -1e-42], size=n)
    elif pattern == "f32max":
        v = rng.choice([-1.0, 1.0], size=n) * F32_MAX
    elif pattern == "huge":  # finite in float64, infinite as float32
        v = np.full(n, 1e300)
    elif pattern == "half":
        v = np.full(n, 0.5)
    else:  # one NaN or infinity among typical values
        v = rng.standard_normal(n)
        if n:
            v[rng.integers(n)] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}[pattern]
    return v.reshape(shape)


def _as_dtype(values: np.ndarray, dtype: str) -> np.ndarray:
    return np.asarray(_converted(values, dtype))  # 0-d stays an array (np.clip returns a scalar)


def _converted(values: np.ndarray, dtype: str):
    if dtype == "struct":
        return np.zeros(values.shape, dtype=[("a", "f4"), ("b", "i4")])
    if dtype == "datetime64[s]":
        return np.zeros(values.shape, dtype="int64").astype(dtype)
    with np.errstate(all="ignore"):
        if np.dtype(dtype).kind in "iub":
            finite = np.nan_to_num(values, nan=0, posinf=1e18, neginf=-1e18)
            info = np.iinfo(dtype) if np.dtype(dtype).kind != "b" else None
            if info is not None:
                finite = np.clip(np.round(finite), info.min, info.max)
            return finite.astype(dtype)
        return values.astype(dtype)


def _with_layout(a: np.ndarray, layout: str) -> np.ndarray:
    """The same values (or, for 'broadcast', the first row repeated) in another memory layout."""
    if layout == "fortran":
        return np.asfortranarray(a)
    if layout == "strided" and a.ndim >= 1:
        wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
        wide[..., ::2] = a
        return wide[..., ::2]
    if layout == "reversed" and a.ndim >= 1:
        return a[::-1].copy()[::-1]
    if layout == "misaligned" and a.dtype.itemsize > 1 and a.dtype.kind not in "OV":
        raw = np.zeros(a.nbytes + 1, dtype=np.uint8)
        view = np.frombuffer(raw.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
        view[...] = a
        return view
    if layout == "readonly":
        a.flags.writeable = False
        return a
    if layout == "broadcast" and a.ndim >= 1 and a.shape[0] > 0:
        return np.broadcast_to(a[:1], a.shape)
    return a


def _shapes_near(shape: tuple) -> st.SearchStrategy:
    """The valid shape, a shape one step from it, or any small shape."""
    near = [shape[:-1], shape + (1,), (1,) + shape, shape + (2,)]
    for axis in range(len(shape)):
        for size in {0, 1, shape[axis] - 1, shape[axis] + 1, 2 * shape[axis]}:
            if size >= 0:
                near.append(shape[:axis] + (size,) + shape[axis + 1:])
    anything = st.lists(st.integers(0, 6), min_size=0, max_size=4).map(tuple)
    return st.one_of(st.just(shape), st.sampled_from(near), anything)


def _values_ok(a: np.ndarray, kind: str, checked_magnitude: float = CHECKED_MAGNITUDE) -> bool | None:
    """The verdict on the values of an array of an accepted dtype."""
    if kind == "frame":
        return True
    v = a.astype(np.float64)
    if kind == "ternary":
        return bool(np.isin(v, (-1.0, 0.0, 1.0)).all())
    with np.errstate(over="ignore"):
        as32 = v.astype(np.float32)
    if not np.isfinite(as32).all():
        return False  # NaN, infinity, or beyond float32's range: refused by the finiteness checks
    if kind == "probability" and (as32 < 0).any():
        return False
    if kind == "unit":
        return bool(((as32 >= 0) & (as32 < 1)).all())
    return True if np.abs(v).max(initial=0) <= checked_magnitude else None


@st.composite
def array_arg(draw, shapes, kind: str = "real", finite_checked: bool = True, typical=None,
              checked_magnitude: float = CHECKED_MAGNITUDE):
    """An array argument whose valid shapes are `shapes` (one or several, the first typical; or a
    predicate on the shape with a typical shape in `typical`). kind: 'frame' (uint8 only),
    'ternary' (-1, 0, 1 of any real dtype), 'probability' (finite, >= 0), 'unit' (in [0, 1)) or
    'real' (any finite real; checked up to checked_magnitude, 'either' past it). finite_checked:
    the function refuses NaN and infinity (else their verdict is 'either')."""
    if callable(shapes):
        accepts, shapes = shapes, [typical]
    else:
        shapes = [shapes] if isinstance(shapes[0], int) else list(shapes)
        accepts = lambda s: s in shapes  # noqa: E731
    valid_dtypes = ("uint8",) if kind == "frame" else REAL_DTYPES
    # Half the draws are meant to be valid (in any layout), so that a call with several arguments
    # still gets all of them valid often enough to check its results.
    if draw(st.booleans()):
        shape = draw(st.sampled_from(shapes))
        dtype = draw(st.sampled_from(valid_dtypes))
        pattern = draw(st.sampled_from(("typical", "typical", "zeros", "large", "denormal")))
    else:
        shape = draw(st.one_of(st.sampled_from(shapes), _shapes_near(shapes[0])))
        other = tuple(d for d in REAL_DTYPES + OTHER_DTYPES if d not in valid_dtypes)
        dtype = draw(st.one_of(st.sampled_from(valid_dtypes), st.sampled_from(other)))
        pattern = draw(st.sampled_from(("typical", "zeros", "large", "denormal", "f32max", "huge",
                                        "half", "nan", "inf", "-inf")))
    layout = draw(st.sampled_from(LAYOUTS))
    seed = draw(st.integers(0, 2**32 - 1))
    values = _values(np.random.default_rng(seed), shape, pattern, kind)
    a = _with_layout(_as_dtype(values, dtype), layout)
    if not accepts(tuple(a.shape)) or dtype not in valid_dtypes:
        valid = False
    else:
        valid = _values_ok(a, kind, checked_magnitude)
        if valid is False and not finite_checked and kind == "real":
            valid = None
    return Arg(a, valid, f"{a.dtype} {a.shape} {pattern} {layout}")


def junk() -> st.SearchStrategy:
    """Objects that are not arrays, or are arrays of nothing numeric."""
    return st.sampled_from([None, "frame", b"\x00" * 8, 3.5, [1, [2, 3]], {"a": 1}, object(),
                            [[1.0, 2.0], [3.0]], ["1", "2"], np.float32(1.0), slice(1)]).map(
        lambda v: Arg(v, False, f"junk {type(v).__name__}"))


def int_arg(low: int, high: int) -> st.SearchStrategy:
    """An integer argument valid in [low, high] (kept small: a valid size is allocated), against
    zero, negatives, sizes far past any limit, bools, floats and strings."""
    valid = st.integers(low, high).map(lambda v: Arg(v, True, f"int {v}"))
    numpy_int = st.integers(low, high).map(lambda v: Arg(np.int64(v), True, f"np.int64 {v}"))
    bad = st.sampled_from([0, -1, -2**31, 2**31, 2**40, 2**62, 2**63 - 1, 2**63, -2**63, 2**64 + 5,
                           10**30]).filter(lambda v: not low <= v <= high).map(
        lambda v: Arg(v, False, f"int {v}"))
    other = st.sampled_from([3.0, float("nan"), "3", None, [3]]).map(
        lambda v: Arg(v, False, f"{type(v).__name__} {v!r}"))
    # pybind11 reads True and False as the integers they are in Python: either verdict passes.
    bools = st.sampled_from([True, False]).map(lambda v: Arg(v, None, f"bool {v}"))
    return st.one_of(valid, numpy_int, bad, other, bools)


def float_arg(valid: Callable[[float], bool | None], typical: st.SearchStrategy) -> st.SearchStrategy:
    """A float argument with the verdict valid(v) (True, False or None), drawn from `typical`
    (valid values) or against NaN, infinities, extremes and non-numbers (NaN and infinities are
    always invalid)."""
    numbers = st.one_of(
        typical, typical,
        st.floats(allow_nan=False, allow_infinity=False, min_value=-2.0, max_value=2.0),
        st.sampled_from([0.0, -0.0, 1.0, 1e-300, 5e-324, 1e-45, 1e300, -1e300, F32_MAX, 2 * F32_MAX,
                         float("nan"), float("inf"), -float("inf"), 1, 2**70]))
    return st.one_of(
        numbers.map(lambda v: Arg(v, valid(v) if math.isfinite(v) else False, f"float {v!r}")),
        st.sampled_from(["0.5", None, [0.5]]).map(lambda v: Arg(v, False, f"{v!r}")),
        st.just(Arg(True, None, "True")))  # pybind11 reads it as 1.0, as float(True) does


def either(*strategies) -> st.SearchStrategy:
    return st.one_of(*strategies, junk())


# --- fixed companions: small valid objects the fuzzed arguments are used with -----------------


def policy(hidden=H, input_size=D) -> fastpong.Policy:
    return fastpong.Policy(hidden=hidden, input_size=input_size, seed=7)


def model64(p) -> dict:
    return {k: v.astype(np.float64) for k, v in p.to_model().items()}


def ternary_rows(rows: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).choice([-1.0, 0.0, 1.0], size=(rows, D), p=[0.2, 0.6, 0.2])


def episode_of(steps: int = T) -> fastpong.EpisodeBuffer:
    rng = np.random.default_rng(5)
    return fastpong.EpisodeBuffer.from_arrays(ternary_rows(steps), rng.uniform(0, 1, (steps, H)),
                                              rng.uniform(-1, 1, steps), np.zeros(steps))


def f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def r32(a) -> np.ndarray:
    """What the kernels compute on: the values rounded to float32 (then widened for the reference)."""
    with np.errstate(over="ignore"):
        return f64(a).astype(np.float32).astype(np.float64)


def assert_close(actual, expected, terms: int, what: str, scale=None) -> None:
    """float32 against the float64 reference: |a - r| <= 8 eps (terms + 1) max(scale, 1), where
    scale is the sum of the absolute values of the terms behind each result (|r| by default), so
    that sums that cancel are held to what float32 can do."""
    actual, expected = f64(actual), f64(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = np.abs(expected) if scale is None else np.maximum(np.abs(expected), f64(scale))
    tolerance = 8 * F32_EPS * (terms + 1) * np.maximum(scale, 1.0)
    bad = ~(np.abs(actual - expected) <= tolerance)
    assert not bad.any(), f"{what}: {actual[bad][:3]} != {expected[bad][:3]}"


# --- the checks: what a correct result is ----------------------------------------------------


def per_frame(reference, frame, side: int) -> np.ndarray:
    """reference(frame) of one (210, 160, 3) frame, or stacked over a batch (empty included)."""
    frames = f64(frame).astype(np.uint8)
    if frames.ndim == 3:
        return reference(frames)
    return np.stack([reference(f) for f in frames]) if len(frames) else np.zeros((0, side, side))


def check_preprocessing(result, frame):
    np.testing.assert_array_equal(result, per_frame(ref.frame_preprocessing, frame, 80))
    assert result.dtype == np.float32


def check_differencer(result, first, second):
    a, b = (np.stack([ref.frame_preprocessing(f).ravel() for f in np.asarray(x)]) for x in (first, second))
    np.testing.assert_array_equal(result.to_dense(6400), b - a)


def check_round_trip(result, x):
    x = r32(x)
    d = x.shape[-1]
    rows = 1 if x.ndim == 1 else x.shape[0]
    np.testing.assert_array_equal(result.to_dense(max(d, 1))[:, :d], x.reshape(rows, d))


def check_to_dense(result, input_size):
    rows = ternary_rows(2)
    expected = np.zeros((2, int(input_size)))
    expected[:, :D] = rows
    np.testing.assert_array_equal(result, expected)


def check_forward(result, x):
    p, h = result
    model = model64(policy())
    rows = r32(x).reshape(-1, D)
    expected = [ref.policy_forward(row, model) for row in rows]
    h_scale = np.abs(rows) @ np.abs(model["W1"]).T  # (N, H): the terms behind each h
    logit_scale = h_scale @ np.abs(model["W2"]) / 4  # sigmoid's slope is at most 1/4
    assert_close(np.reshape(h, (len(rows), H)), np.array([e[1] for e in expected]).reshape(len(rows), H),
                 D, "h", h_scale)
    assert_close(np.reshape(p, -1), np.array([e[0] for e in expected]), D + H, "p", logit_scale)


def assert_gradients(result, eph, epx, g):
    """dW2 = eph^T g and dW1 = (g W2, gated by eph > 0)^T epx, against the reference."""
    model = model64(policy())
    expected = ref.policy_backward(eph, epx, g, model)
    dh_scale = np.abs(np.outer(g, model["W2"]))
    scales = {"W1": dh_scale.T @ np.abs(epx), "W2": np.abs(eph).T @ np.abs(g)}
    for k in ("W1", "W2"):
        assert_close(result[k], expected[k], T + 1, k, scales[k])


def episode_of_another_length(eph, epx, epdlogp) -> bool:
    """Whether three arrays make an episode of some length t (possibly 0) other than T: valid for
    Policy.backward, though each array alone has not the typical shape."""
    shapes = [np.shape(a) for a in (eph, epx, epdlogp)]
    if len(shapes[0]) != 2 or shapes[0][1] != H:
        return False
    t = shapes[0][0]
    return shapes[1] == (t, D) and shapes[2] in ((t,), (t, 1))


def check_backward(result, eph, epx, epdlogp):
    assert_gradients(result, r32(eph), r32(epx), r32(epdlogp).ravel())


def check_load_model(result, model):
    stored = result.to_model()
    assert stored["W1"].shape == np.shape(model["W1"])
    for k in ("W1", "W2"):
        np.testing.assert_array_equal(stored[k], r32(model[k]))


def check_accumulate(result, advantages):
    rng = np.random.default_rng(5)  # episode_of()'s arrays
    epx, eph, dlogp = ternary_rows(T), r32(rng.uniform(0, 1, (T, H))), r32(rng.uniform(-1, 1, T))
    assert_gradients(result, eph, epx, r32(dlogp * r32(advantages)))


def check_discount(result, r, gamma):
    r = r32(r).ravel()
    assert_close(result, ref.discount_rewards(r, gamma), r.size, "discounted")


def check_standardize(result, values):
    v = r32(values).ravel()
    expected = ref.standardize_returns(v)
    assert_close(np.ravel(result), expected, 4 * max(v.size, 1), "standardized")


def check_from_arrays(result, epx, eph, epdlogp, rewards):
    assert len(result) == T
    np.testing.assert_array_equal(result.inputs.to_dense(D), f64(epx))
    np.testing.assert_array_equal(result.hidden_states, r32(eph))
    np.testing.assert_array_equal(result.dlogps, r32(epdlogp).ravel())
    np.testing.assert_array_equal(result.rewards, r32(rewards).ravel())


def check_append(result, h, dlogp):
    np.testing.assert_array_equal(result.hidden_states, r32(h)[None])
    assert result.dlogps[0] == np.float32(dlogp)


def check_batch_append(result, h, dlogps, rewards):
    for env in range(2):
        episode = result.episode(env)
        np.testing.assert_array_equal(episode.hidden_states[0], r32(h)[env])
        assert episode.dlogps[0] == r32(dlogps)[env]
        assert episode.rewards[0] == r32(rewards)[env]


def check_sizes(result, hidden, input_size):
    assert (result.hidden, result.input_size) == (int(hidden), int(input_size))


def check_rmsprop(result, learning_rate, decay_rate):
    model, grads = model64(policy()), {"W1": np.full((H, D), 0.25), "W2": np.full(H, -0.5)}
    cache = {k: np.zeros_like(v) for k, v in model.items()}
    ref.rmsprop_update(model, grads, cache, learning_rate, decay_rate)
    for k in ("W1", "W2"):
        assert_close(result[k], model[k], 4, k)


def check_rmsprop_dict(result, grads):
    model = model64(policy())
    g = {k: r32(v) for k, v in grads.items()}
    cache = {k: np.zeros_like(v) for k, v in model.items()}
    ref.rmsprop_update(model, g, cache, 1e-2, 0.9)
    for k in ("W1", "W2"):
        assert_close(result[k], model[k], 4, k)


def check_threads(result, threads):
    assert result == int(threads) or not fastpong.has_openmp()


def dense_policy():
    return CategoricalPolicy(input_size=4, hidden=(7,), num_actions=3, seed=2)


def check_dense_forward(result, obs):
    probs = lab.forward(r32(obs), {k: f64(v) for k, v in dense_policy().to_model().items()})[2]
    np.testing.assert_allclose(result, probs, atol=1e-5)


def check_sample_actions(result, probs, uniforms):
    p = r32(probs)
    assert result.shape == (p.shape[0],) and result.dtype == np.int32
    assert ((0 <= result) & (result < p.shape[1])).all()
    rows = np.arange(p.shape[0])
    assert ((p[rows, result] > 0) | (p.sum(axis=1) == 0)).all()  # never an action of probability 0


PROBS = np.array([[0.5, 0.5], [0.0, 1.0], [0.2, 0.8]], dtype=np.float32)


def _uniforms_for(probs):
    rows = np.shape(probs)[0] if np.ndim(probs) == 2 else 3
    return np.linspace(0.0, 0.99, rows, dtype=np.float32)


@functools.lru_cache(maxsize=1)
def pong_like_frames() -> tuple[np.ndarray, np.ndarray]:
    """Two batches of 64 Pong-like frames (the paddle and ball colours on the background): the
    first n of each feed a fuzzed differencer of n environments."""
    rng = np.random.default_rng(23)
    draw = lambda: rng.choice([144, 109, 17, 236, 92], size=(64, *FRAME),  # noqa: E731
                              p=[.8, .05, .05, .05, .05]).astype(np.uint8)
    return draw(), draw()


def check_new_differencer(result, num_envs):
    """A new FrameDifferencer(n): n environments, zeros on each one's first frame, then the
    reference's difference of its two frames."""
    n = int(num_envs)
    assert result.num_envs == n
    first, second = (frames[:n] for frames in pong_like_frames())
    assert result.step(first).nonzeros == 0
    check_differencer(result.step(second), first, second)


def differencer_reset(env):
    """Three environments step, `env` is reset, all three step again."""
    differencer = fastpong.FrameDifferencer(3)
    first, _ = pong_like_frames()
    differencer.step(first[:3])
    differencer.reset(env)
    return differencer.step(pong_like_frames()[1][:3])


def check_differencer_reset(result, env):
    """The reset environment starts afresh (zeros, as on an episode's first frame); the others
    give the reference's difference as if nothing happened."""
    first, second = (frames[:3] for frames in pong_like_frames())
    dense = result.to_dense(6400)
    assert not dense[int(env)].any()
    others = [e for e in range(3) if e != int(env)]
    a, b = (np.stack([ref.frame_preprocessing(f).ravel() for f in x[others]]) for x in (first, second))
    np.testing.assert_array_equal(dense[others], b - a)


def check_new_episode_batch(result, num_envs, hidden):
    """A new EpisodeBatch(n, h, D): n empty episodes of the sizes asked, and a step appended to
    all lands in each one's own buffer."""
    n, h = int(num_envs), int(hidden)
    assert len(result) == n
    assert [(len(result.episode(e)), result.episode(e).hidden, result.episode(e).input_size)
            for e in {0, n - 1}] == [(0, h, D)] * len({0, n - 1})
    rng = np.random.default_rng(n * 100 + h)
    x = rng.choice([-1.0, 0.0, 1.0], size=(n, D), p=[0.2, 0.6, 0.2])
    hs, dlogps = r32(rng.uniform(0, 1, (n, h))), r32(rng.uniform(-1, 1, n))
    result.append(fastpong.SparseFrames.from_dense(x), hs, dlogps)
    for e in {0, n // 2, n - 1}:
        episode = result.episode(e)
        np.testing.assert_array_equal(episode.inputs.to_dense(D), x[e:e + 1])
        np.testing.assert_array_equal(episode.hidden_states, hs[e:e + 1])
        assert episode.dlogps[0] == dlogps[e]


def check_new_dense_policy(result, input_size, hidden):
    """A new CategoricalPolicy(d, (h,), 2): Keras' names and shapes, and its forward pass is the
    reference's on its own weights."""
    d, h = int(input_size), int(hidden)
    model = result.to_model()
    assert {k: v.shape for k, v in model.items()} == {
        "dense_0/kernel": (d, h), "dense_0/bias": (h,), "logits/kernel": (h, 2), "logits/bias": (2,)}
    obs = np.random.default_rng(d * 100 + h).standard_normal((3, d)).astype(np.float32)
    expected = lab.forward(f64(obs), {k: f64(v) for k, v in model.items()})[2]
    np.testing.assert_allclose(result.forward(obs), expected, atol=1e-5)


def check_new_lab_differencer(result, num_envs):
    """A new LabFrameDifferencer(n): n environments, zeros on each one's first frame, then the
    lab's frame change of its two frames."""
    n = int(num_envs)
    assert result.num_envs == n
    first, second = (frames[:n] for frames in pong_like_frames())
    assert not result.step(first).any()
    check_lab_frame_change(result.step(second), first, second)


def observation_arg() -> st.SearchStrategy:
    """What the actor-critic's network sees (reference.ppo.OBSERVATIONS), against near misses of
    the names and non-strings."""
    valid = st.sampled_from(ppo_ref.OBSERVATIONS).map(lambda v: Arg(v, True, repr(v)))
    bad = st.sampled_from(["Change", "frame_and_change", "frame", "", " change", b"change", None, 0,
                           ["change"]]).map(lambda v: Arg(v, False, repr(v)))
    return st.one_of(valid, bad)


def check_new_lab_differencer_of(result, num_envs, observation):
    """A new LabFrameDifferencer(n, observation): n environments, each step the reference's
    observation of that kind (a game's first frame stands in for its previous one)."""
    n = int(num_envs)
    assert result.num_envs == n and result.observation == observation
    first, second = (frames[:n] for frames in pong_like_frames())
    np.testing.assert_array_equal(result.step(first), [ppo_ref.observation(observation, f, f) for f in first])
    np.testing.assert_array_equal(result.step(second), [ppo_ref.observation(observation, a, b)
                                                        for a, b in zip(first, second)])


@functools.lru_cache(maxsize=None)
def conv_policy() -> fastpong.ConvPolicy:
    """One CNN for every call (none of the fuzzed calls changes it; building one takes ~1 ms)."""
    return fastpong.ConvPolicy(seed=11)


def conv_params64() -> dict:
    return {k: f64(v) for k, v in conv_policy().to_model().items()}


def is_frame_changes(shape) -> bool:
    """(N, 40, 40) or (N, 40, 40, 1)."""
    return len(shape) in (3, 4) and tuple(shape[1:3]) == (40, 40) and shape[3:] in ((), (1,))


def assert_cnn_close(actual, expected, atol_scale, what):
    """As tests/test_cnn.py holds the CNN: rtol 1e-4 plus an absolute floor relative to the
    largest expected magnitude (float32 sums of up to 800 products through six layers)."""
    expected = f64(expected)
    scale = max(float(np.max(np.abs(expected), initial=0.0)), 1.0)
    np.testing.assert_allclose(f64(actual), expected, rtol=1e-4, atol=atol_scale * scale, err_msg=what)


def check_conv_forward(result, obs, log=False):
    x = r32(obs)
    if x.shape[0] == 0:
        assert result.shape == (0, 6)
        return
    logits, _ = cnn.policy_forward(x, conv_params64())
    expected = cnn.log_softmax(logits) if log else cnn.softmax(logits)
    assert_cnn_close(result, expected, 1e-4, "log_probs" if log else "probs")


CONV_ACTIONS = np.array([1, 4])
CONV_ADVANTAGES = np.array([0.5, -1.0])
CONV_OBS = np.random.default_rng(13).choice([-1.0, 0.0, 1.0], size=(2, 40, 40), p=[0.05, 0.9, 0.05])


def conv_accumulate(obs, advantages):
    grads = conv_policy().gradient_buffer()
    conv_policy().accumulate_gradient(obs, CONV_ACTIONS, advantages, grads)
    return grads


F32_TINY = float(np.finfo(np.float32).tiny)


def relu_gates_settled(x, params) -> bool:
    """Whether every ReLU of the reference's forward pass has its input 0 exactly (an all-zero
    window, zero in float32 too) or at least 1e-5 of its layer's largest from 0. A ReLU input
    closer to 0 than float32's rounding (subnormal inputs, or a rare near-cancellation) may land
    on the other side of 0 in float32, which switches that unit's gradient off or on entirely:
    a true difference of float32 arithmetic, not an error to hold the kernel to."""
    _, cache = cnn.policy_forward(x, params)
    pre = [cnn.conv2d_forward(a, params[f"conv2d_{i}/kernel"], params[f"conv2d_{i}/bias"], stride)
           for i, (a, (_, _, stride)) in enumerate(zip(cache["conv_inputs"], cnn.CONV_LAYERS))]
    pre.append(cache["flat"] @ params["dense_0/kernel"] + params["dense_0/bias"])
    for p in pre:
        scale = float(np.max(np.abs(p), initial=0.0))
        if scale == 0:  # all exactly 0 (an all-zero input and zero biases): the same in float32
            continue
        near = (p != 0) & (np.abs(p) < 1e-5 * scale)
        if scale < F32_TINY or near.any():
            return False
    return True


def check_conv_accumulate(result, obs, advantages):
    x, params = r32(obs), conv_params64()
    expected = cnn.objective_gradient(params, x, CONV_ACTIONS, r32(advantages))
    assert set(result) == set(expected)
    for name, g in expected.items():
        assert result[name].shape == g.shape and np.isfinite(result[name]).all(), name
    if relu_gates_settled(x, params):
        for name, g in expected.items():
            assert_cnn_close(result[name], g, 1e-4, name)


def check_lab_preprocess(result, frames):
    np.testing.assert_array_equal(result, per_frame(cnn.preprocess, frames, 40))
    assert result.dtype == np.float32


def check_lab_frame_change(result, prev, frames):
    prev, frames = f64(prev).astype(np.uint8), f64(frames).astype(np.uint8)
    expected = (cnn.frame_change(prev, frames) if frames.ndim == 3
                else np.stack([cnn.frame_change(p, f) for p, f in zip(prev, frames)]).reshape(-1, 40, 40))
    np.testing.assert_array_equal(result, expected)


#: Two frames of a Pong-like picture (the paddle and ball colours on the background), the fixed
#: companion of a fuzzed lab_frame_change argument.
LAB_FRAMES = np.random.default_rng(17).choice([144, 109, 17, 236, 92], size=(2, *FRAME),
                                              p=[.8, .05, .05, .05, .05]).astype(np.uint8)


def lab_differencer_steps(first, second):
    differencer = fastpong.LabFrameDifferencer(2)
    differencer.step(first)
    return differencer.step(second)


def check_lab_differencer(result, first, second):
    check_lab_frame_change(result, first, second)


# --- the calls ---------------------------------------------------------------------------------


def differencer_steps(first, second):
    differencer = fastpong.FrameDifferencer(2)
    differencer.step(first)
    return differencer.step(second)


def accumulate(advantages):
    grads = policy().gradient_buffer()
    policy().accumulate_gradient(episode_of(), advantages, grads)
    return grads.to_model()


def buffer_append(h, dlogp):
    buffer = fastpong.EpisodeBuffer(H, D)
    buffer.append(fastpong.SparseFrames.from_dense(ternary_rows(1)[0]), h, dlogp)
    return buffer


def batch_append(h, dlogps, rewards):
    batch = fastpong.EpisodeBatch(2, H, D)
    batch.append(fastpong.SparseFrames.from_dense(ternary_rows(2)), h, dlogps)
    batch.set_last_rewards(rewards)
    return batch


def rmsprop_step(learning_rate, decay_rate):
    p = policy()
    grads, cache = p.gradient_buffer(), p.gradient_buffer()
    grads.load_model({"W1": np.full((H, D), 0.25), "W2": np.full(H, -0.5)})
    fastpong._core.rmsprop_step(p, grads, cache, learning_rate, decay_rate)
    return p.to_model()


def rmsprop_dict(grads):
    p = policy()
    fastpong.RMSProp(1e-2, 0.9).step(p, grads)
    return p.to_model()


def with_threads(threads):
    before = fastpong.get_num_threads()
    try:
        fastpong.set_num_threads(threads)
        return fastpong.get_num_threads()
    finally:
        fastpong.set_num_threads(before)


def model_arg(any_shape: bool = False) -> st.SearchStrategy:
    """{'W1': (H, D), 'W2': (H,)} with fuzzed arrays (or a key missing, or not a mapping). With
    any_shape, any W1 (H', D') with W2 (H',) is valid (a policy is made to fit it)."""
    if any_shape:
        arrays = st.tuples(array_arg(lambda s: len(s) == 2 and min(s) > 0, typical=(H, D)),
                           array_arg(lambda s: len(s) == 1, typical=(H,)))
    else:
        arrays = st.tuples(array_arg((H, D)), array_arg((H,)))

    def as_model(pair):
        w1, w2 = pair
        verdict = _all_valid((w1, w2))
        if any_shape and w2.value.shape != w1.value.shape[:1]:
            verdict = False
        return Arg({"W1": w1.value, "W2": w2.value}, verdict, f"model({w1!r}, {w2!r})")

    missing = array_arg((H, D)).map(lambda w1: Arg({"W1": w1.value}, False, "model without W2"))
    return st.one_of(arrays.map(as_model), missing, junk())


def is_vector(shape) -> bool:
    """(T,) or the tutorial's (T, 1) column."""
    return len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)


def learning_rate_verdict(v: float) -> bool | None:
    """Refused unless positive and finite in float32; past 1e30 the step itself overflows."""
    if not 0 < v <= F32_MAX:
        return False
    return True if v <= 1e30 else None


@dataclass
class Case:
    call: Callable
    args: tuple
    check: Callable  # asserts that a result of valid arguments is right
    mutates: tuple = field(default_factory=tuple)  # indices of arguments the call may change
    #: (values) -> True where the arguments' validity is not the product of theirs one by one
    #: (an episode of another length than the typical one, consistent across its arrays): such a
    #: call may be accepted, and is counted as accepted unchecked.
    open_verdict: Callable = lambda *values: False


CASES = {
    "frame_preprocessing": Case(
        fastpong.frame_preprocessing, (either(array_arg([FRAME, (1, *FRAME), (2, *FRAME)], "frame")),),
        check_preprocessing),
    "FrameDifferencer.step": Case(
        differencer_steps, (array_arg((2, *FRAME), "frame"), either(array_arg((2, *FRAME), "frame"))),
        check_differencer),
    "FrameDifferencer()": Case(fastpong.FrameDifferencer, (int_arg(1, 64),), check_new_differencer),
    "FrameDifferencer.reset": Case(differencer_reset, (int_arg(0, 2),), check_differencer_reset),
    "SparseFrames.from_dense": Case(
        fastpong.SparseFrames.from_dense,
        (either(array_arg(lambda s: len(s) in (1, 2), "ternary", typical=(4, D))),),
        check_round_trip),
    "SparseFrames.to_dense": Case(
        lambda n: fastpong.SparseFrames.from_dense(ternary_rows(2)).to_dense(n), (int_arg(D, 200),),
        check_to_dense),
    "Policy.forward": Case(lambda x: policy().forward(x), (either(array_arg([(D,), (1, D), (3, D)])),),
                           check_forward),
    "Policy.backward": Case(
        lambda eph, epx, dlogp: policy().backward(eph, epx, dlogp),
        (either(array_arg((T, H))), either(array_arg((T, D))), either(array_arg([(T,), (T, 1)]))),
        check_backward, open_verdict=episode_of_another_length),
    "Policy.load_model": Case(lambda model: _loaded(policy(), model), (model_arg(),), check_load_model),
    "Policy.from_model": Case(fastpong.Policy.from_model, (model_arg(any_shape=True),), check_load_model),
    "Policy()": Case(lambda h, d: fastpong.Policy(hidden=h, input_size=d, seed=0),
                     (int_arg(1, 40), int_arg(1, 100)), check_sizes),
    "Policy.accumulate_gradient": Case(accumulate, (either(array_arg((T,))),), check_accumulate),
    "GradientBuffer()": Case(fastpong.GradientBuffer, (int_arg(1, 40), int_arg(1, 100)), check_sizes),
    "GradientBuffer.load_model": Case(lambda model: _loaded(policy().gradient_buffer(), model),
                                      (model_arg(),), check_load_model),
    "discount_rewards": Case(
        fastpong.discount_rewards,
        (either(array_arg(is_vector, typical=(9,))), float_arg(lambda g: 0 < g <= 1, st.floats(0.01, 1.0))), check_discount),
    "standardize": Case(fastpong.standardize, (either(array_arg(is_vector, typical=(9,))),),
                        check_standardize),
    "EpisodeBuffer()": Case(fastpong.EpisodeBuffer, (int_arg(1, 40), int_arg(1, 100)), check_sizes),
    "EpisodeBuffer.from_arrays": Case(
        fastpong.EpisodeBuffer.from_arrays,
        (either(array_arg((T, D), "ternary")), either(array_arg((T, H))),
         either(array_arg([(T,), (T, 1)])), either(array_arg([(T,), (T, 1)]))),
        check_from_arrays),
    "EpisodeBuffer.append": Case(
        buffer_append, (either(array_arg((H,))), float_arg(lambda v: abs(v) <= F32_MAX, st.floats(-1.0, 1.0))), check_append),
    "EpisodeBatch()": Case(lambda n, h: fastpong.EpisodeBatch(n, h, D), (int_arg(1, 64), int_arg(1, 40)),
                           check_new_episode_batch),
    "EpisodeBatch.append": Case(
        batch_append, (either(array_arg((2, H))), either(array_arg([(2,), (2, 1)])),
                       either(array_arg([(2,), (2, 1)]))),
        check_batch_append),
    "rmsprop_step": Case(rmsprop_step, (float_arg(learning_rate_verdict, st.floats(1e-6, 1.0)),
                                        float_arg(lambda v: 0 <= v < 1, st.floats(0.0, 0.999))),
                         check_rmsprop),
    "RMSProp.step(dict)": Case(rmsprop_dict, (model_arg(),), check_rmsprop_dict, mutates=(0,)),
    "set_num_threads": Case(with_threads, (int_arg(1, 4),), check_threads),
    # The MIT lab's kernels (merged from i8-kernels): the dense softmax policy and its sampling.
    "DensePolicy.forward": Case(lambda obs: dense_policy().forward(obs),
                                (either(array_arg(lambda s: s == (4,) or (len(s) == 2 and s[1] == 4),
                                                  typical=(5, 4), checked_magnitude=10.0)),),
                                check_dense_forward),
    "DensePolicy()": Case(lambda d, h: CategoricalPolicy(input_size=d, hidden=(h,), num_actions=2),
                          (int_arg(1, 50), int_arg(1, 50)), check_new_dense_policy),
    # Each argument fuzzed in turn, the other valid for it (their shapes must agree).
    "sample_actions(probs)": Case(
        lambda probs: fastpong.sample_actions(probs, _uniforms_for(probs)),
        (either(array_arg(lambda s: len(s) == 2 and s[1] >= 1, "probability", typical=(3, 2))),),
        lambda result, probs: check_sample_actions(result, probs, _uniforms_for(probs))),
    "sample_actions(uniforms)": Case(
        lambda uniforms: fastpong.sample_actions(PROBS, uniforms),
        (either(array_arg((3,), "unit")),), lambda result, uniforms: check_sample_actions(result, PROBS, uniforms)),
    # The MIT lab's CNN (merged from i9-cnn). Observations are frame changes in [-1, 1]: values
    # past 10 may saturate the softmax, where float32 and the float64 reference part ways.
    "ConvPolicy.forward": Case(lambda obs: conv_policy().forward(obs),
                               (either(array_arg(is_frame_changes, typical=(2, 40, 40), checked_magnitude=10.0)),),
                               check_conv_forward),
    "ConvPolicy.log_probs": Case(lambda obs: conv_policy().log_probs(obs),
                                 (either(array_arg(is_frame_changes, typical=(1, 40, 40, 1), checked_magnitude=10.0)),),
                                 lambda result, obs: check_conv_forward(result, obs, log=True)),
    # The backward pass is the heaviest call here: T = 2 steps, each argument fuzzed in turn.
    "ConvPolicy.accumulate_gradient(obs)": Case(
        lambda obs: conv_accumulate(obs, CONV_ADVANTAGES),
        (either(array_arg([(2, 40, 40), (2, 40, 40, 1)], checked_magnitude=10.0)),),
        lambda result, obs: check_conv_accumulate(result, obs, CONV_ADVANTAGES)),
    "ConvPolicy.accumulate_gradient(advantages)": Case(
        lambda advantages: conv_accumulate(CONV_OBS, advantages),
        (either(array_arg((2,), checked_magnitude=1e6)),),
        lambda result, advantages: check_conv_accumulate(result, CONV_OBS, advantages)),
    "lab_preprocess": Case(
        fastpong.lab_preprocess,
        (either(array_arg(lambda s: tuple(s[-3:]) == FRAME and len(s) in (3, 4), "frame", typical=(2, *FRAME))),),
        check_lab_preprocess),
    # Its two arguments must have one shape: each is fuzzed in turn against a valid other.
    "lab_frame_change(prev_frames)": Case(
        lambda prev: fastpong.lab_frame_change(prev, LAB_FRAMES),
        (either(array_arg(LAB_FRAMES.shape, "frame")),),
        lambda result, prev: check_lab_frame_change(result, prev, LAB_FRAMES)),
    "lab_frame_change(frames)": Case(
        lambda frames: fastpong.lab_frame_change(LAB_FRAMES[1], frames),
        (either(array_arg(FRAME, "frame")),),
        lambda result, frames: check_lab_frame_change(result, LAB_FRAMES[1], frames)),
    "LabFrameDifferencer.step": Case(
        lab_differencer_steps, (array_arg((2, *FRAME), "frame"), either(array_arg((2, *FRAME), "frame"))),
        check_lab_differencer),
    "LabFrameDifferencer()": Case(fastpong.LabFrameDifferencer, (int_arg(1, 64),), check_new_lab_differencer),
    "LabFrameDifferencer(observation)": Case(fastpong.LabFrameDifferencer, (int_arg(1, 64), observation_arg()),
                                             check_new_lab_differencer_of),
}


def _loaded(target, model):
    target.load_model(model)
    return target


def _all_valid(args) -> bool | None:
    verdicts = [a.valid for a in args]
    if False in verdicts:
        return False
    return None if None in verdicts else True


def _snapshot(value):
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    return None


def _assert_unchanged(before, value, name):
    if isinstance(before, np.ndarray):
        if before.dtype.kind == "O":  # the copy holds the same objects
            same = all(x is y for x, y in zip(before.ravel(), np.asarray(value).ravel()))
        else:  # bitwise, so NaN equals NaN
            same = before.tobytes() == np.ascontiguousarray(value).tobytes()
        assert same, f"{name} changed its input"
    elif isinstance(before, dict):
        for k in before:
            _assert_unchanged(before[k], value[k], name)


@pytest.mark.parametrize("name", sorted(CASES))
def test_boundary(name):
    case = CASES[name]
    seen = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.filter_too_much])
    @given(st.tuples(*case.args))
    def fuzz(args):
        values = [a.value for a in args]
        before = [_snapshot(v) for v in values]
        verdict = _all_valid(args)
        try:
            result = case.call(*values)
        except (ValueError, TypeError) as exc:
            assert str(exc).strip(), f"{name}: {type(exc).__name__} without a message"
            assert verdict is not True, f"{name} refused a valid input: {exc}"
            seen["refused"] += 1
        else:
            if verdict is False and case.open_verdict(*values):
                verdict = None
            assert verdict is not False, f"{name} accepted an invalid input"
            if verdict:
                case.check(result, *(before[i] if i in case.mutates else v for i, v in enumerate(values)))
                seen["checked"] += 1
            else:
                seen["accepted"] += 1
        for i, (b, v) in enumerate(zip(before, values)):
            if i not in case.mutates:
                _assert_unchanged(b, v, name)

    fuzz()
    print(f"{name}: {sum(seen.values())} calls, {seen['checked']} results checked, "
          f"{seen['refused']} refused, {seen['accepted']} accepted unchecked")
    assert seen["checked"] > 0 and seen["refused"] > 0, f"{name}: the fuzzer missed an outcome: {seen}"
