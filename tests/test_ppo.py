"""The actor-critic agent (--agent ppo): its fast path held to the float64 reference.

GAE against a plain loop, PPO's loss and its gradient at the heads against the per-sample
formulas (and those against finite differences), the network's backward pass against the
reference's chain rule, the rollout's bookkeeping across lanes, and the agent end to end through
the training loop, checkpoints and the command line.

Tolerances: the fast path is float32. GAE sums about 1 / (1 - gamma lambda) ~ 16 terms, so its
error is a few float32 epsilons of the largest |value|; the gradients are sums of up to a few
thousand products, held at rtol 1e-4 with an absolute floor of 1e-5 of the tensor's largest entry
(measured: ~1e-7 relative).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from fastpong.nn.actor_critic import ActorCriticCNN, gae, ppo_loss_gradient
from fastpong.agents.ppo import Rollout, clip_global_norm, explained_variance
from fastpong.reference import ppo as ref

LOSS = dict(clip=0.1, entropy_coef=0.01, value_coef=0.5)
EPS32 = np.finfo(np.float32).eps


def frame_changes(rng, n: int, nonzero: int = 17, values=(-1.0, 1.0)) -> np.ndarray:
    """n sparse 40x40 frame changes in {-1, 0, 1}, about as many nonzeros as Pong gives (with
    FRAME_AND_CHANGE, inputs as --observation frame-and-change gives: denser, down to -2)."""
    x = np.zeros((n, 40, 40), dtype=np.float32)
    for i in range(n):
        at = rng.choice(1600, nonzero, replace=False)
        x[i].flat[at] = rng.choice(values, nonzero)
    return x


#: frame_changes' settings for the frame-and-change input: paddles and ball always there.
FRAME_AND_CHANGE = dict(nonzero=60, values=(-2.0, -1.0, 1.0))


def assert_close_tensors(fast: dict, reference: dict, rtol=1e-4, floor=1e-5):
    for name, want in reference.items():
        got = fast[name]
        assert got.shape == want.shape, name
        atol = floor * float(np.abs(want).max()) if want.size else 0.0
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=name)


def float64_params(net: ActorCriticCNN) -> dict:
    return {k: v.astype(np.float64) for k, v in net.to_model().items()}


# --- GAE ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("steps,envs", [(1, 1), (1, 5), (7, 1), (128, 8), (33, 3)])
def test_gae_matches_the_reference_loop(steps, envs):
    rng = np.random.default_rng(steps * 100 + envs)
    rewards = rng.choice([-1.0, 0.0, 0.0, 0.0, 1.0], size=(steps, envs))
    values = rng.normal(size=(steps, envs))
    dones = rng.random((steps, envs)) < 0.1
    last = rng.normal(size=envs)
    adv, ret = gae(rewards, values, dones, last, 0.99, 0.95)
    want_adv, want_ret = ref.gae(rewards, values, dones, last, 0.99, 0.95)
    scale = 20 * EPS32 * max(1.0, float(np.abs(want_ret).max()))
    np.testing.assert_allclose(adv, want_adv, rtol=0, atol=scale)
    np.testing.assert_allclose(ret, want_ret, rtol=0, atol=scale)


def test_gae_stops_at_episode_ends_and_bootstraps_the_rest():
    # One env, three steps; the episode ends at step 1: step 2 starts a new one.
    rewards = np.array([[0.0], [1.0], [0.0]])
    values = np.array([[0.5], [0.25], [2.0]])
    dones = np.array([[False], [True], [False]])
    gamma, lam = 0.9, 0.5
    adv, _ = ref.gae(rewards, values, dones, np.array([4.0]), gamma, lam)
    a2 = 0.0 + gamma * 4.0 - 2.0  # bootstrapped from last_values
    a1 = 1.0 - 0.25  # the episode ended: no value after it, nothing from step 2
    a0 = (0.0 + gamma * 0.25 - 0.5) + gamma * lam * a1
    np.testing.assert_allclose(adv[:, 0], [a0, a1, a2])
    fast, _ = gae(rewards, values, dones, np.array([4.0]), gamma, lam)
    np.testing.assert_allclose(fast, adv, rtol=1e-6)


def test_gae_of_an_empty_rollout_is_empty():
    adv, ret = gae(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros((0, 2), bool), np.zeros(2), 0.99, 0.95)
    assert adv.shape == ret.shape == (0, 2)


# --- the loss and its gradient at the heads ------------------------------------------------------

def loss_inputs(rng, n: int, spread: float = 0.3):
    logits = rng.normal(size=(n, 6))
    values = rng.normal(size=n)
    actions = rng.integers(0, 6, n)
    log_p = ref.cnn.log_softmax(logits)[np.arange(n), actions]
    # Old log-probabilities spread so that many ratios leave [0.9, 1.1] on both sides.
    old_log_probs = log_p + rng.normal(0, spread, n)
    advantages = rng.normal(size=n)
    returns = values + rng.normal(size=n)
    old_values = values + rng.normal(0, 0.2, n)
    return logits, values, actions, old_log_probs, advantages, returns, old_values


def reference_head_gradient(logits, values, *rest, **settings):
    """The reference's gradient at the heads, through a network whose heads are the identity:
    loss_gradient's per-sample formulas, recovered by finite differences of ppo_loss instead."""
    def loss(z, v):
        return ref.ppo_loss(z, v, *rest, **settings)[0]

    h = 1e-6
    grad_logits = np.zeros_like(logits)
    for i in np.ndindex(logits.shape):
        up, down = logits.copy(), logits.copy()
        up[i] += h
        down[i] -= h
        grad_logits[i] = (loss(up, values) - loss(down, values)) / (2 * h)
    grad_values = np.zeros_like(values)
    for i in range(len(values)):
        up, down = values.copy(), values.copy()
        up[i] += h
        down[i] -= h
        grad_values[i] = (loss(logits, up) - loss(logits, down)) / (2 * h)
    return grad_logits, grad_values


