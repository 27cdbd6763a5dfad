"""Runs `fastpong ARGS...` with hooks that widen the moments a crash test wants to hit.

    python tests/crash_driver.py SECONDS EVENT train --run-dir ...

Each RMSProp update and each atomic file write (checkpoint, metrics, config) announces itself on
stdout ("update", "write-start <file>", "write-end <file>", one line each, flushed); "play" is
announced once, at the first step. At the events that start with EVENT the process then pauses
for SECONDS, so that a SIGKILL sent on reading the line lands in the middle: in the update, or
with the temporary file open and empty (write-start) or fully written but not yet renamed
(write-end). Only this test helper patches fastpong; the package
itself has no test hooks.
"""

from __future__ import annotations

import sys
import time


def announce(event: str) -> None:
    sys.stdout.write(event + "\n")
    sys.stdout.flush()


def install(pause: float, where: str) -> None:
    from fastpong import checkpoint, learners

    def announce_and_pause(event: str, seconds: float) -> None:
        announce(event)
        if event.startswith(where):
            time.sleep(seconds)

    original_write = checkpoint.write_atomically

    def slow_write(path, write):
        def paused_write(f):
            announce_and_pause(f"write-start {path.name}", pause)
            write(f)
            f.flush()
            announce_and_pause(f"write-end {path.name}", pause)

        original_write(path, paused_write)

    # training/run.py, metrics.py and checkpoint.save_checkpoint all reach write_atomically through
    # these names.
    for module in (checkpoint, sys.modules["fastpong.training.run"], sys.modules["fastpong.metrics"]):
        module.write_atomically = slow_write

    original_update = learners.FastLearner.update
    original_observe = learners.FastLearner.observe
    playing = []

    def slow_update(self):
        announce_and_pause("update", pause / 2)
        original_update(self)
        if where == "update":
            time.sleep(pause / 2)

    def observe(self, lane, frames):
        if not playing:
            playing.append(True)
            announce("play")
        original_observe(self, lane, frames)

    learners.FastLearner.update = slow_update
    learners.FastLearner.observe = observe


if __name__ == "__main__":
    import fastpong.metrics  # noqa: F401  (loaded so that install() can patch them)
    import fastpong.training.run  # noqa: F401
    from fastpong.cli import main

    install(float(sys.argv[1]), sys.argv[2])
    sys.exit(main(sys.argv[3:]))
