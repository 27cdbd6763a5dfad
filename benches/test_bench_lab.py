"""The MIT lab's kernels, reference (``fastpong.reference.lab``, NumPy float64) and fast path side
by side, one pytest-benchmark group per kernel and size.

As in test_bench_kernels.py, every test times one path and checks what the timed call returned
against the other path's result. Observations come from real CartPole-v1 play (random actions,
episodes back to back), advantages are the lab's normalized discounted returns (gamma 0.95, no
reset), and the weights are Keras-initialized with random biases. "576-128-6" is a larger dense
head (the size of a small CNN's flattened features into the lab's Pong Dense(128) and 6 actions).
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium
import numpy as np
import pytest
from test_bench_kernels import assert_close

import fastpong
from fastpong import reference
from fastpong.reference import lab

CARTPOLE = (4, (32,), 2)
LARGE = (576, (128,), 6)
#: Adam steps restore their start state before every round (untimed), so that each timed call is
#: one step from the same state and its result can be held to the other path's.
ADAM_ROUNDS = {"reference": 20, "fast": 60}
#: Each benchmark runs once per path; benches/speedups.py pairs "[fast]" with "[reference]".
BOTH_PATHS = pytest.mark.parametrize("path", ["reference", "fast"])


@dataclass
class Net:
    policy: fastpong.CategoricalPolicy
    model: dict  # the same weights in float64


def make_net(shape, seed=0) -> Net:
    policy = fastpong.CategoricalPolicy(*shape, seed=seed)
    rng = np.random.default_rng(seed)
    for name, value in policy.parameters().items():
        if name.endswith("/bias"):
            value[...] = rng.uniform(-0.1, 0.1, value.shape)
    return Net(policy, {k: v.astype(np.float64) for k, v in policy.to_model().items()})


@pytest.fixture(scope="module")
def cartpole_obs() -> np.ndarray:
    """1000 observations of CartPole-v1 played with random actions, episodes back to back."""
    env = gymnasium.make("CartPole-v1")
    rng = np.random.default_rng(0)
    observations = []
    observation, _ = env.reset(seed=0)
    while len(observations) < 1000:
        observations.append(observation)
        observation, _, terminated, truncated, _ = env.step(int(rng.integers(2)))
        if terminated or truncated:
            observation, _ = env.reset()
    env.close()
    return np.asarray(observations, dtype=np.float32)


@pytest.fixture(scope="module")
def cartpole() -> Net:
    return make_net(CARTPOLE)


@pytest.fixture(scope="module")
def large() -> Net:
    return make_net(LARGE)


# --- lab-forward: observations -> action probabilities ---------------------------------------------
# The reference gets the whole batch in one call (matrix products), its strongest form.


def _time_forward(benchmark, net: Net, obs, path: str) -> None:
    if path == "reference":
        probs = benchmark(lambda: lab.forward(obs, net.model)[2])
        assert_close(net.policy.forward(obs), probs, what="probs")
    else:
        probs = benchmark(net.policy.forward, obs)
        assert probs.dtype == np.float32 and probs.shape == (len(obs), net.policy.num_actions)
        assert_close(probs, lab.forward(obs, net.model)[2], what="probs")


@pytest.mark.benchmark(group="lab-forward-cartpole-1")
@BOTH_PATHS
def test_lab_forward_cartpole_1(benchmark, cartpole, cartpole_obs, path):
    _time_forward(benchmark, cartpole, cartpole_obs[:1], path)


@pytest.mark.benchmark(group="lab-forward-cartpole-8")
@BOTH_PATHS
def test_lab_forward_cartpole_8(benchmark, cartpole, cartpole_obs, path):
    _time_forward(benchmark, cartpole, cartpole_obs[:8], path)


def _large_obs(n=8):
    return np.random.default_rng(1).standard_normal((n, LARGE[0])).astype(np.float32)


@pytest.mark.benchmark(group="lab-forward-576-128-6-batch8")
@BOTH_PATHS
def test_lab_forward_large(benchmark, large, path):
    _time_forward(benchmark, large, _large_obs(), path)


# --- lab-gradient: one episode's gradient of J = mean_t A_t log pi(a_t|s_t) ----------------------


def _episode(net: Net, obs):
    """Actions sampled from the policy, advantages as the lab computes them for CartPole."""
    rng = np.random.default_rng(2)
    actions = lab.sample_actions(lab.forward(obs, net.model)[2], rng.uniform(size=len(obs)))
    returns = lab.discount_rewards(np.ones(len(obs)), 0.95, reset_at_points=False)
    return actions, lab.normalize(returns).astype(np.float32)


def _assert_gradients(actual: dict, expected: dict) -> None:
    for name, value in expected.items():
        assert_close(actual[name], value, what=name)


def _time_gradient(benchmark, net: Net, obs, path: str) -> None:
    actions, advantages = _episode(net, obs)
    benchmark.extra_info["steps"] = len(obs)
    if path == "reference":
        grads = benchmark(lab.policy_gradient, obs, actions, advantages, net.model)
        expected = net.policy.gradient_buffer()
        net.policy.accumulate_gradient(obs, actions, advantages, expected)
        _assert_gradients(expected, grads)
        return
    grads = net.policy.gradient_buffer()

    # accumulate_gradient adds into grads: zeroing them is timed too, as the reference pays for
    # its fresh arrays.
    def gradient():
        for value in grads.values():
            value.fill(0.0)
        net.policy.accumulate_gradient(obs, actions, advantages, grads)
        return grads

    result = benchmark(gradient)
    _assert_gradients(result, lab.policy_gradient(obs, actions, advantages, net.model))


@pytest.mark.benchmark(group="lab-gradient-200")
@BOTH_PATHS
def test_lab_gradient_200(benchmark, cartpole, cartpole_obs, path):
    _time_gradient(benchmark, cartpole, cartpole_obs[:200], path)


@pytest.mark.benchmark(group="lab-gradient-500")
@BOTH_PATHS
def test_lab_gradient_500(benchmark, cartpole, cartpole_obs, path):
    _time_gradient(benchmark, cartpole, cartpole_obs[:500], path)


# --- adam: one step from a mid-training state (step 5, nonzero moments) --------------------------


@dataclass
class AdamCase:
    weights: dict  # float64 start (float32 values)
    grads: dict  # float64 (float32 values)
    m: dict
    v: dict
    expected: dict  # weights after one reference step (what the fast path is held to)
    fast: dict  # weights after one fast step, untimed (what the reference is held to)


def _adam_case(weights: dict, policy_from_model, seed=0) -> AdamCase:
    rng = np.random.default_rng(seed)
    f32 = lambda a: a.astype(np.float32).astype(np.float64)  # noqa: E731 (values both paths hold)
    weights = {k: f32(v) for k, v in weights.items()}
    grads = {k: f32(rng.standard_normal(v.shape) * 1e-2) for k, v in weights.items()}
    m = {k: f32(g * 0.5) for k, g in grads.items()}
    v = {k: f32(g * g * 0.8) for k, g in grads.items()}
    expected = {k: w.copy() for k, w in weights.items()}
    lab.adam_update(expected, dict(grads), {k: a.copy() for k, a in m.items()},
                    {k: a.copy() for k, a in v.items()}, 5)
    case = AdamCase(weights, grads, m, v, expected, fast={})
    # Each path is checked against the other: the reference's timed step against this untimed
    # fast step, so that a fault in lab.adam_update shows in the [reference] case too.
    policy, grads_buffer, load_grads = _fast_state(policy_from_model, case)
    optimizer = _loaded_adam(case, policy, grads_buffer, load_grads)
    optimizer.step(policy, grads_buffer)
    case.fast.update({k: np.asarray(w, np.float64) for k, w in policy.to_model().items()})
    return case


def _fast_state(policy_from_model, case: AdamCase):
    """A policy built from the case's weights, its gradient buffer and a loader for it."""
    policy = policy_from_model(case.weights)
    grads = policy.gradient_buffer()
    if isinstance(grads, dict):
        def load_grads(values):
            for k, value in values.items():
                grads[k][...] = value
    else:
        load_grads = grads.load_model
    return policy, grads, load_grads


