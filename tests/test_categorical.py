"""The MIT lab's dense softmax policy (CategoricalPolicy) and categorical sampling, against
``fastpong.reference.lab``.

The reference runs on the policy's own float32 weights (upcast to float64), so what is left is the
fast path's float32 rounding. A float32 sum of n terms is off by at most about n * eps32 times the
sum of their magnitudes, so tolerances take the form ``k * eps32 * n * scale``:

- forward (probabilities, log-probabilities): n is the longest chain of sums, D + hidden sizes +
  A (the logsumexp), and scale is max(|ref|, 1) per value: logits of 1e4 give log-probabilities of
  -2e4 whose float32 spacing is already 2e-3.
- gradients: n = T + D + hidden sizes + A (the sum over steps, plus what each term inherits from
  the forward and backward chains), and scale is the largest |ref| of the array: terms of both
  signs cancel, so a single small entry is held to its array's scale, not its own.

Observations are kept away from ReLU kinks (every hidden pre-activation at least 1e-3 from 0), so
that float32 and float64 agree on which units are active; elsewhere the two paths may legitimately
gate a unit differently.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastpong
from fastpong import CategoricalPolicy
from fastpong.reference import lab

EPS32 = float(np.finfo(np.float32).eps)
FORWARD_K = 4
GRADIENT_K = 4
#: Sizes around the SIMD widths (4, 8 and 16 floats) of the kernels' inner loops.
SIMD_HIDDEN_SIZES = [1, 3, 7, 8, 9, 15, 16, 17, 33]
ACTION_COUNTS = [1, 2, 3, 6, 18]


def assert_f32_close(actual, ref, n: int, k: float, what: str, per_value: bool = True) -> None:
    actual = np.asarray(actual, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert actual.shape == ref.shape, f"{what}: shape {actual.shape} != {ref.shape}"
    assert np.all(np.isfinite(actual)), f"{what}: not finite"
    if per_value:
        scale = np.maximum(np.abs(ref), 1.0)
    else:
        scale = max(float(np.max(np.abs(ref), initial=0.0)), 1e-30)
    tol = k * EPS32 * max(n, 1) * scale
    err = np.abs(actual - ref)
    worst = np.unravel_index(np.argmax(err - tol), err.shape) if err.size else ()
    assert np.all(err <= tol), (f"{what}: error {err[worst]:.3g} > tolerance "
                                f"{np.broadcast_to(tol, err.shape)[worst]:.3g} at {worst}")


def model64(policy) -> dict:
    return {k: v.astype(np.float64) for k, v in policy.to_model().items()}


def chain_length(policy) -> int:
    return policy.input_size + sum(policy.hidden) + policy.num_actions


def away_from_kinks(obs, model, margin=1e-3) -> np.ndarray:
    """The rows of obs whose hidden pre-activations are all at least `margin` from 0."""
    x = obs.astype(np.float64)
    keep = np.ones(len(obs), dtype=bool)
    num_hidden = len(model) // 2 - 1
    for name in lab.layer_names(num_hidden)[:-1]:
        pre = x @ model[f"{name}/kernel"] + model[f"{name}/bias"]
        keep &= np.all(np.abs(pre) >= margin, axis=1)
        x = np.maximum(pre, 0.0)
    return obs[keep]


def random_biases(policy, rng) -> None:
    """Keras starts biases at zero; nonzero ones make the tests see them."""
    for name, value in policy.parameters().items():
        if name.endswith("/bias"):
            value[...] = rng.uniform(-0.5, 0.5, size=value.shape)


def episode(policy, steps: int, seed: int):
    """Observations away from kinks, actions, advantages: the inputs of a gradient."""
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((steps * 2 + 8, policy.input_size)).astype(np.float32)
    obs = away_from_kinks(obs, model64(policy))[:steps]
    assert len(obs) == steps
    actions = rng.integers(0, policy.num_actions, size=steps)
    advantages = rng.standard_normal(steps).astype(np.float32)
    return obs, actions, advantages


# --- construction, parameters -------------------------------------------------------------------


def test_defaults_are_the_labs_cartpole_network():
    policy = CategoricalPolicy()
    assert (policy.input_size, policy.hidden, policy.num_actions) == (4, (32,), 2)
    params = policy.parameters()
    assert list(params) == ["dense_0/kernel", "dense_0/bias", "logits/kernel", "logits/bias"]
    assert [v.shape for v in params.values()] == [(4, 32), (32,), (32, 2), (2,)]
    assert all(v.dtype == np.float32 for v in params.values())


def test_seeded_init_is_the_references_keras_init_in_float32():
    policy = CategoricalPolicy(5, (7, 3), 4, seed=11)
    expected = lab.init_model(5, (7, 3), 4, 11)
    assert list(policy.to_model()) == list(expected)
    for name, value in policy.to_model().items():
        np.testing.assert_array_equal(value, expected[name].astype(np.float32), err_msg=name)
    # Glorot-uniform kernels within their limits, zero biases.
    for name, value in expected.items():
        if name.endswith("/bias"):
            assert not np.any(value)
        else:
            limit = np.sqrt(6.0 / sum(value.shape))
            assert np.all(np.abs(value) <= limit) and np.max(np.abs(value)) > 0.5 * limit


def test_same_seed_same_weights_other_seed_other_weights():
    a, b, c = (CategoricalPolicy(seed=s) for s in (3, 3, 4))
    for name in a.parameters():
        np.testing.assert_array_equal(a.parameters()[name], b.parameters()[name])
    assert not np.array_equal(a.parameters()["dense_0/kernel"], c.parameters()["dense_0/kernel"])


def test_parameters_are_the_weights_and_to_model_copies():
    policy = CategoricalPolicy(seed=0)
    obs = np.ones((1, 4), np.float32)
    before = policy.forward(obs)
    copy = policy.to_model()
    copy["logits/bias"][...] = 100.0
    np.testing.assert_array_equal(policy.forward(obs), before)
    policy.parameters()["logits/bias"][...] = [50.0, 0.0]
    assert policy.forward(obs)[0, 0] == pytest.approx(1.0)


def test_from_model_round_trip_and_no_hidden_layer():
    policy = CategoricalPolicy(6, (9, 4), 5, seed=2)
    clone = CategoricalPolicy.from_model(policy.to_model())
    assert (clone.input_size, clone.hidden, clone.num_actions) == (6, (9, 4), 5)
    obs = np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32)
    np.testing.assert_array_equal(clone.forward(obs), policy.forward(obs))
    linear = CategoricalPolicy(3, (), 4, seed=0)  # logits straight from the input
    assert linear.hidden == () and list(linear.parameters()) == ["logits/kernel", "logits/bias"]
    assert_f32_close(linear.forward(obs[:, :3]), lab.forward(obs[:, :3], model64(linear))[2],
                     chain_length(linear), FORWARD_K, "probs")


def test_gradient_buffer_is_zeroed_fresh_and_shaped_like_the_parameters():
    policy = CategoricalPolicy(3, (5,), 2, seed=0)
    grads = policy.gradient_buffer()
    assert {k: v.shape for k, v in grads.items()} == {
        k: v.shape for k, v in policy.parameters().items()}
    assert all(v.dtype == np.float32 and not np.any(v) for v in grads.values())
    grads["logits/bias"][0] = 1.0
    assert not np.any(policy.gradient_buffer()["logits/bias"])


# --- forward -------------------------------------------------------------------------------------


@pytest.mark.parametrize("hidden", SIMD_HIDDEN_SIZES)
@pytest.mark.parametrize("num_actions", ACTION_COUNTS)
def test_forward_matches_reference(hidden, num_actions):
    rng = np.random.default_rng(hidden * 100 + num_actions)
    policy = CategoricalPolicy(4, (hidden,), num_actions, seed=hidden)
    random_biases(policy, rng)
    model = model64(policy)
    for n in (1, 8, 37):
        obs = rng.standard_normal((n, 4)).astype(np.float32)
        _, log_probs, probs, _ = lab.forward(obs, model)
        assert policy.forward(obs).shape == (n, num_actions)
        assert_f32_close(policy.forward(obs), probs, chain_length(policy), FORWARD_K, "probs")
        assert_f32_close(policy.log_probs(obs), log_probs, chain_length(policy), FORWARD_K,
                         "log_probs")


@pytest.mark.parametrize("hidden", [(33, 17), (8, 8, 8), (128,)])
def test_forward_deeper_and_wider_matches_reference(hidden):
    rng = np.random.default_rng(len(hidden))
    policy = CategoricalPolicy(19, hidden, 6, seed=1)
    random_biases(policy, rng)
    obs = rng.standard_normal((13, 19)).astype(np.float32)
    _, log_probs, probs, _ = lab.forward(obs, model64(policy))
    assert_f32_close(policy.forward(obs), probs, chain_length(policy), FORWARD_K, "probs")
    assert_f32_close(policy.log_probs(obs), log_probs, chain_length(policy), FORWARD_K, "logp")


def test_single_observation_gives_one_row_and_probabilities_sum_to_one():
    policy = CategoricalPolicy(4, (32,), 3, seed=0)
    obs = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    batch = policy.forward(obs)
    for i in range(5):
        single = policy.forward(obs[i])
        assert single.shape == (3,)
        np.testing.assert_array_equal(single, batch[i])
        np.testing.assert_array_equal(policy.log_probs(obs[i]), policy.log_probs(obs)[i])
    np.testing.assert_allclose(batch.sum(axis=1), 1.0, rtol=0, atol=4 * EPS32)


def test_non_contiguous_and_float64_observations_give_the_same_result():
    policy = CategoricalPolicy(4, (7,), 2, seed=0)
    obs = np.random.default_rng(0).standard_normal((6, 8))
    strided = obs[:, ::2]
    expected = policy.forward(np.ascontiguousarray(strided, dtype=np.float32))
    np.testing.assert_array_equal(policy.forward(strided.astype(np.float32)), expected)
    np.testing.assert_array_equal(policy.forward(strided), expected)


def test_zero_observations_give_the_softmax_of_the_logits_bias():
    policy = CategoricalPolicy(4, (9,), 3, seed=0)
    policy.parameters()["dense_0/bias"][...] = -1.0  # every hidden unit off
    policy.parameters()["logits/bias"][...] = [0.5, -1.0, 2.0]
    expected = np.exp(lab.log_softmax(np.array([0.5, -1.0, 2.0])))
    assert_f32_close(policy.forward(np.zeros((2, 4), np.float32)), np.tile(expected, (2, 1)),
                     3, FORWARD_K, "probs")


def test_one_action_is_certain():
    policy = CategoricalPolicy(4, (5,), 1, seed=0)
    obs = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(policy.forward(obs), np.ones((3, 1), np.float32))
    np.testing.assert_array_equal(policy.log_probs(obs), np.zeros((3, 1), np.float32))
    grads = policy.gradient_buffer()
    policy.accumulate_gradient(obs, np.zeros(3, np.int64), np.ones(3, np.float32), grads)
    assert not any(np.any(g) for g in grads.values())


def test_extreme_logits_neither_overflow_nor_lose_precision():
    policy = CategoricalPolicy(4, (8,), 4, seed=0)
    params = policy.parameters()
    params["logits/kernel"][...] = 0.0
    params["logits/bias"][...] = [1e4, -1e4, 9990.0, 0.0]
    obs = np.ones((2, 4), np.float32)
    probs, log_probs = policy.forward(obs), policy.log_probs(obs)
    assert np.all(np.isfinite(probs)) and np.all(np.isfinite(log_probs))
    expected = lab.log_softmax(np.array([1e4, -1e4, 9990.0, 0.0]))
    assert_f32_close(log_probs[0], expected, 4, FORWARD_K, "log_probs")
    assert probs[0, 1] == 0.0 and probs[0, 3] == 0.0
    assert probs[0, 2] == pytest.approx(np.exp(-10.0), rel=1e-4)
    # Large kernels: logits of order 1e4 that differ per row. Each logit carries float32 rounding
    # on the scale of the largest logits, so the log-probabilities are held to that scale.
    params["logits/kernel"][...] = np.random.default_rng(1).uniform(-1e3, 1e3, (8, 4))
    obs = np.random.default_rng(2).standard_normal((16, 4)).astype(np.float32)
    ref_logits, ref_log_probs, ref_probs, _ = lab.forward(obs, model64(policy))
    assert np.max(np.abs(ref_logits)) > 5e3
    assert_f32_close(policy.log_probs(obs), ref_log_probs, chain_length(policy), FORWARD_K, "logp",
                     per_value=False)
    assert_f32_close(policy.forward(obs), ref_probs, chain_length(policy), FORWARD_K, "probs")
    grads = policy.gradient_buffer()
    policy.accumulate_gradient(obs, np.arange(16) % 4, np.ones(16, np.float32), grads)
    assert all(np.all(np.isfinite(g)) for g in grads.values())


# --- gradient ------------------------------------------------------------------------------------


@pytest.mark.parametrize("hidden", SIMD_HIDDEN_SIZES)
@pytest.mark.parametrize("num_actions", [1, 2, 5, 18])
@pytest.mark.parametrize("steps", [1, 2, 200])
def test_gradient_matches_reference(hidden, num_actions, steps):
    policy = CategoricalPolicy(4, (hidden,), num_actions, seed=hidden + steps)
    random_biases(policy, np.random.default_rng(hidden))
    obs, actions, advantages = episode(policy, steps, seed=steps * 7 + num_actions)
    grads = policy.gradient_buffer()
    policy.accumulate_gradient(obs, actions, advantages, grads)
    expected = lab.policy_gradient(obs, actions, advantages, model64(policy))
    for name, value in expected.items():
        assert_f32_close(grads[name], value, steps + chain_length(policy), GRADIENT_K, name,
                         per_value=False)


@pytest.mark.parametrize("hidden", [(33, 17), (8, 9), (128,)])
def test_gradient_deeper_and_longer_matches_reference(hidden):
    policy = CategoricalPolicy(11, hidden, 6, seed=3)
    random_biases(policy, np.random.default_rng(3))
    obs, actions, advantages = episode(policy, 500, seed=5)
    grads = policy.gradient_buffer()
    policy.accumulate_gradient(obs, actions, advantages, grads, scale=0.25)
    expected = lab.policy_gradient(obs, actions, advantages, model64(policy), scale=0.25)
    for name, value in expected.items():
        assert_f32_close(grads[name], value, 500 + chain_length(policy), GRADIENT_K, name,
                         per_value=False)


def test_gradient_adds_into_grads_and_scale_defaults_to_one_over_steps():
    policy = CategoricalPolicy(4, (16,), 3, seed=0)
    obs, actions, advantages = episode(policy, 10, seed=0)
    once = policy.gradient_buffer()
    policy.accumulate_gradient(obs, actions, advantages, once)
    explicit = policy.gradient_buffer()
    policy.accumulate_gradient(obs, actions, advantages, explicit, scale=0.1)
    twice = policy.gradient_buffer()
    policy.accumulate_gradient(obs, actions, advantages, twice)
    policy.accumulate_gradient(obs, actions, advantages, twice)
    for name in once:
        assert np.any(once[name])
        np.testing.assert_allclose(explicit[name], once[name], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(twice[name], 2 * once[name], rtol=1e-6, atol=1e-9)


def test_empty_episode_is_a_no_op():
    policy = CategoricalPolicy(4, (8,), 2, seed=0)
    grads = policy.gradient_buffer()
    grads["dense_0/bias"][...] = 3.0
    policy.accumulate_gradient(np.zeros((0, 4), np.float32), np.zeros(0, np.int64),
                               np.zeros(0, np.float32), grads)
    policy.accumulate_gradient(np.zeros((0, 4)), np.array([]), [], grads)  # as lists give them
    assert np.all(grads["dense_0/bias"] == 3.0) and not np.any(grads["logits/kernel"])
    assert policy.forward(np.zeros((0, 4), np.float32)).shape == (0, 2)


def test_gradient_ascends_the_objective():
    """A small step along the gradient raises J = mean_t A_t log pi(a_t|s_t) (minus the lab's loss)."""
    policy = CategoricalPolicy(4, (32,), 2, seed=0)
    obs, actions, advantages = episode(policy, 50, seed=1)

    def objective():
        log_probs = policy.log_probs(obs).astype(np.float64)
        return np.mean(advantages * log_probs[np.arange(50), actions])

    grads = policy.gradient_buffer()
    policy.accumulate_gradient(obs, actions, advantages, grads)
    before = objective()
    for name, value in policy.parameters().items():
        value += 1e-2 * grads[name]
    assert objective() > before


def _objective64(model, obs, actions, advantages, scale):
    log_probs = lab.forward(obs, model)[1]
    return scale * np.sum(advantages * log_probs[np.arange(len(actions)), actions])


def _finite_differences(model, obs, actions, advantages, scale, h=1e-6) -> dict:
    numeric = {}
    for name, value in model.items():
        grad = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            original = value[index]
            value[index] = original + h
            up = _objective64(model, obs, actions, advantages, scale)
            value[index] = original - h
            down = _objective64(model, obs, actions, advantages, scale)
            value[index] = original
            grad[index] = (up - down) / (2 * h)
        numeric[name] = grad
    return numeric


def test_reference_gradient_matches_finite_differences():
    """float64: the analytic gradient of the reference against central differences, every weight."""
    policy = CategoricalPolicy(3, (5, 4), 3, seed=4)
    random_biases(policy, np.random.default_rng(4))
    model = model64(policy)
    obs, actions, advantages = episode(policy, 6, seed=4)
    analytic = lab.policy_gradient(obs, actions, advantages, model, scale=0.5)
    numeric = _finite_differences(model, obs.astype(np.float64), actions,
                                  advantages.astype(np.float64), 0.5)
    for name in model:
        # Central differences with h = 1e-6: truncation ~h^2, rounding ~1e-16 / h = 1e-10.
        np.testing.assert_allclose(analytic[name], numeric[name], rtol=1e-6, atol=1e-8,
                                   err_msg=name)


def test_fast_gradient_matches_finite_differences():
    policy = CategoricalPolicy(4, (9,), 4, seed=5)
    random_biases(policy, np.random.default_rng(5))
    model = model64(policy)
    obs, actions, advantages = episode(policy, 12, seed=5)
    numeric = _finite_differences(model, obs.astype(np.float64), actions,
                                  advantages.astype(np.float64), 1 / 12)
    grads = policy.gradient_buffer()
    policy.accumulate_gradient(obs, actions, advantages, grads)
    for name in model:
        assert_f32_close(grads[name], numeric[name], 12 + chain_length(policy), GRADIENT_K, name,
                         per_value=False)


# --- determinism and threads ---------------------------------------------------------------------


@pytest.fixture
def restore_threads():
    threads = fastpong.get_num_threads()
    yield
    fastpong.set_num_threads(threads)


@pytest.mark.parametrize("shape", [(576, (128,), 6), (4, (2048,), 6)])
def test_results_do_not_depend_on_the_thread_count(restore_threads, shape):
    # Big enough that every kernel spreads over threads: a CNN-sized head (wide layers), and a
    # wide hidden layer into a narrow logits layer (whose gradient takes the transposed path).
    policy = CategoricalPolicy(*shape, seed=0)
    random_biases(policy, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    obs = rng.standard_normal((1000, shape[0])).astype(np.float32)
    actions = rng.integers(0, 6, 1000)
    advantages = rng.standard_normal(1000).astype(np.float32)
    results = []
    for threads in (1, 2, 3):
        fastpong.set_num_threads(threads)
        grads = policy.gradient_buffer()
        input_grad = np.empty_like(obs)
        policy.accumulate_gradient(obs, actions, advantages, grads, input_grad=input_grad)
        results.append((policy.forward(obs), policy.log_probs(obs), grads, input_grad))
    for probs, log_probs, grads, input_grad in results[1:]:
        np.testing.assert_array_equal(probs, results[0][0])
        np.testing.assert_array_equal(log_probs, results[0][1])
        np.testing.assert_array_equal(input_grad, results[0][3])
        for name in grads:
            np.testing.assert_array_equal(grads[name], results[0][2][name], err_msg=name)


def test_repeated_calls_are_bitwise_identical():
    policy = CategoricalPolicy(4, (32,), 2, seed=0)
    obs, actions, advantages = episode(policy, 200, seed=0)
    first, second = policy.gradient_buffer(), policy.gradient_buffer()
    policy.accumulate_gradient(obs, actions, advantages, first)
    policy.accumulate_gradient(obs, actions, advantages, second)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    np.testing.assert_array_equal(policy.forward(obs), policy.forward(obs))


# --- sampling ------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_actions", ACTION_COUNTS)
def test_sample_actions_matches_reference(num_actions):
    rng = np.random.default_rng(num_actions)
    probs = np.exp(lab.log_softmax(rng.standard_normal((500, num_actions)) * 2)).astype(np.float32)
    uniforms = rng.uniform(size=500).astype(np.float32)
    actions = fastpong.sample_actions(probs, uniforms)
    assert actions.dtype == np.int32 and actions.shape == (500,)
    expected = lab.sample_actions(probs.astype(np.float64), uniforms.astype(np.float64))
    # float32 and float64 running sums may put a uniform on different sides of a boundary only
    # when it lies within rounding of it.
    cdf = np.cumsum(probs.astype(np.float64), axis=1)
    near = np.any(np.abs(cdf - uniforms[:, None]) < 1e-6, axis=1)
    np.testing.assert_array_equal(actions[~near], expected[~near])
    np.testing.assert_array_equal(fastpong.sample_actions(probs, uniforms), actions)


def test_sample_actions_follows_the_probabilities():
    """Evenly spaced uniforms give each action its share, to one sample."""
    probs = np.array([[0.1, 0.0, 0.6, 0.3]], np.float32)
    k = 1000
    uniforms = ((np.arange(k) + 0.5) / k).astype(np.float32)
    actions = fastpong.sample_actions(np.repeat(probs, k, axis=0), uniforms)
    counts = np.bincount(actions, minlength=4)
    np.testing.assert_allclose(counts, probs[0] * k, atol=1)
    assert counts[1] == 0


def test_sample_actions_edges():
    # u = 0 never picks an action of probability 0; u just below 1 with a total that rounds
    # below it picks the last action that can happen.
    probs = np.array([[0.0, 1.0, 0.0], [0.5, 0.49999, 0.0], [1.0, 0.0, 0.0]], np.float32)
    uniforms = np.array([0.0, np.nextafter(np.float32(1), np.float32(0)), 0.999], np.float32)
    np.testing.assert_array_equal(fastpong.sample_actions(probs, uniforms), [1, 1, 0])
    assert fastpong.sample_actions(np.zeros((0, 3), np.float32), np.zeros(0, np.float32)).shape == (0,)


def test_greedy_actions_are_the_argmax():
    policy = CategoricalPolicy(4, (32,), 3, seed=0)
    obs = np.random.default_rng(0).standard_normal((20, 4)).astype(np.float32)
    np.testing.assert_array_equal(policy.forward(obs).argmax(-1),
                                  lab.forward(obs, model64(policy))[2].argmax(-1))


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    ({"input_size": 0}, "input_size must be a positive integer"),
    ({"input_size": 4.0}, "input_size must be a positive integer"),
    ({"num_actions": 0}, "num_actions must be a positive integer"),
    ({"num_actions": True}, "num_actions must be a positive integer"),
    ({"hidden": (32, 0)}, "every hidden size must be a positive integer"),
    ({"hidden": (1.5,)}, "every hidden size must be a positive integer"),
    ({"hidden": None}, "hidden must be a sequence"),
])
def test_bad_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CategoricalPolicy(**kwargs)


