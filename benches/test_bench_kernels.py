"""The reference and the fast path side by side, one pytest-benchmark group per kernel.

Every test times one path and checks the value the timed callable returned against the other path's
result (float32 tolerance), so a benchmark cannot report a fast wrong answer. Inputs are real Pong
(see conftest.py). Run as plain tests with ``--benchmark-disable``; ``benches/speedups.py`` turns
``--benchmark-json`` output into the README's table.
"""

from __future__ import annotations

import numpy as np
import pytest
from pong_data import BATCH, DECAY_RATE, GAMMA, LEARNING_RATE

import fastpong
from fastpong import reference

# Both rmsprop tests restore the start state before every round (untimed): each timed call is then
# one step from the same state, and its result can be held to the other path's.
RMSPROP_ROUNDS = {"reference": 20, "fast": 60}


def assert_close(actual, desired, rtol=1e-4, scale_atol=1e-5, what="result"):
    """Float32 agreement with a float64 result: relative, plus an absolute floor on the array's
    own scale, so that sums which cancel to near zero are not held to a relative bound."""
    actual = np.asarray(actual, dtype=np.float64)
    desired = np.asarray(desired, dtype=np.float64)
    assert actual.shape == desired.shape, f"{what}: shape {actual.shape} != {desired.shape}"
    scale = max(float(np.max(np.abs(desired), initial=0.0)), 1e-30)
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=scale_atol * scale, err_msg=what)


def _fast_forward(policy, x):
    p, h = policy.forward(x)
    return np.asarray(p, dtype=np.float64).reshape(-1), np.asarray(h).reshape(-1, policy.hidden)


# --- preprocess: one (210, 160, 3) frame -> (80, 80) binary image -----------------------------


@pytest.mark.benchmark(group="preprocess")
def test_preprocess_reference(benchmark, pong):
    frame = pong.recording.frames[pong.row]
    image = benchmark(reference.frame_preprocessing, frame)
    np.testing.assert_array_equal(image, fastpong.frame_preprocessing(frame))


@pytest.mark.benchmark(group="preprocess")
def test_preprocess_fast(benchmark, pong):
    frame = pong.recording.frames[pong.row]
    image = benchmark(fastpong.frame_preprocessing, frame)
    assert image.dtype == np.float32
    np.testing.assert_array_equal(image, reference.frame_preprocessing(frame))


def _frame_batch(pong):
    return np.ascontiguousarray(pong.recording.frames[pong.batch_rows])


@pytest.mark.benchmark(group="preprocess-batch8")
def test_preprocess_batch8_reference(benchmark, pong):
    frames = _frame_batch(pong)
    images = benchmark(lambda: np.stack([reference.frame_preprocessing(f) for f in frames]))
    np.testing.assert_array_equal(images, fastpong.frame_preprocessing(frames))


@pytest.mark.benchmark(group="preprocess-batch8")
def test_preprocess_batch8_fast(benchmark, pong):
    frames = _frame_batch(pong)
    images = benchmark(fastpong.frame_preprocessing, frames)
    expected = np.stack([reference.frame_preprocessing(f) for f in frames])
    np.testing.assert_array_equal(images, expected)


# --- frame-difference: a new frame -> the network's input, cur_x - prev_x -----------------------


@pytest.mark.benchmark(group="frame-difference")
def test_frame_difference_reference(benchmark, pong):
    previous, frame = pong.recording.frames[pong.row - 1], pong.recording.frames[pong.row]
    prev_x = reference.frame_preprocessing(previous).ravel()

    def difference(prev_x, frame):
        return reference.update_input(prev_x, reference.frame_preprocessing(frame).ravel())

    x = benchmark(difference, prev_x, frame)
    differencer = fastpong.FrameDifferencer(1)
    differencer.step(previous[None])
    np.testing.assert_array_equal(x, differencer.step(frame[None]).to_dense()[0])


@pytest.mark.benchmark(group="frame-difference")
def test_frame_difference_fast(benchmark, pong):
    frames = pong.recording.frames
    previous, frame = frames[pong.row - 1][None], frames[pong.row][None]
    differencer = fastpong.FrameDifferencer(1)

    # The differencer keeps the previous frame: the untimed setup shows it `previous` every round.
    def setup():
        differencer.step(previous)

    x = benchmark.pedantic(differencer.step, args=(frame,), setup=setup, rounds=2000,
                           warmup_rounds=20)
    assert len(x) == 1 and x.nonzeros > 0
    np.testing.assert_array_equal(x.to_dense()[0], pong.x64[pong.row])


