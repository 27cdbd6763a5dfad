"""The fastpong command: bad input gives one line and exit 2 with nothing touched; signals stop a
run with its checkpoint written; --json prints what it promises."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from fastpong.cli import main
from fastpong.train import train


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "fastpong", *args], capture_output=True, text=True,
                          timeout=timeout)


def snapshot(directory):
    """Name -> sha256 of every file: proves a refused command changed nothing."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "run"
    train(run_dir=run, episodes=1, num_envs=1, batch_size=1, seed=2, progress=False)
    return run


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert result.stdout == ""


@pytest.mark.parametrize("args, fragments", [
    (["--env", "ALE/Pnog-v5"], ["unknown environment id 'ALE/Pnog-v5'"]),
    (["--episodes", "0"], ["--episodes", "positive integer, got 0"]),
    (["--num-envs", "-2"], ["--num-envs", "positive integer"]),
    (["--num-envs", "100000"], ["num envs must be at most 1024", "got 100000"]),  # not hours of emulators
    (["--batch-size", "x"], ["--batch-size", "got 'x'"]),
    (["--learning-rate", "0"], ["learning rate must be a positive number, got 0.0"]),
    (["--gamma", "1.5"], ["gamma must be in (0, 1], got 1.5"]),
    (["--gamma", "0"], ["gamma must be in (0, 1]"]),
    (["--decay-rate", "1"], ["decay rate must be in [0, 1)"]),
    (["--engine", "turbo"], ["invalid choice: 'turbo'"]),
    (["--episodes", "2", "--steps", "5"], ["not allowed with argument"]),
    (["--engine", "reference", "--num-envs", "2"], ["reference engine runs one environment"]),
])
def test_train_bad_arguments(tmp_path, args, fragments):
    result = run_cli("train", "--run-dir", str(tmp_path / "run"), *args)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "run").exists()  # refused before any work: nothing written


def test_train_unwritable_run_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert_one_line_error(run_cli("train", "--run-dir", str(blocker / "run")), "not writable")
    assert_one_line_error(run_cli("train", "--run-dir", str(blocker)), "not a directory")


def test_resume_needs_run_dir():
    assert_one_line_error(run_cli("train", "--resume"), "--resume needs --run-dir")


def test_resume_without_checkpoint(tmp_path):
    assert_one_line_error(run_cli("train", "--run-dir", str(tmp_path), "--resume"), "no checkpoint in")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "other_shapes", "non_finite", "rng_state"])
def test_resume_bad_checkpoint_changes_nothing(tmp_path, trained_run, damage):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "metrics.csv", "checkpoint.npz"):
        (run / name).write_bytes((trained_run / name).read_bytes())
    checkpoint = run / "checkpoint.npz"
    data = checkpoint.read_bytes()
    if damage == "truncated":
        checkpoint.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        checkpoint.write_bytes(b"\x00not a checkpoint" * 64)
    else:
        with np.load(checkpoint) as npz:
            arrays = dict(npz)
        if damage == "other_shapes":
            arrays["cache_W1"] = arrays["cache_W1"][:, :100]
        elif damage == "rng_state":
            arrays["rng_state"] = np.array(json.dumps({"bit_generator": "PCG64", "state": "nonsense"}))
        else:
            arrays["W2"] = np.full_like(arrays["W2"], np.nan)
        with open(checkpoint, "wb") as f:
            np.savez(f, **arrays)
    before = snapshot(run)
    result = run_cli("train", "--run-dir", str(run), "--resume", "--episodes", "3")
    assert_one_line_error(result, str(checkpoint))
    assert snapshot(run) == before


