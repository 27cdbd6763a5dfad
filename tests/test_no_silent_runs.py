"""Runs that used to go on silently or end wrongly: an Atari game no agent was built for (refused,
exit 2, listing the ids the agent plays), CartPole with no stop rule (stops when solved, and says
so), and a crash inside the training loop (exit 1 with the checkpoint written, not a usage error)."""

import json
import signal
import subprocess
import sys

import numpy as np
import pytest

from fastpong.agents import AGENTS, PONG_ENV_IDS, Agent
from fastpong.agents.lab_learner import LabLearner
from fastpong.checkpoint import load_checkpoint
from fastpong.cli import main
from fastpong.train import TrainingCrash, train


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "fastpong", *args], capture_output=True, text=True,
                          timeout=timeout)


def one_line_usage_error(result) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


# --- Atari games an agent was not built for ---------------------------------------------------

@pytest.mark.parametrize("agent", ["karpathy", "mit-pong"])
def test_train_refuses_a_game_the_agent_was_not_built_for(tmp_path, agent):
    run = tmp_path / "run"
    line = one_line_usage_error(run_cli("train", "--env", "ALE/Breakout-v5", "--agent", agent,
                                        "--episodes", "2", "--run-dir", str(run)))
    assert f"agent '{agent}' plays {', '.join(PONG_ENV_IDS)}, not 'ALE/Breakout-v5'" in line
    assert "no fastpong agent plays ALE/Breakout-v5" in line
    assert not run.exists()  # refused before any work


def test_eval_refuses_a_game_the_policy_was_not_built_for():
    line = one_line_usage_error(run_cli("eval", "--checkpoint", "pretrained", "--env", "ALE/Breakout-v5",
                                        "--episodes", "1"))
    assert "agent 'karpathy' plays ALE/Pong-v5" in line and "not 'ALE/Breakout-v5'" in line


def test_a_typo_still_gets_gymnasiums_hint():
    line = one_line_usage_error(run_cli("train", "--env", "ALE/Pnog-v5"))
    assert "unknown environment id 'ALE/Pnog-v5'" in line and "did you mean 'ALE/Pong-v5'" in line


def test_every_agent_declares_its_games():
    for agent in AGENTS.values():
        assert agent.env_ids and all(isinstance(env_id, str) for env_id in agent.env_ids)
    with pytest.raises(TypeError, match="env_ids"):  # declaring them is not optional
        Agent(name="x", summary="", env_kind="atari", defaults={}, learners={}, weight_shapes=dict,
              tensor_shapes=dict, policy_from_weights=dict)


# --- CartPole stops when solved ----------------------------------------------------------------

def test_cartpole_with_no_stop_rule_stops_when_solved_and_says_so(tmp_path):
    run = tmp_path / "run"
    result = run_cli("train", "--env", "CartPole-v1", "--seed", "1", "--run-dir", str(run), timeout=300)
    assert result.returncode == 0, result.stderr
    assert "stop at mean_last_100 >= 475 (CartPole-v1 solved)" in result.stderr  # the progress line
    assert json.loads((run / "config.json").read_text())["target_return"] == 475
    rewards = np.loadtxt(run / "metrics.csv", delimiter=",", skiprows=1, usecols=_column(run, "reward"))
    assert len(rewards) >= 100 and rewards[-100:].mean() >= 475
    assert rewards[-101:-1].mean() < 475 or len(rewards) == 100  # stopped at the first solved episode


def _column(run, name) -> int:
    return (run / "metrics.csv").read_text().splitlines()[0].split(",").index(name)


@pytest.mark.parametrize("stop", [dict(episodes=3), dict(steps=50), dict(target_return=20.0)])
def test_an_explicit_stop_rule_replaces_the_default(tmp_path, stop):
    summary = train(env_id="CartPole-v1", run_dir=tmp_path / "run", seed=0, progress=False, **stop)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["target_return"] == stop.get("target_return")
    if "episodes" in stop:
        assert summary.episodes == 3
    if "steps" in stop:
        assert summary.steps >= 50 and summary.steps < 50 + 8  # one step of 8 poles past the limit at most


def test_pong_has_no_default_stop(tmp_path):
    summary = train(run_dir=tmp_path / "run", steps=8, num_envs=2, seed=0, progress=False)
    assert summary.steps == 8
    assert json.loads((tmp_path / "run" / "config.json").read_text())["target_return"] is None


# --- a crash mid-run ---------------------------------------------------------------------------

@pytest.fixture
def failing_update(monkeypatch):
    """The lab learner's third update raises, as a kernel refusing the learner's own data did."""
    calls = []
    original = LabLearner.update

    def update(self):
        calls.append(1)
        if len(calls) == 3:
            raise ValueError("uniforms must be in [0, 1), got 1.000000 at row 3")
        original(self)

    monkeypatch.setattr(LabLearner, "update", update)


def test_a_crash_in_the_loop_writes_the_checkpoint_and_says_what_it_is(tmp_path, failing_update):
    with pytest.raises(TrainingCrash, match="training crashed: ValueError: uniforms must be in") as raised:
        train(env_id="CartPole-v1", run_dir=tmp_path / "run", episodes=50, num_envs=1, seed=0, progress=False)
    assert isinstance(raised.value.__cause__, ValueError)
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.npz")
    assert saved["updates"] == 2 and saved["episodes"] == 3  # the crashing episode counted, its update not


@pytest.fixture
def own_signal_handlers():
    """main() installs its stop-signal handlers for good: put pytest's back afterwards."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_the_cli_reports_a_crash_as_exit_1_not_a_usage_error(tmp_path, capsys, failing_update,
                                                               own_signal_handlers):
    run = tmp_path / "run"
    code = main(["train", "--env", "CartPole-v1", "--run-dir", str(run), "--episodes", "50", "--num-envs", "1",
                 "--seed", "0", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("fastpong train: training crashed: ValueError: uniforms must be in"), last
    assert f"checkpoint written to {run / 'checkpoint.npz'}" in last and "--resume" in last
    assert not last.startswith("fastpong train: error:")  # not the usage-error form
    assert load_checkpoint(run / "checkpoint.npz")["episodes"] == 3
