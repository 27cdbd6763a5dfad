"""Uniform draws at the edge of [0, 1): a float64 draw within 2^-25 of 1 rounds to 1.0 in float32,
and once crashed every long run of the lab's agents ("uniforms must be in [0, 1), got 1.000000").
The kernel checks the range in the caller's precision and takes such a draw as the largest float32
below 1; these tests hand it, and the learners that draw for it, exactly that value."""

import numpy as np
import pytest

import fastpong
from fastpong.agents import get_agent
from fastpong.config import TrainConfig

#: The largest float64 below 1: NumPy's rng.random() can return it, and it rounds to 1.0f.
EDGE = np.nextafter(1.0, 0.0)


class EdgeRng:
    """A Generator stand-in whose every uniform is EDGE (what a long run eventually draws)."""

    def random(self, size):
        return np.full(size, EDGE)


def test_float64_uniform_below_one_that_rounds_to_one_is_accepted():
    assert np.float32(EDGE) == 1.0  # the premise: float32 cannot hold it
    probs = np.array([[0.2, 0.8, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
    # The last action of nonzero probability, as a uniform just below 1 picks from the inverse CDF.
    np.testing.assert_array_equal(fastpong.sample_actions(probs, np.full(3, EDGE)), [1, 0, 2])


@pytest.mark.parametrize("uniforms, shown", [
    (np.ones(1), "got 1.0 at row 0"),  # 1 itself is out of range in any precision
    (np.array([-1e-300]), "got -1e-300 at row 0"),  # and a float64 below 0 even if it rounds to -0
    (np.ones(1, np.float32), "got 1.000000 at row 0"),
])
def test_uniforms_out_of_range_are_refused_in_their_own_precision(uniforms, shown):
    with pytest.raises(ValueError, match=r"uniforms must be in \[0, 1\), " + shown):
        fastpong.sample_actions(np.array([[0.5, 0.5]], np.float32), uniforms)


def _act_at_the_edge(agent_name, env_id, observations):
    config = TrainConfig(env_id=env_id, agent=agent_name, seed=0).resolved()
    learner = get_agent(agent_name).learners["fast"](config, [len(observations)], EdgeRng())
    learner.observe(0, observations)
    return learner.act(0)


def test_mit_cartpole_learner_samples_with_a_draw_at_the_edge():
    actions = _act_at_the_edge("mit-cartpole", "CartPole-v1", np.zeros((3, 4), np.float32))
    # A uniform just below 1 takes the last action of nonzero probability: CartPole's action 1.
    np.testing.assert_array_equal(actions, [1, 1, 1])


def test_mit_pong_learner_samples_with_a_draw_at_the_edge():
    actions = _act_at_the_edge("mit-pong", "ALE/Pong-v5", np.zeros((2, 210, 160, 3), np.uint8))
    np.testing.assert_array_equal(actions, [5, 5])  # the last of Pong's six actions
