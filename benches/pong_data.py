"""Real Pong data for the benchmarks: frames from ALE/Pong-v5, the tutorial's episode arrays and
the MIT lab's 40x40 CNN inputs.

Shared by ``conftest.py`` (session fixtures), ``test_bench_ppo.py`` and the scripts
(``episode_memory.py``, ``cnn_gradient_rounds.py``), so all measure the same kind of input the
training loop sees: frame differences of a real game, where only the paddles and the ball move (a
few dozen of 6400 pixels).
"""

from __future__ import annotations

from dataclasses import dataclass

import ale_py
import gymnasium
import numpy as np

from fastpong import reference

gymnasium.register_envs(ale_py)

ENV_ID = "ALE/Pong-v5"
#: Steps played for the session's data: a 1000-step episode segment plus room to spare.
DEFAULT_STEPS = 1100
SEED = 0
#: The tutorial's network and hyperparameters.
HIDDEN = 200
INPUT_SIZE = reference.INPUT_SIZE
GAMMA = 0.99
LEARNING_RATE = 1e-4
DECAY_RATE = 0.99
#: The backward benchmark's episode length, and the environments of the batched benchmarks.
EPISODE_STEPS = 1000
BATCH = 8


@dataclass
class Recording:
    """What a seeded random up/down player saw and did, one entry per step.

    ``frames[t]`` is the observation the action ``actions[t]`` answered, ``rewards[t]`` the reward
    that followed it, and ``episode_starts[t]`` marks a frame that opened an episode (its frame
    difference is all zeros, as in the tutorial).
    """

    frames: np.ndarray  # (T, 210, 160, 3) uint8
    actions: np.ndarray  # (T,) int, 2 (up) or 3 (down)
    rewards: np.ndarray  # (T,) float64
    episode_starts: np.ndarray  # (T,) bool

    def __len__(self) -> int:
        return len(self.actions)

    def head(self, steps: int) -> Recording:
        """The first ``steps`` steps."""
        return Recording(self.frames[:steps], self.actions[:steps], self.rewards[:steps],
                         self.episode_starts[:steps])


def play(steps: int = DEFAULT_STEPS, seed: int = SEED) -> Recording:
    """Plays ``steps`` steps of Pong with random up/down actions, restarting finished episodes."""
    env = gymnasium.make(ENV_ID, repeat_action_probability=0.0)
    rng = np.random.default_rng(seed)
    try:
        observation, _ = env.reset(seed=seed)
        frames, actions, rewards, starts = [], [], [], []
        starting = True
        for _ in range(steps):
            action = int(rng.choice((reference.UP, reference.DOWN)))
            frames.append(observation)
            actions.append(action)
            starts.append(starting)
            observation, reward, terminated, truncated, _ = env.step(action)
            rewards.append(float(reward))
            starting = terminated or truncated
            if starting:
                observation, _ = env.reset()
    finally:
        env.close()
    return Recording(
        frames=np.stack(frames),
        actions=np.asarray(actions),
        rewards=np.asarray(rewards, dtype=np.float64),
        episode_starts=np.asarray(starts),
    )


def reference_differences(recording: Recording) -> np.ndarray:
    """(T, 6400) float64: the tutorial's network inputs, cur_x - prev_x, zeros on a first frame."""
    rows = []
    prev_x = None
    for frame, starting in zip(recording.frames, recording.episode_starts, strict=True):
        if starting:
            prev_x = None
        cur_x = reference.frame_preprocessing(frame).ravel()
        rows.append(reference.update_input(prev_x, cur_x))
        prev_x = cur_x
    return np.stack(rows)


@dataclass
class TutorialEpisode:
    """The tutorial's stacked episode arrays, as np.vstack leaves them for the backward pass."""

    epx: np.ndarray  # (T, D) float64 frame differences
    eph: np.ndarray  # (T, H) float64 hidden activations
    epdlogp: np.ndarray  # (T, 1) float64 y - p, not yet scaled by the advantages
    epr: np.ndarray  # (T, 1) float64 rewards

    def advantages(self, gamma: float = GAMMA) -> np.ndarray:
        """(T,) standardized discounted returns, what the tutorial multiplies epdlogp by."""
        return reference.standardize_returns(reference.discount_rewards(self.epr.ravel(), gamma))

    @property
    def nbytes(self) -> int:
        return self.epx.nbytes + self.eph.nbytes + self.epdlogp.nbytes + self.epr.nbytes


def tutorial_episode(x: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
                     model: dict) -> TutorialEpisode:
    """The reference forward pass over real inputs, stacked as the tutorial keeps an episode.

    The label is the action actually played (y = 1 for up), so dlogp = y - p has the tutorial's
    distribution of signs and sizes even though the player was random. The steps go through
    policy_forward together (x as a (D, T) matrix), the same arithmetic as one at a time.
    """
    aprob, h = reference.policy_forward(x.T, model)
    y = (np.asarray(actions) == reference.UP).astype(np.float64)
    return TutorialEpisode(
        epx=np.array(x, dtype=np.float64),
        eph=np.ascontiguousarray(h.T),
        epdlogp=(y - aprob).reshape(-1, 1),
        epr=np.asarray(rewards, dtype=np.float64).reshape(-1, 1),
    )


def representative_row(x: np.ndarray) -> int:
    """Index of a nonzero frame difference with the median number of changed pixels."""
    counts = np.count_nonzero(x, axis=1)
    nonzero = np.flatnonzero(counts)
    if nonzero.size == 0:
        raise RuntimeError("the recording holds no nonzero frame difference")
    median = np.median(counts[nonzero])
    return int(nonzero[np.argmin(np.abs(counts[nonzero] - median))])


def lab_inputs(steps: int, rng: np.random.Generator, kinds=("change",)) -> dict:
    """The MIT lab's CNN inputs over ``steps`` steps of ALE/Pong-v5 played with random actions (all
    six, drawn from ``rng``, which goes on for the caller's other draws): {kind: (steps, 40, 40)
    float32} for each observation kind of ``fastpong.LabFrameDifferencer`` ("change", the lab's,
    zero right after a reset; "frame-and-change", PPO's other). Episode ``SEED`` first."""
    import fastpong

    env = gymnasium.make(ENV_ID)
    differencers = {kind: fastpong.LabFrameDifferencer(1, kind) for kind in kinds}
    inputs = {kind: [] for kind in kinds}
    frame, _ = env.reset(seed=SEED)
    try:
        for _ in range(steps):
            for kind, differencer in differencers.items():
                inputs[kind].append(differencer.step(frame[None])[0])
            frame, _, terminated, truncated, _ = env.step(int(rng.integers(6)))
            if terminated or truncated:
                frame, _ = env.reset()
                for differencer in differencers.values():
                    differencer.reset(0)
    finally:
        env.close()
    return {kind: np.stack(rows) for kind, rows in inputs.items()}
