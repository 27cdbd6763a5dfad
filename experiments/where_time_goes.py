"""Where a training run's wall-clock goes: the tutorial's agent beside the MIT lab's CNN agent.

    python experiments/where_time_goes.py [--agents karpathy mit-pong] [--num-envs 5] [--steps 20000]
        [--env ALE/Pong-v5] [--frameskip N] [--threads N] [--seed 0] [--json]

Runs the real training loop (``fastpong.train``, fast engine) for each agent with the same
environments and number of env steps, and times its parts by wrapping them in this process (no
library code changes):

- emulator: the loop waiting on the vector environment (``EnvBatch.reset``/``send``/``recv``).
  The training loop keeps two lanes of environments and works on one while ale-py's threads
  emulate the other, so this is the time the loop *waits* for the emulator, less than the
  emulator's own CPU time;
- preprocess: frame -> network input (the learner's ``observe``);
- forward: the policy's forward pass and the sampled actions (``act``, which also stores the step);
- backward + optimizer: returns, the backward pass and the optimizer step (``finish_episode``,
  ``update``; for mit-pong also its deferred batch gradient, which a checkpoint may trigger);
- checkpoint: writing checkpoint.npz (without the backward passes it triggers);
- env setup: building the session's environments and closing them (once per session: its share
  shrinks as the steps grow);
- rest: everything else in the session (rewards and metrics bookkeeping, the loop itself).

A call inside another timed call counts only toward the inner part, so the parts add up to the
session's wall-clock (``Run.execute``: from building the environments to closing them), which is
also measured on a clock of its own (``session_seconds``) to check that they do. The same vector
environment alone (one batch of ``--num-envs``, random actions, no learning) gives the bound the
emulator sets on training throughput. It is timed twice, before the agents and after them: a
machine whose speed drifts (a shared or throttled one) shows it as two different bounds, and each
agent's rate is given against both.

It also reads the process's CPU time (every thread: the emulator's and the loop's) over each
agent's playing and learning and over the bound's stepping, and gives each per env step. The agent
can never train faster than cores / (its CPU seconds per step), the rate at which its work would
keep every core busy all the time; that ceiling, against the bound, is as close to the bound as any
arrangement of the same work on these cores can come (the bound itself may leave part of a core
idle: five games on two threads do). A goal above the ceiling needs less CPU per step, not better
overlap.

Few steps give few finished games and updates, so the backward share of a short run is mostly
luck: take 20,000 steps or more (and an idle machine) for numbers worth quoting.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager

import numpy as np

PARTS = ("emulator", "preprocess", "forward", "backward + optimizer", "checkpoint", "env setup", "rest")


class Stopwatch:
    """Seconds and calls per part. A timed call's own time goes to its part; the time of timed
    calls nested inside it goes to theirs (single-threaded: the training loop's thread). The parts
    named in ``cpu_parts`` also count the process's CPU time while they run (every thread's: the
    clock is a system call, so it is read only around these few calls, not every lane step); a
    part's CPU time includes that of the timed calls nested in it."""

    def __init__(self, cpu_parts: tuple = ()):
        self.seconds: dict = defaultdict(float)
        self.cpu_seconds: dict = defaultdict(float)
        self.calls: dict = defaultdict(int)
        self.cpu_parts = frozenset(cpu_parts)
        self._nested: list = []  # per open call: seconds spent in timed calls inside it
        self.session_wall = 0.0  # set by instrumented(): the session's own wall-clock
        self.session_cpu = 0.0  # and the process's CPU time over it

    def clear(self) -> None:
        self.seconds.clear()
        self.cpu_seconds.clear()
        self.calls.clear()

    def wrap(self, part: str, function):
        counts_cpu = part in self.cpu_parts

        @functools.wraps(function)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            start_cpu = time.process_time() if counts_cpu else 0.0
            self._nested.append(0.0)
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                if counts_cpu:
                    self.cpu_seconds[part] += time.process_time() - start_cpu
                self.seconds[part] += elapsed - self._nested.pop()
                self.calls[part] += 1
                if self._nested:
                    self._nested[-1] += elapsed
        return timed


@contextmanager
def patched(owner, name: str, replacement):
    original = owner.__dict__[name]
    setattr(owner, name, replacement(getattr(owner, name)))
    try:
        yield
    finally:
        setattr(owner, name, original)


