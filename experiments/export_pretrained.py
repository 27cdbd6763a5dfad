"""Export a run's policy as the package's shipped policy: python/fastpong/pretrained/pong.npz.

    python experiments/export_pretrained.py RUN_DIR [--episodes 20] [--seed 0]

The file holds only W1 (200, 6400) and W2 (200,), in the tutorial's layout and names, stored as
float16 (half the size) -- but only if float16 plays as well as float32: both are evaluated on the
same games (same seed) and the script refuses if float16's mean reward is lower by more than one
standard error.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from fastpong import Policy, evaluate
from fastpong.checkpoint import load_policy_weights, write_atomically

TARGET = Path(__file__).resolve().parents[1] / "python" / "fastpong" / "pretrained" / "pong.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    weights = load_policy_weights(Path(args.run_dir) / "checkpoint.npz")
    half = {k: v.astype(np.float16) for k, v in weights.items()}
    results = {}
    for name, model in (("float32", weights), ("float16", half)):
        summary = evaluate(Policy.from_model(model), episodes=args.episodes, seed=args.seed).summary()
        results[name] = summary
        print(f"{name}: mean reward {summary['mean_reward']:+.2f} ± {summary['std_reward']:.2f}, "
              f"points won {100 * summary['point_win_rate']:.1f}%, games won {summary['episodes_won']}/{args.episodes}")
    standard_error = results["float32"]["std_reward"] / np.sqrt(args.episodes)
    if results["float16"]["mean_reward"] < results["float32"]["mean_reward"] - standard_error:
        raise SystemExit("float16 plays worse than float32: not exported")
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(TARGET, lambda f: np.savez(f, W1=half["W1"], W2=half["W2"]))
    print(f"wrote {TARGET} ({TARGET.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