def _loaded_adam(case: AdamCase, policy, grads, load_grads, opt=None):
    """The case's start state loaded into policy, grads and an Adam (step 4 done, 5 next)."""
    opt = opt or fastpong.Adam()
    state = {"step": np.array(4), **{f"m_{k}": a for k, a in case.m.items()},
             **{f"v_{k}": a for k, a in case.v.items()}}
    policy.load_model(case.weights)
    load_grads(case.grads)
    opt.load_state(state, policy)
    return opt


def _assert_adam_step(weights: dict, case: AdamCase, expected: dict) -> None:
    for name, start in case.weights.items():
        change = np.asarray(weights[name], np.float64) - start
        assert np.any(change != 0), f"{name} did not move"
        assert_close(change, expected[name] - start, rtol=1e-3, scale_atol=1e-3,
                     what=f"{name} change")


def _time_adam_reference(benchmark, case: AdamCase) -> None:
    model, grads, m, v = ({k: a.copy() for k, a in d.items()}
                          for d in (case.weights, case.grads, case.m, case.v))

    def setup():
        for target, source in ((model, case.weights), (m, case.m), (v, case.v)):
            for k in target:
                np.copyto(target[k], source[k])
        grads.update(case.grads)
        return (model, grads, m, v, 5), {}

    def step(model, grads, m, v, t):
        lab.adam_update(model, grads, m, v, t)
        return model

    result = benchmark.pedantic(step, setup=setup, rounds=ADAM_ROUNDS["reference"],
                                warmup_rounds=1)
    _assert_adam_step(result, case, case.fast)


def _time_adam_fast(benchmark, case: AdamCase, policy_from_model) -> None:
    policy, grads, load_grads = _fast_state(policy_from_model, case)
    opt = fastpong.Adam()

    def setup():
        _loaded_adam(case, policy, grads, load_grads, opt)

    def step():
        opt.step(policy, grads)
        return policy

    result = benchmark.pedantic(step, setup=setup, rounds=ADAM_ROUNDS["fast"], warmup_rounds=2)
    _assert_adam_step(result.to_model(), case, case.expected)


def _time_adam(benchmark, case: AdamCase, path: str, policy_from_model) -> None:
    """The fast path steps a policy built by policy_from_model(weights)."""
    if path == "reference":
        _time_adam_reference(benchmark, case)
    else:
        _time_adam_fast(benchmark, case, policy_from_model)


@pytest.fixture(scope="module")
def adam_cartpole(cartpole) -> AdamCase:
    return _adam_case(cartpole.model, fastpong.CategoricalPolicy.from_model)


@pytest.mark.benchmark(group="adam-cartpole")
@BOTH_PATHS
def test_adam_cartpole(benchmark, adam_cartpole, path):
    _time_adam(benchmark, adam_cartpole, path, fastpong.CategoricalPolicy.from_model)


@pytest.fixture(scope="module")
def adam_tutorial() -> AdamCase:
    return _adam_case(reference.init_model(200, reference.INPUT_SIZE, 0), fastpong.Policy.from_model)


@pytest.mark.benchmark(group="adam-tutorial-1.28M")
@BOTH_PATHS
def test_adam_tutorial(benchmark, adam_tutorial, path):
    _time_adam(benchmark, adam_tutorial, path, fastpong.Policy.from_model)
