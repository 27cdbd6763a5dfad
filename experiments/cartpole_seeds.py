"""CartPole-v1 solved? Trains the MIT lab's agent with fastpong's defaults for several seeds, each
until its stop rule, then evaluates each policy over 100 new episodes, and prints a markdown table.

    python experiments/cartpole_seeds.py [--seeds 0 1 2 3 4] [--target-return 495] [--max-episodes 3000]
        [--extra "--preset lab"] [--runs-dir DIR]

Each seed runs `fastpong train --env CartPole-v1 --seed S --target-return R --episodes M` in a
process of its own (wall-clock: the whole command, Python start included; training: the run's own
clock), then `fastpong eval --checkpoint RUN --episodes 100 --seed 1000 --json`, sampled as in
training and with --greedy. "Solved" is gymnasium's threshold for CartPole-v1: a mean return of at
least 475 over 100 evaluation episodes (sampled actions).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time

SOLVED = 475.0


def fastpong(*args: str) -> tuple[dict, float]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "fastpong", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--target-return", type=float, default=495.0)
    parser.add_argument("--max-episodes", type=int, default=3000)
    parser.add_argument("--extra", default="", help="more `fastpong train` flags, e.g. '--preset lab'")
    parser.add_argument("--runs-dir", help="keep the run directories here (default: a temporary one)")
    args = parser.parse_args()

    runs_dir = args.runs_dir or tempfile.mkdtemp(prefix="cartpole-seeds-")
    extra = shlex.split(args.extra)
    print(f"CartPole-v1, fastpong train defaults {' '.join(extra)}, stop at mean return >= {args.target_return:g} "
          f"over the last 100 episodes (at most {args.max_episodes}); {platform.machine()}, {os.cpu_count()} cores")
    print("| seed | episodes | env steps | wall-clock | training | eval return (sampled) | eval return (greedy) | solved |")
    print("|---:|---:|---:|---:|---:|---:|---:|:---:|")
    solved = 0
    for seed in args.seeds:
        run = os.path.join(runs_dir, f"seed{seed}")
        summary, wall = fastpong("train", "--env", "CartPole-v1", "--seed", str(seed), "--target-return",
                                 str(args.target_return), "--episodes", str(args.max_episodes), "--run-dir", run,
                                 "--quiet", "--json", *extra)
        sampled, _ = fastpong("eval", "--checkpoint", run, "--episodes", "100", "--seed", "1000", "--json")
        greedy, _ = fastpong("eval", "--checkpoint", run, "--episodes", "100", "--seed", "1000", "--greedy", "--json")
        ok = sampled["mean_return"] >= SOLVED
        solved += ok
        print(f"| {seed} | {summary['episodes']:,} | {summary['steps']:,} | {wall:.1f} s | {summary['seconds']:.1f} s | "
              f"{sampled['mean_return']:.1f} ± {sampled['std_return']:.1f} | "
              f"{greedy['mean_return']:.1f} ± {greedy['std_return']:.1f} | {'yes' if ok else 'no'} |", flush=True)
    print(f"solved: {solved} of {len(args.seeds)} seeds; run directories in {runs_dir}")


if __name__ == "__main__":
    main()
