"""The MIT lab's CartPole agent end to end: the vectorized CartPole behind the batch interface,
training (run directory, resume, determinism, fast = reference), evaluation, video and plots."""

import csv
import json

import gymnasium as gym
import numpy as np
import pytest

import fastpong
from fastpong.agents import mit_cartpole
from fastpong.checkpoint import FORMAT_VERSION, load_checkpoint
from fastpong.envs.classic import ClassicEnvBatch
from fastpong.config import TrainConfig
from fastpong.evaluate import evaluate, record_video
from fastpong.metrics import CLASSIC_COLUMNS
from fastpong.train import train

from test_cli import run_cli

# Float32 kernels against float64 NumPy: after a few dozen Adam steps of size ~1e-3 the weights
# agree to this (Adam divides by sqrt(v), so relative gradient errors of ~1e-6 stay ~1e-6 of a step).
WEIGHT_ATOL = 1e-4


def read_metrics(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cartpole") / "run"
    train(run_dir=run, env_id="CartPole-v1", episodes=30, seed=4, progress=False)
    return run


# --- the environment ----------------------------------------------------------------------------

def test_one_pole_is_gymnasium_make_across_episode_ends():
    """A batch of one steps exactly like gymnasium.make('CartPole-v1'), resets included: same
    observations, rewards and ends, and the episode that follows an end starts where gymnasium's
    env.reset() starts it."""
    batch = ClassicEnvBatch("CartPole-v1", 1)
    env = gym.make("CartPole-v1")
    obs = batch.reset(seed=3)
    expected, _ = env.reset(seed=3)
    rng = np.random.default_rng(0)
    ends_seen = 0
    for _ in range(400):
        np.testing.assert_array_equal(obs[0], expected)
        action = int(rng.integers(2))
        obs, rewards, ends = batch.step(np.array([action]))
        expected, reward, terminated, truncated, _ = env.step(action)
        assert rewards[0] == reward and ends[0] == (terminated or truncated)
        if ends[0]:
            ends_seen += 1
            expected, _ = env.reset()
    assert ends_seen >= 5  # random play: an episode lasts ~20 steps
    batch.close()


def test_batch_restarts_finished_poles_on_the_same_step():
    batch = ClassicEnvBatch("CartPole-v0", 5)
    batch.reset(seed=0)
    steps = np.zeros(5, dtype=int)
    for _ in range(300):
        obs, rewards, ends = batch.step(np.ones(5, dtype=np.int32))  # always push right: falls fast
        steps += 1
        assert np.all(rewards == 1.0)  # no dummy step with reward 0 after an end
        assert np.all(np.abs(obs[ends]) <= 0.05)  # a fresh start state, at once
        steps[ends] = 0
        assert np.all(steps < 200)
    batch.close()


# --- training -----------------------------------------------------------------------------------

def test_cartpole_picks_the_lab_agent_and_its_settings():
    config = TrainConfig(env_id="CartPole-v1").validate()
    assert (config.agent, config.optimizer, config.hidden, config.gamma, config.learning_rate,
            config.batch_size, config.decay_rate) == ("mit-cartpole", "adam", 32, 0.99, 1e-2, 1, None)
    assert config.resolved().num_envs == 8
    assert TrainConfig(env_id="CartPole-v0", gamma=0.9).validate().gamma == 0.9  # flags win
    pong = TrainConfig().validate()
    assert (pong.agent, pong.optimizer, pong.hidden, pong.decay_rate) == ("karpathy", "rmsprop", 200, 0.99)


def test_run_directory_contents(cartpole_run):
    config = json.loads((cartpole_run / "config.json").read_text())
    assert config["agent"] == "mit-cartpole" and config["env_id"] == "CartPole-v1"
    assert config["num_envs"] == 8 and config["seed"] == 4
    rows = read_metrics(cartpole_run)
    assert tuple(rows[0]) == CLASSIC_COLUMNS
    assert [int(r["episode"]) for r in rows] == list(range(1, 31))
    for r in rows:  # CartPole: +1 per step, so the return is the length
        assert float(r["reward"]) == int(r["length"]) and 1 <= int(r["length"]) <= 500
    # 8 poles step together: the finished episodes' steps, plus those of the ones still going
    env_steps = int(rows[-1]["env_steps"])
    assert env_steps % 8 == 0 and sum(int(r["length"]) for r in rows) <= env_steps
    ckpt = load_checkpoint(cartpole_run / "checkpoint.npz")
    assert ckpt["format_version"] == FORMAT_VERSION == 2
    assert ckpt["episodes"] == ckpt["updates"] == 30 and ckpt["episodes_in_batch"] == 0
    expected = mit_cartpole.tensor_shapes(TrainConfig(**config))
    for name, shape in expected.items():
        assert ckpt["tensors"][name].shape == shape
    assert int(ckpt["adam/step"]) == 30 and ckpt["adam/m_dense_0/kernel"].shape == (4, 32)
    assert not np.any(ckpt["grad/logits/kernel"])  # one episode per update: nothing pending
    assert len(ckpt["recent_returns"]) == 30


def test_resume_continues_counters_and_adam(tmp_path, cartpole_run):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "metrics.csv", "checkpoint.npz"):
        (run / name).write_bytes((cartpole_run / name).read_bytes())
    before = load_checkpoint(run / "checkpoint.npz")
    summary = train(run_dir=run, resume=True, episodes=35, progress=False)
    after = load_checkpoint(run / "checkpoint.npz")
    assert summary.episodes == 35 and after["updates"] == 35 and int(after["adam/step"]) == 35
    assert after["env_steps"] > before["env_steps"]
    assert [int(r["episode"]) for r in read_metrics(run)] == list(range(1, 36))
    assert not np.array_equal(after["logits/kernel"], before["logits/kernel"])


