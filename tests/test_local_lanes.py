"""The local lanes reset at once, on threads of their own (training/local_lanes.py): the same first
frames as one lane after the other, and an error in one lane's reset reaches the caller."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from fastpong.envs import make_env_batch
from fastpong.training.local_lanes import reset_lanes


def _lanes():
    return [make_env_batch("ALE/Pong-v5", size, threads=1, seed=0) for size in (2, 1)]


def test_lanes_reset_together_give_the_frames_of_resets_one_after_another():
    together, apart = _lanes(), _lanes()
    try:
        frames = reset_lanes(together, [5, 7])
        expected = [apart[0].reset(seed=5), apart[1].reset(seed=7)]
        assert [f.shape for f in frames] == [(2, 210, 160, 3), (1, 210, 160, 3)]
        for got, want in zip(frames, expected):
            np.testing.assert_array_equal(got, want)
        # And they play on alike: the same actions give the same next frames.
        for lane_a, lane_b, n in zip(together, apart, (2, 1)):
            actions = np.full(n, 2)
            np.testing.assert_array_equal(lane_a.step(actions)[0], lane_b.step(actions)[0])
    finally:
        for lane in together + apart:
            lane.close()


def test_a_failing_lane_reset_raises_in_the_caller():
    class Broken:
        def reset(self, seed=None):
            raise RuntimeError(f"lane with seed {seed} is broken")

    lane = make_env_batch("ALE/Pong-v5", 1, threads=1, seed=0)
    try:
        with pytest.raises(RuntimeError, match="lane with seed 3 is broken"):
            reset_lanes([lane, Broken()], [1, 3])
    finally:
        lane.close()


def test_a_pong_run_on_two_lanes_is_reproducible(tmp_path):
    """Same seed, same games and weights, whichever lane's reset finished first."""
    from fastpong.train import train
    from fastpong.training.checkpoint import load_checkpoint

    for name in ("a", "b"):
        train(run_dir=tmp_path / name, env_id="ALE/Pong-v5", num_envs=4, episodes=2, seed=11,
              batch_size=1, progress=False)
    columns = ("episode", "env_steps", "reward", "points_won", "points_lost")
    rows = {}
    for name in ("a", "b"):
        with open(tmp_path / name / "metrics.csv", newline="") as f:
            rows[name] = [tuple(r[c] for c in columns) for r in csv.DictReader(f)]
    assert rows["a"] == rows["b"] and len(rows["a"]) == 2
    a, b = (load_checkpoint(tmp_path / name / "checkpoint.npz") for name in ("a", "b"))
    for key in ("W1", "W2"):
        np.testing.assert_array_equal(a[key], b[key])
