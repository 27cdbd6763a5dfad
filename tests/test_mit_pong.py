"""The MIT lab's Pong agent (``--agent mit-pong``): its learner against reference.cnn, and a short
training run through the whole loop."""

from __future__ import annotations

import numpy as np
import pytest

import fastpong
from fastpong.agents import AGENTS, get_agent
from fastpong.config import TrainConfig
from fastpong.evaluate import evaluate
from fastpong.plot import load_metrics
from fastpong.reference import cnn
from fastpong.train import train


def _learner(num_envs=1, seed=3, **settings):
    config = TrainConfig(agent="mit-pong", env_id="ALE/Pong-v5", seed=seed,
                         num_envs=num_envs, **settings).validate()
    return config, get_agent("mit-pong").learners["fast"](config, [num_envs],
                                                          np.random.default_rng(0))


def test_registered_with_the_labs_settings():
    agent = AGENTS["mit-pong"]
    assert agent.defaults == dict(hidden=128, batch_size=5, learning_rate=1e-3, gamma=0.99,
                                  optimizer="adam", num_envs=5)
    config = TrainConfig(agent="mit-pong", env_id="ALE/Pong-v5").validate()
    assert (config.batch_size, config.learning_rate, config.optimizer) == (5, 1e-3, "adam")
    with pytest.raises(ValueError, match="128 hidden units"):
        agent.learners["fast"](TrainConfig(agent="mit-pong", hidden=64).validate(), [1],
                               np.random.default_rng(0))


def test_settings_beyond_the_lab_are_off_by_default_and_refused_elsewhere():
    config = TrainConfig(agent="mit-pong").validate()
    assert (config.entropy_coef, config.max_grad_norm, config.head_init_scale) == (None, None, None)
    TrainConfig(agent="mit-pong", entropy_coef=0.01, max_grad_norm=0.5, head_init_scale=0.01).validate()
    with pytest.raises(ValueError, match="entropy coef is a setting of the mit-pong and ppo agents; "
                                         "this run's agent is karpathy"):
        TrainConfig(agent="karpathy", entropy_coef=0.01).validate()
    with pytest.raises(ValueError, match="head init scale is a setting of the mit-pong agent; "
                                         "this run's agent is ppo"):
        TrainConfig(agent="ppo", head_init_scale=0.01).validate()
    with pytest.raises(ValueError, match="rollout steps is a setting of the ppo agent"):
        TrainConfig(agent="mit-pong", rollout_steps=64).validate()
    for name, bad, bound in (("entropy_coef", -0.1, "a number >= 0"), ("max_grad_norm", 0.0, "a positive number"),
                             ("head_init_scale", float("nan"), "a positive number"),
                             ("entropy_coef", True, "a number >= 0")):
        with pytest.raises(ValueError, match=f"{name.replace('_', ' ')} must be {bound}, got {bad!r}"):
            TrainConfig(agent="mit-pong", **{name: bad}).validate()


def test_lab_entropy_preset_is_the_lab_and_one_change():
    """--preset lab-entropy: the lab's settings exactly, plus the entropy bonus."""
    from fastpong.config import PRESETS

    lab, entropy = PRESETS["mit-pong"]["lab"], PRESETS["mit-pong"]["lab-entropy"]
    assert {k: v for k, v in entropy.items() if k != "entropy_coef"} == lab
    assert entropy["entropy_coef"] == 0.01
    TrainConfig(agent="mit-pong", **entropy).validate()


def _play_two_games(learner, frames):
    """Two games of 37 and 52 steps on one environment, a point won at step 10 of each and the
    last step's point lost; returns the lab's inputs, actions, rewards and each game's stats."""
    inputs, actions, rewards, stats = [], [], [], []
    t = 0
    for length in (37, 52):
        for step in range(length):
            learner.observe(0, frames[t][None])
            actions.append(int(learner.act(0)[0]))
            reward = -1.0 if step == length - 1 else (1.0 if step == 10 else 0.0)
            learner.record_rewards(0, np.array([reward], dtype=np.float32))
            previous = frames[t] if step == 0 else frames[t - 1]
            inputs.append(cnn.frame_change(previous, frames[t]))
            rewards.append(reward)
            t += 1
        stats.append(learner.finish_episode(0, 0))
    return np.stack(inputs), np.array(actions), np.array(rewards), stats


