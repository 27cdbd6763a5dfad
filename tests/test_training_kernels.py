"""Training-time kernels against the reference: discounted returns, standardization, the episode
buffers, GradientBuffer, RMSProp, and one tutorial training round end to end on real Pong.

Tolerances are float32 ones, k * eps32 * n * max(|ref|, scale), with n the length of the float32
reduction where there is one (see each constant) and scale the size of the values compared where
|ref| alone is not (the sum of the magnitudes of a gradient's terms; the size of a weight and the
steps taken from it). No tolerance has a floor of 1: the gradients and weights compared here are
of order 0.01 to 0.1, and a floor of 1 would let errors of many times their own rounding through.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastpong
from fastpong import reference

EPS32 = float(np.finfo(np.float32).eps)

#: discount_rewards: every return is gamma^k * r for the ONE reward r that ends its rally (the sum
#: restarts at each nonzero reward), accumulated in double and rounded once to float32, after r
#: itself was rounded to float32: two half-ulp roundings, no length scaling (n = 1).
DISCOUNT_K = 2
#: standardize: mean and standard deviation accumulated in double, the result rounded once to
#: float32 (n = 1). The reference gets the same float32-rounded input, so input rounding (which
#: (x - mean) / std can amplify) does not count against the kernel.
STANDARDIZE_K = 4
#: RMSProp, elementwise (no reductions): about five float32 roundings per step in the cache and
#: the update, one in w += update; they add up over the S steps taken (n = S), each of the size of
#: the weight or of the update (scale: |w| plus the sum of the updates' sizes).
RMSPROP_K = 8
#: The end-to-end round. Gradients: k * eps32 * n * S with n = the steps summed into them and S the
#: sum of the magnitudes of their terms (the reference's backward on absolute values). Weights
#: after the RMSProp step: the update lr * g / (sqrt(cache) + 1e-5) has slope at most lr / 1e-5 in
#: g whatever the cache, so they may differ by (lr / 1e-5) * |g_fast - g_ref| (measured, twice) plus
#: k * eps32 * (|w| + |update|) for the step's own roundings (n = 1).
PIPELINE_K = 8
#: Float32's smallest subnormal: a result that underflows there is off by up to that, whatever
#: its relative error (discounting with gamma 1e-3 reaches it in 15 steps).
TINY32 = float(np.finfo(np.float32).smallest_subnormal)

GAMMAS = [0.5, 0.9, 0.99, 1.0]


def assert_f32_close(actual, ref, n: int, k: float, what: str = "", scale=0.0) -> None:
    """|actual - ref| <= k * eps32 * n * max(|ref|, scale) + TINY32, elementwise."""
    actual = np.asarray(actual, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert actual.shape == ref.shape, f"{what}: shape {actual.shape} != {ref.shape}"
    err = np.abs(actual - ref)
    tol = k * EPS32 * max(int(n), 1) * np.maximum(np.abs(ref), scale) + TINY32
    if err.size:
        worst = np.unravel_index(np.argmax(err - tol), err.shape)
        assert np.all(err <= tol), (
            f"{what}: error {err[worst]:.3g} > tolerance {tol[worst]:.3g} at {worst} "
            f"(fast {actual[worst]!r}, reference {ref[worst]!r})"
        )


def sparse_rewards(rng, size, density=0.05, values=(-1.0, 1.0)) -> np.ndarray:
    r = np.zeros(size)
    hits = rng.uniform(size=size) < density
    r[hits] = rng.choice(values, size=hits.sum())
    return r


# --- discount_rewards ---------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("size", [0, 1, 2, 7, 100, 2000])
def test_discount_rewards_matches_reference(size, gamma):
    rng = np.random.default_rng(size)
    for values in ((-1.0, 1.0), (0.3, -2.5, 7.0)):
        r = sparse_rewards(rng, size, values=values)
        out = fastpong.discount_rewards(r, gamma)
        assert out.dtype == np.float32 and out.shape == (size,)
        assert_f32_close(out, reference.discount_rewards(r, gamma), 1, DISCOUNT_K, f"gamma={gamma}")


def test_discount_rewards_shapes_and_dtypes():
    r = np.array([0, 0, 1, 0, 0, -1, 0, 0, 0], dtype=np.float64)
    expected = reference.discount_rewards(r, 0.99)
    # the tutorial's (T, 1) column, float32, integer input and a strided view all agree
    column = r[:, None]
    strided = np.repeat(r, 3)[::3]
    for variant in (r, column, r.astype(np.float32), r.astype(np.int64), strided, list(r)):
        out = fastpong.discount_rewards(variant, 0.99)
        assert out.shape == (9,)
        assert_f32_close(out, expected, 1, DISCOUNT_K)
    np.testing.assert_array_equal(reference.discount_rewards(column, 0.99).ravel(), expected)
    assert reference.discount_rewards(column, 0.99).shape == (9, 1)
    np.testing.assert_array_equal(r, [0, 0, 1, 0, 0, -1, 0, 0, 0])  # input untouched


def test_discount_rewards_edge_cases():
    # empty, one step, trailing zeros (steps after the last point get 0), a lone reward
    assert fastpong.discount_rewards(np.zeros(0), 0.99).shape == (0,)
    np.testing.assert_array_equal(fastpong.discount_rewards([1.0], 0.99), [1.0])
    np.testing.assert_array_equal(fastpong.discount_rewards([0.0], 0.99), [0.0])
    out = fastpong.discount_rewards([0, 0, -1, 0, 0], 0.5)
    np.testing.assert_array_equal(out, [-0.25, -0.5, -1, 0, 0])
    np.testing.assert_array_equal(out, reference.discount_rewards(np.array([0, 0, -1, 0, 0.]), 0.5))
    # gamma = 1: every step of a rally gets the rally's reward; the sum restarts at each point
    out = fastpong.discount_rewards([0, 0, 1, 0, -1, 0], 1.0)
    np.testing.assert_array_equal(out, [1, 1, 1, -1, -1, 0])
    # all zero
    np.testing.assert_array_equal(fastpong.discount_rewards(np.zeros(50), 0.99), np.zeros(50))
    # a long rally with gamma 0.99: values down to 0.99^4999, no underflow to garbage
    r = np.zeros(5000)
    r[-1] = 1
    assert_f32_close(
        fastpong.discount_rewards(r, 0.99), reference.discount_rewards(r, 0.99), 1, DISCOUNT_K
    )


def test_discount_rewards_on_real_pong_rewards(pong_play):
    r = pong_play.rewards
    assert np.count_nonzero(r) >= 2
    for gamma in GAMMAS:
        assert_f32_close(
            fastpong.discount_rewards(r, gamma), reference.discount_rewards(r, gamma), 1,
            DISCOUNT_K, f"gamma={gamma}",
        )


@settings(max_examples=60, deadline=None)
@given(
    r=hnp.arrays(
        np.float64, st.integers(0, 300),
        elements=st.sampled_from([0.0, 0.0, 0.0, 0.0, 1.0, -1.0, 0.5, -3.0]),
    ),
    gamma=st.sampled_from(GAMMAS + [0.1, 1e-3]),
)
def test_property_discount_rewards(r, gamma):
    assert_f32_close(
        fastpong.discount_rewards(r, gamma), reference.discount_rewards(r, gamma), 1, DISCOUNT_K
    )


# --- standardize --------------------------------------------------------------------------------


def ref_standardize(values) -> np.ndarray:
    return reference.standardize_returns(np.asarray(values, np.float32).astype(np.float64))


@pytest.mark.parametrize("size", [2, 3, 16, 17, 1000])
def test_standardize_matches_reference(size):
    rng = np.random.default_rng(size)
    for values in (
        reference.discount_rewards(sparse_rewards(rng, size, 0.1), 0.99),  # training's input
        rng.standard_normal(size),
        1000 + rng.standard_normal(size),  # an offset far from the spread
        rng.standard_normal(size) * 1e-3,
    ):
        out = fastpong.standardize(values)
        assert out.dtype == np.float32 and out.shape == (size,)
        expected = ref_standardize(values)
        assert_f32_close(out, expected, 1, STANDARDIZE_K)
        if expected.std() > 0:
            assert abs(float(out.mean())) < 1e-5 and abs(float(out.std()) - 1) < 1e-5


def test_standardize_constant_empty_and_column():
    # constant input (standard deviation 0) gives zeros, not NaN, in both
    for value in (0.0, 1.0, -1.0, 0.1, 0.3, 1 / 3, 0.99**50):
        for size in (1, 3, 7, 10, 100, 1000):
            values = np.full(size, value)
            np.testing.assert_array_equal(fastpong.standardize(values), np.zeros(size))
            np.testing.assert_array_equal(reference.standardize_returns(values), np.zeros(size))
    assert fastpong.standardize(np.zeros(0)).shape == (0,)
    assert reference.standardize_returns(np.zeros(0)).shape == (0,)
    # the tutorial's (T, 1) column
    values = np.array([[0.5], [-1.0], [2.0], [0.25]])
    expected = ref_standardize(values).ravel()
    assert_f32_close(fastpong.standardize(values), expected, 1, STANDARDIZE_K)
    assert reference.standardize_returns(values).shape == (4, 1)
    np.testing.assert_array_equal(values.ravel(), [0.5, -1.0, 2.0, 0.25])  # untouched


def test_standardize_on_real_pong_returns(pong_play):
    returns = reference.discount_rewards(pong_play.rewards, 0.99)
    assert_f32_close(fastpong.standardize(returns), ref_standardize(returns), 1, STANDARDIZE_K)


# --- EpisodeBuffer, EpisodeBatch, GradientBuffer ------------------------------------------------


def test_episode_buffer_append_and_read_back():
    rng = np.random.default_rng(0)
    hidden, input_size, steps = 7, 20, 6
    x = rng.choice(np.array([-1.0, 0.0, 1.0]), size=(steps, input_size), p=[0.2, 0.6, 0.2])
    x[3] = 0  # a step with an all-zero difference
    h = np.abs(rng.standard_normal((steps, hidden)))
    dlogp = rng.uniform(-1, 1, steps)
    episode = fastpong.EpisodeBuffer(hidden, input_size)
    assert len(episode) == 0 and (episode.hidden, episode.input_size) == (hidden, input_size)
    empty_bytes = episode.nbytes
    for t in range(steps):
        episode.append(fastpong.SparseFrames.from_dense(x[t]), h[t], dlogp[t])
        if t % 2:
            episode.set_last_reward(float(t))
    assert len(episode) == steps and episode.nbytes > empty_bytes
    np.testing.assert_array_equal(episode.inputs.to_dense(input_size), x)
    np.testing.assert_array_equal(episode.hidden_states, h.astype(np.float32))
    np.testing.assert_array_equal(episode.dlogps, dlogp.astype(np.float32))
    np.testing.assert_array_equal(episode.rewards, [0, 1, 0, 3, 0, 5])
    episode.set_last_reward(-1.0)  # overwrites the last step's reward only
    np.testing.assert_array_equal(episode.rewards, [0, 1, 0, 3, 0, -1])
    # from_arrays builds the same, from the tutorial's stacked arrays with (T, 1) columns
    same = fastpong.EpisodeBuffer.from_arrays(x, h, dlogp[:, None], episode.rewards[:, None])
    for name in ("hidden_states", "dlogps", "rewards"):
        np.testing.assert_array_equal(getattr(same, name), getattr(episode, name))
    np.testing.assert_array_equal(same.inputs.indices, episode.inputs.indices)
    np.testing.assert_array_equal(same.inputs.offsets, episode.inputs.offsets)
    assert same.nbytes == episode.nbytes
    episode.clear()
    assert len(episode) == 0 and episode.inputs.nonzeros == 0 and episode.nbytes == empty_bytes
    assert episode.hidden_states.shape == (0, hidden)


def test_episode_buffer_is_compact_on_real_play(pong_play, pong_inputs):
    episode = fastpong.EpisodeBuffer(200, 6400)
    differencer = fastpong.FrameDifferencer(1)
    h = np.zeros(200, dtype=np.float32)
    for frame in pong_play.frames:
        episode.append(differencer.step(frame[None]), h, 0.5)
    np.testing.assert_array_equal(episode.inputs.to_dense(), pong_inputs)
    dense_epx_bytes = pong_inputs.size * 4  # the tutorial's epx, even in float32
    assert episode.nbytes < dense_epx_bytes / 10


def test_episode_batch_basics():
    batch = fastpong.EpisodeBatch(2, hidden=3, input_size=4)
    assert len(batch) == 2
    rows = fastpong.SparseFrames.from_dense([[1, 0, 0, -1], [0, 0, 0, 0]])
    batch.append(rows, np.array([[1, 2, 3], [4, 5, 6]]), np.array([0.25, -0.75]))
    batch.set_last_rewards(np.array([[0.0], [1.0]]))  # a column works too
    batch.append(rows, np.ones((2, 3)), [0.5, 0.5])
    batch.set_last_rewards([-1, 0])
    first = batch.episode(0)
    np.testing.assert_array_equal(first.inputs.to_dense(4), [[1, 0, 0, -1], [1, 0, 0, -1]])
    np.testing.assert_array_equal(first.rewards, [0, -1])
    np.testing.assert_array_equal(batch.episode(1).rewards, [1, 0])
    np.testing.assert_array_equal(batch.episode(1).dlogps, [-0.75, 0.5])
    np.testing.assert_array_equal(batch.episode(1).hidden_states, [[4, 5, 6], [1, 1, 1]])
    assert batch.episode(1).inputs.nonzeros == 0
    # episode(i) is a view of the batch's own buffer: clearing it clears the batch's episode,
    # and it keeps the batch alive
    view = batch.episode(1)
    del batch
    view.clear()
    assert len(view) == 0


def test_gradient_buffer():
    grads = fastpong.GradientBuffer()
    assert (grads.hidden, grads.input_size) == (200, 6400)
    small = fastpong.GradientBuffer(3, 5)
    model = small.to_model()
    assert model["W1"].shape == (3, 5) and model["W2"].shape == (3,)
    assert not model["W1"].any() and not model["W2"].any()
    values = {"W1": np.arange(15.0).reshape(3, 5), "W2": np.array([1.0, -2.0, 3.0])}
    small.load_model(values)
    np.testing.assert_array_equal(small.to_model()["W1"], values["W1"])
    np.testing.assert_array_equal(small.to_model()["W2"], values["W2"])
    small.zero()
    assert not small.to_model()["W1"].any() and not small.to_model()["W2"].any()
    policy = fastpong.Policy(hidden=3, input_size=5, seed=0)
    buffer = policy.gradient_buffer()
    assert isinstance(buffer, fastpong.GradientBuffer)
    assert (buffer.hidden, buffer.input_size) == (3, 5)


# --- RMSProp ------------------------------------------------------------------------------------


def random_grads(rng, hidden, input_size) -> dict:
    """Gradients with magnitudes from 1e-7 to 1, so that RMSProp's epsilon (1e-5) matters for some
    entries and not for others; a few exact zeros (pixels no step touched)."""
    def draw(shape):
        g = rng.standard_normal(shape) * 10.0 ** rng.uniform(-7, 0, size=shape)
        g[rng.uniform(size=shape) < 0.1] = 0
        return g.astype(np.float32)
    return {"W1": draw((hidden, input_size)), "W2": draw(hidden)}


@pytest.mark.parametrize("form", ["GradientBuffer", "dict"])
@pytest.mark.parametrize("hidden,input_size", [(1, 1), (7, 12), (17, 33), (66, 100)])
@pytest.mark.parametrize("learning_rate,decay_rate", [(1e-4, 0.99), (0.05, 0.9), (1e-2, 0.0)])
def test_rmsprop_matches_reference(form, hidden, input_size, learning_rate, decay_rate):
    rng = np.random.default_rng(hidden + input_size)
    policy = fastpong.Policy(hidden=hidden, input_size=input_size, seed=1)
    model = {k: v.astype(np.float64) for k, v in policy.to_model().items()}
    cache = {k: np.zeros_like(v) for k, v in model.items()}
    # The size of what the weights' roundings scale with: the weight and every update taken.
    moved = {k: np.abs(v) for k, v in model.items()}
    optimizer = fastpong.RMSProp(learning_rate=learning_rate, decay_rate=decay_rate)
    steps = 5
    for step in range(1, steps + 1):
        g = random_grads(rng, hidden, input_size)
        ref_grads = {k: v.astype(np.float64) for k, v in g.items()}
        previous = {k: v.copy() for k, v in model.items()}
        reference.rmsprop_update(model, ref_grads, cache, learning_rate, decay_rate)
        for k in model:
            moved[k] += np.abs(model[k] - previous[k])
        if form == "dict":
            grads = {k: v.copy() for k, v in g.items()}
            optimizer.step(policy, grads)
            for k in grads:  # zeroed in place, like the tutorial's grad_buffer
                assert not grads[k].any()
        else:
            grads = policy.gradient_buffer()
            grads.load_model(g)
            optimizer.step(policy, grads)
            assert not grads.to_model()["W1"].any() and not grads.to_model()["W2"].any()
        for k in ("W1", "W2"):
            assert_f32_close(policy.to_model()[k], model[k], step, RMSPROP_K, f"{k} step {step}",
                             scale=moved[k])
            # the cache persists across steps (a reset cache would give other weights already)
            assert_f32_close(optimizer.cache.to_model()[k], cache[k], step, RMSPROP_K, f"cache {k}")
    assert repr(optimizer) == f"RMSProp(learning_rate={learning_rate}, decay_rate={decay_rate})"


def test_rmsprop_defaults_and_zero_gradient():
    optimizer = fastpong.RMSProp()
    assert (optimizer.learning_rate, optimizer.decay_rate) == (1e-4, 0.99)
    assert optimizer.cache is None
    policy = fastpong.Policy(hidden=9, input_size=16, seed=2)
    before = policy.to_model()
    optimizer.step(policy, policy.gradient_buffer())  # zero gradient: nothing moves
    for k in before:
        np.testing.assert_array_equal(policy.to_model()[k], before[k])
    assert optimizer.cache is not None and not optimizer.cache.to_model()["W1"].any()
    # float64 dict gradients, zeroed in place
    grads = {"W1": np.full((9, 16), 1e-3), "W2": np.full(9, -1e-3)}
    optimizer.step(policy, grads)
    assert not grads["W1"].any() and grads["W1"].dtype == np.float64
    # first step with cache 0: w += lr * g / (sqrt(0.01 g^2) + 1e-5) ~ lr * 10 * sign(g)
    moved = policy.to_model()["W2"] - before["W2"]
    np.testing.assert_allclose(moved, -1e-4 * 1e-3 / (0.1 * 1e-3 + 1e-5), rtol=1e-3)


def test_rmsprop_with_threads_is_bitwise_the_same(restore_threads):
    # 64 x 65536 = 2^22 weights: the parallel threshold (the tutorial's 200 x 6400 stays serial)
    rng = np.random.default_rng(3)
    g = random_grads(rng, 64, 65536)
    results = []
    for threads in (1, 2):
        fastpong.set_num_threads(threads)
        policy = fastpong.Policy(hidden=64, input_size=65536, seed=3)
        optimizer = fastpong.RMSProp(learning_rate=1e-3)
        for _ in range(2):
            grads = policy.gradient_buffer()
            grads.load_model(g)
            optimizer.step(policy, grads)
        results.append((policy.to_model(), optimizer.cache.to_model()))
    for k in ("W1", "W2"):
        np.testing.assert_array_equal(results[0][0][k], results[1][0][k])
        np.testing.assert_array_equal(results[0][1][k], results[1][1][k])


# --- one training round end to end --------------------------------------------------------------


def test_tutorial_training_round_on_real_pong(pong_play, pong_inputs):
    """Two episodes of real Pong (the random agent's actions), then RMSProp, twice: the fast path
    (FrameDifferencer, EpisodeBuffer, discount_rewards, standardize, accumulate_gradient, RMSProp)
    against the tutorial's loop on the reference, starting from the same weights."""
    gamma, learning_rate, decay_rate = 0.99, 1e-4, 0.99
    policy = fastpong.Policy(seed=12288743)
    initial_w1 = policy.to_model()["W1"]
    model = {k: v.astype(np.float64) for k, v in policy.to_model().items()}
    grad_buffer = {k: np.zeros_like(v) for k, v in model.items()}
    rmsprop_cache = {k: np.zeros_like(v) for k, v in model.items()}
    optimizer = fastpong.RMSProp(learning_rate, decay_rate)
    grads = policy.gradient_buffer()
    # frames[t] is seen, actions[t] taken, rewards[t] follows; split into 4 "episodes"
    steps = len(pong_play.actions)
    bounds = np.linspace(0, steps, 5).astype(int)
    longest = int(np.diff(bounds).max())
    for round_ in range(2):
        # Both sides start the round from the same float32 weights (the caches carry over).
        model = {k: v.astype(np.float32).astype(np.float64) for k, v in model.items()}
        policy.load_model(model)
        grad_scale = {k: np.zeros_like(v) for k, v in model.items()}  # magnitudes behind grad_buffer
        for e in range(2):
            begin, end = bounds[2 * round_ + e], bounds[2 * round_ + e + 1]
            # reference (the tutorial's loop)
            xs, dlogps, drs = [], [], []
            prev_x = None
            # fast path
            episode = fastpong.EpisodeBuffer(200, 6400)
            differencer = fastpong.FrameDifferencer(1)
            for t in range(begin, end):
                cur_x = reference.frame_preprocessing(pong_play.frames[t]).ravel()
                xs.append(reference.update_input(prev_x, cur_x))
                prev_x = cur_x
            # The weights do not change within an episode, so the tutorial's per-step forward
            # passes can run as one (policy_forward takes the steps as columns), ~50x faster.
            aprobs, hs = reference.policy_forward(np.array(xs).T, model)
            for i, t in enumerate(range(begin, end)):
                y = 1 if pong_play.actions[t] == 2 else 0
                dlogps.append(y - aprobs[i])
                drs.append(pong_play.rewards[t])

                rows = differencer.step(pong_play.frames[t][None])
                p, hf = policy.forward(rows)
                episode.append(rows, hf[0], float(y - p[0]))
                episode.set_last_reward(float(pong_play.rewards[t]))
            epx, eph, epdlogp, epr = np.vstack(xs), hs.T, np.vstack(dlogps), np.vstack(drs)
            advantages = reference.standardize_returns(reference.discount_rewards(epr, gamma))
            epdlogp *= advantages
            grad = reference.policy_backward(eph, epx, epdlogp, model)
            magnitude = reference.policy_backward(np.abs(eph), np.abs(epx), np.abs(epdlogp),
                                                  {k: np.abs(v) for k, v in model.items()})
            for k in model:
                grad_buffer[k] += grad[k]
                grad_scale[k] += magnitude[k]

            fast_adv = fastpong.standardize(fastpong.discount_rewards(episode.rewards, gamma))
            policy.accumulate_gradient(episode, fast_adv, grads)
        fast_grads = grads.to_model()
        gradient_error = {}
        for k in model:
            assert_f32_close(fast_grads[k], grad_buffer[k], 2 * longest, PIPELINE_K, f"grad {k}",
                             scale=grad_scale[k])
            gradient_error[k] = np.abs(fast_grads[k] - grad_buffer[k])
        previous = {k: v.copy() for k, v in model.items()}
        reference.rmsprop_update(model, grad_buffer, rmsprop_cache, learning_rate, decay_rate)
        optimizer.step(policy, grads)
        for k in model:
            err = np.abs(policy.to_model()[k] - model[k])
            # The slope bound is nearly reached where g is tiny and the step linear in it (0.88 of
            # the tolerance measured without the factor 2, which is room for other SIMD widths).
            tol = 2 * (learning_rate / reference.RMSPROP_EPSILON) * gradient_error[k] + (
                PIPELINE_K * EPS32 * (np.abs(previous[k]) + np.abs(model[k] - previous[k]))
            )
            assert np.all(err <= tol), f"weights {k} after round {round_}: {(err - tol).max()}"
    assert np.abs(policy.to_model()["W1"] - initial_w1).max() > learning_rate  # it did train
