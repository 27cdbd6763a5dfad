"""``fastpong.evaluate`` and ``fastpong.record_video``: watch a trained policy play."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from . import _core
from .checkpoint import CheckpointError, load_policy_weights
from .config import DEFAULT_ENV_ID, check_positive_int
from .policy import Policy
from .reference import DOWN, UP

#: ``--checkpoint pretrained`` names the policy shipped inside the package.
PRETRAINED = "pretrained"
PRETRAINED_FILE = "pretrained/pong.npz"


@dataclass
class EpisodeResult:
    points_won: int
    points_lost: int
    steps: int
    truncated: bool  # ended by the environment's time limit rather than a 21-point game

    @property
    def reward(self) -> int:
        return self.points_won - self.points_lost


@dataclass
class EvalResult:
    episodes: list[EpisodeResult]

    @property
    def rewards(self) -> np.ndarray:
        return np.array([e.reward for e in self.episodes], dtype=float)

    def summary(self) -> dict:
        """episodes, mean_reward, std_reward, episodes_won, points_won, points_lost,
        point_win_rate (points won / points played, the MIT lab's win rate)."""
        won = sum(e.points_won for e in self.episodes)
        lost = sum(e.points_lost for e in self.episodes)
        rewards = self.rewards
        return {
            "episodes": len(self.episodes),
            "mean_reward": float(rewards.mean()) if rewards.size else 0.0,
            "std_reward": float(rewards.std()) if rewards.size else 0.0,
            "episodes_won": int(sum(e.reward > 0 for e in self.episodes)),
            "points_won": int(won),
            "points_lost": int(lost),
            "point_win_rate": won / (won + lost) if won + lost else 0.0,
            "per_episode": [dataclasses.asdict(e) for e in self.episodes],
        }


def resolve_checkpoint(spec) -> Path:
    """'pretrained', a run directory (its checkpoint.npz) or a .npz file -> the file's path."""
    if str(spec) == PRETRAINED:
        path = Path(str(resources.files("fastpong").joinpath(PRETRAINED_FILE)))
        if not path.is_file():
            raise CheckpointError(f"this installation of fastpong ships no pretrained policy ({path} is missing)")
        return path
    path = Path(spec)
    if path.is_dir():
        path = path / "checkpoint.npz"
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    return path


def load_policy(spec) -> Policy:
    """A Policy from 'pretrained', a run directory or a checkpoint file."""
    return Policy.from_model(load_policy_weights(resolve_checkpoint(spec)))


def evaluate(checkpoint=PRETRAINED, *, env_id: str = DEFAULT_ENV_ID, episodes: int = 10,
             num_envs: int | None = None, seed: int | None = 0, greedy: bool = False,
             video=None, max_steps: int | None = None) -> EvalResult:
    """Plays `episodes` full games with a checkpoint's policy on the parallel fast path.

    Actions are sampled as in training (``greedy=True``: up when p > 0.5). ``video`` records the
    first episode (MP4 or GIF). ``max_steps`` caps the agent steps of the whole evaluation (for
    quick checks): games still going then count, marked truncated, with the points they had."""
    from .envs import make_env_batch, validate_env_id
    from .video import VideoWriter, check_video_path

    policy = checkpoint if isinstance(checkpoint, Policy) else load_policy(checkpoint)
    check_positive_int("episodes", episodes)
    for label, value in (("num_envs", num_envs), ("max_steps", max_steps)):
        if value is not None:
            check_positive_int(label, value)
    validate_env_id(env_id)
    video_path = check_video_path(video) if video is not None else None
    num_envs = min(num_envs or 4, episodes)

    rng = np.random.default_rng(seed)
    envs = make_env_batch(env_id, num_envs, seed=seed)
    differencer = _core.FrameDifferencer(num_envs)
    # Each environment plays whole episodes; once `episodes` have been started, an environment
    # that finishes is left idle, so short games are not favoured over long ones.
    started = num_envs
    active = np.ones(num_envs, dtype=bool)
    won = np.zeros(num_envs, dtype=np.int64)
    lost = np.zeros(num_envs, dtype=np.int64)
    steps = np.zeros(num_envs, dtype=np.int64)
    results: list[EpisodeResult] = []
    writer = VideoWriter(video_path) if video_path is not None else None
    recording = writer is not None
    try:
        frames = envs.reset(seed=seed)
        step = 0
        while active.any() and (max_steps is None or step < max_steps):
            x = differencer.step(frames)
            p, _ = policy.forward(x)
            up = p > 0.5 if greedy else rng.random(num_envs) < p
            if recording:
                network_input = x.to_dense(policy.input_size)[0].reshape(80, 80)
                writer.add_frame(frames[0], network_input, (int(won[0]), int(lost[0])))
            frames, rewards, ends = envs.step(np.where(up, UP, DOWN))
            step += 1
            won += rewards > 0
            lost += rewards < 0
            steps += 1
            for env in np.flatnonzero(ends & active):
                results.append(EpisodeResult(int(won[env]), int(lost[env]), int(steps[env]),
                                             truncated=bool(max(won[env], lost[env]) < 21)))
                if env == 0 and recording:
                    writer.close()
                    recording = False
                won[env] = lost[env] = steps[env] = 0
                differencer.reset(env)
                if started < episodes:
                    started += 1
                else:
                    active[env] = False
        # Games still going when max_steps ran out count with the points they had.
        for env in np.flatnonzero(active):
            results.append(EpisodeResult(int(won[env]), int(lost[env]), int(steps[env]), truncated=True))
        if recording:
            writer.close()
            recording = False
    except BaseException:
        if writer is not None and recording:
            writer.abort()
        raise
    finally:
        envs.close()
    return EvalResult(results)


def record_video(path, checkpoint=PRETRAINED, *, env_id: str = DEFAULT_ENV_ID, seed: int | None = 0,
                 greedy: bool = False, max_steps: int | None = None) -> EpisodeResult:
    """Plays one episode and records it to `path` (.mp4 or .gif); returns its result."""
    return evaluate(checkpoint, env_id=env_id, episodes=1, num_envs=1, seed=seed, greedy=greedy,
                    video=path, max_steps=max_steps).episodes[0]
