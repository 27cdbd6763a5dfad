"""The policy network: initialization, forward (single, batch, sparse), backward (dense and the
sparse EpisodeBuffer path), a finite-difference gradient check, and thread-count independence.

The fast path computes in float32, the reference in float64. Every comparison runs the reference on
the policy's own float32 weights (upcast), so the only differences left are float32 rounding in the
fast kernels. A sum of n float32 terms is off by at most about n * eps32 times the sum of the
terms' magnitudes S, and the result itself is rounded once more; the tolerances below are

    k * eps32 * (n * S + |ref|)

elementwise, with n the reduction length named at each constant and S computed by the reference on
absolute values (|W1| |x| for h; for the gradients, the reference's backward pass on |h|, |x|,
|dlogp| and |W2|). S is the scale of the very values compared: where a sum cancels, S stays the
size of its terms; where the terms are small (gradients of order 0.03), so is the tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastpong
from fastpong import reference

EPS32 = float(np.finfo(np.float32).eps)

#: h = relu(W1 x): one float32 sum per hidden unit over the nonzero inputs (n = nonzeros of x, or
#: D for dense real-valued x); the +1 below covers the single rounding of a one-term sum.
FORWARD_H_K = 4
#: p = sigmoid(W2 . h): the H-term sum for the logit plus the error it inherits from h, so
#: n = H + (nonzeros of x); sigmoid's slope is at most 1/4, which only helps.
FORWARD_P_K = 4
#: Backward: dW2 = sum_t h_t g_t and dW1 = sum_t x_t (g_t W2 gated by h_t > 0), sums over the T
#: steps (n = T), plus one rounding for g_t * W2 (and for g_t = dlogp_t * advantage_t on the
#: sparse path).
BACKWARD_K = 4
#: Finite differences are computed in float64 on an objective that is exactly linear in each
#: weight near the test point (no ReLU kink within reach), so they are exact up to ~1e-12; the
#: float32 backward pass is compared with n = T as above.
FD_K = 4

SIMD_HIDDEN_SIZES = [1, 3, 7, 8, 9, 15, 16, 17, 66]
SMALL_INPUT_SIZES = [1, 5, 12, 33]


def tolerance(ref, n: int, k: float, scale) -> np.ndarray:
    ref = np.abs(np.asarray(ref, dtype=np.float64))
    return k * EPS32 * (max(int(n), 1) * np.asarray(scale, dtype=np.float64) + ref)


def assert_f32_close(actual, ref, n: int, k: float, what: str, scale) -> None:
    """|actual - ref| <= k * eps32 * (n * scale + |ref|), elementwise (see the module docstring)."""
    actual = np.asarray(actual, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert actual.shape == ref.shape, f"{what}: shape {actual.shape} != {ref.shape}"
    err = np.abs(actual - ref)
    tol = np.broadcast_to(tolerance(ref, n, k, scale), err.shape)
    worst = np.unravel_index(np.argmax(err - tol), err.shape) if err.size else ()
    assert np.all(err <= tol), (
        f"{what}: error {err[worst]:.3g} > tolerance {tol[worst]:.3g} at {worst} "
        f"(fast {actual[worst]!r}, reference {ref[worst]!r})"
    )


def forward_scales(x, model: dict):
    """The magnitudes behind the forward pass of the rows of x (N, D): S for h, |W1| |x| (N, H),
    and for p, p (1 - p) (sigmoid's slope) times the logit's, |W2| . S_h (N,); the h errors it
    inherits are below that times n as well."""
    h_scale = np.abs(np.atleast_2d(np.asarray(x, np.float64))) @ np.abs(model["W1"]).T
    p, _ = ref_forward_rows(np.atleast_2d(x), model)
    return p * (1 - p) * (h_scale @ np.abs(model["W2"])), h_scale


def backward_scale(eph, epx, epdlogp, model: dict) -> dict:
    """The sums of the magnitudes of the terms behind dW1 and dW2."""
    absolute = {k: np.abs(v) for k, v in model.items()}
    return reference.policy_backward(np.abs(np.asarray(eph, np.float64)), np.abs(np.asarray(epx, np.float64)),
                                     np.abs(np.asarray(epdlogp, np.float64)).reshape(-1, 1), absolute)


def model64(policy) -> dict:
    return {k: v.astype(np.float64) for k, v in policy.to_model().items()}


def ref_forward_rows(x: np.ndarray, model: dict):
    """reference.policy_forward on each row of x (N, D); the reference's np.dot takes the rows as
    the columns of one (D, N) matrix, which gives the same numbers far faster than a row loop."""
    p, h = reference.policy_forward(np.asarray(x, np.float64).T, model)
    return p, h.T


def ternary(rng, shape, density=0.3) -> np.ndarray:
    """Inputs like frame differences: -1/0/+1, float32."""
    q = density / 2
    return rng.choice(np.array([-1, 0, 1], dtype=np.float32), size=shape, p=[q, 1 - 2 * q, q])


# --- initialization and weights -----------------------------------------------------------------


@pytest.mark.parametrize("hidden,input_size,seed", [(200, 6400, 12288743), (7, 12, 0), (1, 1, 5)])
def test_init_is_the_reference_init_in_float32(hidden, input_size, seed):
    policy = fastpong.Policy(hidden=hidden, input_size=input_size, seed=seed)
    expected = reference.init_model(hidden, input_size, seed)
    got = policy.to_model()
    assert set(got) == {"W1", "W2"}
    assert got["W1"].dtype == got["W2"].dtype == np.float32
    assert got["W1"].shape == (hidden, input_size) and got["W2"].shape == (hidden,)
    # Same draws, rounded once to float32: bitwise equal.
    np.testing.assert_array_equal(got["W1"], expected["W1"].astype(np.float32))
    np.testing.assert_array_equal(got["W2"], expected["W2"].astype(np.float32))
    assert (policy.hidden, policy.input_size) == (hidden, input_size)


def test_default_policy_and_unseeded_draws():
    policy = fastpong.Policy()
    assert (policy.hidden, policy.input_size) == (200, 6400)
    assert repr(policy) == "Policy(hidden=200, input_size=6400)"
    other = fastpong.Policy()
    assert not np.array_equal(policy.to_model()["W2"], other.to_model()["W2"])
    w1 = policy.to_model()["W1"]
    assert abs(w1.std() * np.sqrt(6400) - 1) < 0.01  # the tutorial's 1/sqrt(D) scale


def test_from_model_to_model_load_model_round_trip():
    model = reference.init_model(9, 17, 4)
    policy = fastpong.Policy.from_model(model)
    assert isinstance(policy, fastpong.Policy)
    assert (policy.hidden, policy.input_size) == (9, 17)
    for k in ("W1", "W2"):
        np.testing.assert_array_equal(policy.to_model()[k], model[k].astype(np.float32))
    # to_model gives copies: writing them does not change the policy
    copy = policy.to_model()
    copy["W1"][:] = 7
    assert not np.any(policy.to_model()["W1"] == 7)
    # load_model overwrites, from float32, float64, Fortran-ordered or strided arrays
    other = reference.init_model(9, 17, 5)
    wide = np.zeros((9, 34))
    wide[:, ::2] = other["W1"]
    policy.load_model({"W1": wide[:, ::2], "W2": other["W2"].astype(np.float32)})
    np.testing.assert_array_equal(policy.to_model()["W1"], other["W1"].astype(np.float32))
    policy.load_model({"W1": np.asfortranarray(model["W1"]), "W2": model["W2"]})
    np.testing.assert_array_equal(policy.to_model()["W1"], model["W1"].astype(np.float32))
    assert wide[:, 1::2].sum() == 0  # inputs untouched


# --- forward ------------------------------------------------------------------------------------


def test_forward_on_real_pong_inputs(pong_inputs):
    policy = fastpong.Policy(seed=1)
    model = model64(policy)
    x = pong_inputs.astype(np.float32)
    ref_p, ref_h = ref_forward_rows(x, model)
    p_scale, h_scale = forward_scales(x, model)
    nnz = int(np.count_nonzero(x, axis=1).max())
    before = x.copy()

    p, h = policy.forward(x)  # batch, dense
    assert p.dtype == h.dtype == np.float32 and p.shape == (len(x),) and h.shape == (len(x), 200)
    assert_f32_close(h, ref_h, nnz + 1, FORWARD_H_K, "h (dense batch)", h_scale)
    assert_f32_close(p, ref_p, 200 + nnz, FORWARD_P_K, "p (dense batch)", p_scale)

    rows = fastpong.SparseFrames.from_dense(x)  # batch, sparse
    sp, sh = policy.forward(rows)
    assert_f32_close(sh, ref_h, nnz + 1, FORWARD_H_K, "h (sparse)", h_scale)
    assert_f32_close(sp, ref_p, 200 + nnz, FORWARD_P_K, "p (sparse)", p_scale)

    for t in (0, 1, 57, 200, len(x) - 1):  # single (D,)
        p1, h1 = policy.forward(x[t])
        assert isinstance(p1, float) and h1.shape == (200,)
        assert_f32_close(h1, ref_h[t], nnz + 1, FORWARD_H_K, f"h (single, t={t})", h_scale[t])
        assert_f32_close(p1, ref_p[t], 200 + nnz, FORWARD_P_K, f"p (single, t={t})", p_scale[t])
        # a one-row batch and a one-row SparseFrames say the same
        pb, hb = policy.forward(x[t:t + 1])
        assert pb.shape == (1,) and hb.shape == (1, 200)
        assert_f32_close(hb[0], ref_h[t], nnz + 1, FORWARD_H_K, f"h (batch of 1, t={t})", h_scale[t])
        ps, hs = policy.forward(fastpong.SparseFrames.from_dense(x[t]))
        assert_f32_close(hs[0], ref_h[t], nnz + 1, FORWARD_H_K, f"h (sparse row, t={t})", h_scale[t])
        assert_f32_close(ps[0], ref_p[t], 200 + nnz, FORWARD_P_K, f"p (sparse row, t={t})", p_scale[t])
    np.testing.assert_array_equal(x, before)


def test_forward_on_differencer_output(pong_play, pong_inputs):
    policy = fastpong.Policy(seed=2)
    model = model64(policy)
    differencer = fastpong.FrameDifferencer(1)
    ref_p, ref_h = ref_forward_rows(pong_inputs[:60], model)
    p_scale, h_scale = forward_scales(pong_inputs[:60], model)
    for t in range(60):
        rows = differencer.step(pong_play.frames[t][None])
        p, h = policy.forward(rows)
        n = rows.nonzeros + 1
        assert_f32_close(h[0], ref_h[t], n, FORWARD_H_K, f"h, t={t}", h_scale[t])
        assert_f32_close(p[0], ref_p[t], 200 + n, FORWARD_P_K, f"p, t={t}", p_scale[t])


def test_forward_all_zero_input_gives_one_half():
    policy = fastpong.Policy(hidden=16, input_size=40, seed=3)
    p, h = policy.forward(np.zeros(40, dtype=np.float32))
    assert p == 0.5 and not h.any()
    ps, hs = policy.forward(fastpong.SparseFrames.from_dense(np.zeros((3, 40))))
    np.testing.assert_array_equal(ps, [0.5] * 3)
    assert not hs.any()
    pe, he = policy.forward(np.zeros((0, 40), dtype=np.float32))  # empty batch
    assert pe.shape == (0,) and he.shape == (0, 16)


@pytest.mark.parametrize("hidden", SIMD_HIDDEN_SIZES)
@pytest.mark.parametrize("input_size", SMALL_INPUT_SIZES)
def test_forward_sizes_around_the_simd_width(hidden, input_size):
    rng = np.random.default_rng(hidden * 100 + input_size)
    policy = fastpong.Policy(hidden=hidden, input_size=input_size, seed=rng.integers(1 << 30))
    model = model64(policy)
    for x in (ternary(rng, (6, input_size), 0.5), rng.standard_normal((6, input_size))):
        ref_p, ref_h = ref_forward_rows(x, model)
        p_scale, h_scale = forward_scales(x, model)
        p, h = policy.forward(x)
        assert_f32_close(h, ref_h, input_size + 1, FORWARD_H_K, "h", h_scale)
        assert_f32_close(p, ref_p, hidden + input_size, FORWARD_P_K, "p", p_scale)
        p1, h1 = policy.forward(x[4])
        assert_f32_close(h1, ref_h[4], input_size + 1, FORWARD_H_K, "h single", h_scale[4])
        assert_f32_close(p1, ref_p[4], hidden + input_size, FORWARD_P_K, "p single", p_scale[4])
    rows = fastpong.SparseFrames.from_dense(x := ternary(rng, (5, input_size), 0.5))
    ref_p, ref_h = ref_forward_rows(x, model)
    p_scale, h_scale = forward_scales(x, model)
    p, h = policy.forward(rows)
    assert_f32_close(h, ref_h, input_size + 1, FORWARD_H_K, "h sparse", h_scale)
    assert_f32_close(p, ref_p, hidden + input_size, FORWARD_P_K, "p sparse", p_scale)


def test_forward_strided_misaligned_and_other_dtypes_untouched():
    rng = np.random.default_rng(4)
    policy = fastpong.Policy(hidden=17, input_size=33, seed=4)
    model = model64(policy)
    x = ternary(rng, (7, 33), 0.4)
    ref_p, ref_h = ref_forward_rows(x, model)
    p_scale, h_scale = forward_scales(x, model)
    wide = np.zeros((7, 66), dtype=np.float32)
    wide[:, 1::2] = x
    raw = np.zeros(x.nbytes + 1, dtype=np.uint8)  # float32 data at an odd address
    misaligned = np.frombuffer(raw.data, dtype=np.float32, count=x.size, offset=1).reshape(x.shape)
    assert not misaligned.flags.aligned
    raw[1:] = x.view(np.uint8).ravel()
    views = {
        "column-stride": wide[:, 1::2],
        "row-stride": np.repeat(x, 2, axis=0)[::2],
        "reversed": x[::-1][::-1],
        "fortran": np.asfortranarray(x),
        "misaligned": misaligned,
        "float64": x.astype(np.float64),
        "int8": x.astype(np.int8),
        "int64": x.astype(np.int64),
    }
    for name, view in views.items():
        before = np.array(view, copy=True)
        p, h = policy.forward(view)
        assert_f32_close(h, ref_h, 34, FORWARD_H_K, f"h {name}", h_scale)
        assert_f32_close(p, ref_p, 17 + 33, FORWARD_P_K, f"p {name}", p_scale)
        p1, _ = policy.forward(view[3])
        assert_f32_close(p1, ref_p[3], 17 + 33, FORWARD_P_K, f"p single {name}", p_scale[3])
        np.testing.assert_array_equal(view, before, err_msg=name)


# --- backward -----------------------------------------------------------------------------------


class Gradients(dict):
    """The reference's dW1 and dW2, with .scale: the magnitudes behind each entry."""

    scale: dict


def ref_backward(eph, epx, epdlogp, policy) -> Gradients:
    model = model64(policy)
    grads = Gradients(reference.policy_backward(
        np.asarray(eph, np.float64), np.asarray(epx, np.float64), np.asarray(epdlogp, np.float64), model))
    grads.scale = backward_scale(eph, epx, epdlogp, model)
    return grads


def assert_grads_close(got, ref, steps, what="", scale=None):
    """scale: the magnitudes behind each entry, ref.scale unless given."""
    assert set(got) == {"W1", "W2"}
    scale = ref.scale if scale is None else scale
    for k in ("W1", "W2"):
        assert got[k].dtype == np.float32
        assert_f32_close(got[k], ref[k], steps, BACKWARD_K, f"{what} d{k}", scale[k])


def real_episode(pong_inputs, policy, seed=0, steps=None):
    """A tutorial episode on real inputs: x, h from the forward pass, dlogp = y - p with sampled
    actions, and the advantage-weighted dlogp the tutorial passes to policy_backward."""
    rng = np.random.default_rng(seed)
    epx = pong_inputs[:steps].astype(np.float32)
    p, eph = policy.forward(epx)
    y = (rng.uniform(size=len(p)) < p).astype(np.float32)
    dlogp = (y - p).astype(np.float32)
    advantages = rng.standard_normal(len(p)).astype(np.float32)
    return epx, eph, dlogp, advantages


def test_backward_dense_on_real_pong_episode(pong_inputs):
    policy = fastpong.Policy(seed=5)
    epx, eph, dlogp, adv = real_episode(pong_inputs, policy)
    epdlogp = (dlogp * adv).astype(np.float32)
    expected = ref_backward(eph, epx, epdlogp, policy)
    before = (epx.copy(), eph.copy(), epdlogp.copy())
    got = policy.backward(eph, epx, epdlogp[:, None])  # the tutorial's (T, 1) column
    assert_grads_close(got, expected, len(epx), "(T, 1)")
    got_flat = policy.backward(eph, epx, epdlogp)  # and a flat (T,)
    assert_grads_close(got_flat, expected, len(epx), "(T,)")
    for a, b in zip((epx, eph, epdlogp), before, strict=True):
        np.testing.assert_array_equal(a, b)
    assert np.abs(got["W1"]).max() > 0  # not trivially zero


def test_accumulate_gradient_sparse_matches_reference(pong_play, pong_inputs):
    policy = fastpong.Policy(seed=6)
    epx, eph, dlogp, adv = real_episode(pong_inputs, policy, seed=1)
    # The episode as training stores it: the differencer's rows, appended a step at a time.
    episode = fastpong.EpisodeBuffer(200, 6400)
    differencer = fastpong.FrameDifferencer(1)
    for t, frame in enumerate(pong_play.frames):
        if t in pong_play.starts:
            differencer.reset(0)
        episode.append(differencer.step(frame[None]), eph[t], float(dlogp[t]))
    assert len(episode) == len(epx)
    grads = policy.gradient_buffer()
    policy.accumulate_gradient(episode, adv, grads)
    expected = ref_backward(eph, epx, dlogp.astype(np.float64) * adv, policy)
    assert_grads_close(grads.to_model(), expected, len(epx), "sparse")


def test_accumulate_gradient_adds_up(pong_inputs):
    policy = fastpong.Policy(hidden=66, input_size=6400, seed=7)
    epx, eph, dlogp, adv = real_episode(pong_inputs, policy, seed=2, steps=120)
    episode = fastpong.EpisodeBuffer.from_arrays(epx, eph, dlogp, np.zeros(len(epx)))
    grads = policy.gradient_buffer()
    policy.accumulate_gradient(episode, adv, grads)
    once = grads.to_model()
    expected = ref_backward(eph, epx, dlogp.astype(np.float64) * adv, policy)
    assert_grads_close(once, expected, len(epx), "once")
    policy.accumulate_gradient(episode, adv, grads)
    twice = grads.to_model()
    assert_grads_close(twice, {k: 2 * v for k, v in expected.items()}, 2 * len(epx), "twice",
                       {k: 2 * v for k, v in expected.scale.items()})
    # into a buffer that already holds something: adds, does not overwrite
    offset = {"W1": np.full((66, 6400), 0.25), "W2": np.full(66, -0.5)}
    grads.load_model(offset)
    policy.accumulate_gradient(episode, adv, grads)
    assert_grads_close(
        grads.to_model(), {k: offset[k] + expected[k] for k in offset}, len(epx) + 1, "offset",
        {k: np.abs(offset[k]) + expected.scale[k] for k in offset},
    )
    # and a second episode with other advantages adds its own gradient
    grads.zero()
    assert not grads.to_model()["W1"].any()
    policy.accumulate_gradient(episode, adv, grads)
    policy.accumulate_gradient(episode, -2 * adv, grads)
    assert_grads_close(grads.to_model(), {k: -v for k, v in expected.items()}, 3 * len(epx), "sum",
                       {k: 3 * v for k, v in expected.scale.items()})  # |adv| + |-2 adv|


@pytest.mark.parametrize("hidden", SIMD_HIDDEN_SIZES)
@pytest.mark.parametrize("input_size", [1, 12, 33])
def test_backward_sizes_around_the_simd_width(hidden, input_size):
    rng = np.random.default_rng(hidden * 1000 + input_size)
    policy = fastpong.Policy(hidden=hidden, input_size=input_size, seed=hidden + input_size)
    epx = ternary(rng, (11, input_size), 0.5)
    _, eph = policy.forward(epx)
    dlogp = rng.uniform(-1, 1, size=11).astype(np.float32)
    adv = rng.standard_normal(11).astype(np.float32)
    expected = ref_backward(eph, epx, dlogp.astype(np.float64) * adv, policy)
    # dense path with the weighted dlogp, sparse path with dlogp and advantages
    dense = policy.backward(eph, epx, (dlogp * adv)[:, None])
    assert_grads_close(dense, expected, 11, "dense")
    episode = fastpong.EpisodeBuffer.from_arrays(epx, eph, dlogp, np.zeros(11))
    grads = fastpong.GradientBuffer(hidden, input_size)
    policy.accumulate_gradient(episode, adv, grads)
    assert_grads_close(grads.to_model(), expected, 11, "sparse")
    # real-valued (not -1/0/1) inputs and hidden states on the dense path
    epx_real = rng.standard_normal((11, input_size)).astype(np.float32)
    eph_real = np.maximum(rng.standard_normal((11, hidden)), 0).astype(np.float32)
    got = policy.backward(eph_real, epx_real, dlogp)
    assert_grads_close(got, ref_backward(eph_real, epx_real, dlogp, policy), 11, "real-valued")


def test_backward_edge_cases():
    policy = fastpong.Policy(hidden=9, input_size=12, seed=8)
    rng = np.random.default_rng(8)
    # empty episode (T = 0): zero gradients of the right shapes
    got = policy.backward(np.zeros((0, 9)), np.zeros((0, 12)), np.zeros((0, 1)))
    assert got["W1"].shape == (9, 12) and got["W2"].shape == (9,)
    assert not got["W1"].any() and not got["W2"].any()
    empty = fastpong.EpisodeBuffer.from_arrays(np.zeros((0, 12)), np.zeros((0, 9)), [], [])
    assert len(empty) == 0
    grads = policy.gradient_buffer()
    policy.accumulate_gradient(empty, np.zeros(0), grads)
    assert not grads.to_model()["W1"].any()
    policy.accumulate_gradient(fastpong.EpisodeBuffer(9, 12), [], grads)
    assert not grads.to_model()["W2"].any()
    # one step
    x = ternary(rng, (1, 12), 0.5)
    _, h = policy.forward(x)
    for epdlogp in ([0.7], [[0.7]], np.float32([0.7])):
        got = policy.backward(h, x, epdlogp)
        assert_grads_close(got, ref_backward(h, x, [[0.7]], policy), 1, "one step")
    # all-zero differences: the forward pass gives h = 0, so nothing flows anywhere
    zeros = np.zeros((5, 12), dtype=np.float32)
    _, h = policy.forward(zeros)
    got = policy.backward(h, zeros, rng.standard_normal(5))
    assert not got["W1"].any() and not got["W2"].any()
    # all-zero inputs with given hidden states: dW2 flows, dW1 stays zero
    h = np.abs(rng.standard_normal((5, 9))).astype(np.float32)
    g = rng.standard_normal(5)
    got = policy.backward(h, zeros, g)
    assert not got["W1"].any()
    assert_grads_close(got, ref_backward(h, zeros, g, policy), 5, "zero inputs")
    # dlogp all zero: zero gradient
    got = policy.backward(h, ternary(rng, (5, 12), 0.5), np.zeros(5))
    assert not got["W1"].any() and not got["W2"].any()


def test_backward_input_arrays_untouched_and_strided():
    policy = fastpong.Policy(hidden=8, input_size=33, seed=9)
    rng = np.random.default_rng(9)
    epx = ternary(rng, (13, 33), 0.4)
    _, eph = policy.forward(epx)
    g = rng.standard_normal(13).astype(np.float32)
    expected = ref_backward(eph, epx, g, policy)
    wide_x = np.zeros((13, 66), np.float32)
    wide_x[:, ::2] = epx
    wide_h = np.zeros((26, 8), np.float64)
    wide_h[::2] = eph
    column = np.zeros((13, 3), np.float32)
    column[:, 1] = g
    args = (wide_h[::2], wide_x[:, ::2], column[:, 1:2])
    before = [np.array(a, copy=True) for a in args]
    assert_grads_close(policy.backward(*args), expected, 13, "strided")
    for a, b in zip(args, before, strict=True):
        np.testing.assert_array_equal(a, b)


# --- finite differences -------------------------------------------------------------------------


def kink_free_problem(hidden=5, input_size=12, steps=9, margin=0.05):
    """A small policy and inputs where every pre-activation W1 x_t is at least `margin` away from
    the ReLU kink at 0, so perturbing one weight by less than margin/|x| keeps the active set."""
    for seed in range(1000):
        rng = np.random.default_rng(seed)
        policy = fastpong.Policy(hidden=hidden, input_size=input_size, seed=seed)
        epx = ternary(rng, (steps, input_size), 0.6)
        pre = model64(policy)["W1"] @ epx.T.astype(np.float64)
        active = pre > 0
        # every unit must be active at some step and inactive at another, so the test sees both
        if np.abs(pre).min() > margin and active.any(axis=1).all() and (~active).any(axis=1).all():
            return rng, policy, epx
    raise AssertionError("no kink-free problem found")


def objective(model: dict, epx: np.ndarray, epdlogp: np.ndarray) -> float:
    """sum_t epdlogp_t * logit_t with logit_t = W2 . relu(W1 x_t), in float64: what the tutorial's
    policy_backward differentiates."""
    pre = model["W1"] @ epx.T.astype(np.float64)  # (H, T)
    logits = model["W2"] @ np.maximum(pre, 0.0)  # (T,)
    return float(np.dot(np.asarray(epdlogp, np.float64), logits))


def finite_difference_gradient(model: dict, epx, epdlogp, delta: float) -> dict:
    grad = {}
    for k, w in model.items():
        g = np.zeros_like(w)
        for idx in np.ndindex(w.shape):
            plus = {kk: vv.copy() for kk, vv in model.items()}
            minus = {kk: vv.copy() for kk, vv in model.items()}
            plus[k][idx] += delta
            minus[k][idx] -= delta
            g[idx] = (objective(plus, epx, epdlogp) - objective(minus, epx, epdlogp)) / (2 * delta)
        grad[k] = g
    return grad


def test_backward_matches_finite_differences():
    rng, policy, epx = kink_free_problem()
    steps = len(epx)
    p, eph = policy.forward(epx)
    y = (rng.uniform(size=steps) < p).astype(np.float32)
    dlogp = (y - p).astype(np.float32)
    adv = rng.standard_normal(steps).astype(np.float32)
    epdlogp = dlogp.astype(np.float64) * adv
    model = model64(policy)
    # |x| <= 1, so a weight change of delta moves a pre-activation by at most delta < margin.
    fd = finite_difference_gradient(model, epx, epdlogp, delta=1e-3)
    dense = policy.backward(eph, epx, epdlogp.astype(np.float32))
    scale = backward_scale(eph, epx, epdlogp, model)
    for k in ("W1", "W2"):
        assert_f32_close(dense[k], fd[k], steps, FD_K, f"dense d{k} vs finite differences", scale[k])
    episode = fastpong.EpisodeBuffer.from_arrays(epx, eph, dlogp, np.zeros(steps))
    grads = policy.gradient_buffer()
    policy.accumulate_gradient(episode, adv, grads)
    for k in ("W1", "W2"):
        assert_f32_close(grads.to_model()[k], fd[k], steps, FD_K, f"sparse d{k} vs FD", scale[k])
    # the check has teeth: the gradient is far from zero and gated units get none
    assert np.abs(fd["W1"]).max() > 1e-2 and np.abs(fd["W2"]).max() > 1e-2
    # and the reference's own backward agrees with the finite differences as well
    ref = reference.policy_backward(eph.astype(np.float64), epx.astype(np.float64), epdlogp, model)
    for k in ("W1", "W2"):
        np.testing.assert_allclose(ref[k], fd[k], rtol=0, atol=1e-6)


# --- EpisodeBatch -------------------------------------------------------------------------------


def test_episode_batch_builds_the_same_episodes_as_separate_buffers(pong_play):
    num_envs, hidden, steps = 3, 200, 60
    policy = fastpong.Policy(hidden=hidden, seed=10)
    rng = np.random.default_rng(10)
    offsets = [0, 90, 230]
    batch = fastpong.EpisodeBatch(num_envs, hidden, 6400)
    assert len(batch) == num_envs
    separate = [fastpong.EpisodeBuffer(hidden, 6400) for _ in range(num_envs)]
    batch_differencer = fastpong.FrameDifferencer(num_envs)
    single_differencers = [fastpong.FrameDifferencer(1) for _ in range(num_envs)]
    for t in range(steps):
        frames = np.stack([pong_play.frames[o + t] for o in offsets])
        rows = batch_differencer.step(frames)
        p, h = policy.forward(rows)
        dlogps = ((rng.uniform(size=num_envs) < p) - p).astype(np.float32)
        batch.append(rows, h, dlogps)
        rewards = np.array([pong_play.rewards[o + t] for o in offsets])
        batch.set_last_rewards(rewards)
        for e in range(num_envs):
            row = single_differencers[e].step(frames[e][None])
            separate[e].append(row, h[e], float(dlogps[e]))
            separate[e].set_last_reward(float(rewards[e]))
    assert sum(b.rewards.any() for b in separate) >= 1  # some point was scored in there
    for e in range(num_envs):
        got, want = batch.episode(e), separate[e]
        assert len(got) == len(want) == steps
        for name in ("hidden_states", "dlogps", "rewards"):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
        for name in ("offsets", "indices", "values"):
            np.testing.assert_array_equal(
                getattr(got.inputs, name), getattr(want.inputs, name), err_msg=name
            )
        assert got.nbytes == want.nbytes
        # and both give the same gradient, bitwise
        adv = fastpong.standardize(fastpong.discount_rewards(want.rewards, 0.99))
        g1, g2 = policy.gradient_buffer(), policy.gradient_buffer()
        policy.accumulate_gradient(got, adv, g1)
        policy.accumulate_gradient(want, adv, g2)
        for k in ("W1", "W2"):
            np.testing.assert_array_equal(g1.to_model()[k], g2.to_model()[k])


# --- threads ------------------------------------------------------------------------------------


def test_results_do_not_depend_on_the_thread_count(pong_inputs, restore_threads):
    """Forward (dense, sparse), backward (dense, sparse) with 1 and 2 threads: bitwise equal.
    The inputs are big enough for every kernel to take its parallel branch: the backward pass
    needs nonzeros * hidden >= 2^24, more than real play's frame differences have, so random
    denser rows follow them."""
    policy = fastpong.Policy(seed=11)
    rng = np.random.default_rng(11)
    epx = np.concatenate([pong_inputs.astype(np.float32), ternary(rng, (400, 6400), 0.05)])
    assert np.count_nonzero(epx) * policy.hidden >= 2**24
    rows = fastpong.SparseFrames.from_dense(epx)
    dlogp = rng.uniform(-1, 1, len(epx)).astype(np.float32)
    adv = rng.standard_normal(len(epx)).astype(np.float32)
    results = {}
    for threads in (1, 2):
        fastpong.set_num_threads(threads)
        assert fastpong.get_num_threads() == (threads if fastpong.has_openmp() else 1)
        p, h = policy.forward(epx)
        sp, sh = policy.forward(rows)
        dense = policy.backward(h, epx, dlogp * adv)
        episode = fastpong.EpisodeBuffer.from_arrays(epx, h, dlogp, np.zeros(len(epx)))
        grads = policy.gradient_buffer()
        policy.accumulate_gradient(episode, adv, grads)
        results[threads] = [p, h, sp, sh, dense["W1"], dense["W2"], *grads.to_model().values()]
    for a, b in zip(results[1], results[2], strict=True):
        np.testing.assert_array_equal(a, b)
