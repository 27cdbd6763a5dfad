"""When did a run's running reward first reach -15, -10, -5, 0, +5 and +10? Wall-clock, env steps, episodes.

    python experiments/milestones.py RUN_DIR [RUN_DIR ...]

Prints a markdown table per run, plus where the run stood at its last row.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fastpong.plot import load_metrics

THRESHOLDS = (-15, -10, -5, 0, 5, 10)


def milestones(run_dir) -> list[tuple[int, dict | None]]:
    m = load_metrics(run_dir)
    rows = []
    for threshold in THRESHOLDS:
        reached = (m["running_reward"] >= threshold).nonzero()[0]
        if reached.size == 0:
            rows.append((threshold, None))
            continue
        i = reached[0]
        rows.append((threshold, {"wall_seconds": float(m["wall_seconds"][i]), "env_steps": int(m["env_steps"][i]),
                                 "episode": int(m["episode"][i])}))
    return rows


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h ({seconds / 60:.0f} min)"


def main(run_dirs) -> None:
    for run_dir in run_dirs:
        config = json.loads((Path(run_dir) / "config.json").read_text())
        m = load_metrics(run_dir)
        print(f"### {Path(run_dir).name}")
        print(f"lr {config['learning_rate']:g}, batch {config['batch_size']}, hidden {config['hidden']}, "
              f"{config['num_envs']} envs, {config['threads']} threads, {config['env_id']}, seed {config['seed']}\n")
        print("| running reward | wall-clock | env steps | episodes |")
        print("|---:|---:|---:|---:|")
        for threshold, hit in milestones(run_dir):
            if hit is None:
                print(f"| {threshold} | not reached | | |")
            else:
                print(f"| {threshold} | {_hours(hit['wall_seconds'])} | {hit['env_steps']:,} | {hit['episode']:,} |")
        print(f"\nlast row: episode {int(m['episode'][-1]):,}, {int(m['env_steps'][-1]):,} env steps, "
              f"{_hours(float(m['wall_seconds'][-1]))}, running reward {float(m['running_reward'][-1]):+.2f}\n")


if __name__ == "__main__":
    main(sys.argv[1:] or sys.exit(__doc__))
