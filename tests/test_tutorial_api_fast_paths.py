"""The tutorial-shaped calls' fast paths (issue #20): Policy.backward checks epx for NaN and
infinity in the pass that finds its nonzeros, split over threads; RMSProp.step on the tutorial's
float32 gradient dict steps from the dict where it lies. Both must give exactly what the slower
forms gave, and refuse bad values as before, leaving everything untouched."""

import numpy as np
import pytest

import fastpong

H, D, STEPS = 24, 300, 1100  # more than one 512-row run of the backward pass, odd tile edges


@pytest.fixture
def restore_threads():
    threads = fastpong.get_num_threads()
    yield
    fastpong.set_num_threads(threads)


def sparse_episode(seed=0):
    """Frame-difference-like inputs: a few +-1 pixels a step, float32 (T, D)."""
    rng = np.random.default_rng(seed)
    epx = np.zeros((STEPS, D), np.float32)
    rows = np.repeat(np.arange(STEPS), 5)
    epx[rows, rng.integers(0, D, rows.size)] = rng.choice([-1.0, 1.0], rows.size)
    eph = np.maximum(rng.standard_normal((STEPS, H)), 0).astype(np.float32)
    return eph, epx, rng.standard_normal(STEPS).astype(np.float32)


def test_backward_is_the_same_on_any_thread_count(restore_threads):
    policy = fastpong.Policy(hidden=H, input_size=D, seed=3)
    args = sparse_episode()
    fastpong.set_num_threads(1)
    one = policy.backward(*args)
    fastpong.set_num_threads(2)
    two = policy.backward(*args)
    for name in ("W1", "W2"):
        np.testing.assert_array_equal(one[name], two[name])
    eph, epx, dlogp = (a.astype(np.float64) for a in args)
    dh = np.outer(dlogp, policy.to_model()["W2"]) * (eph > 0)
    np.testing.assert_allclose(one["W1"], dh.T @ epx, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad_rows", [(700,), (1099,), (900, 100)])  # the first reported: the earliest
@pytest.mark.parametrize("threads", [1, 2])
def test_backward_reports_the_first_non_finite_input(restore_threads, bad_rows, threads):
    fastpong.set_num_threads(threads)
    policy = fastpong.Policy(hidden=H, input_size=D, seed=3)
    eph, epx, dlogp = sparse_episode()
    for row in bad_rows:
        epx[row, 123] = np.inf
    first = min(bad_rows) * D + 123
    with pytest.raises(ValueError, match=rf"epx must be finite, got inf at flat index {first}$"):
        policy.backward(eph, epx, dlogp)


def _stepped(grads_form, seed=0, shape=(H, D)):
    hidden, input_size = shape
    policy = fastpong.Policy(hidden=hidden, input_size=input_size, seed=seed)
    optimizer = fastpong.RMSProp(learning_rate=1e-2, decay_rate=0.9)
    rng = np.random.default_rng(seed)
    for _ in range(3):
        g = {"W1": rng.standard_normal((hidden, input_size)).astype(np.float32),
             "W2": rng.standard_normal(hidden).astype(np.float32)}
        grads = grads_form(policy, g)
        optimizer.step(policy, grads)
        left = grads.to_model() if isinstance(grads, fastpong.GradientBuffer) else grads
        assert not any(np.any(v) for v in left.values())  # zeroed, as the tutorial's grad_buffer
    return policy.to_model(), optimizer.cache.to_model()


def _buffer(policy, g):
    buffer = policy.gradient_buffer()
    buffer.load_model(g)
    return buffer


@pytest.mark.parametrize("form", [lambda policy, g: g,  # float32 in place: the fast path
                                  lambda policy, g: {k: v.astype(np.float64) for k, v in g.items()}])
# The in-place step transposes the gradient in 8x8 blocks of 64-pixel slabs: shapes whose edges
# cut those blocks (hidden 13, 6,400 % 64 == 0 but 300 % 8 != 0), and a single hidden unit.
@pytest.mark.parametrize("shape", [(H, D), (13, D), (200, 6400), (1, 7)])
def test_rmsprop_from_the_dict_is_exactly_the_gradient_buffer_step(form, shape):
    weights, cache = _stepped(form, shape=shape)
    expected_weights, expected_cache = _stepped(_buffer, shape=shape)
    for name in ("W1", "W2"):
        np.testing.assert_array_equal(weights[name], expected_weights[name])
        np.testing.assert_array_equal(cache[name], expected_cache[name])


@pytest.mark.parametrize("name, index", [("W1", (H - 1, D - 1)), ("W2", (0,))])
def test_rmsprop_refuses_a_non_finite_gradient_and_touches_nothing(name, index):
    policy = fastpong.Policy(hidden=H, input_size=D, seed=1)
    before = policy.to_model()
    grads = {"W1": np.ones((H, D), np.float32), "W2": np.ones(H, np.float32)}
    grads[name][index] = np.nan
    with pytest.raises(ValueError, match=rf"grads\['{name}'\] must be finite, got nan"):
        fastpong.RMSProp().step(policy, grads)
    for k, v in before.items():
        np.testing.assert_array_equal(policy.to_model()[k], v)
    assert np.count_nonzero(grads["W1"]) == H * D  # not zeroed by a refused step