def test_resume_changes_the_learning_rate_only_when_it_is_typed(tmp_path):
    """`--preset karpathy --resume` continues a run at its own rate (a preset is where a run
    started, not a request to change it); a typed --learning-rate changes it and says so."""
    run = tmp_path / "run"
    train(run_dir=run, episodes=1, num_envs=1, batch_size=10, seed=2, progress=False, learning_rate=1e-3)
    result = run_cli("train", "--preset", "karpathy", "--run-dir", str(run), "--resume", "--episodes", "2",
                     "--num-envs", "1")
    assert result.returncode == 0, result.stderr
    assert not (run / "learning_rates.csv").exists()
    assert json.loads((run / "config.json").read_text())["learning_rate"] == 1e-3
    result = run_cli("train", "--run-dir", str(run), "--resume", "--episodes", "3", "--num-envs", "1",
                     "--learning-rate", "3e-4")
    assert result.returncode == 0, result.stderr
    assert "learning rate 0.001 -> 0.0003 from game 2 on" in result.stderr
    assert (run / "learning_rates.csv").read_text().splitlines() == ["episode,learning_rate", "0,0.001", "2,0.0003"]


def test_a_preset_with_resume_changes_no_schedule(tmp_path):
    """`--preset lab-entropy --resume` on a run started with another entropy weight continues at
    the run's own weight: only a typed flag changes a schedule."""
    run = tmp_path / "run"
    common = ["--run-dir", str(run), "--num-envs", "1", "--threads", "1", "--quiet"]
    first = run_cli("train", "--agent", "mit-pong", "--preset", "lab-entropy", "--entropy-coef", "0.02",
                    "--steps", "20", *common)
    assert first.returncode == 0, first.stderr
    resumed = run_cli("train", "--agent", "mit-pong", "--preset", "lab-entropy", "--resume", "--steps", "40", *common)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "config.json").read_text())["entropy_coef"] == 0.02
    assert not (run / "setting_changes.csv").exists()


def test_existing_run_of_other_config_is_refused(tmp_path, trained_run):
    before = snapshot(trained_run)
    result = run_cli("train", "--run-dir", str(trained_run), "--learning-rate", "0.01", "--episodes", "2")
    assert_one_line_error(result, "already holds a run with other settings", "learning_rate: 0.01 != 0.0001")
    assert snapshot(trained_run) == before
    result = run_cli("train", "--run-dir", str(trained_run), "--resume", "--gamma", "0.9", "--episodes", "2")
    assert_one_line_error(result, "gamma: 0.9 != 0.99")
    assert snapshot(trained_run) == before


def test_train_json_summary(tmp_path):
    result = run_cli("train", "--run-dir", str(tmp_path / "run"), "--steps", "200", "--num-envs", "2",
                     "--seed", "1", "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert {"steps", "episodes", "updates", "seconds", "steps_per_second", "running_reward"} <= set(summary)
    assert summary["steps"] == 200 and summary["steps_per_second"] > 0
    assert result.stderr == ""  # --quiet: no progress bar, no closing line


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_cleanly_and_resume_continues(tmp_path, sig, code):
    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "fastpong", "train", "--run-dir", str(run), "--num-envs", "2", "--seed", "4",
         "--batch-size", "1", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # wait for a finished episode, so there is progress
            metrics = run / "metrics.csv"
            if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
                break
            time.sleep(0.2)
        process.send_signal(sig)
        time.sleep(0.05)
        process.send_signal(sig)  # twice, as an impatient user or `timeout` does: the save goes on
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == code, stderr
    assert "checkpoint written to" in stderr and "Traceback" not in stderr
    from fastpong.checkpoint import load_checkpoint

    saved = load_checkpoint(run / "checkpoint.npz")
    assert saved["episodes"] >= 1
    resumed = run_cli("train", "--run-dir", str(run), "--resume", "--episodes", str(saved["episodes"] + 1),
                      "--json", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["episodes"] == saved["episodes"] + 1


def test_main_returns_exit_codes_in_process(tmp_path, capsys):
    assert main(["train", "--run-dir", str(tmp_path / "r"), "--gamma", "2"]) == 2
    assert "gamma must be in (0, 1]" in capsys.readouterr().err


def test_preset_sets_defaults_and_flags_win(tmp_path):
    result = run_cli("train", "--preset", "tutorial", "--learning-rate", "3e-4", "--run-dir", str(tmp_path / "run"),
                     "--steps", "100", "--num-envs", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["batch_size"] == 3 and config["learning_rate"] == 3e-4 and config["hidden"] == 200
    assert_one_line_error(run_cli("train", "--preset", "turbo"), "invalid choice: 'turbo'")
