"""Session fixtures: one seeded game of real Pong, and both paths' views of it.

Everything timed in this folder is fed from here, so the fast path never gets an easier input than
the reference: the same frames, the same frame differences, the same weights.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np
import pytest

import fastpong
from fastpong import reference

# pong_data sits next to this file; make it importable whatever pytest's import mode.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pong_data  # noqa: E402
from pong_data import (  # noqa: E402
    BATCH,
    DECAY_RATE,
    EPISODE_STEPS,
    HIDDEN,
    INPUT_SIZE,
    LEARNING_RATE,
    SEED,
)


def pytest_addoption(parser):
    parser.addoption(
        "--fastpong-threads", type=int, default=None,
        help="threads for fastpong's OpenMP kernels (default: fastpong's own, all cores)")


def pytest_configure(config):
    threads = config.getoption("--fastpong-threads", default=None)
    if threads is not None:
        fastpong.set_num_threads(threads)


def pytest_benchmark_update_machine_info(config, machine_info):
    # What the table needs to be read right: the kernels' threads and how busy the machine was.
    machine_info["fastpong"] = {
        "version": fastpong.__version__,
        "threads": fastpong.get_num_threads(),
        "openmp": fastpong.has_openmp(),
        "numpy": np.__version__,
        "load_average": list(os.getloadavg()),
    }


@dataclass
class PongData:
    recording: pong_data.Recording
    x64: np.ndarray  # (T, D) float64 reference frame differences
    sparse_rows: list  # SparseFrames of one row per step, from the fused FrameDifferencer
    row: int  # a representative nonzero frame difference
    batch_rows: np.ndarray  # BATCH nonzero frame differences


@pytest.fixture(scope="session")
def pong() -> PongData:
    recording = pong_data.play(pong_data.DEFAULT_STEPS, seed=SEED)
    x64 = pong_data.reference_differences(recording)
    differencer = fastpong.FrameDifferencer(1)
    sparse_rows = []
    for frame, starting in zip(recording.frames, recording.episode_starts, strict=True):
        if starting:
            differencer.reset(0)
        sparse_rows.append(differencer.step(frame[None]))
    row = pong_data.representative_row(x64)
    nonzero = np.flatnonzero(np.count_nonzero(x64, axis=1))
    start = min(int(np.searchsorted(nonzero, row)), nonzero.size - BATCH)
    return PongData(recording, x64, sparse_rows, row, nonzero[start:start + BATCH])


@pytest.fixture(scope="session")
def model() -> dict:
    """The reference's float64 weights."""
    return reference.init_model(HIDDEN, INPUT_SIZE, SEED)


@pytest.fixture(scope="session")
def policy() -> fastpong.Policy:
    """The same weights in float32 (same seed, same draw)."""
    return fastpong.Policy(HIDDEN, INPUT_SIZE, seed=SEED)


@dataclass
class EpisodeCase:
    tutorial: pong_data.TutorialEpisode  # float64 stacks, dlogp unscaled
    advantages: np.ndarray  # (T,) float64 standardized discounted returns
    epdlogp: np.ndarray  # (T, 1) float64, dlogp * advantages: what policy_backward gets
    buffer: fastpong.EpisodeBuffer  # the same episode, unscaled dlogps (advantages passed apart)
    expected: dict  # reference gradients {"W1", "W2"}


@pytest.fixture(scope="session")
def episode(pong, model) -> EpisodeCase:
    """EPISODE_STEPS real steps: frame differences, the reference's h, dlogp = y - p."""
    rec = pong.recording
    steps = slice(0, EPISODE_STEPS)
    tutorial = pong_data.tutorial_episode(pong.x64[steps], rec.actions[steps], rec.rewards[steps],
                                          model)
    advantages = tutorial.advantages()
    epdlogp = tutorial.epdlogp * advantages[:, None]
    # The buffer stores the reference's own h in float32, so both sides gate the ReLU alike.
    buffer = fastpong.EpisodeBuffer.from_arrays(
        tutorial.epx.astype(np.float32), tutorial.eph.astype(np.float32),
        tutorial.epdlogp.astype(np.float32), tutorial.epr.astype(np.float32))
    expected = reference.policy_backward(tutorial.eph, tutorial.epx, epdlogp, model)
    return EpisodeCase(tutorial, advantages, epdlogp, buffer, expected)


@dataclass
class RMSPropCase:
    """One RMSProp step from a fixed state with a real gradient, and where each path lands."""

    weights: dict  # float64 start
    grads: dict  # float64, the episode's gradient
    cache: dict  # float64 start, nonzero like a cache in mid-training
    expected_reference: dict  # {"W1", "W2", "cache_W1", "cache_W2"} after one reference step
    expected_fast: dict  # the same after one fast step


@pytest.fixture(scope="session")
def rmsprop_case(model, episode) -> RMSPropCase:
    grads = episode.expected
    cache = {k: g * g for k, g in grads.items()}
    ref_model, ref_cache = {k: v.copy() for k, v in model.items()}, dict(cache)
    reference.rmsprop_update(ref_model, dict(grads), ref_cache, LEARNING_RATE, DECAY_RATE)
    policy = fastpong.Policy.from_model(model)
    fast_grads = policy.gradient_buffer()
    fast_grads.load_model(grads)
    opt = fastpong.RMSProp(LEARNING_RATE, DECAY_RATE)
    opt.cache = policy.gradient_buffer()
    opt.cache.load_model(cache)
    opt.step(policy, fast_grads)
    fast_model, fast_cache = policy.to_model(), opt.cache.to_model()
    return RMSPropCase(
        weights=model, grads=grads, cache=cache,
        expected_reference={**ref_model, "cache_W1": ref_cache["W1"], "cache_W2": ref_cache["W2"]},
        expected_fast={**fast_model, "cache_W1": fast_cache["W1"], "cache_W2": fast_cache["W2"]},
    )
