"""``--frameskip``: a fixed number of emulator frames per agent step for Atari runs (the MIT lab
plays Pong-v0 with 5), recorded in the run's config, kept on resume, refused for CartPole."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

import fastpong.envs
from fastpong.checkpoint import load_checkpoint, save_checkpoint
from fastpong.config import PRESETS, TrainConfig
from fastpong.envs import make_env_batch
from fastpong.evaluate import evaluate, load_player
from fastpong.train import train

from test_cli import assert_one_line_error, run_cli, snapshot

# gymnasium warns that Pong-v0 is "out of date"; using it is deliberate here (the lab's id).
pytestmark = pytest.mark.filterwarnings("ignore:.*out of date.*:DeprecationWarning")

#: Enough agent steps for the ball to be served and to cross the court (frames then depend on how
#: many emulator frames each step runs).
STEPS = 120


def _play_beside_gym_make(env_id, frameskip, *, expect_native, seed=3):
    """Steps an EnvBatch with `frameskip` and gym.make(env_id, frameskip=...) with the same seeds
    and random actions (sticky actions off, where both paths play alike), asserting identical
    frames, rewards and episode ends; returns the gym env's emulator frames per step."""
    refs = [gym.make(env_id, frameskip=frameskip, repeat_action_probability=0.0) for _ in range(2)]
    first = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(refs)])
    rng = np.random.default_rng(0)
    try:
        with make_env_batch(env_id, 2, seed=seed, frameskip=frameskip,
                            repeat_action_probability=0.0) as batch:
            assert batch.native is expect_native
            assert batch.frameskip == frameskip
            assert np.array_equal(batch.reset(), first)
            for t in range(STEPS):
                actions = rng.integers(0, batch.num_actions, size=2)
                frames, rewards, ends = batch.step(actions)
                for i, env in enumerate(refs):
                    obs, reward, terminated, truncated, _ = env.step(int(actions[i]))
                    assert not (terminated or truncated)  # a game lasts far longer than STEPS
                    assert (rewards[i], ends[i]) == (reward, False), f"env {i} step {t}"
                    assert np.array_equal(frames[i], obs), f"env {i} step {t}: frames differ"
        return [env.unwrapped.ale.getEpisodeFrameNumber() / STEPS for env in refs]
    finally:
        for env in refs:
            env.close()


@pytest.mark.parametrize("env_id, frameskip", [("Pong-v0", 5), ("ALE/Pong-v5", 3), ("ALE/Pong-v5", 1)])
def test_native_batch_plays_the_requested_frameskip(env_id, frameskip):
    # Pong-v0 registers a random skip (2 to 4), which only gymnasium's vector env can play; a
    # fixed one runs on AtariVectorEnv, frame for frame as gym.make(..., frameskip=k).
    assert _play_beside_gym_make(env_id, frameskip, expect_native=True) == [frameskip, frameskip]


def test_frameskip_changes_play():
    """The option is not ignored: 5 frames a step is not the id's own 4."""
    def frames(frameskip):
        with make_env_batch("ALE/Pong-v5", 1, seed=0, frameskip=frameskip,
                            repeat_action_probability=0.0) as batch:
            batch.reset()
            return np.stack([batch.step([0])[0] for _ in range(STEPS)])

    assert np.array_equal(frames(None), frames(4))
    assert not np.array_equal(frames(4), frames(5))


def test_fallback_batch_gets_the_frameskip():
    # An id the native path cannot play for another reason (a difficulty set) keeps gymnasium's
    # vector env, whose emulators must get the skip too.
    env_id = "FastpongTest/PongDifficulty0-v5"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point="ale_py.env:AtariEnv",
                     kwargs=dict(game="pong", frameskip=4, repeat_action_probability=0.25, difficulty=0))
    assert _play_beside_gym_make(env_id, 5, expect_native=False) == [5, 5]
    with make_env_batch(env_id, 1, frameskip=2) as batch:
        batch.reset(seed=0)
        for _ in range(7):
            batch.step([0])
        assert batch._venv.envs[0].unwrapped.ale.getEpisodeFrameNumber() == 14


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "5"])
def test_bad_frameskip_is_refused(bad):
    with pytest.raises(ValueError, match="frameskip must be a positive integer"):
        make_env_batch("ALE/Pong-v5", 1, frameskip=bad)
    with pytest.raises(ValueError, match="frameskip must be a positive integer"):
        TrainConfig(env_id="ALE/Pong-v5", frameskip=bad).validate()


def test_config_round_trip_and_old_configs():
    config = TrainConfig(agent="mit-pong", env_id="Pong-v0", frameskip=5).validate()
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    old = config.to_dict()
    del old["frameskip"]  # a config.json written before the setting existed
    assert TrainConfig.from_dict(old).frameskip is None
    assert TrainConfig.from_dict(old).algorithm_differences(config) == [
        "frameskip: None (the environment's own) != 5"]
    with pytest.raises(ValueError, match="frameskip is a setting of Atari environments; CartPole-v1 has none"):
        TrainConfig(env_id="CartPole-v1", frameskip=4).validate()


