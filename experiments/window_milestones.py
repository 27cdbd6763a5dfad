"""When did a run's last 100 games first pass a mark: mean reward 0, +10, +18, or (``--points``)
10%, 25%, 50% of points won?

    python experiments/window_milestones.py RUN_DIR [RUN_DIR ...] [--window 100] [--points] [--json]

The actor-critic issue's goals are stated on this window ("beats the built-in player: mean reward
> 0 over the last 100 games"), a stricter rule than the tutorial's running reward (an exponential
average that forgets the first games slowly); the lab's CNN agent's on the points won over the
last 100 games, pooled (points won / points played), which moves long before the reward does.
For each run: the wall-clock of training, env steps and games at which the trailing measure first
exceeded each mark (reached it, for the point win rates), and where the run ended.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from fastpong.plot import load_metrics

THRESHOLDS = (0, 10, 18)
POINT_THRESHOLDS = (0.10, 0.25, 0.50)


def _trailing_sum(values: np.ndarray, window: int) -> np.ndarray:
    """sums[i]: values [i, i + window); empty when there are fewer values than the window
    (np.convolve's "valid" swaps its arguments then)."""
    return np.convolve(values, np.ones(window), mode="valid") if len(values) >= window else np.zeros(0)


def window_milestones(run_dir, window: int = 100, points: bool = False) -> dict:
    m = load_metrics(run_dir)
    if points and "points_won" not in m:
        raise SystemExit(f"{run_dir} is not a Pong run: it has no points to count (--points)")
    if points:
        won = _trailing_sum(m["points_won"].astype(float), window)
        played = won + _trailing_sum(m["points_lost"].astype(float), window)
        measure, thresholds = won / np.maximum(played, 1), POINT_THRESHOLDS
        passed_at = lambda threshold: np.flatnonzero(measure >= threshold)  # noqa: E731
    else:
        measure, thresholds = _trailing_sum(m["reward"].astype(float), window) / window, THRESHOLDS
        passed_at = lambda threshold: np.flatnonzero(measure > threshold)  # noqa: E731
    games = len(m["reward"])
    out = {"run": str(run_dir), "games": int(games), "env_steps": int(m["env_steps"][-1]),
           "wall_seconds": float(m["wall_seconds"][-1]), "measure": "point_win_rate" if points else "mean_reward",
           "last_window": float(measure[-1]) if len(measure) else None, "milestones": {}}
    for threshold in thresholds:
        passed = passed_at(threshold)
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
    parser.add_argument("--points", action="store_true", help="marks of the point win rate, not the reward")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = [window_milestones(run, args.window, args.points) for run in args.run_dirs]
    if args.json:
        print(json.dumps(results))
        return
    thresholds = POINT_THRESHOLDS if args.points else THRESHOLDS
    marks = [f"points won >= {100 * t:.0f}%" if args.points else f"mean of {args.window} > {t:+d}" for t in thresholds]
    print("| run | " + " | ".join(marks) + f" | end: games, steps, min | last {args.window} games |")
    print("|---|" + "---|" * (len(thresholds) + 2))
    for r in results:
        cells = []
        for t in thresholds:
            hit = r["milestones"][t]
            cells.append("not reached" if hit is None else
                         f"{hit['wall_seconds'] / 60:.1f} min, {hit['env_steps'] / 1e3:,.0f} k steps, game {hit['games']}")
        last = r["last_window"]
        last = "n/a" if last is None else (f"{100 * last:.1f}% of points" if args.points else f"{last:+.2f}")
        print(f"| {r['run']} | " + " | ".join(cells)
              + f" | {r['games']}, {r['env_steps'] / 1e3:,.0f} k, {r['wall_seconds'] / 60:.1f} | {last} |")


if __name__ == "__main__":
    main()
