"""The MIT lab's Pong agent (``--agent mit-pong``): its learner against reference.cnn, and a short
training run through the whole loop."""

from __future__ import annotations

import numpy as np
import pytest

import fastpong
from fastpong.agents import AGENTS, get_agent
from fastpong.config import TrainConfig
from fastpong.evaluate import evaluate
from fastpong.reference import cnn
from fastpong.train import train


def _learner(num_envs=1, seed=3):
    config = TrainConfig(agent="mit-pong", env_id="ALE/Pong-v5", seed=seed,
                         num_envs=num_envs).validate()
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


def test_batch_gradient_is_the_labs(pong_play):
    """Two games through the learner: inputs prev - curr (zero at each game's first frame), the
    returns discounted with resets and normalized over both games together, mean over all steps:
    the gradient the learner takes equals reference.cnn's on the same steps."""
    config, learner = _learner()
    frames = pong_play.frames
    lengths = (37, 52)
    inputs, actions, rewards = [], [], []
    t = 0
    for length in lengths:
        for step in range(length):
            learner.observe(0, frames[t][None])
            actions.append(int(learner.act(0)[0]))
            reward = -1.0 if step == length - 1 else (1.0 if step == 10 else 0.0)
            learner.record_rewards(0, np.array([reward], dtype=np.float32))
            previous = frames[t] if step == 0 else frames[t - 1]
            inputs.append(cnn.frame_change(previous, frames[t]))
            rewards.append(reward)
            t += 1
        learner.finish_episode(0, 0)
    assert 0 <= min(actions) and max(actions) < 6
    gradient = learner.take_gradient()
    returns = cnn.discount_rewards(np.array(rewards), config.gamma)
    expected = cnn.objective_gradient(fastpong.ConvPolicy(seed=3).to_model(), np.stack(inputs),
                                      np.array(actions), returns)
    for name, value in expected.items():
        scale = np.abs(value).max()
        np.testing.assert_allclose(gradient[name], value, rtol=1e-3, atol=1e-4 * scale, err_msg=name)
    assert not any(g.any() for g in learner.grads.values()), "take_gradient zeroes the batch"


@pytest.mark.slow
def test_short_training_run(tmp_path):
    """Two full games on two environments: one Adam step, a checkpoint of the agent's tensors,
    and fastpong.evaluate playing it (greedy and sampled, with a video of the 40x40 input)."""
    run_dir = tmp_path / "run"
    summary = train(TrainConfig(agent="mit-pong", env_id="ALE/Pong-v5", episodes=2,
                                num_envs=2, batch_size=2, seed=0),
                    run_dir=run_dir, progress=False)
    assert (summary.episodes, summary.updates) == (2, 1)
    assert summary.steps > 1000
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