def test_training_run_plays_records_and_resumes_with_its_frameskip(tmp_path, monkeypatch):
    made = []
    real = fastpong.envs.make_env_batch

    def recording(*args, **kwargs):
        batch = real(*args, **kwargs)
        made.append(batch.frameskip)
        return batch

    monkeypatch.setattr(fastpong.envs, "make_env_batch", recording)
    run = tmp_path / "run"
    train(run_dir=run, agent="mit-pong", env_id="Pong-v0", frameskip=5, num_envs=2, steps=40,
          seed=1, progress=False)
    assert made == [5, 5]  # both lanes
    assert json.loads((run / "config.json").read_text())["frameskip"] == 5
    assert load_checkpoint(run / "checkpoint.npz")["config"]["frameskip"] == 5
    assert load_player(run).frameskip == 5

    # Resuming without naming it keeps the run's; naming another one is refused.
    made.clear()
    summary = train(run_dir=run, resume=True, steps=80, num_envs=2, progress=False)
    assert summary.steps == 80 and made == [5, 5]
    before = snapshot(run)
    result = run_cli("train", "--run-dir", str(run), "--resume", "--frameskip", "4", "--steps", "120")
    assert_one_line_error(result, "was trained with other settings",
                          "frameskip: 4 != 5")
    assert snapshot(run) == before

    # Evaluation plays the run's frameskip unless told otherwise.
    made.clear()
    evaluate(run, episodes=1, max_steps=3)
    evaluate(run, episodes=1, max_steps=3, frameskip=2)
    assert made == [5, 2]


def test_run_without_the_setting_resumes(tmp_path):
    """A run whose config.json and checkpoint predate the setting resumes as 'the id's own'."""
    run = tmp_path / "run"
    train(run_dir=run, steps=30, num_envs=1, batch_size=1, seed=2, progress=False)
    config_path, checkpoint_path = run / "config.json", run / "checkpoint.npz"
    config = json.loads(config_path.read_text())
    del config["frameskip"]
    config_path.write_text(json.dumps(config))
    checkpoint = load_checkpoint(checkpoint_path)
    save_checkpoint(checkpoint_path, tensors=checkpoint["tensors"],
                    counters={k: checkpoint[k] for k in ("episodes", "env_steps", "updates", "episodes_in_batch")},
                    running_reward=checkpoint["running_reward"], wall_seconds=checkpoint["wall_seconds"],
                    config=config, rng_state=checkpoint["rng_state"],
                    recent_returns=checkpoint["recent_returns"])
    summary = train(run_dir=run, resume=True, steps=60, num_envs=1, progress=False)
    assert summary.steps == 60
    assert json.loads(config_path.read_text())["frameskip"] is None


@pytest.mark.parametrize("args, fragments", [
    (["--env", "CartPole-v1", "--frameskip", "4"], ["frameskip is a setting of Atari environments; CartPole-v1 has none"]),
    (["--frameskip", "0"], ["--frameskip", "expected a positive integer, got 0"]),
    (["--frameskip", "-3"], ["--frameskip", "expected a positive integer, got -3"]),
    (["--frameskip", "2.5"], ["--frameskip", "got '2.5'"]),
])
def test_cli_refuses_bad_frameskip(tmp_path, args, fragments):
    result = run_cli("train", "--run-dir", str(tmp_path / "run"), *args)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "run").exists()


def test_cli_eval_refuses_bad_frameskip(tmp_path):
    assert_one_line_error(run_cli("eval", "--checkpoint", "pretrained", "--frameskip", "0"),
                          "--frameskip", "expected a positive integer, got 0")


def test_preset_lab_for_mit_pong_is_the_labs_environment(tmp_path):
    assert PRESETS["mit-pong"]["lab"]["env_id"] == "Pong-v0"
    run = tmp_path / "run"
    result = run_cli("train", "--agent", "mit-pong", "--preset", "lab", "--steps", "20", "--seed", "0",
                     "--run-dir", str(run), "--quiet")
    assert result.returncode == 0, result.stderr
    config = json.loads((run / "config.json").read_text())
    assert (config["env_id"], config["frameskip"], config["num_envs"], config["batch_size"],
            config["learning_rate"], config["optimizer"]) == ("Pong-v0", 5, 5, 5, 1e-3, "adam")
    # Flags given with a preset still win.
    other = tmp_path / "other"
    result = run_cli("train", "--agent", "mit-pong", "--preset", "lab", "--frameskip", "4", "--steps", "10",
                     "--run-dir", str(other), "--quiet")
    assert result.returncode == 0, result.stderr
    assert json.loads((other / "config.json").read_text())["frameskip"] == 4


def test_eval_refuses_a_frameskip_for_cartpole(tmp_path):
    run = tmp_path / "cartpole"
    train(run_dir=run, env_id="CartPole-v1", steps=50, seed=0, progress=False)
    with pytest.raises(ValueError, match="frameskip is a setting of Atari environments; CartPole-v1 has none"):
        evaluate(run, episodes=1, frameskip=3)
