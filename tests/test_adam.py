"""Adam (and RMSProp's new pieces) against ``fastpong.reference.lab.adam_update``, against the
textbook bias-corrected update written out here, on both kinds of policy; optimizer state.

The fast step computes in float32 (its scalar factors in float64); the reference in float64 from
the same float32 start. Each step rounds a handful of times per weight, so after s steps the
moments are held to ``k * eps32 * s`` of their array's scale, and the weights' total change to the
same of its scale plus the rounding of adding it to float32 weights, at most ``eps32 * |w|`` a
step.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastpong
from fastpong import Adam, CategoricalPolicy, Policy, RMSProp, reference
from fastpong.reference import lab

EPS32 = float(np.finfo(np.float32).eps)
STEP_K = 16


def assert_scaled_close(actual, ref, steps: int, what: str, weights=0.0) -> None:
    """`weights`: for a change of float32 weights, the weights it was added to."""
    actual = np.asarray(actual, np.float64)
    ref = np.asarray(ref, np.float64)
    assert actual.shape == ref.shape, what
    scale = max(float(np.max(np.abs(ref), initial=0.0)), 1e-30)
    tol = STEP_K * EPS32 * steps * scale + EPS32 * steps * np.abs(weights)
    err = np.abs(actual - ref)
    assert np.all(err <= tol), f"{what}: error {np.max(err - tol) :.3g} above tolerance"


def float64_copy(arrays: dict) -> dict:
    return {k: np.asarray(v, np.float64).copy() for k, v in arrays.items()}


def random_grads(policy, rng):
    if isinstance(policy, Policy):  # the tutorial's: its GradientBuffer
        grads = policy.gradient_buffer()
        grads.load_model({"W1": rng.standard_normal((policy.hidden, policy.input_size)),
                          "W2": rng.standard_normal(policy.hidden)})
        return grads
    grads = policy.gradient_buffer()
    for value in grads.values():
        value[...] = rng.standard_normal(value.shape)
    return grads


def textbook_adam(w, m, v, g, t, lr, beta_1, beta_2, epsilon):
    """Kingma and Ba's Algorithm 1 (ascent), with Keras' epsilon-hat expressed in its terms."""
    m = beta_1 * m + (1 - beta_1) * g
    v = beta_2 * v + (1 - beta_2) * g * g
    m_hat = m / (1 - beta_1**t)
    v_hat = v / (1 - beta_2**t)
    return w + lr * m_hat / (np.sqrt(v_hat) + epsilon / np.sqrt(1 - beta_2**t)), m, v


@pytest.mark.parametrize("settings", [
    {},
    {"learning_rate": 0.01, "beta_1": 0.5, "beta_2": 0.9, "epsilon": 1e-4},
])
def test_adam_matches_reference_and_textbook_over_steps(settings):
    rng = np.random.default_rng(0)
    policy = CategoricalPolicy(4, (17,), 3, seed=0)
    opt = Adam(**settings)
    full = {"learning_rate": 1e-3, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, **settings}
    start = float64_copy(policy.to_model())
    ref_w, ref_m, ref_v = float64_copy(start), {}, {}
    ref_m = {k: np.zeros_like(v) for k, v in start.items()}
    ref_v = {k: np.zeros_like(v) for k, v in start.items()}
    book_w, book_m, book_v = float64_copy(start), dict(ref_m), dict(ref_v)
    steps = 10
    for t in range(1, steps + 1):
        grads = random_grads(policy, rng)
        ref_grads = float64_copy(grads)
        for name, g in ref_grads.items():
            book_w[name], book_m[name], book_v[name] = textbook_adam(
                book_w[name], book_m[name], book_v[name], g, t, full["learning_rate"],
                full["beta_1"], full["beta_2"], full["epsilon"])
        lab.adam_update(ref_w, ref_grads, ref_m, ref_v, t, **full)
        opt.step(policy, grads)
        assert not any(np.any(g) for g in grads.values()), "the step must zero grads"
    assert opt.iterations == steps
    state = opt.state()
    for name, value in policy.to_model().items():
        change = value - start[name]
        assert np.all(np.abs(change) > 0), name
        assert_scaled_close(change, ref_w[name] - start[name], steps, f"{name} vs reference",
                            weights=start[name])
        assert_scaled_close(change, book_w[name] - start[name], steps, f"{name} vs textbook",
                            weights=start[name])
        assert_scaled_close(state[f"m_{name}"], ref_m[name], steps, f"m {name}")
        assert_scaled_close(state[f"v_{name}"], ref_v[name], steps, f"v {name}")
        np.testing.assert_allclose(ref_w[name], book_w[name], rtol=1e-12, atol=1e-15)


def test_first_step_moves_each_weight_by_the_learning_rate():
    """Bias correction makes step 1 nearly a sign step: lr * g / (|g| + eps / sqrt(1 - beta_2)).
    (The tolerance covers the float32 rounding of weights of order 1 moved by 0.01.)"""
    policy = CategoricalPolicy(4, (8,), 2, seed=0)
    start = policy.to_model()
    grads = random_grads(policy, np.random.default_rng(1))
    expected = {k: 0.01 * g / (np.abs(g) + 1e-7 / np.sqrt(1 - 0.999)) for k, g in grads.items()}
    Adam(learning_rate=0.01).step(policy, grads)
    for name, value in policy.to_model().items():
        np.testing.assert_allclose(value - start[name], expected[name], rtol=1e-4)


def _tutorial_case(hidden=7, input_size=33, seed=0):
    policy = Policy(hidden, input_size, seed=seed)
    rng = np.random.default_rng(seed)
    grads = {"W1": rng.standard_normal((hidden, input_size)).astype(np.float32),
             "W2": rng.standard_normal(hidden).astype(np.float32)}
    return policy, grads


@pytest.mark.parametrize("as_buffer", [True, False])
def test_adam_on_the_tutorials_policy_matches_reference(as_buffer):
    policy, grads = _tutorial_case()
    opt = Adam(learning_rate=0.01)
    start = float64_copy(policy.to_model())
    ref_w = float64_copy(start)
    ref_m = {k: np.zeros_like(v) for k, v in start.items()}
    ref_v = {k: np.zeros_like(v) for k, v in start.items()}
    steps = 4
    for t in range(1, steps + 1):
        step_grads = {k: v * t for k, v in grads.items()}  # a gradient that changes per step
        lab.adam_update(ref_w, float64_copy(step_grads), ref_m, ref_v, t, learning_rate=0.01)
        if as_buffer:
            buffer = policy.gradient_buffer()
            buffer.load_model(step_grads)
            opt.step(policy, buffer)
            assert not any(np.any(v) for v in buffer.to_model().values())
        else:
            opt.step(policy, step_grads)
            assert not any(np.any(v) for v in step_grads.values())
    state = opt.state()
    assert sorted(state) == ["m_W1", "m_W2", "step", "v_W1", "v_W2"]
    assert state["m_W1"].shape == (7, 33) and int(state["step"]) == steps
    for name, value in policy.to_model().items():
        assert_scaled_close(value - start[name], ref_w[name] - start[name], steps, name,
                            weights=start[name])
        assert_scaled_close(state[f"m_{name}"], ref_m[name], steps, f"m {name}")
        assert_scaled_close(state[f"v_{name}"], ref_v[name], steps, f"v {name}")


def test_adam_on_the_tutorials_full_size_policy():
    policy = Policy(seed=0)
    start = float64_copy(policy.to_model())
    grads = policy.gradient_buffer()
    rng = np.random.default_rng(0)
    model_grads = {"W1": rng.standard_normal((200, 6400)), "W2": rng.standard_normal(200)}
    grads.load_model(model_grads)
    Adam().step(policy, grads)
    ref_w = float64_copy(start)
    lab.adam_update(ref_w, {k: v.astype(np.float32).astype(np.float64)
                            for k, v in model_grads.items()},
                    {k: np.zeros_like(v) for k, v in start.items()},
                    {k: np.zeros_like(v) for k, v in start.items()}, 1)
    for name, value in policy.to_model().items():
        assert_scaled_close(value - start[name], ref_w[name] - start[name], 1, name,
                            weights=start[name])


def test_same_steps_same_weights_whatever_the_thread_count():
    """Bitwise: on a policy big enough (4.2M weights) for the step to use threads, and again."""
    results = []
    threads = fastpong.get_num_threads()
    try:
        for count in (1, 2, 1):
            fastpong.set_num_threads(count)
            policy = CategoricalPolicy(4096, (1024,), 2, seed=0)
            opt = Adam()
            rng = np.random.default_rng(0)
            for _ in range(2):
                opt.step(policy, random_grads(policy, rng))
            results.append(policy.parameters()["dense_0/kernel"].copy())
    finally:
        fastpong.set_num_threads(threads)
    np.testing.assert_array_equal(results[1], results[0])
    np.testing.assert_array_equal(results[2], results[0])


@pytest.mark.parametrize("kind", ["categorical", "tutorial"])
@pytest.mark.parametrize("optimizer", [Adam, RMSProp])
def test_state_round_trips_through_npz_and_resumes_bitwise(tmp_path, kind, optimizer):
    def make():
        return CategoricalPolicy(4, (9,), 3, seed=0) if kind == "categorical" else Policy(5, 11, seed=0)

    def grads_for(policy, rng):
        if kind == "categorical":
            return random_grads(policy, rng)
        return {"W1": rng.standard_normal((5, 11)), "W2": rng.standard_normal(5)}

    straight, split = make(), make()
    opt_straight, opt_split = optimizer(learning_rate=0.01), optimizer(learning_rate=0.01)
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(3):
        opt_straight.step(straight, grads_for(straight, rng_a))
        opt_split.step(split, grads_for(split, rng_b))
    np.savez(tmp_path / "state.npz", **opt_split.state())
    weights = split.to_model()
    with np.load(tmp_path / "state.npz") as data:
        loaded_state = {k: data[k] for k in data.files}
    resumed = CategoricalPolicy.from_model(weights) if kind == "categorical" else Policy.from_model(weights)
    opt_resumed = optimizer(learning_rate=0.01)
    opt_resumed.load_state(loaded_state)
    for _ in range(2):
        opt_straight.step(straight, grads_for(straight, rng_a))
        opt_resumed.step(resumed, grads_for(resumed, rng_b))
    for name, value in straight.to_model().items():
        np.testing.assert_array_equal(resumed.to_model()[name], value, err_msg=name)
    for name, value in opt_straight.state().items():
        np.testing.assert_array_equal(opt_resumed.state()[name], value, err_msg=name)


def test_state_before_any_step():
    assert RMSProp().state() == {}
    state = Adam().state()
    assert list(state) == ["step"] and int(state["step"]) == 0
    opt = Adam()
    opt.load_state(state)
    opt.step(CategoricalPolicy(seed=0), CategoricalPolicy(seed=0).gradient_buffer())
    assert opt.iterations == 1


def test_rmsprop_state_keys_and_values_for_the_tutorials_policy():
    policy, grads = _tutorial_case()
    opt = RMSProp(learning_rate=1e-3)
    opt.step(policy, grads)
    state = opt.state()
    assert sorted(state) == ["cache_W1", "cache_W2"]
    np.testing.assert_array_equal(state["cache_W1"], opt.cache.to_model()["W1"])


def test_rmsprop_on_a_categorical_policy_matches_the_tutorials_reference():
    policy = CategoricalPolicy(4, (17,), 3, seed=0)
    rng = np.random.default_rng(0)
    opt = RMSProp(learning_rate=1e-2, decay_rate=0.9)
    start = float64_copy(policy.to_model())
    ref_w = float64_copy(start)
    ref_cache = {k: np.zeros_like(v) for k, v in start.items()}
    for _ in range(5):
        grads = random_grads(policy, rng)
        reference.rmsprop_update(ref_w, float64_copy(grads), ref_cache, 1e-2, 0.9)
        opt.step(policy, grads)
        assert not any(np.any(g) for g in grads.values())
    state = opt.state()
    assert sorted(state) == sorted(f"cache_{k}" for k in start)
    for name, value in policy.to_model().items():
        assert_scaled_close(value - start[name], ref_w[name] - start[name], 5, name,
                            weights=start[name])
        assert_scaled_close(state[f"cache_{name}"], ref_cache[name], 5, f"cache {name}")


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    ({"learning_rate": float("nan")}, "learning_rate must be a positive number"),
    ({"learning_rate": 0}, "learning_rate must be a positive number"),
    ({"learning_rate": -1e-3}, "learning_rate must be a positive number"),
    ({"learning_rate": float("inf")}, "learning_rate must be a positive number"),
    ({"learning_rate": True}, "learning_rate must be a positive number"),
    ({"learning_rate": "1e-3"}, "learning_rate must be a positive number"),
    ({"beta_1": 1.0}, r"beta_1 must be in \[0, 1\)"),
    ({"beta_1": float("nan")}, r"beta_1 must be in \[0, 1\)"),
    ({"beta_2": -0.1}, r"beta_2 must be in \[0, 1\)"),
    ({"epsilon": 0.0}, "epsilon must be a positive number"),
    ({"epsilon": float("nan")}, "epsilon must be a positive number"),
])
def test_bad_adam_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Adam(**kwargs)


@pytest.mark.parametrize("arguments, message", [
    ({"learning_rate": float("nan")}, "learning_rate must be a positive number, got nan"),
    ({"beta_2": 1.0}, r"beta_2 must be in \[0, 1\), got 1.0"),
    ({"epsilon": -1.0}, "epsilon must be a positive number"),
    ({"step": 0}, "step must be a positive integer, got 0"),
])
def test_the_binding_checks_settings_itself(arguments, message):
    policy = CategoricalPolicy(seed=0)
    params, grads = policy.parameters(), policy.gradient_buffer()
    names = list(params)
    settings = {"learning_rate": 1e-3, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "step": 1}
    settings.update(arguments)
    with pytest.raises(ValueError, match=message):
        fastpong._core.adam_step_arrays(names, [params[n] for n in names],
                                        [grads[n] for n in names], [grads[n] for n in names],
                                        [grads[n] for n in names], **settings)


def _assert_nothing_changed(policy, before, opt, iterations):
    for name, value in policy.to_model().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    assert opt.iterations == iterations


@pytest.mark.parametrize("change, message", [
    (lambda g: g.pop("logits/bias"), r"grads must have the policy's names"),
    (lambda g: g.update({"extra": np.zeros(1, np.float32)}), r"grads must have the policy's names"),
    (lambda g: g.update({"logits/bias": np.zeros(2)}),
     r"grads\['logits/bias'\] must be a writable C-contiguous float32 array of shape \(2,\), got float64"),
    (lambda g: g.update({"logits/kernel": np.zeros((2, 32), np.float32)}),
     r"grads\['logits/kernel'\] must be .* of shape \(32, 2\), got float32 \(2, 32\)"),
    (lambda g: g.update({"logits/kernel": np.zeros((2, 32), np.float32).T}),
     "got a non-contiguous view"),
])
def test_bad_grads_change_nothing(change, message):
    policy = CategoricalPolicy(seed=0)
    opt = Adam()
    opt.step(policy, random_grads(policy, np.random.default_rng(0)))
    before = policy.to_model()
    grads = random_grads(policy, np.random.default_rng(1))
    change(grads)
    with pytest.raises(ValueError, match=message):
        opt.step(policy, grads)
    _assert_nothing_changed(policy, before, opt, 1)


def test_grads_must_be_a_dict_and_the_policy_must_have_parameters():
    with pytest.raises(ValueError, match="grads must be a dict"):
        Adam().step(CategoricalPolicy(seed=0), [np.zeros(1)])
    with pytest.raises(ValueError, match="policy must be a fastpong.Policy or have parameters"):
        Adam().step(object(), {})
    with pytest.raises(ValueError, match=r"grads\['W1'\] must have shape \(7, 33\)"):
        Adam().step(Policy(7, 33, seed=0), {"W1": np.zeros((33, 7)), "W2": np.zeros(7)})


def test_an_optimizer_stays_with_its_policy():
    opt = Adam()
    small = CategoricalPolicy(4, (8,), 2, seed=0)
    opt.step(small, small.gradient_buffer())
    other = CategoricalPolicy(4, (9,), 2, seed=0)  # the same names, other shapes
    with pytest.raises(ValueError, match=r"m\['dense_0/kernel'\] must be .* shape \(4, 9\)"):
        opt.step(other, random_grads(other, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="made for parameters .*dense_0/kernel.* tutorial's"):
        opt.step(Policy(7, 33, seed=0), Policy(7, 33, seed=0).gradient_buffer())
    deeper = CategoricalPolicy(4, (8, 8), 2, seed=0)
    with pytest.raises(ValueError, match="made for parameters"):
        opt.step(deeper, deeper.gradient_buffer())
    tutorial_opt = RMSProp()
    tutorial_opt.step(Policy(7, 33, seed=0), Policy(7, 33, seed=0).gradient_buffer())
    with pytest.raises(ValueError, match=r"made for parameters \['W1', 'W2'\]"):
        tutorial_opt.step(small, small.gradient_buffer())


def _adam_state(policy, **changes):
    opt = Adam()
    opt.step(policy, random_grads(policy, np.random.default_rng(0)))
    state = opt.state()
    state.update(changes)
    return {k: v for k, v in state.items() if v is not None}


@pytest.mark.parametrize("changes, message", [
    ({"step": None}, "Adam state is missing 'step'"),
    ({"step": np.array(-1)}, r"Adam state\['step'\] must be an integer >= 0"),
    ({"step": np.array(1.5)}, r"Adam state\['step'\] must be an integer >= 0"),
    ({"step": np.array([1, 2])}, r"Adam state\['step'\] must be an integer >= 0"),
    ({"v_logits/bias": None}, "must have m_ and v_ for the same names"),
    ({"v_logits/bias": np.zeros(3, np.float32)}, r"must have the same shape, got \(2,\) and \(3,\)"),
    ({"m_logits/bias": np.array([np.nan, 0.0])}, r"Adam state\['m_logits/bias'\] must be finite"),
    ({"v_logits/bias": np.array([-1.0, 0.0])}, r"Adam state\['v_logits/bias'\] must be >= 0"),
    ({"v_logits/bias": np.array(["a", "b"])}, "must be a real array"),
    ({"w_logits/bias": np.zeros(2)}, "Adam state has an unknown key 'w_logits/bias'"),
])
def test_bad_adam_state(changes, message):
    policy = CategoricalPolicy(seed=0)
    state = _adam_state(policy, **changes)
    opt = Adam()
    with pytest.raises(ValueError, match=message):
        opt.load_state(state)
    assert opt.iterations == 0 and opt.m is None


def test_adam_state_is_checked_against_the_policy():
    policy = CategoricalPolicy(seed=0)
    state = _adam_state(policy)
    other = CategoricalPolicy(4, (16,), 2, seed=0)
    with pytest.raises(ValueError, match=r"state\['m_dense_0/kernel'\] must have shape \(4, 16\)"):
        Adam().load_state(state, other)
    # Without a policy the check waits for the first step, and that step changes nothing.
    opt = Adam()
    opt.load_state(state)
    before = other.to_model()
    with pytest.raises(ValueError, match=r"must have shape \(4, 16\), got \(4, 32\)"):
        opt.step(other, other.gradient_buffer())
    _assert_nothing_changed(other, before, opt, 1)
    # An optimizer that has stepped checks at once.
    stepped = Adam()
    stepped.step(other, other.gradient_buffer())
    with pytest.raises(ValueError, match=r"must have shape \(4, 16\)"):
        stepped.load_state(state)
    tutorial_state = _adam_state(Policy(7, 33, seed=0))
    with pytest.raises(ValueError, match=r"has m_ arrays for \['W1', 'W2'\], but the policy's"):
        Adam().load_state(tutorial_state, policy)
    with pytest.raises(ValueError, match=r"state\['m_W1'\] must have shape \(8, 33\)"):
        Adam().load_state(tutorial_state, Policy(8, 33, seed=0))
    with pytest.raises(ValueError, match="step 3 but no m_ and v_ arrays"):
        Adam().load_state({"step": np.array(3)})
    with pytest.raises(ValueError, match="Adam state must be a mapping"):
        Adam().load_state([1, 2])


def test_bad_rmsprop_state():
    policy, grads = _tutorial_case()
    opt = RMSProp()
    opt.step(policy, grads)
    state = opt.state()
    with pytest.raises(ValueError, match=r"RMSProp state\['cache_W2'\] must be >= 0"):
        RMSProp().load_state({**state, "cache_W2": -np.ones(7)})
    with pytest.raises(ValueError, match="RMSProp state has an unknown key 'W1'"):
        RMSProp().load_state({**state, "W1": np.zeros((7, 33))})
    with pytest.raises(ValueError, match=r"state\['cache_W1'\] must have shape \(7, 33\)"):
        opt.load_state({**state, "cache_W1": np.zeros((33, 7))})
    with pytest.raises(ValueError, match=r"RMSProp state\['cache_W1'\] must be finite"):
        RMSProp().load_state({**state, "cache_W1": np.full((7, 33), np.inf)})
    np.testing.assert_array_equal(opt.state()["cache_W1"], state["cache_W1"])  # unchanged
    fresh = RMSProp()
    fresh.load_state(state, policy)
    np.testing.assert_array_equal(fresh.cache.to_model()["W1"], state["cache_W1"])
