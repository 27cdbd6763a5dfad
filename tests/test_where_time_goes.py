"""experiments/where_time_goes.py: its accounting of a short training session (no timings judged,
except that the parts add up to the session's wall-clock read on a separate clock)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "experiments" / "where_time_goes.py"


@pytest.fixture(scope="module")
def where_time_goes():
    spec = importlib.util.spec_from_file_location("where_time_goes", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Clock:
    """A perf_counter and a process CPU clock that move only when told."""

    def __init__(self):
        self.now = 0.0
        self.cpu = 0.0

    def perf_counter(self):
        return self.now

    def process_time(self):
        return self.cpu


def test_stopwatch_gives_nested_time_to_the_inner_part(where_time_goes, monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(where_time_goes, "time", clock)
    stopwatch = where_time_goes.Stopwatch()

    def work(seconds):
        clock.now += seconds

    inner = stopwatch.wrap("inner", work)
    middle = stopwatch.wrap("middle", lambda: (work(1.0), inner(5.0)))
    outer = stopwatch.wrap("outer", lambda: (work(0.5), middle(), inner(2.0), middle()))
    outer()
    assert stopwatch.calls == {"inner": 3, "middle": 2, "outer": 1}
    assert dict(stopwatch.seconds) == {"inner": 12.0, "middle": 2.0, "outer": 0.5}
    assert not stopwatch.cpu_seconds  # no part asked for its CPU time


def test_stopwatch_counts_cpu_only_for_the_parts_asked(where_time_goes, monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(where_time_goes, "time", clock)
    stopwatch = where_time_goes.Stopwatch(cpu_parts=("setup",))

    def work(seconds, cores):
        clock.now += seconds
        clock.cpu += seconds * cores

    setup = stopwatch.wrap("setup", lambda: work(1.0, 1.5))
    play = stopwatch.wrap("play", lambda: (work(2.0, 2.0), setup()))
    play()
    setup()
    assert dict(stopwatch.seconds) == {"play": 2.0, "setup": 2.0}
    assert dict(stopwatch.cpu_seconds) == {"setup": 3.0}


@pytest.mark.parametrize("agent", ["karpathy", "mit-pong"])
def test_parts_of_a_short_session_add_up(where_time_goes, agent):
    from fastpong.envs import EnvBatch
    from fastpong.train import _Run

    recv, save = EnvBatch.recv, _Run._save
    run = where_time_goes.measure_training(agent, steps=300, num_envs=2)
    assert run["steps"] == 300
    parts = run["seconds"]
    assert set(parts) == set(where_time_goes.PARTS)
    # session_seconds is the session's wall-clock read on its own clock, not the parts' sum: time
    # counted twice (a nested call in both parts) or lost (a call in no part, or dropped from
    # its part) shows as a gap. The gap allowed is the stopwatch's own overhead and a scheduler
    # hiccup on a busy machine, far under a part's share of a ~1 s session.
    assert sum(parts.values()) == pytest.approx(run["session_seconds"], rel=0.01, abs=0.01)
    # Nested calls are not counted twice: the parts fit inside the train() call that holds them.
    assert run["session_seconds"] <= run["call_seconds"]
    for part in ("emulator", "preprocess", "forward", "checkpoint", "env setup", "rest"):
        assert parts[part] > 0, part
    calls = run["calls"]
    assert calls["preprocess"] == calls["forward"] > 0  # one observe, one act per lane step
    assert calls["emulator"] >= 2 * calls["forward"]  # a send and a recv per lane step
    assert (EnvBatch.recv, _Run._save) == (recv, save)  # the library is as it was
    # CPU time: the session's, of which building and closing the environments is a part, and
    # playing and learning (the rest) took some.
    assert 0 < run["setup_cpu_seconds"] < run["session_cpu_seconds"]
    assert run["play_cpu_seconds"] == pytest.approx(run["session_cpu_seconds"] - run["setup_cpu_seconds"])
    assert run["play_seconds"] == pytest.approx(run["session_seconds"] - parts["env setup"])


def test_bare_env_steps_at_least_what_was_asked(where_time_goes):
    bare = where_time_goes.measure_bare_env(steps=7, num_envs=2)
    assert bare["steps"] == 8 and bare["seconds"] > 0 and bare["cpu_seconds"] > 0


def _result(bounds_steps_per_second):
    run = dict(agent="mit-pong", steps=20000, episodes=25, updates=5, session_seconds=10.0,
               seconds={part: 10.0 / 7 for part in ("emulator", "preprocess", "forward",
                                                    "backward + optimizer", "checkpoint",
                                                    "env setup", "rest")})
    bare = [dict(steps=20000, seconds=20000 / rate, steps_per_second=rate)
            for rate in bounds_steps_per_second]
    return dict(training=[run], bare_env_before=bare[0], bare_env=bare[1])


def test_each_rate_is_given_against_both_bounds(where_time_goes, capsys):
    where_time_goes.print_table(_result([4000.0, 2500.0]))
    out = capsys.readouterr().out
    assert "mit-pong: 2,000 env steps/s, 0.50 and 0.80 of the bound" in out
    assert "the machine's speed moved" in out  # 2,500 against 4,000: more than 10% apart


def test_bounds_that_agree_raise_no_drift_warning(where_time_goes, capsys):
    where_time_goes.print_table(_result([4000.0, 3900.0]))
    out = capsys.readouterr().out
    assert "0.50 and 0.51 of the bound" in out
    assert "speed moved" not in out


def _result_with_cpu():
    """A 2-core machine: the bound steps 4,000 a second on 1.5 cores busy (375 us of CPU a step);
    the agent took 600 us of CPU a step (1.6x), so with both cores busy it could reach
    2 / 600e-6 = 3,333 steps/s, 0.83 of the bound, though it ran at 2,000."""
    result = _result([4000.0, 4000.0])
    for bare in (result["bare_env_before"], result["bare_env"]):
        bare["cpu_seconds"] = 1.5 * bare["seconds"]
    run = result["training"][0]
    run.update(play_seconds=10.0 - 10.0 / 7, play_cpu_seconds=600e-6 * run["steps"])
    result["cores"] = 2
    return result


def test_cpu_ceiling_is_cores_over_cpu_per_step(where_time_goes, capsys):
    where_time_goes.print_table(_result_with_cpu())
    out = capsys.readouterr().out
    assert "bare vector env (before the agents): 375 us, 1.50 cores busy" in out
    assert "mit-pong: 600 us (1.60x the bare env's)" in out
    assert "it could run at most 3,333 steps/s, 0.83 and 0.83 of the bound" in out


def test_results_without_cpu_times_print_no_ceiling(where_time_goes, capsys):
    where_time_goes.print_table(_result([4000.0, 4000.0]))
    assert "CPU time per env step" not in capsys.readouterr().out
