"""One training process per run directory.

Two ``fastpong train`` processes in one run directory would overwrite each other's checkpoint and
interleave their metrics. A run holds an exclusive ``flock`` on the directory itself for its whole
life: a second process is refused at once, and the lock goes away with the process however it
ends (the kernel drops it when the last descriptor closes, SIGKILL included), so a killed run can
always be resumed and there is never a stale lock to delete by hand.

Locking the directory, rather than a lock file inside it, writes nothing: a refused command leaves
the directory exactly as it was. Where a filesystem cannot lock a directory (NFS emulates flock
with POSIX locks, which need a descriptor open for writing), the lock falls back to a ``.lock``
file in the directory; where it cannot lock at all, the run goes on unlocked after a one-line
warning.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no flock
    fcntl = None

LOCK_FILE = ".lock"
#: errnos meaning "this filesystem does not lock this kind of file", not "someone holds it".
_UNSUPPORTED = {errno.EBADF, errno.EINVAL, errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS}


class RunDirectoryInUse(ValueError):
    """Another process is training in this run directory."""


class RunLock:
    """``acquire()`` takes the run directory (which must exist), ``release()`` gives it back;
    both may be called again harmlessly. Descriptors are not inherited by child processes
    (Python opens them close-on-exec), so a video recorder never keeps a dead run's lock."""

    def __init__(self):
        self.run_dir: Path | None = None
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, run_dir) -> "RunLock":
        run_dir = Path(run_dir)
        if self.held:
            if run_dir == self.run_dir:
                return self
            raise RuntimeError(f"this lock already holds {self.run_dir}")
        if fcntl is None:
            _warn_unlocked(run_dir, "no flock on this system")
            return self
        self.run_dir = run_dir
        fd = _opened(run_dir, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            self._fd = _locked(fd, run_dir)
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                raise
            self._fd = self._acquire_lock_file(run_dir)
        return self

    def _acquire_lock_file(self, run_dir: Path) -> int | None:
        fd = _opened(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT)
        try:
            return _locked(fd, run_dir)
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                raise
            _warn_unlocked(run_dir, exc.strerror or str(exc))
            return None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def _opened(path: Path, flags: int) -> int:
    try:
        return os.open(path, flags, 0o644)
    except OSError as exc:  # say, a directory this user may not read: a mistake before any work
        raise ValueError(f"cannot lock run directory {path} ({exc.strerror or exc})") from None


def _locked(fd: int, run_dir: Path) -> int:
    """fd, exclusively flocked; RunDirectoryInUse when another process holds it. On any error fd
    is closed."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException as exc:
        os.close(fd)
        if not isinstance(exc, BlockingIOError):
            raise
        raise RunDirectoryInUse(
            f"run directory {run_dir} is in use by another fastpong train process: wait for it "
            "to finish, stop it, or choose another --run-dir") from None
    return fd


def _warn_unlocked(run_dir: Path, reason: str) -> None:
    print(f"fastpong: warning: cannot lock {run_dir} ({reason}); make sure no other process "
          "trains in it", file=sys.stderr)