@pytest.mark.parametrize("obs, message", [
    (np.zeros((2, 5), np.float32), r"obs must have shape \(4,\) or \(N, 4\), got float32 \(2, 5\)"),
    (np.zeros((2, 2, 4), np.float32), r"obs must have shape .* got float32 \(2, 2, 4\)"),
    (np.zeros(3, np.float32), r"obs must have shape .* got float32 \(3,\)"),
    (np.zeros((1, 4), bool), "obs must be a real numeric array"),
    (np.zeros((1, 4), complex), "obs must be a real numeric array"),
    ("abcd", "obs must be a"),
    (np.full((1, 4), np.nan, np.float32), "obs must be finite"),
    (np.full((1, 4), np.inf, np.float32), "obs must be finite"),
])
def test_bad_observations(obs, message):
    policy = CategoricalPolicy(seed=0)
    for method in (policy.forward, policy.log_probs):
        with pytest.raises(ValueError, match=message):
            method(obs)


def _gradient_call(**changes):
    policy = CategoricalPolicy(4, (8,), 3, seed=0)
    args = {"obs": np.zeros((5, 4), np.float32), "actions": np.zeros(5, np.int64),
            "advantages": np.ones(5, np.float32), "grads": policy.gradient_buffer()}
    args.update(changes)
    policy.accumulate_gradient(**args)
    return args["grads"]


