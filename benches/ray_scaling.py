"""Env steps per second of ``fastpong train --ray local --workers N`` against the local loop on the
same cores, each run in its own process, interleaved, repeated.

    python benches/ray_scaling.py [--steps 30000] [--num-envs 4] [--workers 1 2] [--repeat 2] [--markdown]

Rows: the local loop on one core (``--threads 1 --num-envs E``), on every core
(``--num-envs E*cores``), and Ray with N workers of E games each. Throughput is the steady rate:
env steps per second from the first finished game to the last (metrics.csv), so neither start-up
(Ray's, the workers' imports, the emulators') nor the final checkpoint counts. Each row is the
median over its repeats. Set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 to keep Ray on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def steady_rate(run_dir: Path) -> float:
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if len(rows) < 3:
        raise SystemExit(f"{run_dir}: {len(rows)} games finished; give more --steps")
    first, last = rows[0], rows[-1]
    return (int(last["env_steps"]) - int(first["env_steps"])) / (
        float(last["wall_seconds"]) - float(first["wall_seconds"]))


def run(args: list[str], steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        out = subprocess.run([sys.executable, "-m", "fastpong", "train", "--steps", str(steps), "--seed", "0",
                              "--run-dir", str(run_dir), "--quiet", "--json", *args],
                             capture_output=True, text=True, check=True)
        summary = json.loads(out.stdout.strip().splitlines()[-1])
        summary["steady_steps_per_second"] = steady_rate(run_dir)
        return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30000)
    parser.add_argument("--num-envs", type=int, default=4, help="games per worker (per core for the local loop)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    cores, e = os.cpu_count() or 1, args.num_envs
    configs = {
        f"local loop, 1 core (`--threads 1 --num-envs {e}`)": ["--threads", "1", "--num-envs", str(e)],
        f"local loop, {cores} cores (`--num-envs {e * cores}`)": ["--num-envs", str(e * cores)],
    }
    for n in args.workers:
        configs[f"`--ray local --workers {n} --num-envs {e}`"] = ["--ray", "local", "--workers", str(n),
                                                                  "--num-envs", str(e)]
    results: dict[str, list[dict]] = {name: [] for name in configs}
    for _ in range(args.repeat):  # interleaved, so that a busy spell of the machine hits every row
        for name, flags in configs.items():
            results[name].append(run(flags, args.steps))
    one_core = statistics.median(r["steady_steps_per_second"] for r in next(iter(results.values())))
    print(f"ALE/Pong-v5, {args.steps:,} steps per run, median of {args.repeat}; "
          f"{platform.processor() or platform.machine()}, {cores} cores")
    print("| run | steps/s | per 1-core local | staleness (max / mean updates) | bytes per game |")
    print("|---|---:|---:|---:|---:|")
    for name, rs in results.items():
        rate = statistics.median(r["steady_steps_per_second"] for r in rs)
        ray = "workers" in rs[0]
        stale = f"{max(r['max_staleness'] for r in rs)} / {statistics.mean(r['mean_staleness'] for r in rs):.2f}" if ray else ""
        nbytes = f"{rs[0]['bytes_per_game']:,.0f}" if ray else ""
        print(f"| {name} | {rate:,.0f} | {rate / one_core:.2f} | {stale} | {nbytes} |")
    print("all runs:", json.dumps({name: [round(r["steady_steps_per_second"]) for r in rs]
                                    for name, rs in results.items()}))


if __name__ == "__main__":
    main()