@pytest.mark.parametrize("n", [1, 2, 7, 64])
@pytest.mark.parametrize("clip_value", [True, False])
def test_loss_gradient_at_the_heads_matches_finite_differences(n, clip_value):
    rng = np.random.default_rng(n + 10 * clip_value)
    inputs = loss_inputs(rng, n)
    settings = dict(LOSS, clip_value=clip_value)
    stats, grad_logits, grad_values = ppo_loss_gradient(*inputs, **settings)
    want_logits, want_values = reference_head_gradient(*inputs, **settings)
    # Finite differences in float64 (h = 1e-6) are good to ~1e-9; the fast path is float32.
    np.testing.assert_allclose(grad_logits, want_logits, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grad_values, want_values, rtol=1e-4, atol=1e-6)
    loss, want_stats = ref.ppo_loss(*inputs, **settings)
    for name, value in want_stats.items():
        assert stats[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    assert stats["loss"] == pytest.approx(loss, rel=1e-5, abs=1e-6)


def test_clipping_shows_in_the_statistics_and_removes_the_gradient():
    rng = np.random.default_rng(3)
    logits, values, actions, _, advantages, returns, old_values = loss_inputs(rng, 50)
    log_p = ref.cnn.log_softmax(logits)[np.arange(50), actions]
    # Every ratio is e = 2.7, far outside [0.9, 1.1], and the advantages are positive: the clipped
    # term is the smaller loss, so the max picks... the unclipped -A r is below -A * 1.1: clipped.
    stats, grad_logits, _ = ppo_loss_gradient(logits, values, actions, log_p - 1.0, np.abs(advantages),
                                              returns, old_values, clip=0.1, entropy_coef=0.0,
                                              value_coef=0.5, normalize_advantages=False)
    assert stats["clip_fraction"] == 1.0
    assert stats["approx_kl"] == pytest.approx(np.e - 2, rel=1e-5)
    np.testing.assert_array_equal(grad_logits, 0.0)


def test_an_empty_minibatch_is_refused():
    with pytest.raises(ValueError, match="at least one step"):
        ppo_loss_gradient(np.zeros((0, 6)), np.zeros(0), np.zeros(0, int), np.zeros(0), np.zeros(0),
                          np.zeros(0), np.zeros(0), **LOSS)


# --- the network --------------------------------------------------------------------------------

@pytest.mark.parametrize("inputs", [{}, FRAME_AND_CHANGE], ids=["change", "frame-and-change"])
def test_outputs_match_the_reference(inputs):
    rng = np.random.default_rng(0)
    net = ActorCriticCNN(seed=4)
    x = frame_changes(rng, 9, **inputs)
    x[3] = 0.0  # an all-zero frame (a still screen, or an episode's first step)
    logits, values = net.logits_and_values(x)
    want_logits, want_values, _ = ref.forward(x, float64_params(net))
    np.testing.assert_allclose(logits, want_logits, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(values, want_values, rtol=1e-4, atol=1e-6)
    probs = net.forward(x)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)


def test_initial_policy_is_nearly_uniform():
    net = ActorCriticCNN(seed=0)
    probs = net.forward(frame_changes(np.random.default_rng(1), 20))
    np.testing.assert_allclose(probs, 1 / 6, atol=0.01)


@pytest.mark.parametrize("inputs", [{}, FRAME_AND_CHANGE], ids=["change", "frame-and-change"])
@pytest.mark.parametrize("steps", [1, 5, 300])  # 300: past the backward pass's chunk of 128, in three
def test_backward_from_any_head_gradient_matches_the_reference(steps, inputs):
    rng = np.random.default_rng(steps)
    net = ActorCriticCNN(seed=steps)
    x = frame_changes(rng, steps, **inputs)
    if steps > 1:
        x[0] = 0.0
    grad_logits = rng.normal(0, 0.01, (steps, 6)).astype(np.float32)
    grad_values = rng.normal(0, 0.01, steps).astype(np.float32)
    grads = net.gradient_buffer()
    net.accumulate_gradient(x, grad_logits, grad_values, grads)
    want = ref.network_gradient(float64_params(net), x, grad_logits, grad_values)
    assert_close_tensors(grads, want)
    # It adds: a second call doubles every entry.
    net.accumulate_gradient(x, grad_logits, grad_values, grads)
    assert_close_tensors(grads, {k: 2 * v for k, v in want.items()})


def test_whole_loss_gradient_matches_the_reference_and_finite_differences():
    rng = np.random.default_rng(11)
    net = ActorCriticCNN(seed=11)
    # Nonzero biases: with Keras' zero biases every conv output that sees no input sits exactly
    # on its ReLU's kink, where a finite difference takes the mean of the two one-sided slopes.
    for name, value in net.parameters().items():
        if name.endswith("/bias"):
            value[...] = rng.normal(0, 0.05, value.shape)
    params = float64_params(net)
    x = frame_changes(rng, 24)
    _, values, actions, old_log_probs, advantages, returns, old_values = loss_inputs(rng, 24)
    logits, values32 = net.logits_and_values(x)
    log_p = ref.cnn.log_softmax(logits.astype(float))[np.arange(24), actions]
    old_log_probs = log_p + rng.normal(0, 0.1, 24)
    old_values = values32 + rng.normal(0, 0.2, 24)
    loss, _, want = ref.loss_gradient(params, x, actions, old_log_probs, advantages, returns,
                                      old_values, **LOSS)
    _, grad_logits, grad_values = ppo_loss_gradient(logits, values32, actions, old_log_probs,
                                                    advantages, returns, old_values, **LOSS)
    grads = net.gradient_buffer()
    net.accumulate_gradient(x, grad_logits, grad_values, grads)
    assert_close_tensors(grads, want)
    # The reference's analytic gradient against finite differences of its loss, one entry of
    # each tensor (the largest), in float64.
    h = 1e-6
    for name in ref.PARAMETER_NAMES:
        at = np.unravel_index(np.argmax(np.abs(want[name])), want[name].shape)
        shifted = {k: v.copy() for k, v in params.items()}
        shifted[name][at] += h
        up = ref.ppo_loss(*ref.forward(x, shifted)[:2], actions, old_log_probs, advantages, returns,
                          old_values, **LOSS)[0]
        shifted[name][at] -= 2 * h
        down = ref.ppo_loss(*ref.forward(x, shifted)[:2], actions, old_log_probs, advantages, returns,
                            old_values, **LOSS)[0]
        assert (up - down) / (2 * h) == pytest.approx(want[name][at], rel=1e-4, abs=1e-9), name


def test_policy_gradient_is_the_special_case_of_the_trunk_backward():
    """With grad_values = 0 and grad_logits = scale * A (onehot - p), the actor-critic's backward
    pass is the lab's accumulate_gradient (same conv kernels, another entry point)."""
    from fastpong import ConvPolicy

    rng = np.random.default_rng(5)
    net = ActorCriticCNN(seed=5)
    lab = ConvPolicy.from_model({k: v for k, v in net.to_model().items() if not k.startswith("value/")})
    x = frame_changes(rng, 40)
    actions = rng.integers(0, 6, 40)
    advantages = rng.normal(size=40).astype(np.float32)
    probs = lab.forward(x)
    onehot = np.eye(6, dtype=np.float32)[actions]
    grad_logits = (onehot - probs) * (advantages / 40)[:, None]
    grads = net.gradient_buffer()
    net.accumulate_gradient(x, grad_logits, np.zeros(40, np.float32), grads)
    lab_grads = lab.gradient_buffer()
    lab.accumulate_gradient(x, actions, advantages, lab_grads)
    assert_close_tensors(grads, lab_grads, rtol=1e-4, floor=1e-5)
    np.testing.assert_array_equal(grads["value/kernel"], 0.0)


def test_feature_gradient_binding_refuses_bad_input():
    net = ActorCriticCNN(seed=0)
    core = net._net
    x = np.zeros((3, 40, 40), np.float32)
    grads = net.gradient_buffer()
    with pytest.raises(ValueError, match=r"flat_grad must have shape \(3, 576\)"):
        core.accumulate_feature_gradient(x, np.zeros((3, 575), np.float32), grads)
    with pytest.raises(ValueError, match="flat_grad"):
        core.accumulate_feature_gradient(x, np.full((3, 576), np.nan, np.float32), grads)
    with pytest.raises(ValueError, match="conv2d_0/kernel"):
        core.accumulate_feature_gradient(x, np.zeros((3, 576), np.float32), {})
    with pytest.raises(ValueError, match="own array"):
        core.accumulate_feature_gradient(x, np.zeros((3, 576), np.float32), net.parameters())
    with pytest.raises(ValueError, match=r"\(N, 40, 40\)"):
        core.features(np.zeros((3, 41, 40), np.float32))


def test_load_model_refuses_a_bad_model_and_changes_nothing():
    net = ActorCriticCNN(seed=0)
    before = net.to_model()
    bad = dict(before)
    bad["value/kernel"] = np.zeros((128, 2))
    with pytest.raises(ValueError, match="value/kernel"):
        net.load_model(bad)
    missing = {k: v for k, v in before.items() if k != "value/bias"}
    with pytest.raises(ValueError, match="missing"):
        net.load_model(missing)
    for name, value in net.to_model().items():
        np.testing.assert_array_equal(value, before[name])


# --- the learner's parts ------------------------------------------------------------------------

def test_rollout_carries_a_step_taken_past_its_end():
    rollout = Rollout(steps=2, num_envs=1)
    for t in range(3):
        rollout.append(np.full((1, 40, 40), t), [t], [0.0], [float(t)])
    assert rollout.full and rollout.length == 3
    rollout.restart()
    assert rollout.length == 1
    assert rollout.observations[0, 0, 0, 0] == 2 and rollout.values[0, 0] == 2
    rollout.append(np.zeros((1, 40, 40)), [0], [0.0], [0.0])
    rollout.restart()  # nothing carried
    assert rollout.length == 0


def test_clip_global_norm():
    grads = {"a": np.array([3.0, 0.0], np.float32), "b": np.array([[4.0]], np.float32)}
    assert clip_global_norm(grads, 10.0) == pytest.approx(5.0)
    np.testing.assert_array_equal(grads["a"], [3.0, 0.0])  # under the limit: unchanged
    assert clip_global_norm(grads, 0.5) == pytest.approx(5.0)
    total = np.sqrt(sum(float((g ** 2).sum()) for g in grads.values()))
    assert total == pytest.approx(0.5, rel=1e-5)


def test_explained_variance():
    returns = np.array([1.0, 2.0, 3.0])
    assert explained_variance(returns, returns) == 1.0
    assert explained_variance(np.full(3, 2.0), returns) == pytest.approx(0.0)
    assert np.isnan(explained_variance(returns, np.ones(3)))


# --- end to end ---------------------------------------------------------------------------------

def small_run(tmp_path, name="run", **settings):
    import fastpong

    base = dict(agent="ppo", rollout_steps=16, num_envs=2, threads=1, seed=3, minibatches=2, epochs=2)
    base.update(settings)
    return fastpong.train(run_dir=tmp_path / name, progress=False, **base)


@pytest.mark.slow
def test_training_updates_logs_diagnostics_and_resumes(tmp_path):
    import csv

    from fastpong.checkpoint import load_checkpoint

    summary = small_run(tmp_path, steps=2600)
    # 2 envs in two lanes of 1: an update every 16 steps of each, 32 env steps.
    assert summary.updates == 2600 // 32
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoint.npz")
    # Adam stepped once per minibatch: epochs x minibatches per update.
    assert int(checkpoint["tensors"]["adam/step"]) == summary.updates * 4
    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows, "1,300 steps of each of 2 Pong games (~800 a game lost 21-0) finish one"
    last = rows[-1]
    for column in ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"):
        assert last[column] != "" and np.isfinite(float(last[column])), column
    # The entropy of a policy over six actions lies in (0, log 6]. (Where in it a short run ends
    # depends on rounding: 1.0 was a bound on one trajectory, which a reordered float32 sum moved.)
    assert 0.0 < float(last["entropy"]) <= np.log(6) + 1e-6
    resumed = small_run(tmp_path, resume=True, steps=3000)
    # The resumed session starts a fresh rollout: its updates come every 32 of its own steps.
    assert resumed.updates == summary.updates + (3000 - 2600) // 32
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoint.npz")
    assert int(checkpoint["tensors"]["adam/step"]) == resumed.updates * 4


def test_learning_rate_anneals_linearly():
    import dataclasses

    from fastpong.agents.ppo import PPOLearner
    from fastpong.config import TrainConfig

    config = TrainConfig(agent="ppo", seed=0, num_envs=2, rollout_steps=10, anneal_steps=100,
                         learning_rate=1e-3).validate()
    learner = PPOLearner(dataclasses.replace(config), [1, 1], np.random.default_rng(0))
    assert learner.learning_rate_now() == pytest.approx(1e-3)
    learner.optimizer.iterations = 2 * config.epochs * config.minibatches  # 2 updates: 40 steps
    assert learner.learning_rate_now() == pytest.approx(1e-3 * 0.6)
    # At and past anneal_steps it stays at the rate of the last update before them, 1e-3 x 20 / 100:
    # Adam takes no zero rate (a run past its schedule used to crash there).
    for updates in (4, 5, 10, 12):
        learner.optimizer.iterations = updates * config.epochs * config.minibatches
        assert learner.learning_rate_now() == pytest.approx(1e-3 * 0.2), updates
    learner.optimizer.learning_rate = learner.learning_rate_now()
    learner.optimizer.step(learner.net, learner.net.gradient_buffer())  # a step at the floor works


def test_entropy_coef_falls_with_the_learning_rate_only_when_asked():
    from fastpong.agents.ppo import PPOLearner
    from fastpong.config import TrainConfig

    def learner_after(updates, **settings):
        config = TrainConfig(agent="ppo", seed=0, num_envs=2, rollout_steps=10, anneal_steps=100,
                             **settings).validate()
        learner = PPOLearner(config, [1, 1], np.random.default_rng(0))
        learner.optimizer.iterations = updates * config.epochs * config.minibatches
        return learner

    # Off by default: CleanRL's constant weight.
    assert learner_after(3).entropy_coef_now() == pytest.approx(0.01)
    # From 0.01 toward 0.002 over 100 steps (5 updates of 20): 0.4 of the way left after 3.
    assert learner_after(0, final_entropy_coef=0.002).entropy_coef_now() == pytest.approx(0.01)
    assert learner_after(3, final_entropy_coef=0.002).entropy_coef_now() == pytest.approx(0.002 + 0.008 * 0.4)
    # At and past the schedule's end, the share of one update is left, as for the learning rate.
    for updates in (5, 9):
        assert learner_after(updates, final_entropy_coef=0.0).entropy_coef_now() == pytest.approx(0.01 * 0.2)


def test_an_update_uses_the_scheduled_entropy_weight(monkeypatch):
    from fastpong.agents import ppo
    from fastpong.config import TrainConfig
    from fastpong.nn import actor_critic

    config = TrainConfig(agent="ppo", seed=0, num_envs=2, rollout_steps=4, anneal_steps=32,
                         entropy_coef=0.5, final_entropy_coef=0.1, minibatches=1, epochs=1).validate()
    learner = ppo.PPOLearner(config, [2], np.random.default_rng(0))
    seen = []
    real = actor_critic.ppo_loss_gradient

    def spy(*args, entropy_coef, **kwargs):  # the weight the loss is given
        seen.append(entropy_coef)
        return real(*args, entropy_coef=entropy_coef, **kwargs)

    monkeypatch.setattr(actor_critic, "ppo_loss_gradient", spy)
    frames = np.zeros((2, 210, 160, 3), np.uint8)
    for _ in range(3):  # three updates of 4 steps x 2 envs: 16 of the 32 steps done before the third
        while not learner.update_due():
            learner.observe(0, frames)
            learner.act(0)
            learner.record_rewards(0, np.zeros(2, np.float32))
        learner.update()
    assert seen == pytest.approx([0.5, 0.1 + 0.4 * 0.75, 0.1 + 0.4 * 0.5])


def test_a_resume_may_give_a_run_a_new_schedule_and_logs_it(tmp_path):
    """A run at the end of its schedule can be given a longer one (--anneal-steps) and another
    entropy weight; what is learned otherwise stays the run's own."""
    import csv
    import json

    from fastpong.checkpoint import load_checkpoint

    run = tmp_path / "run"
    common = ["--run-dir", str(run), "--num-envs", "2", "--threads", "1"]
    first = subprocess.run([sys.executable, "-m", "fastpong", "train", "--agent", "ppo", "--seed", "3",
                            "--rollout-steps", "8", "--anneal-steps", "64", "--steps", "64", "--quiet", *common],
                           capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert not (run / "setting_changes.csv").exists()
    resumed = subprocess.run([sys.executable, "-m", "fastpong", "train", "--resume", "--steps", "96",
                              "--anneal-steps", "128", "--final-entropy-coef", "0", *common],
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "anneal steps 64 -> 128 from game 0 on" in resumed.stderr
    assert "final entropy coef none -> 0 from game 0 on" in resumed.stderr
    with open(run / "setting_changes.csv", newline="") as f:
        assert list(csv.DictReader(f)) == [
            dict(episode="0", setting="anneal_steps", previous="64", current="128"),
            dict(episode="0", setting="final_entropy_coef", previous="None", current="0.0")]
    assert json.loads((run / "config.json").read_text())["anneal_steps"] == 128
    assert load_checkpoint(run / "checkpoint.npz")["config"]["final_entropy_coef"] == 0.0
    # What is learned may not change: the clip, say.
    refused = subprocess.run([sys.executable, "-m", "fastpong", "train", "--resume", "--steps", "128",
                              "--clip-coef", "0.2", *common], capture_output=True, text=True)
    assert refused.returncode == 2
    assert "was trained with other settings (clip_coef: 0.2 != 0.1)" in refused.stderr


@pytest.mark.parametrize("settings,message", [
    (dict(agent="karpathy", clip_coef=0.2), "clip coef is a setting of the ppo agent"),
    (dict(agent="mit-pong", final_entropy_coef=0.0), "final entropy coef is a setting of the ppo agent"),
    (dict(agent="ppo", final_entropy_coef=-0.01), "final entropy coef must be a number >= 0"),
    (dict(agent="ppo", hidden=200), "128 hidden units"),
    (dict(agent="ppo", epochs=0), "epochs must be a positive integer"),
    (dict(agent="ppo", gae_lambda=1.5), r"gae lambda must be in \[0, 1\]"),
    (dict(agent="ppo", entropy_coef=-0.1), "entropy coef must be a number >= 0"),
    (dict(agent="ppo", max_grad_norm=0.0), "max grad norm must be a positive number"),
    (dict(agent="ppo", optimizer="rmsprop"), "optimizer must be one of adam"),
    (dict(agent="ppo", num_envs=1, rollout_steps=2, minibatches=4), "cannot be cut into 4 minibatches"),
    (dict(agent="ppo", ray="local"), "--ray is not supported"),
    (dict(agent="ppo", env_id="ALE/Breakout-v5"), "plays ALE/Pong-v5"),
    (dict(agent="ppo", observation="frames"), "observation must be one of change, frame-and-change"),
    (dict(agent="mit-pong", observation="change"), "observation is a setting of the ppo agent"),
])
def test_bad_settings_are_refused(settings, message):
    from fastpong.config import TrainConfig

    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings).validate()


def test_cli_refuses_bad_ppo_settings_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "fastpong.cli", "train", "--agent", "ppo",
                             "--clip-coef", "-1", "--run-dir", str(tmp_path / "r")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "fastpong train: error: clip coef must be a positive number, got -1.0"]
    assert not (tmp_path / "r").exists()


def test_train_and_evaluate_stay_callable_after_their_modules_are_imported():
    import importlib

    import fastpong

    importlib.import_module("fastpong.train")
    importlib.import_module("fastpong.evaluate")
    assert callable(fastpong.train) and callable(fastpong.evaluate)
    with pytest.raises(ValueError, match="clip coef"):
        fastpong.train(agent="karpathy", clip_coef=0.2, progress=False)


# --- the observation: the frame change, or frame and change in one channel ------------------------

def test_the_learner_and_its_checkpoint_keep_the_observation(tmp_path):
    """--observation frame-and-change reaches the learner's inputs, the checkpoint's config and the
    policy that evaluation rebuilds from it; a resume may not change it."""
    from fastpong.agents.ppo import PPOLearner
    from fastpong.config import TrainConfig
    from fastpong.watch.evaluate import load_player

    frame = np.full((1, 210, 160, 3), 144, np.uint8)
    frame[0, 100:104, 60:64] = 236  # a still object: invisible to the change alone
    for kind, lowest in (("change", 0.0), ("frame-and-change", -1.0)):
        config = TrainConfig(agent="ppo", seed=0, num_envs=1, observation=kind).validate()
        learner = PPOLearner(config, [1], np.random.default_rng(0))
        assert learner.net.observation == kind
        learner.observe(0, frame)
        learner.observe(0, frame)
        learner.act(0)
        assert learner.rollouts[0].observations[0].min() == lowest, kind

    small_run(tmp_path, steps=64, observation="frame-and-change")
    player = load_player(tmp_path / "run")
    assert player.policy.observation == "frame-and-change"
    assert "observation='frame-and-change'" in repr(player.policy)
    # Evaluation's game feeds the policy that input: still objects show.
    from fastpong.watch.evaluate import _LabPongGame

    game = _LabPongGame(player.policy, 1, np.random.default_rng(0), greedy=False)
    game.actions(frame)
    assert game.x.min() == -1.0
    import fastpong

    result = fastpong.evaluate(tmp_path / "run", episodes=1, max_steps=30)
    assert result.episodes[0].steps == 30
    with pytest.raises(ValueError, match="observation"):
        small_run(tmp_path, resume=True, steps=128, observation="change")


def test_a_config_written_before_the_observation_existed_reads_as_the_frame_change(monkeypatch):
    """Such runs saw the frame change, whatever the agent's default for new runs is."""
    from fastpong.agents import PPO
    from fastpong.config import TrainConfig
    from fastpong.watch.evaluate import load_player

    old = TrainConfig(agent="ppo", seed=0).validate().to_dict()
    del old["observation"]
    monkeypatch.setitem(PPO.defaults, "observation", "frame-and-change")
    assert TrainConfig(agent="ppo").observation == "frame-and-change"  # the patched default holds
    assert TrainConfig.from_dict(old).observation == "change"
    assert TrainConfig.from_dict({**old, "observation": "frame-and-change"}).observation == "frame-and-change"
    assert load_player("pretrained-ppo").policy.observation == "change"


def test_the_network_refuses_an_unknown_observation():
    with pytest.raises(ValueError, match="observation must be one of change, frame-and-change, got 'rgb'"):
        ActorCriticCNN(seed=0, observation="rgb")
    with pytest.raises(ValueError, match="observation must be one of"):
        ActorCriticCNN.from_model(ActorCriticCNN(seed=0).to_model(), observation="rgb")