# --- forward: one real frame difference -> (p, h) -----------------------------------------------


@pytest.mark.benchmark(group="forward")
def test_forward_reference(benchmark, pong, model, policy):
    x = pong.x64[pong.row]
    p, h = benchmark(reference.policy_forward, x, model)
    fast_p, fast_h = _fast_forward(policy, x.astype(np.float32))
    assert_close(p, fast_p[0], what="p")
    assert_close(h, fast_h[0], what="h")


@pytest.mark.benchmark(group="forward")
def test_forward_fast(benchmark, pong, model, policy):
    x = pong.x64[pong.row]
    x32 = x.astype(np.float32)
    benchmark.extra_info["nonzeros"] = int(np.count_nonzero(x))
    p, h = benchmark(policy.forward, x32)
    ref_p, ref_h = reference.policy_forward(x, model)
    assert isinstance(p, float) and h.shape == (policy.hidden,)
    assert_close(p, ref_p, what="p")
    assert_close(h, ref_h, what="h")


@pytest.mark.benchmark(group="forward")
def test_forward_fast_sparse(benchmark, pong, model, policy):
    x = pong.sparse_rows[pong.row]  # straight from the FrameDifferencer
    benchmark.extra_info["nonzeros"] = x.nonzeros
    p, h = benchmark(policy.forward, x)
    ref_p, ref_h = reference.policy_forward(pong.x64[pong.row], model)
    assert p.shape == (1,) and h.shape == (1, policy.hidden)
    assert_close(p[0], ref_p, what="p")
    assert_close(h[0], ref_h, what="h")


# --- forward-batch8: one step of 8 environments --------------------------------------------------
# The reference gets the whole batch in one call, policy_forward on a (D, 8) matrix: two matrix
# products instead of 8 matrix-vector ones, the strongest NumPy baseline.


@pytest.mark.benchmark(group="forward-batch8")
def test_forward_batch8_reference(benchmark, pong, model, policy):
    x = pong.x64[pong.batch_rows]
    p, h = benchmark(reference.policy_forward, x.T, model)
    fast_p, fast_h = _fast_forward(policy, x.astype(np.float32))
    assert_close(p, fast_p, what="p")
    assert_close(h.T, fast_h, what="h")


@pytest.mark.benchmark(group="forward-batch8")
def test_forward_batch8_fast(benchmark, pong, model, policy):
    x = pong.x64[pong.batch_rows]
    p, h = benchmark(policy.forward, x.astype(np.float32))
    ref_p, ref_h = reference.policy_forward(x.T, model)
    assert p.shape == (BATCH,) and h.shape == (BATCH, policy.hidden)
    assert_close(p, ref_p, what="p")
    assert_close(h, ref_h.T, what="h")


@pytest.mark.benchmark(group="forward-batch8")
def test_forward_batch8_fast_sparse(benchmark, pong, model, policy):
    x = pong.x64[pong.batch_rows]
    sparse = fastpong.SparseFrames.from_dense(x.astype(np.float32))
    p, h = benchmark(policy.forward, sparse)
    ref_p, ref_h = reference.policy_forward(x.T, model)
    assert_close(p, ref_p, what="p")
    assert_close(h, ref_h.T, what="h")


# --- backward: gradients of a 1000-step episode of real frame differences -----------------------


def _assert_gradients(actual, expected):
    assert_close(actual["W2"], expected["W2"], what="dW2")
    assert_close(actual["W1"], expected["W1"], what="dW1")


def _accumulate(policy, episode):
    grads = policy.gradient_buffer()
    policy.accumulate_gradient(episode.buffer, episode.advantages.astype(np.float32), grads)
    return grads.to_model()


@pytest.mark.benchmark(group="backward")
def test_backward_reference(benchmark, episode, model, policy):
    t = episode.tutorial
    grads = benchmark(reference.policy_backward, t.eph, t.epx, episode.epdlogp, model)
    _assert_gradients(grads, _accumulate(policy, episode))