@pytest.mark.parametrize("settings", [{}, dict(entropy_coef=0.01, head_init_scale=0.01)])
def test_batch_gradient_is_the_labs(pong_play, settings):
    """Two games through the learner: inputs prev - curr (zero at each game's first frame), the
    returns discounted with resets and normalized over both games together, mean over all steps:
    the gradient the learner takes equals reference.cnn's on the same steps (with the entropy
    bonus and the scaled head, when set, as well)."""
    config, learner = _learner(**settings)
    inputs, actions, rewards, stats = _play_two_games(learner, pong_play.frames)
    assert 0 <= min(actions) and max(actions) < 6
    gradient = learner.take_gradient()
    returns = cnn.discount_rewards(rewards, config.gamma)
    model = fastpong.ConvPolicy(seed=3).to_model()
    model["logits/kernel"] *= np.float32(settings.get("head_init_scale", 1.0))
    np.testing.assert_array_equal(learner.weights()["logits/kernel"], model["logits/kernel"])
    expected = cnn.objective_gradient(model, inputs, actions, returns,
                                      entropy_coef=settings.get("entropy_coef", 0.0))
    for name, value in expected.items():
        scale = np.abs(value).max()
        np.testing.assert_allclose(gradient[name], value, rtol=1e-3, atol=1e-4 * scale, err_msg=name)
    assert not any(g.any() for g in learner.grads.values()), "take_gradient zeroes the batch"
    # Each game's row in metrics.csv: the policy's mean entropy over its steps.
    policy = fastpong.ConvPolicy.from_model(model)
    probs = policy.forward(inputs.astype(np.float32)).astype(np.float64)
    per_step = -(probs * np.log(probs)).sum(axis=1)
    np.testing.assert_allclose([s["entropy"] for s in stats], [per_step[:37].mean(), per_step[37:].mean()],
                               rtol=1e-6)
    if settings.get("head_init_scale"):  # a near-uniform first policy
        assert min(s["entropy"] for s in stats) > 0.999 * np.log(6)


def test_update_clips_the_gradient_norm(pong_play):
    """--max-grad-norm: the optimizer is handed the batch's gradient scaled to that global norm
    (and, without it, the gradient as it is)."""
    for clip in (None, 1e-3, 1e6):
        _, learner = _learner(max_grad_norm=clip, batch_size=2)
        _play_two_games(learner, pong_play.frames)
        learner._apply_pending()
        gradient = {k: g.astype(np.float64) for k, g in learner.grads.items()}
        norm = np.sqrt(sum(float((g ** 2).sum()) for g in gradient.values()))
        assert norm > 1e-3  # so that the small clip changes it
        handed = {}
        learner.optimizer.step = lambda policy, grads: handed.update({k: g.copy() for k, g in grads.items()})
        learner.update()
        factor = 1.0 if clip is None or norm <= clip else clip / (norm + 1e-6)  # torch's 1e-6
        for name, g in gradient.items():
            np.testing.assert_allclose(handed[name], factor * g, rtol=1e-5, atol=1e-12, err_msg=name)


def test_games_from_ray_workers_make_the_mean_gradient(pong_play):
    """On Ray each game's gradient arrives on its own (add_gradient): the update follows their mean,
    so --max-grad-norm bounds the same quantity as a local batch's."""
    _, worker = _learner(batch_size=2)
    _play_two_games(worker, pong_play.frames)
    worker._apply_pending()
    game = worker.take_gradient()
    _, driver = _learner(batch_size=2)
    handed = {}
    driver.optimizer.step = lambda policy, grads: handed.update({k: g.copy() for k, g in grads.items()})
    driver.add_gradient(game)
    driver.add_gradient({k: 3 * g for k, g in game.items()})
    driver.update()
    for name, g in game.items():
        np.testing.assert_allclose(handed[name], 2 * g, rtol=1e-6, err_msg=name)


@pytest.mark.slow
def test_short_training_run(tmp_path, capfd):
    """Two full games on two environments: one Adam step, a checkpoint of the agent's tensors,
    the progress line's point win rate, and fastpong.evaluate playing it (greedy and sampled, with
    a video of the 40x40 input)."""
    run_dir = tmp_path / "run"
    summary = train(TrainConfig(agent="mit-pong", env_id="ALE/Pong-v5", episodes=2,
                                num_envs=2, batch_size=2, seed=0),
                    run_dir=run_dir, progress=True)
    assert "point_win_rate=" in capfd.readouterr().err
    assert (summary.episodes, summary.updates) == (2, 1)
    assert summary.steps > 1000
    metrics = load_metrics(run_dir)  # each game's mean policy entropy, nats
    assert metrics["entropy"].shape == (2,) and np.all((metrics["entropy"] > 0) & (metrics["entropy"] <= np.log(6)))
    checkpoint = np.load(run_dir / "checkpoint.npz")
    agent = get_agent("mit-pong")
    config = TrainConfig(agent="mit-pong").validate()
    for name, shape in agent.tensor_shapes(config).items():
        assert checkpoint[name].shape == shape, name
    initial = fastpong.ConvPolicy(seed=0).to_model()
    changed = [name for name in initial if not np.array_equal(checkpoint[name], initial[name])]
    assert "logits/bias" in changed and "conv2d_1/kernel" in changed
    assert int(checkpoint["adam/step"]) == 1
    policy = agent.policy_from_weights({name: checkpoint[name] for name in initial})
    probs = policy.forward(np.zeros((1, 40, 40), np.float32))
    np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-5)
    for greedy in (True, False):
        result = evaluate(run_dir, episodes=2, num_envs=2, max_steps=150, greedy=greedy,
                          video=tmp_path / f"eval-{greedy}.gif" if greedy else None)
        assert len(result.episodes) == 2
        assert all(e.steps == 150 and e.truncated for e in result.episodes)
    assert (tmp_path / "eval-True.gif").stat().st_size > 0
