"""One run per directory: a second training process on a run directory is refused with one line
and exit 2, while the first one lives; the lock dies with its process, even by SIGKILL."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest
from test_cli import assert_one_line_error, run_cli, snapshot

from fastpong import runlock
from fastpong.checkpoint import load_checkpoint
from fastpong.runlock import RunDirectoryInUse, RunLock
from fastpong.train import train

IN_USE = "is in use by another fastpong train process"


def start_training(run, *args):
    """A `fastpong train` that would run for hours, returned once it holds its run directory."""
    process = subprocess.Popen(
        [sys.executable, "-m", "fastpong", "train", "--run-dir", str(run), "--steps", "100000000",
         "--num-envs", "1", "--seed", "3", "--quiet", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (run / "config.json").exists():  # written after the lock is taken
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"training did not start: {process.communicate()[1]}")
        time.sleep(0.05)
    return process


def test_second_process_is_refused_until_the_first_dies(tmp_path):
    run = tmp_path / "run"
    first = start_training(run)
    try:
        assert_one_line_error(run_cli("train", "--run-dir", str(run), "--resume", "--steps", "10"), IN_USE)
        # Without --resume as well: the lock is checked before the directory's contents.
        assert_one_line_error(run_cli("train", "--run-dir", str(run), "--steps", "10"), IN_USE, str(run))
        assert first.poll() is None  # the refusals did not disturb the run
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
    assert first.returncode == -signal.SIGKILL
    # The kernel dropped the dead process's lock: the run resumes at once, no stale lock to delete.
    steps = load_checkpoint(run / "checkpoint.npz")["env_steps"] + 20
    resumed = run_cli("train", "--run-dir", str(run), "--resume", "--steps", str(steps), "--num-envs", "1",
                      "--json", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["steps"] == steps


def test_refused_in_process_writes_nothing(tmp_path):
    run = tmp_path / "run"
    train(run_dir=run, steps=20, num_envs=1, seed=1, progress=False)
    before = snapshot(run)
    with RunLock().acquire(run):
        with pytest.raises(RunDirectoryInUse, match=IN_USE):
            train(run_dir=run, resume=True, steps=40, num_envs=1, progress=False)
    assert snapshot(run) == before
    summary = train(run_dir=run, resume=True, steps=40, num_envs=1, progress=False)  # free again
    assert summary.steps == 40


def test_lock_is_exclusive_and_released(tmp_path):
    first = RunLock().acquire(tmp_path)
    assert first.held and first.acquire(tmp_path) is first  # re-acquiring one's own lock is a no-op
    with pytest.raises(RunDirectoryInUse):
        RunLock().acquire(tmp_path)  # another open file description, even in this process
    first.release()
    first.release()  # twice is harmless
    with RunLock().acquire(tmp_path) as second:
        assert second.held
    assert not second.held
    assert list(tmp_path.iterdir()) == []  # locking a directory writes nothing into it


def test_lock_file_when_directories_cannot_be_locked(tmp_path, monkeypatch):
    """NFS, for one, emulates flock with POSIX locks, which refuse a descriptor opened read-only,
    as a directory's is: the lock then lives on a .lock file."""
    real_flock = runlock.fcntl.flock

    def flock_files_only(fd, operation):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EBADF, "Bad file descriptor")
        return real_flock(fd, operation)

    monkeypatch.setattr(runlock.fcntl, "flock", flock_files_only)
    with RunLock().acquire(tmp_path) as lock:
        assert lock.held and (tmp_path / runlock.LOCK_FILE).exists()
        with pytest.raises(RunDirectoryInUse):
            RunLock().acquire(tmp_path)
    with RunLock().acquire(tmp_path) as again:  # the file stays; its lock went with the descriptor
        assert again.held


def test_no_locking_at_all_warns_and_goes_on(tmp_path, monkeypatch, capsys):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(runlock.fcntl, "flock", no_locks)
    lock = RunLock().acquire(tmp_path)
    assert not lock.held
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot lock" in err[0] and "No locks available" in err[0]


def test_stale_temporary_files_are_removed_on_the_next_start(tmp_path):
    """What a writer killed mid-write leaves (see test_crash.py) is deleted under the lock."""
    run = tmp_path / "run"
    train(run_dir=run, steps=20, num_envs=1, seed=1, progress=False)
    stale = [run / ".checkpoint.npz.tmp-999999", run / ".metrics.csv.tmp-999998", run / ".write-test.tmp-1"]
    for path in stale:
        path.write_bytes(b"half a file")
    keep = run / "notes.txt"  # anything else is the user's
    keep.write_text("mine")
    train(run_dir=run, resume=True, steps=40, num_envs=1, progress=False)
    assert not any(path.exists() for path in stale)
    assert keep.read_text() == "mine"
