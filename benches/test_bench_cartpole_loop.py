"""The whole CartPole training loop, fast engine and reference engine side by side in one
pytest-benchmark group: the same command (8 poles, the mit-cartpole agent's defaults, seed 0,
20,000 env steps), timed from the first reset to the final checkpoint.

Every timed run is checked against the other engine's: the same number of steps, and the same
first 100 episodes, step for step (the two engines take the same actions). Later in a run of this
length a uniform draw can land within float32 rounding of a probability and one action differs
(with seed 0, at episode 124 of 127), after which the runs part: weights are compared on the short
runs of tests/test_cartpole.py instead. For steps per second
over longer runs, each engine in its own process, see `benches/train_throughput.py --env CartPole-v1`.
"""

from __future__ import annotations

import csv

import pytest

from fastpong.checkpoint import load_checkpoint
from fastpong.train import train

STEPS = 20_000
NUM_ENVS = 8
AGREEING_EPISODES = 100


def _run(run_dir, engine: str) -> dict:
    summary = train(run_dir=run_dir, env_id="CartPole-v1", engine=engine, steps=STEPS, num_envs=NUM_ENVS,
                    seed=0, progress=False)
    with open(run_dir / "metrics.csv", newline="") as f:
        lengths = [int(row["length"]) for row in csv.DictReader(f)]
    return {"steps": summary.steps, "lengths": lengths,
            "updates": load_checkpoint(run_dir / "checkpoint.npz")["updates"]}


@pytest.fixture(scope="module")
def untimed(tmp_path_factory) -> dict:
    """Each engine's run once, untimed: what a timed run of the other is held to."""
    return {engine: _run(tmp_path_factory.mktemp(engine) / "run", engine) for engine in ("fast", "reference")}


@pytest.mark.parametrize("path", ["reference", "fast"])
def test_cartpole_training_loop(benchmark, tmp_path, untimed, path):
    benchmark.group = f"CartPole-v1 training loop, {STEPS:,} env steps, {NUM_ENVS} poles"
    runs = iter(range(1_000))
    result = benchmark.pedantic(lambda: _run(tmp_path / f"run{next(runs)}", path), rounds=3, iterations=1)
    other = untimed["reference" if path == "fast" else "fast"]
    assert result["steps"] == STEPS == other["steps"]
    assert len(result["lengths"]) > AGREEING_EPISODES and result["updates"] == len(result["lengths"])
    assert result["lengths"][:AGREEING_EPISODES] == other["lengths"][:AGREEING_EPISODES]
