"""Training throughput, side by side in one run: ``fastpong train`` (fast engine), the same command
with ``--engine reference``, and the same vector environment stepped with random actions and no
learning. Each runs in its own process so that its peak memory (max RSS) is its own.

    python benches/train_throughput.py [--env ALE/Pong-v5] [--steps 20000] [--reference-steps 3000]
        [--num-envs N] [--threads N] [--markdown]

With ``--env CartPole-v1`` (the MIT lab's agent) the reference engine steps the same N poles as
the fast one: the two differ only in the learner (C++ kernels vs the lab's algorithm in NumPy).

The reference engine is slower, so it may run fewer steps; the fast engine and the random baseline
run the same number. All three clocks start before the environments' first reset, as a training
session's does, and stop after the last step (training's also covers its final checkpoint).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

CHILD = r"""
import json, resource, sys, tempfile, time
import numpy as np
kind, env_id, steps, num_envs, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
classic = env_id.startswith("CartPole")
if kind == "random":
    from fastpong.classic_envs import ClassicEnvBatch
    from fastpong.envs import make_env_batch
    rng = np.random.default_rng(0)
    envs = ClassicEnvBatch(env_id, num_envs) if classic else make_env_batch(env_id, num_envs, threads=threads, seed=0)
    low, high = (0, 2) if classic else (2, 4)
    start = time.perf_counter()  # like a training session's clock, it includes the reset
    envs.reset(seed=0)
    done = 0
    while done < steps:
        envs.step(rng.integers(low, high, size=num_envs))
        done += num_envs
    seconds = time.perf_counter() - start
    envs.close()
else:
    import fastpong.train as t
    with tempfile.TemporaryDirectory() as run_dir:
        s = t.train(run_dir=run_dir + "/run", env_id=env_id, steps=steps, engine=kind, seed=0, progress=False,
                    threads=threads, num_envs=None if kind == "reference" and not classic else num_envs)
        done, seconds = s.steps, s.seconds
peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"kind": kind, "steps": done, "seconds": seconds, "steps_per_second": done / seconds,
                  "peak_mib": peak_mib}))
"""


def measure(kind: str, env_id: str, steps: int, num_envs: int, threads: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, kind, env_id, str(steps), str(num_envs), str(threads)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from fastpong.envs import default_num_envs

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="ALE/Pong-v5")
    parser.add_argument("--steps", type=int, default=100000)
    parser.add_argument("--reference-steps", type=int, default=10000)
    parser.add_argument("--num-envs", type=int, help="default: 4 per core for Atari, 8 for CartPole")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args()
    classic = args.env.startswith("CartPole")
    args.num_envs = args.num_envs or (8 if classic else default_num_envs())

    rows = [
        ("fastpong train (fast engine)", measure("fast", args.env, args.steps, args.num_envs, args.threads)),
        ("fastpong train --engine reference", measure("reference", args.env, args.reference_steps,
                                                      args.num_envs if classic else 1, args.threads)),
        ("vector env, random actions, no learning", measure("random", args.env, args.steps, args.num_envs, args.threads)),
    ]
    fast, reference, random_actions = (r[1]["steps_per_second"] for r in rows)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    print(f"{args.env}, {args.num_envs} envs, {args.threads} threads, {machine}")
    if args.markdown:
        print("| run | env steps | steps/s | peak memory (MiB) |")
        print("|---|---:|---:|---:|")
        for name, r in rows:
            print(f"| {name} | {r['steps']:,} | {r['steps_per_second']:,.0f} | {r['peak_mib']:,.0f} |")
    else:
        for name, r in rows:
            print(f"{name:42s} {r['steps']:>8,} steps {r['steps_per_second']:>9,.0f} steps/s "
                  f"{r['peak_mib']:>7,.0f} MiB peak")
    print(f"fast / reference: {fast / reference:.1f}x; fast / random-action env: {fast / random_actions:.2f}")


if __name__ == "__main__":
    main()
