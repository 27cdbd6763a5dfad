"""Crash tests: `fastpong train` is SIGKILLed KILLS times in a row, at random moments (while
playing, during an RMSProp update, at the start and at the end of a checkpoint, metrics or config
write), and resumed after each kill. After every kill the checkpoint loads and metrics.csv agrees
with it; every start removes what the killed writer left; the run then finishes with the right
counts.

tests/crash_driver.py announces each update and write and pauses inside it, so that the kill lands
where it is aimed. KILLS is the figure in README "Reliability".
"""

from __future__ import annotations

import csv
import os
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from fastpong.checkpoint import TEMPORARY_MARKER, load_checkpoint

KILLS = 24
STEPS = 12000  # env steps of the whole run: enough that the kills never let it finish early
PAUSE = 0.2  # seconds the driver spends inside each update and write
#: Where the kills are aimed, drawn at random for each: the checkpoint written after an update
#: most, then the rewrite of metrics.csv (dropping rows past the checkpoint) and of config.json
#: that every resumed start does.
TARGETS = ("play", "update", "write-start checkpoint.npz", "write-end checkpoint.npz",
           "write-start checkpoint.npz", "write-end checkpoint.npz", "write-end metrics.csv",
           "write-end config.json")
DRIVER = Path(__file__).with_name("crash_driver.py")
SETTINGS = ["--steps", str(STEPS), "--num-envs", "2", "--batch-size", "1", "--hidden", "16",
            "--seed", "8", "--quiet"]


def start(run: Path, target: str = "nowhere") -> subprocess.Popen:
    """The same command each time, pausing at `target`: resumed once a checkpoint exists (a run
    killed before its first checkpoint, at startup, is simply started again)."""
    resume = ["--resume"] if (run / "checkpoint.npz").exists() else []
    return subprocess.Popen(
        [sys.executable, str(DRIVER), str(PAUSE), target, "train", "--run-dir", str(run), *resume, *SETTINGS],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def kill_at(process: subprocess.Popen, target: str, rng: np.random.Generator) -> str | None:
    """SIGKILLs the process at the first announcement of `target` ("play": at a random moment
    of play after it). Returns the event it was killed at, or None if it exited first.

    The pipe is read with os.read, not readline: a buffered reader may hold the target's line
    while select() waits on the empty pipe, and the kill would come after the pause is over."""
    fd = process.stdout.fileno()
    pending = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not select.select([fd], [], [], 1.0)[0]:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            return None  # finished (or failed: the caller looks at the exit code)
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            event = line.decode().strip()
            if event.startswith(target):
                if target == "play":
                    time.sleep(rng.uniform(0.0, 0.5))
                process.send_signal(signal.SIGKILL)
                return event
    raise AssertionError(f"no '{target}' within 60 s")


def metrics_rows(run: Path) -> list[list[str]]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.reader(f))[1:]


def assert_consistent(run: Path) -> None:
    """The checkpoint loads; metrics.csv holds each of its episodes exactly once, in order."""
    if not (run / "checkpoint.npz").exists():
        assert not (run / "config.json").exists()  # killed in its first moments: a fresh start
        return
    saved = load_checkpoint(run / "checkpoint.npz", input_size=6400)
    episodes = saved["episodes"]
    if not (run / "metrics.csv").exists():
        assert episodes == 0
        return
    rows = [row for row in metrics_rows(run) if len(row) == 8]  # a row cut by the kill is dropped on resume
    covered = [int(row[0]) for row in rows if int(row[0]) <= episodes]
    assert covered == list(range(1, episodes + 1)), (episodes, covered)
    assert all(int(row[1]) <= saved["env_steps"] for row in rows if int(row[0]) <= episodes)


def temporaries(run: Path) -> list[Path]:
    return sorted(run.glob(f".*{TEMPORARY_MARKER}*"))


def test_sigkill_at_random_moments_then_resume(tmp_path):
    rng = np.random.default_rng(21)
    run = tmp_path / "run"
    kills, left_behind = Counter(), 0
    for _ in range(KILLS):
        target = str(rng.choice(TARGETS))
        process = start(run, target)
        event = kill_at(process, target, rng)
        stderr = process.communicate(timeout=60)[1].decode()
        assert event is not None, f"exited {process.returncode} before '{target}': {stderr}"
        assert process.returncode == -signal.SIGKILL, stderr
        kills[event] += 1
        if event.startswith("write"):  # the kill landed inside a write: its temporary file is there
            assert [p.name for p in temporaries(run)] == [f".{event.split()[1]}{TEMPORARY_MARKER}{process.pid}"]
            left_behind += 1
        assert_consistent(run)

    finish = start(run)
    _, stderr = finish.communicate(timeout=120)
    stderr = stderr.decode()
    assert finish.returncode == 0, stderr
    saved = load_checkpoint(run / "checkpoint.npz")
    assert saved["env_steps"] == STEPS
    rows = metrics_rows(run)
    assert [int(row[0]) for row in rows] == list(range(1, saved["episodes"] + 1))  # none lost, none twice
    assert all(int(row[1]) <= STEPS for row in rows)
    assert saved["updates"] == saved["episodes"]  # batch size 1
    assert temporaries(run) == []
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.npz", "config.json", "metrics.csv"]
    print(f"{KILLS} SIGKILLs: {dict(kills)}; the {left_behind} inside a write each left a temporary file, "
          f"removed by the next start; finished at {saved['episodes']} episodes, {STEPS} steps")
    assert kills["update"] and kills["play"] and kills["write-end checkpoint.npz"]


def test_leftovers_of_a_killed_writer_never_block_a_fresh_start(tmp_path):
    """A process killed while writing its very first checkpoint leaves only a temporary file: the
    same command starts the run afresh (no --resume needed) and removes it."""
    run = tmp_path / "run"
    process = start(run, "write-end")
    assert kill_at(process, "write-end", np.random.default_rng(0)) == "write-end checkpoint.npz"
    process.communicate(timeout=60)
    assert [p.name for p in temporaries(run)] == [f".checkpoint.npz{TEMPORARY_MARKER}{process.pid}"]
    assert not (run / "checkpoint.npz").exists()
    fresh = subprocess.run([sys.executable, "-m", "fastpong", "train", "--run-dir", str(run),
                            "--steps", "100", *SETTINGS[2:]],
                           capture_output=True, text=True, timeout=120)
    assert fresh.returncode == 0, fresh.stderr
    assert temporaries(run) == [] and load_checkpoint(run / "checkpoint.npz")["env_steps"] == 100
