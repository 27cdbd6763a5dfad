"""The actor-critic agent (--agent ppo): one PPO minibatch step and GAE, three ways side by side.

- reference: ``fastpong.reference.ppo`` (float64; the loss per sample, the CNN tap by tap);
- numpy32: the same network in NumPy float32 as a user would write it (im2col + matmul,
  ``cnn_numpy32``), with fastpong's vectorized loss;
- fast: fastpong (the trunk forward and backward in C++, the heads and the loss in NumPy).

A minibatch step is what PPO's update repeats (epochs x minibatches times per rollout): the
forward pass on 256 frame changes, the loss's gradient at the policy and value heads, and the
backward pass to every parameter (fast also on the frame-and-change input of the same frames).
The data are real: 256 steps of ALE/Pong-v5 played at random, the frame changes the agent sees.
Every timed result is checked against another path's.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from fastpong.nn.actor_critic import ActorCriticCNN, gae, ppo_loss_gradient
from fastpong.reference import ppo as ref
from fastpong.training.blas_threads import blas_limit_for

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cnn_numpy32  # noqa: E402
from pong_data import lab_inputs  # noqa: E402

MINIBATCH = 256
LOSS = dict(clip=0.1, entropy_coef=0.01, value_coef=0.5)


@pytest.fixture(scope="session")
def ppo_batch():
    """256 real frame changes of ALE/Pong-v5 (random play), with PPO's per-sample inputs."""
    rng = np.random.default_rng(0)
    inputs = lab_inputs(MINIBATCH, rng, kinds=ref.OBSERVATIONS)
    x = inputs[ref.CHANGE]
    net = ActorCriticCNN(seed=0)
    # Biases of both signs and a policy head grown from its 0.01 start, as after some training.
    for name, value in net.parameters().items():
        if name.endswith("/bias"):
            value[...] = rng.normal(0, 0.05, value.shape)
    net.parameters()["logits/kernel"][...] *= 30
    logits, values = net.logits_and_values(x)
    actions = rng.integers(0, 6, MINIBATCH)
    log_p = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) \
        - logits.max(1, keepdims=True)
    old_log_probs = log_p[np.arange(MINIBATCH), actions] + rng.normal(0, 0.05, MINIBATCH).astype(np.float32)
    advantages = rng.normal(size=MINIBATCH).astype(np.float32)
    returns = (values + rng.normal(size=MINIBATCH)).astype(np.float32)
    old_values = (values + rng.normal(0, 0.1, MINIBATCH)).astype(np.float32)
    # The same frames as --observation frame-and-change gives them (for the step's cost: the
    # loss's inputs above stay those of the change).
    return dict(net=net, x=x, actions=actions, old_log_probs=old_log_probs, advantages=advantages,
                returns=returns, old_values=old_values, x_frame_and_change=inputs[ref.FRAME_AND_CHANGE])


def loss_args(b):
    return b["actions"], b["old_log_probs"], b["advantages"], b["returns"], b["old_values"]


def fast_step(b):
    net = b["net"]
    grads = net.gradient_buffer()
    logits, values, cache = net.forward_for_gradient(b["x"])
    _, grad_logits, grad_values = ppo_loss_gradient(logits, values, *loss_args(b), **LOSS)
    net.accumulate_gradient(b["x"], grad_logits, grad_values, grads, cache)
    return grads


def numpy32_step(params32, b):
    logits, cache = cnn_numpy32.forward(params32, b["x"])
    hidden = cache[2]
    values = (hidden @ params32["value/kernel"])[:, 0] + params32["value/bias"][0]
    _, grad_logits, grad_values = ppo_loss_gradient(logits, values, *loss_args(b), **LOSS)
    grads = {name: np.zeros_like(value) for name, value in params32.items()}
    grads["value/kernel"] += hidden.T @ grad_values[:, None]
    grads["value/bias"] += grad_values.sum(keepdims=True)
    cnn_numpy32.backward(params32, cache, grad_logits, grads,
                         d_hidden=grad_values[:, None] @ params32["value/kernel"].T)
    return grads