def _transposed(shape):
    return np.zeros(shape[::-1], np.float32).T


@pytest.mark.parametrize("changes, message", [
    ({"obs": np.zeros(4, np.float32)}, r"obs must have shape \(N, 4\)"),
    ({"obs": np.zeros((5, 3), np.float32)}, r"obs must have shape \(N, 4\)"),
    ({"obs": np.full((5, 4), np.nan, np.float32)}, "obs must be finite"),
    ({"actions": np.zeros(4, np.int64)}, r"actions must be an integer array of shape \(5,\)"),
    ({"actions": np.zeros(5, np.float32)}, r"actions must be an integer array .* got float32"),
    ({"actions": np.zeros((5, 1), np.int64)}, r"actions must be an integer array"),
    ({"actions": np.array([0, 1, 2, 3, 0])}, r"actions must be in \[0, 3\), got 3 at step 3"),
    ({"actions": np.array([0, -1, 0, 0, 0])}, r"actions must be in \[0, 3\), got -1 at step 1"),
    ({"advantages": np.ones(6, np.float32)}, r"advantages must have shape \(5,\)"),
    ({"advantages": np.array([1, 1, np.nan, 1, 1])}, "advantages must be finite"),
    ({"scale": float("nan")}, "scale must be a finite number"),
    ({"scale": 1e300}, "scale must be a finite number"),
    ({"grads": [np.zeros(1)]}, "grads must be a dict"),
    ({"grads": {}}, "grads is missing 'dense_0/kernel'"),
    ({"grads": {**CategoricalPolicy(4, (8,), 3).gradient_buffer(),
                "dense_0/kernel": np.zeros((4, 8))}},
     r"grads\['dense_0/kernel'\] must be a writable C-contiguous float32 array of shape \(4, 8\), "
     r"got float64 \(4, 8\)"),
])
def test_bad_gradient_arguments(changes, message):
    with pytest.raises(ValueError, match=message):
        _gradient_call(**changes)