@pytest.mark.parametrize("num_envs", [1, 3])
def test_same_seed_same_weights(tmp_path, num_envs):
    weights = []
    for name in ("a", "b"):
        train(run_dir=tmp_path / name, env_id="CartPole-v1", episodes=12, num_envs=num_envs, seed=9,
              progress=False)
        weights.append(load_checkpoint(tmp_path / name / "checkpoint.npz")["tensors"])
    for key in mit_cartpole.weight_shapes(TrainConfig(env_id="CartPole-v1")):
        assert np.array_equal(weights[0][key], weights[1][key]), key
    initial = fastpong.CategoricalPolicy(seed=9).to_model()
    assert not np.array_equal(weights[0]["dense_0/kernel"], initial["dense_0/kernel"])  # it learned


@pytest.mark.parametrize("num_envs, batch_size", [(1, 1), (4, 2)])
def test_fast_engine_computes_the_reference_engine(tmp_path, num_envs, batch_size):
    """The same command on both engines: the same actions (episode lengths, step for step) and
    weights equal within float32 tolerance."""
    runs = {}
    for engine in ("fast", "reference"):
        run = tmp_path / engine
        train(run_dir=run, env_id="CartPole-v1", engine=engine, episodes=24, num_envs=num_envs,
              batch_size=batch_size, seed=2, progress=False)
        runs[engine] = run
    lengths = {e: [r["length"] for r in read_metrics(run)] for e, run in runs.items()}
    assert lengths["fast"] == lengths["reference"]
    fast, ref = (load_checkpoint(runs[e] / "checkpoint.npz")["tensors"] for e in ("fast", "reference"))
    assert fast.keys() == ref.keys()
    for key in fast:
        np.testing.assert_allclose(fast[key], ref[key], rtol=0, atol=WEIGHT_ATOL, err_msg=key)


def test_target_return_stops_the_run(tmp_path):
    summary = train(run_dir=tmp_path / "run", env_id="CartPole-v1", target_return=1.0, episodes=500,
                    seed=0, progress=False)
    assert summary.episodes == 100  # every return is >= 1: reached once 100 episodes are in


# --- the CLI: training, evaluation, video, plot -------------------------------------------------