@pytest.mark.benchmark(group="backward")
def test_backward_fast(benchmark, episode, policy):
    advantages = episode.advantages.astype(np.float32)
    grads = policy.gradient_buffer()
    benchmark.extra_info["steps"] = len(episode.buffer)
    benchmark.extra_info["nonzeros"] = episode.buffer.inputs.nonzeros

    # accumulate_gradient adds to grads; zeroing them is timed too, as the reference pays for
    # its fresh output arrays.
    def backward():
        grads.zero()
        policy.accumulate_gradient(episode.buffer, advantages, grads)
        return grads

    result = benchmark(backward)
    _assert_gradients(result.to_model(), episode.expected)


@pytest.mark.benchmark(group="backward")
def test_backward_fast_dense(benchmark, episode, policy):
    """For information: the tutorial-shaped dense backward, inputs as (T, 6400) float32."""
    t = episode.tutorial
    args = (t.eph.astype(np.float32), t.epx.astype(np.float32), episode.epdlogp.astype(np.float32))
    grads = benchmark(policy.backward, *args)
    _assert_gradients(grads, episode.expected)


# --- discount: 1000 real Pong rewards (sparse +-1) -> discounted returns ------------------------


def _rewards(pong, n=1000):
    rewards = pong.recording.rewards[:n]
    assert np.count_nonzero(rewards) > 0
    return rewards


@pytest.mark.benchmark(group="discount")
def test_discount_reference(benchmark, pong):
    rewards = _rewards(pong)
    returns = benchmark(reference.discount_rewards, rewards, GAMMA)
    assert_close(returns, fastpong.discount_rewards(rewards.astype(np.float32), GAMMA),
                 rtol=1e-6, scale_atol=1e-7)


@pytest.mark.benchmark(group="discount")
def test_discount_fast(benchmark, pong):
    rewards = _rewards(pong)
    returns = benchmark(fastpong.discount_rewards, rewards.astype(np.float32), GAMMA)
    assert returns.dtype == np.float32
    assert_close(returns, reference.discount_rewards(rewards, GAMMA), rtol=1e-6, scale_atol=1e-7)


# --- rmsprop: one step over all H * D + H = 1,280,200 weights ------------------------------------


def _assert_rmsprop_step(weights, cache, start, expected):
    """Holds one step's result to the other path's: the weight change and the new cache."""
    for k in ("W1", "W2"):
        change = np.asarray(weights[k], np.float64) - start[k].astype(np.float32)
        expected_change = np.asarray(expected[k], np.float64) - start[k].astype(np.float32)
        assert np.any(change != 0), f"{k} did not move"
        assert_close(change, expected_change, rtol=1e-3, scale_atol=1e-3, what=f"{k} change")
        assert_close(cache[k], expected["cache_" + k], rtol=1e-5, scale_atol=1e-6,
                     what=f"cache {k}")


@pytest.mark.benchmark(group="rmsprop")
def test_rmsprop_reference(benchmark, rmsprop_case):
    case = rmsprop_case
    model = {k: v.copy() for k, v in case.weights.items()}
    last_grads = {}

    def setup():
        for k in model:
            np.copyto(model[k], case.weights[k])
        last_grads.clear()
        last_grads.update(case.grads)
        return (model, last_grads, dict(case.cache)), {}

    def step(model, grad_buffer, cache):
        reference.rmsprop_update(model, grad_buffer, cache, LEARNING_RATE, DECAY_RATE)
        return model, cache

    weights, cache = benchmark.pedantic(step, setup=setup, rounds=RMSPROP_ROUNDS["reference"],
                                        warmup_rounds=1)
    assert not np.any(last_grads["W1"]), "the step must zero the gradients"
    _assert_rmsprop_step(weights, cache, case.weights, case.expected_fast)


@pytest.mark.benchmark(group="rmsprop")
def test_rmsprop_fast(benchmark, rmsprop_case):
    case = rmsprop_case
    policy = fastpong.Policy.from_model(case.weights)
    grads = policy.gradient_buffer()
    opt = fastpong.RMSProp(LEARNING_RATE, DECAY_RATE)
    opt.cache = policy.gradient_buffer()

    def setup():
        policy.load_model(case.weights)
        grads.load_model(case.grads)
        opt.cache.load_model(case.cache)

    def step():
        opt.step(policy, grads)
        return policy

    result = benchmark.pedantic(step, setup=setup, rounds=RMSPROP_ROUNDS["fast"], warmup_rounds=2)
    assert not np.any(grads.to_model()["W1"]), "the step must zero the gradients"
    _assert_rmsprop_step(result.to_model(), opt.cache.to_model(), case.weights,
                         case.expected_reference)