def _read_only(shape):
    array = np.zeros(shape, np.float32)
    array.flags.writeable = False
    return array


@pytest.mark.parametrize("name, bad, message", [
    ("logits/kernel", np.zeros((3, 8), np.float32), r"shape \(8, 3\), got float32 \(3, 8\)"),
    ("logits/kernel", _transposed((8, 3)), "got a non-contiguous view"),
    ("logits/bias", _read_only(3), "got a read-only array"),
    ("logits/bias", [0.0, 0.0, 0.0], "got an object of type list of shape \\(3,\\)"),
])
def test_bad_gradient_buffers(name, bad, message):
    """Gradients are written in place: a buffer that would need converting is refused."""
    policy = CategoricalPolicy(4, (8,), 3, seed=0)
    grads = policy.gradient_buffer()
    grads[name] = bad
    with pytest.raises(ValueError, match=message):
        policy.accumulate_gradient(np.zeros((2, 4), np.float32), np.zeros(2, np.int64),
                                   np.ones(2, np.float32), grads)


@pytest.mark.parametrize("model, message", [
    ({"logits/kernel": np.zeros((4, 2))}, "model is missing 'logits/bias'"),
    ([], "model must be a mapping"),
    ({"dense_0/kernel": np.zeros(4), "dense_0/bias": np.zeros(3), "logits/kernel": np.zeros((3, 2)),
      "logits/bias": np.zeros(2)}, "model\\['dense_0/kernel'\\] must have 2 dimensions"),
    ({"dense_0/kernel": np.zeros((4, 3)), "dense_0/bias": np.zeros(4),
      "logits/kernel": np.zeros((3, 2)), "logits/bias": np.zeros(2)},
     r"model\['dense_0/bias'\] must be a real array of shape \(3,\), got float64 \(4,\)"),
    ({"dense_0/kernel": np.full((4, 3), np.nan), "dense_0/bias": np.zeros(3),
      "logits/kernel": np.zeros((3, 2)), "logits/bias": np.zeros(2)},
     r"model\['dense_0/kernel'\] must be finite"),
    ({"dense_0/kernel": np.zeros((4, 3)), "dense_0/bias": np.zeros(3),
      "logits/kernel": np.zeros((2, 2)), "logits/bias": np.zeros(2)},
     r"model\['logits/kernel'\] must be a real array of shape \(3, 2\)"),
])
def test_bad_models(model, message):
    with pytest.raises(ValueError, match=message):
        CategoricalPolicy.from_model(model)