def test_cli_trains_cartpole_with_a_json_summary(tmp_path):
    result = run_cli("train", "--env", "CartPole-v1", "--run-dir", str(tmp_path / "run"), "--episodes", "5",
                     "--seed", "1", "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["episodes"] == 5 and summary["updates"] == 5 and summary["steps"] > 0


def test_eval_returns_and_greedy(cartpole_run):
    sampled = evaluate(cartpole_run, episodes=6, num_envs=3, seed=1).summary()
    assert sampled["episodes"] == 6
    for e in sampled["per_episode"]:
        assert e["reward"] == e["steps"] and 1 <= e["steps"] <= 500
    assert sampled["mean_return"] == pytest.approx(np.mean([e["reward"] for e in sampled["per_episode"]]))
    greedy = [evaluate(cartpole_run, episodes=4, num_envs=2, seed=3, greedy=True).summary() for _ in range(2)]
    assert greedy[0] == greedy[1]


def test_preset_lab_is_the_labs_own_settings(tmp_path):
    run = tmp_path / "run"
    result = run_cli("train", "--env", "CartPole-v1", "--preset", "lab", "--episodes", "2", "--run-dir", str(run),
                     "--quiet")
    assert result.returncode == 0, result.stderr
    config = json.loads((run / "config.json").read_text())
    assert (config["gamma"], config["learning_rate"], config["num_envs"], config["hidden"]) == (0.95, 1e-3, 1, 32)


def test_eval_cli_json_and_table(cartpole_run):
    result = run_cli("eval", "--checkpoint", str(cartpole_run), "--episodes", "3", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert {"episodes", "mean_return", "std_return", "mean_length", "std_length", "per_episode"} <= set(summary)
    assert summary["episodes"] == 3
    table = run_cli("eval", "--checkpoint", str(cartpole_run), "--episodes", "2", "--greedy")
    lines = table.stdout.strip().splitlines()
    assert lines[0].split() == ["episode", "return", "steps"] and lines[-1].startswith("mean return")


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_video_of_a_cartpole_episode(tmp_path, cartpole_run, suffix):
    pytest.importorskip("pygame")
    import imageio.v3 as iio

    path = tmp_path / f"pole{suffix}"
    episode = record_video(path, cartpole_run, seed=0, max_steps=12)
    frames = iio.imread(path, index=None)
    assert len(frames) == min(episode.steps, 12)
    assert frames.shape[1:3] == (400, 608)  # gymnasium's 400x600, padded to a multiple of 16


def test_plot_cartpole_run(tmp_path, cartpole_run):
    out = tmp_path / "curve.png"
    result = run_cli("plot", str(cartpole_run), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 0
    figure = fastpong.plot_runs(cartpole_run)
    assert [ax.get_ylabel().split("\n")[0] for ax in figure.axes] == ["return per episode"]  # no win rate


def test_ctrl_c_saves_and_resume_continues(tmp_path):
    """As for Pong: SIGINT stops the run between steps with its checkpoint written, exit 130, and
    the run resumes from it (metrics rows past the checkpoint dropped)."""
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "fastpong", "train", "--env", "CartPole-v1", "--run-dir",
                                str(run), "--seed", "3", "--quiet"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            metrics = run / "metrics.csv"
            if metrics.exists() and len(metrics.read_text().splitlines()) >= 20:
                break
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert "checkpoint written to" in stderr and "Traceback" not in stderr
    saved = load_checkpoint(run / "checkpoint.npz")
    assert saved["episodes"] >= 19 and len(read_metrics(run)) == saved["episodes"]
    resumed = run_cli("train", "--run-dir", str(run), "--resume", "--episodes", str(saved["episodes"] + 3),
                      "--json", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["episodes"] == saved["episodes"] + 3
    assert [int(r["episode"]) for r in read_metrics(run)] == list(range(1, saved["episodes"] + 4))


def test_video_every_records_cartpole(tmp_path):
    pytest.importorskip("pygame")
    run = tmp_path / "run"
    train(run_dir=run, env_id="CartPole-v1", episodes=1, num_envs=1, video_every=1, seed=0, progress=False)
    videos = sorted((run / "video").glob("*.mp4"))
    assert [v.name for v in videos] == ["update-0001.mp4"] and videos[0].stat().st_size > 0
    assert not list((run / "video").glob(".*"))  # the weights snapshot is gone


def test_eval_video_keeps_json_stdout_clean(tmp_path, cartpole_run):
    """pygame greets on stdout when imported; with --json, stdout must hold the JSON alone."""
    pytest.importorskip("pygame")
    video = tmp_path / "pole.mp4"
    result = run_cli("eval", "--checkpoint", str(cartpole_run), "--episodes", "1", "--max-steps", "8",
                     "--video", str(video), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["episodes"] == 1 and video.stat().st_size > 0
    assert "XDG_RUNTIME_DIR" not in result.stderr
