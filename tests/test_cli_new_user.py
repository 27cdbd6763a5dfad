"""What a new user meets at the command line and used to get a traceback or a silent result for:
a resumed run with nothing left to do (it reported success as though it had trained), and Ctrl-C
before training installs its handlers or during eval (a KeyboardInterrupt traceback)."""

import importlib
import signal
import subprocess
import sys

import pytest

from fastpong.cli import main
from fastpong.train import StopSignals, train


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "fastpong", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def solved_run(tmp_path_factory):
    """A CartPole run stopped by its default rule: the mean of its last 100 returns reached 475."""
    run = tmp_path_factory.mktemp("solved") / "run"
    summary = train(env_id="CartPole-v1", run_dir=run, seed=1, progress=False)
    return run, summary.episodes


@pytest.mark.parametrize("args, why", [
    ([], "the mean return of its last 100 episodes, "),  # solved, and no new stop rule
    (["--episodes", "5"], "episodes and --episodes 5 counts the whole run"),
    (["--steps", "10"], "steps and --steps 10 counts the whole run"),
])
def test_resume_with_nothing_left_to_do_says_so(solved_run, args, why):
    run, episodes = solved_run
    result = run_cli("train", "--run-dir", str(run), "--resume", "--quiet", *args)
    assert result.returncode == 0, result.stderr  # it loaded the run and found its stop rule met
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"fastpong train: nothing left to do in {run} (")
    assert why in lines[0] and lines[0].endswith("ask for more with --episodes, --steps or --target-return")
    assert train(run_dir=run, resume=True, progress=False).episodes == episodes  # nothing was trained


def test_resume_with_more_to_do_goes_on(solved_run, tmp_path):
    run, episodes = solved_run
    copy = tmp_path / "run"
    copy.mkdir()
    for path in run.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    summary = train(run_dir=copy, resume=True, episodes=episodes + 2, progress=False)
    assert summary.episodes == episodes + 2


@pytest.fixture
def own_signal_handlers():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_ctrl_c_before_the_run_installs_its_handlers_is_one_line(tmp_path, capsys, monkeypatch,
                                                                  own_signal_handlers):
    monkeypatch.setattr(StopSignals, "install", _interrupt)  # the signal lands just before
    assert main(["train", "--run-dir", str(tmp_path / "run"), "--steps", "8"]) == 130
    assert capsys.readouterr().err == "fastpong train: interrupted\n"
    assert not (tmp_path / "run").exists()


def test_ctrl_c_during_eval_is_one_line(capsys, monkeypatch):
    monkeypatch.setattr(importlib.import_module("fastpong.evaluate"), "evaluate", _interrupt)
    assert main(["eval", "--checkpoint", "pretrained"]) == 130
    captured = capsys.readouterr()
    assert captured.err == "fastpong eval: interrupted\n" and captured.out == ""
