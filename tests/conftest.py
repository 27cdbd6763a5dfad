"""Shared fixtures: a short stretch of real Pong played by a seeded random agent.

The frames come from ale-py exactly as training sees them (uint8 RGB, 210x160x3), so the kernel
tests run on the real background shades, paddles, ball and score board rather than on made-up
images alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

#: Agent steps recorded. Long enough for several points to be scored (nonzero rewards) and for the
#: ball to cross the court a few times; takes well under a second of emulation.
PONG_STEPS = 400
PONG_SEED = 0
UP, DOWN = 2, 3


@dataclass(frozen=True)
class PongPlay:
    """frames[0] is the observation from reset(); frames[t + 1] follows actions[t], rewards[t]."""

    frames: np.ndarray  # (PONG_STEPS + 1, 210, 160, 3) uint8
    actions: np.ndarray  # (PONG_STEPS,) in {2, 3}
    rewards: np.ndarray  # (PONG_STEPS,) float64 in {-1, 0, 1}
    starts: tuple  # indices into frames where an episode starts (0 and after every reset)


@pytest.fixture(scope="session")
def pong_play() -> PongPlay:
    import ale_py  # dependencies of fastpong: a missing one should fail loudly, not skip
    import gymnasium

    gymnasium.register_envs(ale_py)
    env = gymnasium.make("ALE/Pong-v5", repeat_action_probability=0.0)
    try:
        observation, _ = env.reset(seed=PONG_SEED)
        rng = np.random.default_rng(PONG_SEED)
        frames, actions, rewards, starts = [observation], [], [], [0]
        for _ in range(PONG_STEPS):
            action = UP if rng.uniform() < 0.5 else DOWN
            observation, reward, terminated, truncated, _ = env.step(action)
            actions.append(action)
            rewards.append(reward)
            if terminated or truncated:
                observation, _ = env.reset()
                starts.append(len(frames))
            frames.append(observation)
    finally:
        env.close()
    play = PongPlay(
        frames=np.stack(frames),
        actions=np.asarray(actions),
        rewards=np.asarray(rewards, dtype=np.float64),
        starts=tuple(starts),
    )
    play.frames.flags.writeable = False  # shared by every test: nobody may change it
    play.rewards.flags.writeable = False
    return play


@pytest.fixture(scope="session")
def pong_inputs(pong_play) -> np.ndarray:
    """The network's input at every frame of pong_play, by the reference (float64, (T + 1, 6400)):
    update_input(prev_x, cur_x) of the tutorial, with prev_x = None at each episode start."""
    from fastpong import reference

    inputs = np.empty((len(pong_play.frames), reference.INPUT_SIZE))
    prev_x = None
    for t, frame in enumerate(pong_play.frames):
        if t in pong_play.starts:
            prev_x = None
        cur_x = reference.frame_preprocessing(frame).ravel()
        inputs[t] = reference.update_input(prev_x, cur_x)
        prev_x = cur_x
    inputs.flags.writeable = False
    return inputs


@pytest.fixture
def restore_threads():
    """Puts the kernels' thread count back after a test that changes it."""
    import fastpong

    before = fastpong.get_num_threads()
    yield
    fastpong.set_num_threads(before)
