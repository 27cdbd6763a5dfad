"""metrics.csv: one row per finished episode, appended and flushed as training goes."""

from __future__ import annotations

import csv
from pathlib import Path

from .checkpoint import write_atomically

COLUMNS = (
    "episode", "env_steps", "reward", "running_reward", "points_won", "points_lost",
    "wall_seconds", "steps_per_second",
)


class MetricsLog:
    """Appends rows to RUN_DIR/metrics.csv, flushing each, so a crash loses at most a line.

    Opened for a resumed run, it first drops any rows past the checkpoint's episode count (rows of
    episodes whose gradients died with the process), so metrics and weights tell the same story.
    """

    def __init__(self, path, keep_episodes: int = 0):
        self.path = Path(path)
        if keep_episodes > 0 and self.path.exists():
            self._truncate(keep_episodes)
        else:
            write_atomically(self.path, lambda f: f.write((",".join(COLUMNS) + "\n").encode()))
        self._file = open(self.path, "a", newline="")
        self._writer = csv.writer(self._file)

    def _truncate(self, keep_episodes: int) -> None:
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))
        kept = [row for row in rows[1:] if len(row) == len(COLUMNS) and int(row[0]) <= keep_episodes]

        def write(f):
            text = ",".join(COLUMNS) + "\n" + "".join(",".join(row) + "\n" for row in kept)
            f.write(text.encode())

        write_atomically(self.path, write)

    def append(self, *, episode, env_steps, reward, running_reward, points_won, points_lost,
               wall_seconds, steps_per_second) -> None:
        self._writer.writerow([
            episode, env_steps, f"{reward:g}", f"{running_reward:.6f}", points_won, points_lost,
            f"{wall_seconds:.3f}", f"{steps_per_second:.1f}",
        ])
        self._file.flush()

    def close(self) -> None:
        self._file.close()
