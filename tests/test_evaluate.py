"""fastpong eval / evaluate(), video recording and the plot command, kept short."""

import json
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

import fastpong
from fastpong.evaluate import evaluate, record_video
from fastpong.video import FRAME_HEIGHT, FRAME_WIDTH

SUMMARY_FIELDS = {"episodes", "mean_reward", "std_reward", "episodes_won", "points_won", "points_lost",
                  "point_win_rate"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("eval") / "policy.npz"
    np.savez(path, **fastpong.Policy(seed=0).to_model())
    return path


def test_full_games_are_consistent(checkpoint):
    result = evaluate(checkpoint, episodes=3, num_envs=2, seed=1)
    assert len(result.episodes) == 3
    for e in result.episodes:  # a 21-point game: one side reaches 21
        assert not e.truncated and max(e.points_won, e.points_lost) == 21
        assert e.reward == e.points_won - e.points_lost and e.steps > 0
    s = result.summary()
    assert s["points_won"] == sum(e.points_won for e in result.episodes)
    assert s["points_lost"] == sum(e.points_lost for e in result.episodes)
    assert s["point_win_rate"] == pytest.approx(s["points_won"] / (s["points_won"] + s["points_lost"]))
    assert s["mean_reward"] == pytest.approx(np.mean([e.reward for e in result.episodes]))


def test_greedy_is_deterministic(checkpoint):
    a = evaluate(checkpoint, episodes=2, num_envs=2, seed=3, greedy=True, max_steps=150).summary()
    b = evaluate(checkpoint, episodes=2, num_envs=2, seed=3, greedy=True, max_steps=150).summary()
    assert a == b


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_video_decodes_with_expected_frames(tmp_path, checkpoint, suffix):
    path = tmp_path / f"episode{suffix}"
    episode = record_video(path, checkpoint, seed=0, max_steps=40)
    assert episode.truncated and episode.steps == 40
    frames = iio.imread(path, index=None)
    assert frames.shape == (40, FRAME_HEIGHT, FRAME_WIDTH, 3)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "fastpong", *args], capture_output=True, text=True, timeout=120)


def test_eval_json_has_every_field(checkpoint):
    result = run_cli("eval", "--checkpoint", str(checkpoint), "--episodes", "2", "--max-steps", "100", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert SUMMARY_FIELDS <= set(summary) and summary["episodes"] == 2


def test_eval_table(checkpoint):
    result = run_cli("eval", "--checkpoint", str(checkpoint), "--episodes", "2", "--max-steps", "60")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["episode", "won", "lost", "reward", "steps"]
    assert len(lines) == 4 and lines[-1].startswith("mean reward")


@pytest.mark.parametrize("args, fragment", [
    (["--checkpoint", "missing.npz"], "no checkpoint at missing.npz"),
    (["--video", "out.avi"], "unsupported video extension '.avi'"),
    (["--video", "/nonexistent-dir/out.mp4"], "/nonexistent-dir"),
    (["--episodes", "0"], "positive integer"),
])
def test_eval_bad_input(tmp_path, checkpoint, args, fragment):
    full = ["--checkpoint", str(checkpoint), *args] if args[0] != "--checkpoint" else args
    result = run_cli("eval", *full)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert fragment in result.stderr and "Traceback" not in result.stderr


def test_eval_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    result = run_cli("eval", "--checkpoint", str(bad))
    assert result.returncode == 2 and "truncated or corrupt" in result.stderr


def test_plot_command_writes_png(tmp_path):
    from fastpong.train import train

    run = tmp_path / "run"
    train(run_dir=run, episodes=2, num_envs=2, seed=0, progress=False)
    out = tmp_path / "curve.png"
    result = run_cli("plot", str(run), "-o", str(out))
    assert result.returncode == 0, result.stderr
    with Image.open(out) as image:
        assert image.size == (1000, 700)
    missing = run_cli("plot", str(tmp_path / "nothing"), "-o", str(tmp_path / "c.png"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert not (tmp_path / "c.png").exists()


def test_train_video_every_writes_update_videos(tmp_path):
    from fastpong.train import train

    run = tmp_path / "run"
    train(run_dir=run, episodes=1, num_envs=1, batch_size=1, video_every=1, seed=0, progress=False)
    video = run / "video" / "update-0001.mp4"
    frames = iio.imread(video, index=None)  # train waits for the recorder of a finished run
    assert frames.shape[1:] == (FRAME_HEIGHT, FRAME_WIDTH, 3) and len(frames) > 100
    assert not list((run / "video").glob(".*"))  # the weights snapshot was consumed