def test_bad_load_model_changes_nothing():
    policy = CategoricalPolicy(seed=0)
    before = policy.to_model()
    bad = policy.to_model()
    bad["logits/bias"] = np.array([np.nan, 0.0])
    bad["dense_0/kernel"] = bad["dense_0/kernel"] + 1
    with pytest.raises(ValueError, match="must be finite"):
        policy.load_model(bad)
    with pytest.raises(ValueError, match="names this policy lacks"):
        policy.load_model({**before, "extra/bias": np.zeros(2)})
    for name, value in policy.to_model().items():
        np.testing.assert_array_equal(value, before[name])


@pytest.mark.parametrize("probs, uniforms, message", [
    (np.full(3, 1 / 3, np.float32), np.zeros(1, np.float32), r"probs must have shape \(N, A\)"),
    (np.zeros((2, 0), np.float32), np.zeros(2, np.float32), r"probs must have shape \(N, A\)"),
    (np.array([[0.5, -0.5]], np.float32), np.zeros(1, np.float32), "probs must be finite and >= 0"),
    (np.array([[np.nan, 1]], np.float32), np.zeros(1, np.float32), "probs must be finite and >= 0"),
    (np.array([[0.5, 0.5]], np.float32), np.zeros(2, np.float32), r"uniforms must have shape \(1,\)"),
    (np.array([[0.5, 0.5]], np.float32), np.ones(1, np.float32), r"uniforms must be in \[0, 1\)"),
    (np.array([[0.5, 0.5]], np.float32), np.array([-0.1], np.float32), r"uniforms must be in"),
    (np.array([[0.5, 0.5]], np.float32), np.array([np.nan], np.float32), r"uniforms must be in"),
    (np.array([[0.5, 0.5]], bool), np.zeros(1, np.float32), "probs must be a real numeric array"),
])
def test_bad_sampling_arguments(probs, uniforms, message):
    with pytest.raises(ValueError, match=message):
        fastpong.sample_actions(probs, uniforms)


