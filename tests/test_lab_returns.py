"""The lab's discounting, with and without the reset at points, and its normalization: the fast
functions against ``reference.lab``, and the lab's references against closed forms and the
tutorial's.

discount_rewards accumulates in float64 and rounds once per value, so it is held to a few float32
ulps of each return (k * eps32 * max(|ref|, 1)); standardize to the same after its division.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastpong
from fastpong import reference
from fastpong.reference import lab

EPS32 = float(np.finfo(np.float32).eps)


def assert_ulps_close(actual, ref, k=4):
    actual = np.asarray(actual, np.float64)
    ref = np.asarray(ref, np.float64)
    assert actual.shape == ref.shape
    np.testing.assert_array_less(np.abs(actual - ref), k * EPS32 * np.maximum(np.abs(ref), 1) + 1e-300)


def pong_like_rewards(n, seed):
    rng = np.random.default_rng(seed)
    rewards = np.zeros(n)
    points = rng.choice(n, size=max(n // 40, 1), replace=False)
    rewards[points] = rng.choice([-1.0, 1.0], size=points.size)
    return rewards


@pytest.mark.parametrize("n", [0, 1, 2, 7, 200, 500, 5000])
@pytest.mark.parametrize("gamma", [0.95, 0.99, 1.0])
def test_plain_discounting_matches_reference(n, gamma):
    rewards = np.random.default_rng(n).standard_normal(n)
    fast = fastpong.discount_rewards(rewards.astype(np.float32), gamma, reset_at_points=False)
    assert fast.dtype == np.float32 and fast.shape == (n,)
    assert_ulps_close(fast, lab.discount_rewards(rewards.astype(np.float32), gamma,
                                                 reset_at_points=False))


@pytest.mark.parametrize("reset", [True, False])
def test_pong_rewards_match_reference_with_and_without_reset(reset):
    rewards = pong_like_rewards(2000, 1)
    fast = fastpong.discount_rewards(rewards, 0.99, reset_at_points=reset)
    assert_ulps_close(fast, lab.discount_rewards(rewards, 0.99, reset_at_points=reset))


def test_the_default_still_resets_at_points_as_the_tutorial_does():
    rewards = pong_like_rewards(1000, 2)
    np.testing.assert_array_equal(fastpong.discount_rewards(rewards, 0.99),
                                  fastpong.discount_rewards(rewards, 0.99, reset_at_points=True))
    np.testing.assert_array_equal(lab.discount_rewards(rewards, 0.99),
                                  reference.discount_rewards(rewards, 0.99))
    assert not np.array_equal(fastpong.discount_rewards(rewards, 0.99),
                              fastpong.discount_rewards(rewards, 0.99, reset_at_points=False))


def test_cartpole_returns_are_the_geometric_sums():
    """CartPole pays 1 a step: R_t = (1 - gamma^(T - t)) / (1 - gamma) without resets, and 1
    everywhere with them (every reward is nonzero)."""
    steps, gamma = 300, 0.95
    ones = np.ones(steps)
    expected = (1 - gamma ** (steps - np.arange(steps))) / (1 - gamma)
    np.testing.assert_allclose(lab.discount_rewards(ones, gamma, reset_at_points=False), expected,
                               rtol=1e-12)
    assert_ulps_close(fastpong.discount_rewards(ones, gamma, reset_at_points=False), expected)
    np.testing.assert_array_equal(fastpong.discount_rewards(ones, gamma), np.ones(steps))


@pytest.mark.parametrize("n", [1, 2, 3, 200, 500])
def test_normalize_matches_standardize(n):
    returns = lab.discount_rewards(np.ones(n), 0.95, reset_at_points=False)
    expected = lab.normalize(returns)
    if n > 1:
        assert abs(np.mean(expected)) < 1e-12 and abs(np.std(expected) - 1) < 1e-12
    assert_ulps_close(fastpong.standardize(returns.astype(np.float32)), expected, k=16)


def test_normalize_of_a_constant_or_empty_episode_is_zeros():
    np.testing.assert_array_equal(lab.normalize(np.full(5, 0.1)), np.zeros(5))
    assert lab.normalize(np.zeros(0)).shape == (0,)


@pytest.mark.parametrize("gamma", [0.0, -0.5, 1.5, float("nan")])
def test_bad_gamma_is_refused_either_way(gamma):
    for reset in (True, False):
        with pytest.raises(ValueError, match=r"gamma must be in \(0, 1\]"):
            fastpong.discount_rewards(np.ones(3, np.float32), gamma, reset_at_points=reset)
