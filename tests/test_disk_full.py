"""A full disk and an unwritable directory, hit in the middle of a run: the run stops with one
clear line and exit 1, the last good checkpoint is intact (and metrics.csv agrees with it once
resumed), no temporary file is left, and the run resumes once there is room again.

A full disk is played by a file-size limit (RLIMIT_FSIZE, set on the running process as
`prlimit --pid` does): a write past it fails with EFBIG as a full disk fails with ENOSPC, through
the same code. An unwritable directory is made with chmod. Permissions do not stop root, whose
CAP_DAC_OVERRIDE capability bypasses them, and CI runs as root in a container (an overlay
filesystem, where chattr +i fails). So the processes in that test start without that capability
(dropped from the bounding set before exec, as `capsh --drop=cap_dac_override` does): the kernel's
own permission check then refuses their writes, as it does for a user's.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
from test_cli import assert_one_line_error, run_cli
from test_crash import metrics_rows, temporaries

from fastpong.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

SETTINGS = ["--num-envs", "2", "--batch-size", "1", "--hidden", "16", "--seed", "6", "--quiet"]


def train_until_first_update(run, **popen):
    """A long `fastpong train`, returned once its checkpoint holds a finished episode."""
    process = subprocess.Popen([sys.executable, "-m", "fastpong", "train", "--run-dir", str(run),
                                "--steps", "10000000", *SETTINGS], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, **popen)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(CheckpointError):  # not written yet
            if load_checkpoint(run / "checkpoint.npz")["episodes"] >= 1:
                return process
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"no update within 90 s: {process.communicate()[1]}")


def assert_stopped_cleanly(process, run, *fragments):
    """One line, exit 1; the checkpoint it leaves loads and the run resumes from it."""
    _, stderr = process.communicate(timeout=60)
    lines = stderr.strip().splitlines()
    assert process.returncode == 1 and len(lines) == 1 and "Traceback" not in stderr, stderr
    for fragment in ("fastpong train: error: cannot write", "checkpoint.npz", "intact", "--resume",
                     *fragments):
        assert fragment in lines[0], lines[0]
    assert temporaries(run) == []
    saved = load_checkpoint(run / "checkpoint.npz", input_size=6400)
    assert saved["episodes"] >= 1
    return saved


def resume_and_check(run, saved):
    steps = saved["env_steps"] + 200
    resumed = run_cli("train", "--run-dir", str(run), "--resume", "--steps", str(steps), "--json", *SETTINGS)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["steps"] == steps
    final = load_checkpoint(run / "checkpoint.npz")
    assert [int(row[0]) for row in metrics_rows(run)] == list(range(1, final["episodes"] + 1))


def test_file_size_limit_mid_run(tmp_path):
    run = tmp_path / "run"
    process = train_until_first_update(run)
    # Room for metrics rows, not for another checkpoint (1.2 MB with hidden 16).
    resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (200_000, resource.RLIM_INFINITY))
    saved = assert_stopped_cleanly(process, run, "File too large")
    resume_and_check(run, saved)  # the limit went with the process: "space is back"


PR_CAPBSET_DROP = 24  # <linux/prctl.h>
CAP_DAC_OVERRIDE = 1  # <linux/capability.h>: write, read and search whatever the permissions say


def _without_dac_override():
    """preexec_fn: drop CAP_DAC_OVERRIDE from the bounding set, so the program exec'd next (as root
    too) gets no such capability and file permissions bind it. It needs CAP_SETPCAP, which root
    has in a default container; without it the test fails here rather than skip."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE)")


#: Popen arguments for a process that permissions stop, root or not.
BOUND_BY_PERMISSIONS = dict(preexec_fn=_without_dac_override) if os.geteuid() == 0 else {}


def test_directory_turned_read_only_mid_run(tmp_path):
    run = tmp_path / "run"
    process = train_until_first_update(run, **BOUND_BY_PERMISSIONS)
    os.chmod(run, 0o555)
    try:
        saved = assert_stopped_cleanly(process, run, "Permission denied")
        # Starting again while it stays unwritable: refused before any work, exit 2.
        refused = subprocess.run([sys.executable, "-m", "fastpong", "train", "--run-dir", str(run), "--resume",
                                  "--steps", "10"], capture_output=True, text=True, timeout=120,
                                 **BOUND_BY_PERMISSIONS)
        assert_one_line_error(refused, "is not writable")
    finally:
        os.chmod(run, 0o755)
    resume_and_check(run, saved)


def test_failed_save_keeps_the_previous_checkpoint(tmp_path):
    """save_checkpoint past the limit, in a process of its own: OSError naming the checkpoint,
    the previous file byte for byte, no temporary file."""
    path = tmp_path / "checkpoint.npz"
    small = {key: np.zeros((2, 3) if key.endswith("W1") else 2, np.float32)
             for key in ("W1", "W2", "cache_W1", "cache_W2", "grad_W1", "grad_W2")}
    save_checkpoint(path, tensors=small, counters=dict(episodes=1, env_steps=2, updates=1, episodes_in_batch=0),
                    running_reward=-20.0, wall_seconds=1.0, config={}, rng_state={})
    before = path.read_bytes()
    script = f"""
import numpy as np
from fastpong.checkpoint import save_checkpoint
big = {{k: np.ones((200, 6400) if k.endswith("W1") else 200, np.float32)
       for k in ("W1", "W2", "cache_W1", "cache_W2", "grad_W1", "grad_W2")}}
try:
    save_checkpoint({str(path)!r}, tensors=big, counters=dict(episodes=2, env_steps=4, updates=2,
                    episodes_in_batch=0), running_reward=-19.0, wall_seconds=2.0, config={{}}, rng_state={{}})
except OSError as exc:
    print(exc.strerror)
"""

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))

    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            preexec_fn=limit_file_size, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"cannot write {path}: File too large"
    assert path.read_bytes() == before
    assert temporaries(tmp_path) == []
