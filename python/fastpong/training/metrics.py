"""metrics.csv: one row per finished episode, appended and flushed as training goes.

Pong runs log the points of each game; CartPole runs its length (a CartPole episode has no points:
its return is the number of steps the pole stayed up)."""

from __future__ import annotations

import csv
from pathlib import Path

from .checkpoint import write_atomically

#: The columns of a Pong (Atari) run.
COLUMNS = (
    "episode", "env_steps", "reward", "running_reward", "points_won", "points_lost",
    "wall_seconds", "steps_per_second",
)
#: The columns of a CartPole (classic-control) run: reward is the episode's return.
CLASSIC_COLUMNS = (
    "episode", "env_steps", "reward", "running_reward", "length", "wall_seconds", "steps_per_second",
)
_FORMATS = {"reward": "{:g}", "running_reward": "{:.6f}", "wall_seconds": "{:.3f}", "steps_per_second": "{:.1f}"}
#: Columns whose value is a float of any size (an update's diagnostics): shown to 6 significant
#: digits, and empty where there is no value yet.
_GENERAL = "{:.6g}"


def columns_for(env_kind: str) -> tuple:
    return COLUMNS if env_kind == "atari" else CLASSIC_COLUMNS


class MetricsLog:
    """Appends rows to RUN_DIR/metrics.csv, flushing each, so a crash loses at most a line.

    Opened for a resumed run, it first drops any rows past the checkpoint's episode count (rows of
    episodes whose gradients died with the process), so metrics and weights tell the same story.
    """

    def __init__(self, path, keep_episodes: int = 0, columns: tuple = COLUMNS):
        self.path = Path(path)
        self.columns = tuple(columns)
        #: The last rows kept from earlier sessions ({column: text}), newest last, at most 1,000.
        self.kept_rows: list[dict] = []
        if keep_episodes > 0 and self.path.exists():
            self._truncate(keep_episodes)
        else:
            write_atomically(self.path, lambda f: f.write((",".join(self.columns) + "\n").encode()))
        self._file = open(self.path, "a", newline="")
        # "\n" like the header and the rows kept on resume (csv's default is "\r\n": one file
        # had both line endings).
        self._writer = csv.writer(self._file, lineterminator="\n")

    def _truncate(self, keep_episodes: int) -> None:
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))
        header = rows[0] if rows else []
        # A run begun before a column was added keeps its rows, the new column left empty.
        kept = [dict(zip(header, row)) for row in rows[1:]
                if len(row) == len(header) and header[:1] == ["episode"] and int(row[0]) <= keep_episodes]
        kept = [[row.get(name, "") for name in self.columns] for row in kept]
        self.kept_rows = [dict(zip(self.columns, row)) for row in kept[-1000:]]

        def write(f):
            text = ",".join(self.columns) + "\n" + "".join(",".join(row) + "\n" for row in kept)
            f.write(text.encode())

        write_atomically(self.path, write)

    def append(self, row: dict) -> None:
        """One episode's row: a value for each of the log's columns (others are ignored; an
        episode column its source did not fill, e.g. a Ray worker of an older version, is empty)."""
        self._writer.writerow([_format(name, row.get(name, "")) for name in self.columns])
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _format(name: str, value) -> str:
    if value == "" or value is None:
        return ""
    if name in _FORMATS:
        return _FORMATS[name].format(value)
    return _GENERAL.format(value) if isinstance(value, float) else str(value)
