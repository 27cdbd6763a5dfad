"""When did the mean reward of a run's last 100 games first pass 0, +10 and +18?

    python experiments/window_milestones.py RUN_DIR [RUN_DIR ...] [--window 100] [--json]

The actor-critic issue's goals are stated on this window ("beats the built-in player: mean reward
> 0 over the last 100 games"), a stricter rule than the tutorial's running reward (an exponential
average that forgets the first games slowly). For each run: the wall-clock of training, env steps
and games at which the trailing mean first exceeded each threshold, and where the run ended.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from fastpong.plot import load_metrics

THRESHOLDS = (0, 10, 18)


def window_milestones(run_dir, window: int = 100) -> dict:
    m = load_metrics(run_dir)
    rewards = m["reward"].astype(float)
    # means[i]: games [i, i + window). (np.convolve's "valid" swaps its arguments when the run is
    # shorter than the window: a run of fewer games has no window yet.)
    means = (np.convolve(rewards, np.ones(window), mode="valid") / window
             if len(rewards) >= window else np.zeros(0))
    out = {"run": str(run_dir), "games": int(len(rewards)), "env_steps": int(m["env_steps"][-1]),
           "wall_seconds": float(m["wall_seconds"][-1]),
           "last_window_mean": float(means[-1]) if len(means) else None, "milestones": {}}
    for threshold in THRESHOLDS:
        passed = np.flatnonzero(means > threshold)
        if passed.size == 0:
            out["milestones"][threshold] = None
            continue
        i = passed[0] + window - 1  # the game that completed the window
        out["milestones"][threshold] = {"wall_seconds": float(m["wall_seconds"][i]),
                                        "env_steps": int(m["env_steps"][i]), "games": int(i + 1)}
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = [window_milestones(run, args.window) for run in args.run_dirs]
    if args.json:
        print(json.dumps(results))
        return
    print(f"| run | " + " | ".join(f"mean of {args.window} > {t:+d}" for t in THRESHOLDS)
          + f" | end: games, steps, min | last {args.window} games |")
    print("|---|" + "---|" * (len(THRESHOLDS) + 2))
    for r in results:
        cells = []
        for t in THRESHOLDS:
            hit = r["milestones"][t]
            cells.append("not reached" if hit is None else
                         f"{hit['wall_seconds'] / 60:.1f} min, {hit['env_steps'] / 1e3:,.0f} k steps, game {hit['games']}")
        last = "n/a" if r["last_window_mean"] is None else f"{r['last_window_mean']:+.2f}"
        print(f"| {r['run']} | " + " | ".join(cells)
              + f" | {r['games']}, {r['env_steps'] / 1e3:,.0f} k, {r['wall_seconds'] / 60:.1f} | {last} |")


if __name__ == "__main__":
    main()
