"""The runs table's evaluation protocol: 100 games, fixed seeds, sampled and greedy play.

    python experiments/eval_protocol.py CHECKPOINT [CHECKPOINT ...] [--episodes 100] [--save]

CHECKPOINT: a run directory, a checkpoint .npz or 'pretrained'. Every checkpoint plays the same
games: the environments are seeded from EVAL_SEED. A training run seeds its environments with
its seed plus the games played so far plus their index; the runs in this directory use small
seeds and play far fewer than 100,000 games, so no policy is scored on a game it trained on. For each mode the script prints the mean
reward with its standard error (std / sqrt(games)), games won and points won, as one markdown
row; `--save` also writes the full results (per game) to RUN_DIR/eval-<games>.json next to the
run's checkpoint.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from fastpong import evaluate
from fastpong.checkpoint import write_atomically

#: Beyond every training run's environment seeds here (see the module docstring).
EVAL_SEED = 100_000


def play(checkpoint: str, episodes: int, greedy: bool) -> dict:
    summary = evaluate(checkpoint, episodes=episodes, seed=EVAL_SEED, greedy=greedy).summary()
    summary["standard_error"] = summary["std_reward"] / math.sqrt(episodes)
    return summary


def row(label: str, mode: str, s: dict) -> str:
    played = s["points_won"] + s["points_lost"]
    return (f"| {label} | {mode} | {s['mean_reward']:+.2f} ± {s['standard_error']:.2f} | "
            f"{s['episodes_won']}/{s['episodes']} | {s['points_won']:,}/{played:,} "
            f"({100 * s['point_win_rate']:.1f}%) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--save", action="store_true", help="write RUN_DIR/eval-<games>.json")
    args = parser.parse_args()

    print(f"{args.episodes} games each, environments seeded from {EVAL_SEED}\n")
    print("| policy | play | mean reward ± SE | games won | points won |")
    print("|---|---|---:|---:|---:|")
    for checkpoint in args.checkpoints:
        results = {mode: play(checkpoint, args.episodes, greedy=(mode == "greedy"))
                   for mode in ("sampled", "greedy")}
        for mode, summary in results.items():
            print(row(checkpoint, mode, summary), flush=True)
        if args.save and Path(checkpoint).is_dir():
            target = Path(checkpoint) / f"eval-{args.episodes}.json"
            payload = {"eval_seed": EVAL_SEED, **results}
            write_atomically(target, lambda f: f.write(json.dumps(payload, indent=1).encode()))


if __name__ == "__main__":
    main()