def check(actual: dict, expected: dict, what: str, rtol=1e-3, floor=1e-4):
    for name in ref.PARAMETER_NAMES:
        want = np.asarray(expected[name], np.float64)
        np.testing.assert_allclose(actual[name], want, rtol=rtol,
                                   atol=floor * float(np.abs(want).max(initial=1e-30)),
                                   err_msg=f"{what}: {name}")


@pytest.mark.benchmark(group="ppo-minibatch-256")
def test_ppo_minibatch_reference(benchmark, ppo_batch):
    params = {k: v.astype(np.float64) for k, v in ppo_batch["net"].to_model().items()}
    _, _, grads = benchmark.pedantic(ref.loss_gradient, rounds=1, iterations=1,
                                     args=(params, ppo_batch["x"], *loss_args(ppo_batch)), kwargs=LOSS)
    check(fast_step(ppo_batch), grads, "fast vs reference")


@pytest.mark.benchmark(group="ppo-minibatch-256")
def test_ppo_minibatch_numpy32(benchmark, ppo_batch):
    params32 = ppo_batch["net"].to_model()
    grads = benchmark.pedantic(numpy32_step, rounds=3, iterations=1, args=(params32, ppo_batch))
    check(grads, fast_step(ppo_batch), "numpy32 vs fast")


@pytest.mark.benchmark(group="ppo-minibatch-256")
def test_ppo_minibatch_fast(benchmark, ppo_batch):
    """As training runs it: NumPy's BLAS on one thread (training/blas_threads.py), the cores left to
    the C++ kernels between the heads' small products."""
    with blas_limit_for("fast"):
        grads = benchmark.pedantic(fast_step, rounds=10, iterations=1, args=(ppo_batch,))
    check(grads, numpy32_step(ppo_batch["net"].to_model(), ppo_batch), "fast vs numpy32")


@pytest.mark.benchmark(group="ppo-minibatch-256")
def test_ppo_minibatch_fast_frame_and_change(benchmark, ppo_batch):
    """The fast step on the same frames as --observation frame-and-change shows them: the still
    paddles and ball are nonzero inputs the sparse kernels visit, which the change leaves out."""
    batch = dict(ppo_batch, x=ppo_batch["x_frame_and_change"])
    with blas_limit_for("fast"):
        grads = benchmark.pedantic(fast_step, rounds=10, iterations=1, args=(batch,))
    check(grads, numpy32_step(batch["net"].to_model(), batch), "fast vs numpy32")


@pytest.mark.benchmark(group="ppo-minibatch-256")
def test_ppo_minibatch_fast_default_blas_threads(benchmark, ppo_batch):
    """The same step with NumPy's BLAS threads as NumPy sets them: what the limit saves."""
    grads = benchmark.pedantic(fast_step, rounds=10, iterations=1, args=(ppo_batch,))
    check(grads, numpy32_step(ppo_batch["net"].to_model(), ppo_batch), "fast vs numpy32")


# --- GAE over a rollout of 128 steps x 8 environments ------------------------------------------

@pytest.fixture(scope="session")
def rollout():
    rng = np.random.default_rng(1)
    shape = (128, 8)
    return dict(rewards=rng.choice([-1.0, 0.0, 0.0, 0.0, 0.0, 1.0], size=shape).astype(np.float32),
                values=rng.normal(size=shape).astype(np.float32),
                dones=rng.random(shape) < 0.01, last=rng.normal(size=8).astype(np.float32))


def run_gae(fn, r):
    return fn(r["rewards"], r["values"], r["dones"], r["last"], 0.99, 0.95)


@pytest.mark.benchmark(group="ppo-gae-128x8")
def test_gae_reference(benchmark, rollout):
    advantages, _ = benchmark(run_gae, ref.gae, rollout)
    np.testing.assert_allclose(run_gae(gae, rollout)[0], advantages, rtol=1e-5, atol=1e-5)


@pytest.mark.benchmark(group="ppo-gae-128x8")
def test_gae_fast(benchmark, rollout):
    advantages, _ = benchmark(run_gae, gae, rollout)
    np.testing.assert_allclose(advantages, run_gae(ref.gae, rollout)[0], rtol=1e-5, atol=1e-5)