@contextmanager
def instrumented(stopwatch: Stopwatch, learner_class):
    """The training loop's parts timed by `stopwatch` while inside; everything restored after."""
    from contextlib import ExitStack

    import fastpong.training.local_lanes as lanes_module
    from fastpong.training.run import Run
    from fastpong.envs import EnvBatch

    def session(execute):
        def timed_session(self, *args, **kwargs):
            stopwatch.clear()  # count the session only, not the run's setup before it
            # The session's wall-clock on a clock of its own, not the stopwatch's sum: the parts
            # are checked against it (they must add up to it, neither more nor less).
            start, start_cpu = time.perf_counter(), time.process_time()
            try:
                return stopwatch.wrap("rest", execute)(self, *args, **kwargs)
            finally:
                stopwatch.session_wall = time.perf_counter() - start
                stopwatch.session_cpu = time.process_time() - start_cpu
        return timed_session

    targets = [(EnvBatch, name, "emulator") for name in ("reset", "send", "recv")]
    targets += [(learner_class, "observe", "preprocess"), (learner_class, "act", "forward")]
    # mit-pong takes its batch's gradient in _apply_pending (from update, or from a checkpoint).
    targets += [(learner_class, name, "backward + optimizer")
                for name in ("finish_episode", "update", "_apply_pending") if hasattr(learner_class, name)]
    targets += [(Run, "_save", "checkpoint"), (EnvBatch, "close", "env setup")]
    with ExitStack() as stack:
        for owner, name, part in targets:
            # Patch on the class that defines the method, so a subclass's super() call is timed once.
            definer = next(c for c in owner.__mro__ if name in c.__dict__)
            stack.enter_context(patched(definer, name, functools.partial(stopwatch.wrap, part)))
        stack.enter_context(patched(lanes_module, "make_lanes", functools.partial(stopwatch.wrap, "env setup")))
        stack.enter_context(patched(Run, "execute", session))
        yield


def measure_training(agent: str, *, steps: int, num_envs: int = 5, env_id: str = "ALE/Pong-v5",
                     frameskip: int | None = None, threads: int | None = None, seed: int = 0) -> dict:
    """One training session of `agent` for `steps` env steps, its wall-clock split into PARTS."""
    from fastpong.agents import get_agent
    from fastpong.train import train

    stopwatch = Stopwatch(cpu_parts=("env setup",))
    with tempfile.TemporaryDirectory() as run_dir, \
            instrumented(stopwatch, get_agent(agent).learners["fast"]):
        start = time.perf_counter()
        summary = train(run_dir=os.path.join(run_dir, "run"), agent=agent, env_id=env_id, frameskip=frameskip,
                        num_envs=num_envs, steps=steps, threads=threads, seed=seed, progress=False)
        wall = time.perf_counter() - start
    seconds = {part: stopwatch.seconds.get(part, 0.0) for part in PARTS}
    # Playing and learning alone, as the bound is timed: the session less building and closing
    # its environments (the bound's environments are built before its clocks start).
    setup_cpu = stopwatch.cpu_seconds.get("env setup", 0.0)
    return dict(agent=agent, steps=summary.steps, episodes=summary.episodes, updates=summary.updates,
                session_seconds=stopwatch.session_wall, call_seconds=wall, seconds=seconds,
                calls={part: stopwatch.calls.get(part, 0) for part in PARTS},
                session_cpu_seconds=stopwatch.session_cpu, setup_cpu_seconds=setup_cpu,
                play_seconds=stopwatch.session_wall - seconds["env setup"],
                play_cpu_seconds=stopwatch.session_cpu - setup_cpu)


def measure_bare_env(*, steps: int, num_envs: int = 5, env_id: str = "ALE/Pong-v5",
                     frameskip: int | None = None, threads: int | None = None, seed: int = 0) -> dict:
    """The same environments stepped with random actions and nothing else."""
    from fastpong.envs import make_env_batch

    rng = np.random.default_rng(seed)
    with make_env_batch(env_id, num_envs, threads=threads or os.cpu_count(), seed=seed,
                        frameskip=frameskip) as envs:
        start, start_cpu = time.perf_counter(), time.process_time()
        envs.reset()
        done = 0
        while done < steps:
            envs.step(rng.integers(0, envs.num_actions, size=num_envs))
            done += num_envs
        seconds = time.perf_counter() - start
        cpu_seconds = time.process_time() - start_cpu
    return dict(steps=done, seconds=seconds, steps_per_second=done / seconds, cpu_seconds=cpu_seconds)