def test_python_threads_can_share_a_policy():
    """The kernels release the GIL and keep their scratch per thread: concurrent gradients from
    several Python threads equal the ones computed one after another."""
    from concurrent.futures import ThreadPoolExecutor

    policy = CategoricalPolicy(64, (128,), 6, seed=0)
    rng = np.random.default_rng(0)
    episodes = [(rng.standard_normal((300 + 50 * k, 64)).astype(np.float32),
                 rng.integers(0, 6, 300 + 50 * k), rng.standard_normal(300 + 50 * k).astype(np.float32))
                for k in range(6)]

    def gradient(episode):
        grads = policy.gradient_buffer()
        for _ in range(5):
            policy.accumulate_gradient(*episode, grads)
        return grads, policy.forward(episode[0])

    serial = [gradient(e) for e in episodes]
    with ThreadPoolExecutor(3) as pool:
        concurrent = list(pool.map(gradient, episodes))
    for (grads, probs), (expected, expected_probs) in zip(concurrent, serial):
        np.testing.assert_array_equal(probs, expected_probs)
        for name in grads:
            np.testing.assert_array_equal(grads[name], expected[name], err_msg=name)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int32, np.uint64, np.int64])
def test_actions_of_any_integer_type(dtype):
    policy = CategoricalPolicy(4, (8,), 3, seed=0)
    obs, actions, advantages = episode(policy, 6, seed=0)
    expected, grads = policy.gradient_buffer(), policy.gradient_buffer()
    policy.accumulate_gradient(obs, actions.astype(np.int64), advantages, expected)
    policy.accumulate_gradient(obs, actions.astype(dtype), advantages, grads)
    for name in grads:
        np.testing.assert_array_equal(grads[name], expected[name])
    with pytest.raises(ValueError, match=r"actions must be in \[0, 3\)"):
        policy.accumulate_gradient(obs, np.full(6, np.iinfo(dtype).max, dtype), advantages, grads)


