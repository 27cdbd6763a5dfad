"""`fastpong train --ray HOST:PORT` against a head node that requires token authentication (Ray
>= 2.52; `ray start --head` turns it on whenever ~/.ray/auth_token exists, and any local Ray run
writes that file). fastpong connects with the token as Ray's own CLI does, and says so in one line
when authentication is what failed.

The head node is a `ray start --head --block` process of its own (its own HOME, temp dir and
port), stopped by its process id at the end; this test process never imports Ray, whose import
settings other Ray tests make first."""

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

RAY_CLI = os.path.join(os.path.dirname(sys.executable), "ray")
pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None or not os.path.exists(RAY_CLI),
                                reason="Ray is not installed (pip install 'fastpong[ray]')")
TOKEN = "0f" * 32


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _home(root: Path, name: str, token: str | None) -> Path:
    home = root / name
    (home / ".ray").mkdir(parents=True)
    if token is not None:
        (home / ".ray" / "auth_token").write_text(token)
    return home


def _env(home: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.update(HOME=str(home), **extra)
    return env


@pytest.fixture(scope="module")
def secure_head():
    """(address, root): a one-CPU head node started as the README says, with a token in its HOME."""
    root = Path(tempfile.mkdtemp(prefix="fpauth"))  # short: Ray's socket paths must fit 107 bytes
    home = _home(root, "head", TOKEN)
    port = _free_port()
    head = subprocess.Popen(
        [RAY_CLI, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
         "--include-dashboard=false", f"--temp-dir={root / 'tmp'}", "--block"],
        env=_env(home, RAY_AUTH_MODE="token"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert head.poll() is None, "ray start --head exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        yield f"127.0.0.1:{port}", root
    finally:
        head.send_signal(signal.SIGTERM)  # --block: Ray stops the node's processes on SIGTERM
        try:
            head.wait(timeout=60)
        finally:
            try:
                os.killpg(head.pid, signal.SIGKILL)  # whatever of its session is left
            except ProcessLookupError:
                pass
            shutil.rmtree(root, ignore_errors=True)


def _train(address, home, tmp_path, **env):
    return subprocess.run(
        [sys.executable, "-m", "fastpong", "train", "--ray", address, "--workers", "1", "--env", "CartPole-v1",
         "--episodes", "2", "--run-dir", str(tmp_path / "run"), "--quiet"],
        env=_env(home, **env), capture_output=True, text=True, timeout=240)


def test_connects_with_the_token_in_home_as_ray_start_does(secure_head, tmp_path):
    address, root = secure_head
    result = _train(address, _home(root, "client-ok", TOKEN), tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run" / "checkpoint.npz").exists()


@pytest.mark.parametrize("token, env, words", [
    (None, {}, "requires token authentication and this machine has no token: copy the head node's"),
    ("ab" * 32, {}, "refused this machine's token"),
    (TOKEN, {"RAY_AUTH_MODE": "disabled"}, "requires token authentication and RAY_AUTH_MODE is 'disabled' here"),
])
def test_a_refused_authentication_is_one_line_and_exit_2(secure_head, tmp_path, token, env, words):
    address, root = secure_head
    result = _train(address, _home(root, f"client-{len(os.listdir(root))}", token), tmp_path, **env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"fastpong train: error: Ray at {address} {words}"), lines
    assert not (tmp_path / "run").exists()  # refused before any work