def print_table(result: dict) -> None:
    for run in result["training"]:
        total = run["session_seconds"]
        print(f"\n{run['agent']}: {run['steps']:,} env steps, {run['episodes']} games, {run['updates']} updates")
        print(f"{'part':22s} {'seconds':>9s} {'share':>7s} {'steps/s':>12s}")
        for part in PARTS:
            seconds = run["seconds"][part]
            rate = f"{run['steps'] / seconds:>12,.0f}" if seconds > 0 else f"{'-':>12s}"
            print(f"{part:22s} {seconds:>9.2f} {seconds / total:>7.1%} {rate}")
        print(f"{'total':22s} {total:>9.2f} {1:>7.0%} {run['steps'] / total:>12,.0f}")
    bounds = [result[key] for key in ("bare_env_before", "bare_env") if key in result]
    print("\nbare vector env, random actions (the bound): " + ", then ".join(
        f"{bare['steps']:,} steps in {bare['seconds']:.2f} s, "
        f"{bare['steps_per_second']:,.0f} steps/s" for bare in bounds))
    rates = [bare["steps_per_second"] for bare in bounds]
    if len(rates) == 2 and abs(rates[0] - rates[1]) > 0.1 * max(rates):
        print("the two bounds differ by more than 10%: the machine's speed moved during the "
              "measurement")
    for run in result["training"]:
        rate = run["steps"] / run["session_seconds"]
        against = " and ".join(f"{rate / bound:.2f}" for bound in rates)
        print(f"{run['agent']}: {rate:,.0f} env steps/s, {against} of the bound")
    if "cores" in result:
        print_cpu_ceilings(result, bounds)


def print_cpu_ceilings(result: dict, bounds: list) -> None:
    """CPU time per env step (every thread; building the environments left out) of the bound and
    of each agent, and the fastest an agent could train were its CPU time the only limit: every
    core busy all the time, so cores / (CPU seconds per step). That ceiling against the bound is
    as close to the bound as any arrangement of the same work on these cores can come."""
    cores = result["cores"]
    print(f"\nCPU time per env step (every thread; building the environments left out), {cores} cores:")
    for i, bare in enumerate(bounds):
        print(f"  bare vector env ({'before' if i == 0 and len(bounds) == 2 else 'after'} the agents): "
              f"{1e6 * bare['cpu_seconds'] / bare['steps']:,.0f} us, "
              f"{bare['cpu_seconds'] / bare['seconds']:.2f} cores busy")
    bare_cpu = sum(b["cpu_seconds"] for b in bounds) / sum(b["steps"] for b in bounds)
    for run in result["training"]:
        cpu = run["play_cpu_seconds"] / run["steps"]
        ceiling = cores / cpu
        against = " and ".join(f"{ceiling / bare['steps_per_second']:.2f}" for bare in bounds)
        print(f"  {run['agent']}: {1e6 * cpu:,.0f} us ({cpu / bare_cpu:.2f}x the bare env's), "
              f"{run['play_cpu_seconds'] / run['play_seconds']:.2f} cores busy; with all {cores} "
              f"busy it could run at most {ceiling:,.0f} steps/s, {against} of the bound")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", nargs="+", default=["karpathy", "mit-pong"])
    parser.add_argument("--num-envs", type=int, default=5, help="environments for every agent (default 5, the lab's)")
    parser.add_argument("--steps", type=int, default=20000, help="env steps per agent and for the bare env")
    parser.add_argument("--env", default="ALE/Pong-v5", help="ALE id (default ALE/Pong-v5; the lab's: Pong-v0)")
    parser.add_argument("--frameskip", type=int, help="default: the environment's own (the lab's: 5)")
    parser.add_argument("--threads", type=int, help="default: every core")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of tables")
    args = parser.parse_args(argv)

    settings = dict(steps=args.steps, num_envs=args.num_envs, env_id=args.env, frameskip=args.frameskip,
                    threads=args.threads, seed=args.seed)
    result = dict(settings=settings, machine=f"{platform.processor() or platform.machine()}, "
                                             f"{os.cpu_count()} cores", cores=os.cpu_count(),
                  bare_env_before=measure_bare_env(**settings),
                  training=[measure_training(agent, **settings) for agent in args.agents],
                  bare_env=measure_bare_env(**settings))
    if args.json:
        json.dump(result, sys.stdout)
        print()
        return
    skip = "its own frameskip" if args.frameskip is None else f"frameskip {args.frameskip}"
    print(f"{args.env} ({skip}), {args.num_envs} envs, {args.threads or os.cpu_count()} threads, {result['machine']}")
    print_table(result)


if __name__ == "__main__":
    main()
