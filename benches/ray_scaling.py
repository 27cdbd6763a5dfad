"""Env steps per second of ``fastpong train --ray local --workers N`` against the local loop on the
same cores, each run in its own process, interleaved, repeated.

    python benches/ray_scaling.py [--steps 30000] [--num-envs 4] [--workers 1 2] [--repeat 2]

Rows: the local loop on one core (pinned with taskset, ``--threads 1 --num-envs E``), on every core
(``--num-envs E*cores``), and Ray with N workers of E games each. Throughput is the steady rate:
env steps per second from the first finished game to the last (metrics.csv), so neither start-up
(Ray's, the workers' imports, the emulators') nor the final checkpoint counts; over the same
stretch, the CPU time of the run's whole process tree (driver, Ray's processes, workers) per env
step, which a busy machine does not inflate the way it slows the wall clock. Each row is the
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
import time
from pathlib import Path


def steady_rate(run_dir: Path) -> float:
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if len(rows) < 3:
        raise SystemExit(f"{run_dir}: {len(rows)} games finished; give more --steps")
    first, last = rows[0], rows[-1]
    return (int(last["env_steps"]) - int(first["env_steps"])) / (
        float(last["wall_seconds"]) - float(first["wall_seconds"]))


def tree_cpu_seconds(pid: int) -> dict[str, float]:
    """User + system CPU seconds (from /proc) of a process and all its descendants now alive, by
    role: 'driver' (the process itself: the local loop, or Ray's driver and learner), 'workers'
    (the rollout actors) and 'ray' (Ray's own processes: gcs_server, raylet, agents)."""
    parents, cpu, commands = {}, {}, {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                commands[int(entry.name)] = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
            cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    roles = {"driver": cpu.get(pid, 0.0), "workers": 0.0, "ray": 0.0}
    todo = [pid]
    while todo:
        parent = todo.pop()
        for child, p in parents.items():
            if p == parent:
                todo.append(child)
                role = "workers" if commands[child].startswith(b"ray::RolloutWorker") else "ray"
                roles[role] += cpu[child]
    return roles


def metric_rows(run_dir: Path) -> int:
    try:
        with open(run_dir / "metrics.csv", newline="") as f:
            return sum(1 for _ in f) - 1
    except OSError:
        return 0


def run(args: list[str], steps: int) -> dict:
    """Runs one `fastpong train`, sampling its process tree's CPU time each time a game finishes,
    so that CPU per step is measured over the same stretch as the steady rate."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        pin = ["taskset", "-c", "0"] if args[:2] == ["--threads", "1"] else []  # the local loop on one core
        child = subprocess.Popen([*pin, sys.executable, "-m", "fastpong", "train", "--steps", str(steps), "--seed", "0",
                                  "--run-dir", str(run_dir), "--quiet", "--json", *args],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        seen, samples = 0, []  # (rows seen, CPU seconds) whenever a new row appears
        while child.poll() is None:
            rows = metric_rows(run_dir)
            if rows > seen:
                seen = rows
                samples.append((rows, tree_cpu_seconds(child.pid)))
            time.sleep(0.05)
        if child.returncode != 0:
            raise SystemExit(f"fastpong train {' '.join(args)} failed with {child.returncode}")
        summary = json.loads(child.stdout.read().strip().splitlines()[-1])
        summary["steady_steps_per_second"] = steady_rate(run_dir)
        with open(run_dir / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        steps_at = [0] + [int(r["env_steps"]) for r in rows]
        rows_at = [0.0] + [r["wall_seconds"] for r in rows]
        (first, cpu_first), (last, cpu_last) = samples[0], samples[-2]  # the final sample may miss exited workers
        steps_between = steps_at[last] - steps_at[first]
        seconds_between = float(rows_at[last]) - float(rows_at[first])
        for role in cpu_first:  # µs per env step; Ray's own processes also as a share of a core
            summary[f"{role}_us_per_step"] = 1e6 * (cpu_last[role] - cpu_first[role]) / steps_between
        summary["ray_cores"] = (cpu_last["ray"] - cpu_first["ray"]) / seconds_between
        return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30000)
    parser.add_argument("--num-envs", type=int, default=4, help="games per worker (per core for the local loop)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    cores, e = os.cpu_count() or 1, args.num_envs
    configs = {
        f"local loop, 1 core (`taskset -c 0 ... --threads 1 --num-envs {e}`)": ["--threads", "1", "--num-envs", str(e)],
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
    print("| run | steps/s | per 1-core local | CPU µs per step: driver | workers | Ray's processes "
          "(cores) | staleness (max / mean updates) | bytes per game |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, rs in results.items():
        def median(key):
            return statistics.median(r[key] for r in rs)

        rate = median("steady_steps_per_second")
        if "workers" in rs[0]:
            stale = f"{max(r['max_staleness'] for r in rs)} / {statistics.mean(r['mean_staleness'] for r in rs):.2f}"
            ray = (f"{median('workers_us_per_step'):,.0f} | {median('ray_us_per_step'):,.0f} "
                   f"({median('ray_cores'):.2f}) | {stale} | {rs[0]['bytes_per_game']:,.0f}")
        else:
            ray = " | | |"
        print(f"| {name} | {rate:,.0f} | {rate / one_core:.2f} | {median('driver_us_per_step'):,.0f} | {ray} |")
    print("all runs (steps/s; CPU µs/step of driver, workers, Ray):", json.dumps(
        {name: [(round(r["steady_steps_per_second"]),
                 *(round(r[f"{role}_us_per_step"]) for role in ("driver", "workers", "ray"))) for r in rs]
         for name, rs in results.items()}))


if __name__ == "__main__":
    main()
