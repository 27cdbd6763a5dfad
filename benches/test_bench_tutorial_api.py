"""The tutorial-shaped API against the tutorial's NumPy, side by side (issue #20).

What a reader of the notebook calls with the tutorial's own arrays, rather than fastpong's
EpisodeBuffer and GradientBuffer (test_bench_kernels.py): ``Policy.backward(eph, epx, epdlogp)``
on a dense 1,000-step episode of real frame differences, and ``RMSProp.step(policy, {"W1": ...,
"W2": ...})`` with the gradient dict that backward returns. Each group holds the reference and the
fast call; every result is held to the other side's. Compare the ratio within one run, on one
machine: ``pytest benches/test_bench_tutorial_api.py --benchmark-columns=min,median``.
"""

import numpy as np
import pytest
from test_bench_kernels import RMSPROP_ROUNDS, _assert_gradients, _assert_rmsprop_step

import fastpong
from fastpong import reference
from pong_data import DECAY_RATE, LEARNING_RATE


def _float32(*arrays):
    return tuple(np.ascontiguousarray(a, dtype=np.float32) for a in arrays)


@pytest.mark.benchmark(group="backward-dense")
def test_backward_dense_reference(benchmark, episode, model, policy):
    t = episode.tutorial
    grads = benchmark(reference.policy_backward, t.eph, t.epx, episode.epdlogp, model)
    _assert_gradients(policy.backward(*_float32(t.eph, t.epx, episode.epdlogp)), grads)


@pytest.mark.benchmark(group="backward-dense")
def test_backward_dense_fast(benchmark, episode, policy):
    """The tutorial's stacks in float32, the precision the kernel takes."""
    t = episode.tutorial
    args = _float32(t.eph, t.epx, episode.epdlogp)
    benchmark.extra_info["nonzeros_per_step"] = float(np.count_nonzero(args[1]) / len(args[1]))
    grads = benchmark(policy.backward, *args)
    _assert_gradients(grads, episode.expected)


@pytest.mark.benchmark(group="rmsprop-dict")
def test_rmsprop_dict_reference(benchmark, rmsprop_case):
    case = rmsprop_case
    model = {k: v.copy() for k, v in case.weights.items()}
    grads = {}

    def setup():
        for k in model:
            np.copyto(model[k], case.weights[k])
        grads.clear()
        grads.update({k: v.copy() for k, v in case.grads.items()})
        return (model, grads, {k: v.copy() for k, v in case.cache.items()}), {}

    def step(model, grad_buffer, cache):
        reference.rmsprop_update(model, grad_buffer, cache, LEARNING_RATE, DECAY_RATE)
        return model, cache

    weights, cache = benchmark.pedantic(step, setup=setup, rounds=RMSPROP_ROUNDS["reference"], warmup_rounds=1)
    assert not np.any(grads["W1"]), "the step must zero the gradients"
    _assert_rmsprop_step(weights, cache, case.weights, case.expected_fast)


@pytest.mark.benchmark(group="rmsprop-dict")
def test_rmsprop_dict_fast(benchmark, rmsprop_case):
    """The step from the tutorial-shaped dict of float32 gradients, as Policy.backward returns it."""
    case = rmsprop_case
    policy = fastpong.Policy.from_model(case.weights)
    opt = fastpong.RMSProp(LEARNING_RATE, DECAY_RATE)
    opt.cache = policy.gradient_buffer()
    grads = {k: np.zeros(v.shape, np.float32) for k, v in case.grads.items()}

    def setup():
        policy.load_model(case.weights)
        opt.cache.load_model(case.cache)
        for k in grads:
            np.copyto(grads[k], case.grads[k], casting="same_kind")

    def step():
        opt.step(policy, grads)
        return policy

    result = benchmark.pedantic(step, setup=setup, rounds=RMSPROP_ROUNDS["fast"], warmup_rounds=2)
    assert not np.any(grads["W1"]) and not np.any(grads["W2"]), "the step must zero the gradients"
    _assert_rmsprop_step(result.to_model(), opt.cache.to_model(), case.weights, case.expected_reference)
