"""The episode buffer's memory against the tutorial's dense rows (a functional check, not timed)."""

from __future__ import annotations

import numpy as np
import pong_data
from episode_memory import measure


def test_episode_buffer_is_smaller_per_step_than_dense_rows(pong):
    m = measure(pong.recording.head(pong_data.EPISODE_STEPS))
    buffer, tutorial = m["buffer"], m["tutorial"]
    assert len(buffer) == m["steps"] == pong_data.EPISODE_STEPS
    # It holds the same episode: the inputs, h (float32), dlogp and rewards of the dense rows.
    np.testing.assert_array_equal(buffer.inputs.to_dense(), tutorial.epx)
    np.testing.assert_allclose(buffer.hidden_states, tutorial.eph, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(buffer.dlogps, tutorial.epdlogp.ravel(), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(buffer.rewards, tutorial.epr.ravel())
    assert m["reference_bytes_per_step"] == 8 * (pong_data.INPUT_SIZE + pong_data.HIDDEN + 2)
    assert m["fast_bytes_per_step"] < m["reference_bytes_per_step"]
    # A real frame difference changes a few dozen of 6400 pixels: far below the dense rows.
    assert m["ratio"] > 10
