"""fastpong.reference against the tutorial it transcribes.

The tutorial's functions are written out below as the tutorial gives them (with epx passed in rather
than read from the enclosing scope), and the reference must compute the same numbers, float64 to
float64 (exactly, or to a few ulps where the reference reorders nothing but numpy might). The two
documented departures are tested as such: the reference does not write into the caller's frame, and
a constant episode standardizes to zeros instead of NaN.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastpong import reference

#: float64 against float64, same operations: only numpy's own summation order may differ.
F64_RTOL = 1e-12


# --- the tutorial, as written -------------------------------------------------------------------


def tutorial_frame_preprocessing(observation_frame):
    observation_frame = observation_frame[35:195]
    observation_frame = observation_frame[::2, ::2, 0]
    observation_frame[observation_frame == 144] = 0
    observation_frame[observation_frame == 109] = 0
    observation_frame[observation_frame != 0] = 1
    return observation_frame.astype(float)


def tutorial_init_model(rng, H, D):
    return {
        "W1": rng.standard_normal(size=(H, D)) / np.sqrt(D),
        "W2": rng.standard_normal(size=H) / np.sqrt(H),
    }


def tutorial_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def tutorial_policy_forward(x, model):
    h = np.dot(model["W1"], x)
    h[h < 0] = 0
    logit = np.dot(model["W2"], h)
    p = tutorial_sigmoid(logit)
    return p, h


def tutorial_policy_backward(eph, epdlogp, model, epx):
    dW2 = np.dot(eph.T, epdlogp).ravel()
    dh = np.outer(epdlogp, model["W2"])
    dh[eph <= 0] = 0
    dW1 = np.dot(dh.T, epx)
    return {"W1": dW1, "W2": dW2}


def tutorial_discount_rewards(r, gamma):
    discounted_r = np.zeros_like(r)
    running_add = 0
    for t in reversed(range(0, r.size)):
        if r[t] != 0:
            running_add = 0
        running_add = running_add * gamma + r[t]
        discounted_r[t] = running_add
    return discounted_r


def tutorial_standardize(discounted_epr):
    discounted_epr = discounted_epr.copy()
    discounted_epr -= np.mean(discounted_epr)
    discounted_epr /= np.std(discounted_epr)
    return discounted_epr


def tutorial_rmsprop(model, grad_buffer, rmsprop_cache, learning_rate, decay_rate):
    for k, v in model.items():
        g = grad_buffer[k]
        rmsprop_cache[k] = decay_rate * rmsprop_cache[k] + (1 - decay_rate) * g**2
        model[k] += learning_rate * g / (np.sqrt(rmsprop_cache[k]) + 1e-5)
        grad_buffer[k] = np.zeros_like(v)


def tutorial_update_input(prev_x, cur_x, D):
    if prev_x is not None:
        x = cur_x - prev_x
    else:
        x = np.zeros(D)
    return x


# --- tests --------------------------------------------------------------------------------------


def test_constants():
    assert reference.INPUT_SIZE == 6400
    assert reference.BACKGROUND_VALUES == (144, 109)
    assert (reference.UP, reference.DOWN) == (2, 3)
    assert reference.RMSPROP_EPSILON == 1e-5


def test_frame_preprocessing_on_real_frames(pong_play):
    for t in range(0, len(pong_play.frames), 10):
        frame = np.array(pong_play.frames[t])
        before = frame.copy()
        got = reference.frame_preprocessing(frame)
        np.testing.assert_array_equal(frame, before)  # the reference works on a copy
        assert got.dtype == np.float64 and got.shape == (80, 80)
        assert set(np.unique(got)) <= {0.0, 1.0}
        expected = tutorial_frame_preprocessing(frame)  # ...the tutorial writes into the frame
        np.testing.assert_array_equal(got, expected)
        # two paddles and maybe a ball: a small part of the image
        assert 0 < got.sum() < 0.05 * got.size


def test_frame_preprocessing_tutorial_would_modify_the_frame(pong_play):
    frame = np.array(pong_play.frames[40])
    tutorial_frame_preprocessing(frame)
    assert not np.array_equal(frame, pong_play.frames[40])  # why the reference copies
    frame = np.array(pong_play.frames[40])
    reference.frame_preprocessing(frame)
    np.testing.assert_array_equal(frame, pong_play.frames[40])


def test_frame_preprocessing_palette():
    rng = np.random.default_rng(0)
    frame = rng.choice(np.array([0, 144, 109, 92, 213, 236, 1, 255], np.uint8), (210, 160, 3))
    np.testing.assert_array_equal(
        reference.frame_preprocessing(frame), tutorial_frame_preprocessing(frame.copy())
    )


@pytest.mark.parametrize("hidden,input_size,seed", [(200, 6400, 12288743), (3, 5, 0)])
def test_init_model(hidden, input_size, seed):
    got = reference.init_model(hidden, input_size, seed)
    expected = tutorial_init_model(np.random.default_rng(seed=seed), hidden, input_size)
    np.testing.assert_array_equal(got["W1"], expected["W1"])
    np.testing.assert_array_equal(got["W2"], expected["W2"])
    # a Generator is accepted too, and advances
    rng = np.random.default_rng(seed)
    np.testing.assert_array_equal(reference.init_model(hidden, input_size, rng)["W1"], got["W1"])
    assert not np.array_equal(reference.init_model(hidden, input_size, rng)["W1"], got["W1"])


def test_policy_forward(pong_inputs):
    model = reference.init_model(200, 6400, 1)
    for t in (0, 1, 100, 399):
        x = pong_inputs[t]
        p, h = reference.policy_forward(x, model)
        ep, eh = tutorial_policy_forward(x, model)
        np.testing.assert_allclose(h, eh, rtol=F64_RTOL, atol=0)
        np.testing.assert_allclose(p, ep, rtol=F64_RTOL)
        assert 0 < p < 1 and h.shape == (200,) and np.all(h >= 0)
    p, h = reference.policy_forward(np.zeros(6400), model)
    assert p == 0.5 and not h.any()
    assert reference.sigmoid(0.0) == 0.5
    np.testing.assert_allclose(reference.sigmoid(np.array([-1.0, 2.0])), 1 / (1 + np.exp([1, -2])))


def test_policy_backward_matches_tutorial_and_finite_differences():
    rng = np.random.default_rng(2)
    model = reference.init_model(5, 12, 2)
    epx = rng.choice([-1.0, 0.0, 1.0], size=(9, 12))
    eph = np.stack([reference.policy_forward(x, model)[1] for x in epx])
    epdlogp = rng.standard_normal((9, 1))
    got = reference.policy_backward(eph, epx, epdlogp, model)
    expected = tutorial_policy_backward(eph, epdlogp, model, epx)
    for k in ("W1", "W2"):
        np.testing.assert_array_equal(got[k], expected[k])
        assert got[k].shape == model[k].shape
    flat = reference.policy_backward(eph, epx, epdlogp.ravel(), model)  # (T,) works too
    for k in ("W1", "W2"):
        np.testing.assert_array_equal(flat[k], expected[k])

    # gradient of sum_t epdlogp_t * W2 . relu(W1 x_t), away from the ReLU kink
    pre = model["W1"] @ epx.T
    assert np.abs(pre).min() > 1e-4
    delta = 1e-6

    def objective(m):
        return float(epdlogp.ravel() @ (m["W2"] @ np.maximum(m["W1"] @ epx.T, 0)))

    for k in ("W1", "W2"):
        for idx in list(np.ndindex(model[k].shape))[::3]:
            plus = {kk: v.copy() for kk, v in model.items()}
            minus = {kk: v.copy() for kk, v in model.items()}
            plus[k][idx] += delta
            minus[k][idx] -= delta
            fd = (objective(plus) - objective(minus)) / (2 * delta)
            assert abs(fd - got[k][idx]) < 1e-8, (k, idx)


@pytest.mark.parametrize("gamma", [0.5, 0.99, 1.0])
def test_discount_rewards(gamma, pong_play):
    rng = np.random.default_rng(3)
    for r in (
        np.array(pong_play.rewards),
        rng.choice([0.0, 0.0, 0.0, 1.0, -1.0], size=50),
        np.zeros(0),
        np.array([1.0]),
        np.array([0.0, 0.0, 1.0, 0.0, 0.0]),
    ):
        got = reference.discount_rewards(r, gamma)
        np.testing.assert_allclose(got, tutorial_discount_rewards(r, gamma), rtol=F64_RTOL)
        column = r[:, None]  # the tutorial calls it on np.vstack(drs), a (T, 1) column
        got_column = reference.discount_rewards(column, gamma)
        assert got_column.shape == column.shape
        np.testing.assert_allclose(
            got_column, tutorial_discount_rewards(column, gamma), rtol=F64_RTOL
        )
    np.testing.assert_allclose(
        reference.discount_rewards(np.array([0, 0, 1.0]), 0.99), [0.9801, 0.99, 1.0], rtol=1e-15
    )


def test_standardize_returns():
    rng = np.random.default_rng(4)
    for values in (rng.standard_normal(20), rng.standard_normal((20, 1))):
        got = reference.standardize_returns(values)
        np.testing.assert_allclose(got, tutorial_standardize(values), rtol=F64_RTOL)
        assert got.shape == values.shape
    # constant returns: the tutorial divides by zero (or by rounding noise); the reference says 0
    for values in (np.full(5, 1.0), np.full(7, 0.1), np.full((3, 1), -0.7), np.array([2.0])):
        np.testing.assert_array_equal(reference.standardize_returns(values), 0)
    values = rng.standard_normal(8)
    before = values.copy()
    reference.standardize_returns(values)
    np.testing.assert_array_equal(values, before)


def test_rmsprop_update():
    rng = np.random.default_rng(5)
    model = reference.init_model(4, 6, 5)
    tutorial_model = {k: v.copy() for k, v in model.items()}
    cache = {k: np.zeros_like(v) for k, v in model.items()}
    tutorial_cache = {k: np.zeros_like(v) for k, v in model.items()}
    for _ in range(3):
        grads = {k: rng.standard_normal(v.shape) for k, v in model.items()}
        tutorial_grads = {k: v.copy() for k, v in grads.items()}
        reference.rmsprop_update(model, grads, cache, 1e-3, 0.99)
        tutorial_rmsprop(tutorial_model, tutorial_grads, tutorial_cache, 1e-3, 0.99)
        for k in model:
            np.testing.assert_array_equal(model[k], tutorial_model[k])
            np.testing.assert_array_equal(cache[k], tutorial_cache[k])
            assert not grads[k].any() and grads[k].shape == model[k].shape


def test_update_input():
    cur = np.arange(6.0)
    np.testing.assert_array_equal(reference.update_input(None, cur), np.zeros(6400))
    np.testing.assert_array_equal(
        reference.update_input(None, cur, 6), tutorial_update_input(None, cur, 6)
    )
    prev = np.ones(6)
    np.testing.assert_array_equal(reference.update_input(prev, cur), cur - prev)
