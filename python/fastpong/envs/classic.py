"""N CartPoles stepped together, behind the same batch interface as the Atari EnvBatch.

gymnasium's own vectorized CartPole (``CartPoleVectorEnv``, what ``gymnasium.make_vec(id,
vectorization_mode="vector_entry_point")`` builds) steps all poles in NumPy, with no Python loop
per environment. Its autoreset is "next step": the step after an episode ends ignores the action,
draws the new start state and returns reward 0. The training loop expects "same step" (an episode
restarts inside the step on which it ends, as envs.EnvBatch does), so this batch restarts finished
poles itself, right after the step that ended them, with the same draws gymnasium would make on
the next step: the new episodes start in exactly the states gymnasium would give them, and no step
of an episode is a dummy one.

Each pole of a batch behaves like ``gymnasium.make(env_id)`` (the same physics, rewards,
termination and time limit: 500 steps for CartPole-v1, 200 for CartPole-v0); the start states come
from the batch's one random stream, seeded by ``reset(seed=...)``.
"""

from __future__ import annotations

import os

import numpy as np

#: The classic-control ids fastpong trains on, with their time limits in steps.
CLASSIC_ENV_IDS = {"CartPole-v1": 500, "CartPole-v0": 200}


def is_classic_env_id(env_id) -> bool:
    return env_id in CLASSIC_ENV_IDS


def require_renderer() -> None:
    """Makes sure gymnasium can draw CartPole (it uses pygame), quietly: pygame's greeting would
    land on stdout (where `--json` writes), and SDL would look for a display it does not need.
    ValueError in one line if pygame is missing."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # drawing is off-screen
    try:
        import pygame  # noqa: F401
    except ImportError:
        raise ValueError("a CartPole video needs pygame: pip install 'fastpong[cartpole]'") from None


class ClassicEnvBatch:
    """``reset(seed) -> obs``; ``send(actions)``; ``recv() -> (obs, rewards, ends)``; ``close()``.

    obs: float32 (N, 4); rewards: float32 (N,); ends: bool (N,), terminated or truncated. When
    ``ends[i]``, ``obs[i]`` is already the first observation of env i's next episode."""

    def __init__(self, env_id: str, num_envs: int, render: bool = False):
        from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

        if not is_classic_env_id(env_id):
            raise ValueError(f"expected one of {', '.join(CLASSIC_ENV_IDS)}, got {env_id!r}")
        self.env_id = env_id
        self.num_envs = num_envs
        self.num_actions = 2
        self.observation_size = 4
        if render:
            require_renderer()
        self._venv = CartPoleVectorEnv(num_envs=num_envs, max_episode_steps=CLASSIC_ENV_IDS[env_id],
                                       render_mode="rgb_array" if render else None)
        self._actions = None

    def reset(self, seed: int | None = None) -> np.ndarray:
        obs, _ = self._venv.reset(seed=seed)
        return obs

    def send(self, actions) -> None:
        self._actions = np.asarray(actions)

    def recv(self):
        actions, self._actions = self._actions, None
        obs, rewards, terminated, truncated, _ = self._venv.step(actions)
        ends = terminated | truncated
        if ends.any():
            self._restart(ends, obs)
        return obs, rewards.astype(np.float32, copy=False), ends

    def step(self, actions):
        self.send(actions)
        return self.recv()

    def _restart(self, ends: np.ndarray, obs: np.ndarray) -> None:
        """What CartPoleVectorEnv does at the start of the next step, done now."""
        venv = self._venv
        venv.state[:, ends] = venv.np_random.uniform(low=venv.low, high=venv.high, size=(4, int(ends.sum())))
        venv.steps[ends] = 0
        venv.prev_done[ends] = False
        obs[ends] = venv.state[:, ends].T.astype(np.float32)

    def render_first(self) -> np.ndarray:
        """The first pole as an RGB image (H, W, 3) uint8 (needs pygame)."""
        return self._venv.render()[0]

    def close(self) -> None:
        if self._venv is not None:
            self._venv.close()
            self._venv = None
