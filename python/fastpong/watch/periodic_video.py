"""``fastpong train --video-every K``: a video of the agent every K updates, as the MIT lab did.

Encoding a frame costs far more than a training step, so the video is not recorded inside the
training loop: after the update, the weights are written to a snapshot and a separate, niced
process plays one episode with them into ``RUN_DIR/video/update-XXXX.mp4``. Training goes on at
once; the recorder competes for the cores only while it runs (see the README for the measured
cost). If the previous video is still being recorded when the next is due, that one is skipped
rather than piling up recorders.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from ..training.checkpoint import write_atomically

NICENESS = 10


class PeriodicVideo:
    def __init__(self, run_dir: Path, every: int, env_id: str, seed: int):
        self.directory = Path(run_dir) / "video"
        self.every = every
        self.env_id = env_id
        self.seed = seed
        self._recorder: subprocess.Popen | None = None
        self.skipped = 0

    def after_update(self, updates: int, weights: dict, config: dict) -> Path | None:
        """Starts a recording if this update is due and none is running; returns its path.
        `weights` are the policy's (any agent's), `config` the run's (it names the agent)."""
        if updates % self.every != 0:
            return None
        if self._recorder is not None and self._recorder.poll() is None:
            self.skipped += 1
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.directory / f"update-{updates:04d}.mp4"
        snapshot = self.directory / f".update-{updates:04d}-weights.npz"
        arrays = {**weights, "config": np.array(json.dumps(config, sort_keys=True))}
        write_atomically(snapshot, lambda f: np.savez(f, **arrays))
        self._recorder = subprocess.Popen(
            [sys.executable, "-m", "fastpong.watch.periodic_video", str(snapshot), str(target), self.env_id,
             str(self.seed + updates)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C meant for training does not cut the video short
        )
        return target

    def close(self, wait: bool) -> None:
        """wait=True (a run that finished) lets the last video complete; otherwise it completes
        on its own after training has exited."""
        if wait and self._recorder is not None:
            self._recorder.wait()


def _record(snapshot: str, target: str, env_id: str, seed: str) -> None:
    import os

    from .evaluate import load_player, record_video

    os.nice(NICENESS)
    player = load_player(snapshot)
    Path(snapshot).unlink()
    record_video(target, player, env_id=env_id, seed=int(seed))


if __name__ == "__main__":
    _record(*sys.argv[1:5])
