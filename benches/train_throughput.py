"""Training throughput, side by side in one run: ``fastpong train`` (fast engine), the same command
with ``--engine reference``, and the same vector environment stepped with random actions and no
learning. Each runs in its own process so that its peak memory (max RSS) is its own.

    python benches/train_throughput.py [--env ALE/Pong-v5] [--steps 30000] [--num-envs N]
        [--threads N] [--markdown]

All three run the same number of env steps. For Pong the reference engine plays one environment
(the tutorial's loop), the others --num-envs; with ``--env CartPole-v1`` (the MIT lab's agent) the
reference engine steps the same N poles as the fast one, so the two differ only in the learner.

Two rates per run: whole (the session's steps over its wall-clock, start-up included: building and
resetting the environments, and for training its final checkpoint) and steady (start-up
excluded on every side: for training, the env steps between the first and the last finished game
over the wall-clock between them, from metrics.csv; for the random actions, the clock starts after
the first reset). The ratios are printed for both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

CHILD = r"""
import csv, json, resource, sys, tempfile, time
import numpy as np
kind, env_id, steps, num_envs, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
classic = env_id.startswith("CartPole")
steady = None
if kind == "random":
    from fastpong.envs.classic import ClassicEnvBatch
    from fastpong.envs import make_env_batch
    rng = np.random.default_rng(0)
    start = time.perf_counter()  # like a training session's clock, it includes building the envs
    envs = ClassicEnvBatch(env_id, num_envs) if classic else make_env_batch(env_id, num_envs, threads=threads, seed=0)
    low, high = (0, 2) if classic else (2, 4)
    envs.reset(seed=0)
    after_reset = time.perf_counter()
    done = 0
    while done < steps:
        envs.step(rng.integers(low, high, size=num_envs))
        done += num_envs
    end = time.perf_counter()
    envs.close()
    seconds, steady = end - start, done / (end - after_reset)
else:
    import fastpong.train as t
    with tempfile.TemporaryDirectory() as run_dir:
        s = t.train(run_dir=run_dir + "/run", env_id=env_id, steps=steps, engine=kind, seed=0, progress=False,
                    threads=threads, num_envs=None if kind == "reference" and not classic else num_envs)
        done, seconds = s.steps, s.seconds
        with open(run_dir + "/run/metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    if len(rows) >= 2:  # the first and the last finished game bracket the steady part
        first, last = rows[0], rows[-1]
        span = float(last["wall_seconds"]) - float(first["wall_seconds"])
        steady = (int(last["env_steps"]) - int(first["env_steps"])) / span if span > 0 else None
peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"kind": kind, "steps": done, "seconds": seconds, "steps_per_second": done / seconds,
                  "steady_steps_per_second": steady, "peak_mib": peak_mib}))
"""


def measure(kind: str, env_id: str, steps: int, num_envs: int, threads: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, kind, env_id, str(steps), str(num_envs), str(threads)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _rate(value) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _ratio(a, b) -> str:
    return "-" if a is None or b is None else f"{a / b:.2f}"


def main() -> None:
    from fastpong.envs import default_num_envs

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="ALE/Pong-v5")
    parser.add_argument("--steps", type=int, default=30000, help="env steps of every run (default 30,000)")
    parser.add_argument("--num-envs", type=int, help="default: 4 per core for Atari, 8 for CartPole")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args()
    classic = args.env.startswith("CartPole")
    args.num_envs = args.num_envs or (8 if classic else default_num_envs())
    reference_envs = args.num_envs if classic else 1

    rows = [
        ("fastpong train (fast engine)", args.num_envs,
         measure("fast", args.env, args.steps, args.num_envs, args.threads)),
        ("fastpong train --engine reference", reference_envs,
         measure("reference", args.env, args.steps, reference_envs, args.threads)),
        ("vector env, random actions, no learning", args.num_envs,
         measure("random", args.env, args.steps, args.num_envs, args.threads)),
    ]
    fast, reference, random_actions = (r[2] for r in rows)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    print(f"{args.env}, {args.threads} threads, {machine}")
    if args.markdown:
        print("| run | envs | env steps | steps/s, whole | steps/s, steady | peak memory (MiB) |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, envs, r in rows:
            print(f"| {name} | {envs} | {r['steps']:,} | {r['steps_per_second']:,.0f} | "
                  f"{_rate(r['steady_steps_per_second'])} | {r['peak_mib']:,.0f} |")
    else:
        for name, envs, r in rows:
            print(f"{name:42s} {envs:>2} envs {r['steps']:>8,} steps {r['steps_per_second']:>9,.0f} steps/s whole "
                  f"{_rate(r['steady_steps_per_second']):>9s} steady {r['peak_mib']:>7,.0f} MiB peak")
    for label, key in (("whole", "steps_per_second"), ("steady", "steady_steps_per_second")):
        print(f"{label}: fast / reference {_ratio(fast[key], reference[key])}, "
              f"fast / random-action env {_ratio(fast[key], random_actions[key])}")


if __name__ == "__main__":
    main()