@pytest.mark.parametrize("shape", [(576, (128,), 6), (4, (32,), 2), (5, (), 3), (9, (16, 7), 4)])
def test_input_gradient_matches_reference(shape):
    """d J / d obs, for a network below the policy (the lab's CNN feeds its dense head)."""
    policy = CategoricalPolicy(*shape, seed=1)
    random_biases(policy, np.random.default_rng(1))
    steps = 40
    obs, actions, advantages = episode(policy, steps, seed=1)
    grads = policy.gradient_buffer()
    input_grad = np.full((steps, shape[0]), np.nan, np.float32)  # overwritten, not added to
    policy.accumulate_gradient(obs, actions, advantages, grads, input_grad=input_grad)
    model = model64(policy)
    expected = lab.input_gradient(obs, actions, advantages, model)
    assert_f32_close(input_grad, expected, steps + chain_length(policy), GRADIENT_K, "input_grad",
                     per_value=False)
    # The parameters' gradient is the same with and without it.
    plain = policy.gradient_buffer()
    policy.accumulate_gradient(obs, actions, advantages, plain)
    for name in grads:
        np.testing.assert_array_equal(grads[name], plain[name])
    # And the reference's is d J / d obs indeed: central differences on a few entries.
    h = 1e-6
    for t, i in [(0, 0), (steps - 1, shape[0] - 1), (steps // 2, shape[0] // 2)]:
        shifted = obs.astype(np.float64)
        shifted[t, i] += h
        up = _objective64(model, shifted, actions, advantages.astype(np.float64), 1 / steps)
        shifted[t, i] -= 2 * h
        down = _objective64(model, shifted, actions, advantages.astype(np.float64), 1 / steps)
        assert (up - down) / (2 * h) == pytest.approx(expected[t, i], rel=1e-5, abs=1e-9)


def test_bad_input_grad():
    policy = CategoricalPolicy(4, (8,), 2, seed=0)
    args = (np.zeros((3, 4), np.float32), np.zeros(3, np.int64), np.ones(3, np.float32),
            policy.gradient_buffer())
    for bad, message in [(np.zeros((3, 4)), "got float64"), (np.zeros((4, 3), np.float32).T,
                                                              "non-contiguous"),
                         (np.zeros((2, 4), np.float32), r"shape \(3, 4\)")]:
        with pytest.raises(ValueError, match=r"input_grad must be a writable .*" + message):
            policy.accumulate_gradient(*args, input_grad=bad)
