"""``fastpong.evaluate`` and ``fastpong.record_video``: watch a trained policy play."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .. import _core
from ..agents import ATARI, Agent, check_agent_plays, get_agent
from ..training.checkpoint import CheckpointError, load_agent_weights
from ..config import DEFAULT_ENV_ID, check_positive_int, frameskip_without_frames
from ..nn.policy import Policy
from ..reference import DOWN, UP
from ..reference.ppo import CHANGE
from ..shipped import SHIPPED_POLICIES

#: ``--checkpoint pretrained`` names the tutorial agent's policy shipped inside the package.
PRETRAINED = "pretrained"
#: Every shipped policy, by the name ``--checkpoint`` takes: the file inside the package
#: (``fastpong.shipped`` lists them; experiments/export_pretrained.py writes them).
PRETRAINED_FILES = {name: path for name, (path, _) in SHIPPED_POLICIES.items()}
PRETRAINED_FILE = PRETRAINED_FILES[PRETRAINED]


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


@dataclass
class ReturnEpisode:
    """An episode of an environment without points (CartPole): its return and length."""

    reward: float  # the return: the sum of the episode's rewards
    steps: int
    truncated: bool  # ended by the time limit (CartPole: the pole was still up) or by max_steps


@dataclass
class ReturnEvalResult:
    episodes: list[ReturnEpisode]

    @property
    def rewards(self) -> np.ndarray:
        return np.array([e.reward for e in self.episodes], dtype=float)

    def summary(self) -> dict:
        """episodes, mean_return, std_return, min_return, max_return, mean_length, std_length."""
        returns = self.rewards
        lengths = np.array([e.steps for e in self.episodes], dtype=float)
        stat = (lambda f, a: float(f(a)) if a.size else 0.0)
        return {
            "episodes": len(self.episodes),
            "mean_return": stat(np.mean, returns),
            "std_return": stat(np.std, returns),
            "min_return": stat(np.min, returns),
            "max_return": stat(np.max, returns),
            "mean_length": stat(np.mean, lengths),
            "std_length": stat(np.std, lengths),
            "per_episode": [dataclasses.asdict(e) for e in self.episodes],
        }


@dataclass
class Player:
    """A trained policy and what it plays: its agent, and the environment of its run if known
    (its id and, for Atari, the frameskip it was trained with; None: the id's own)."""

    agent: Agent
    policy: object
    env_id: str | None = None
    frameskip: int | None = None


def resolve_checkpoint(spec) -> Path:
    """A shipped policy's name (PRETRAINED_FILES: 'pretrained'), a run directory
    (its checkpoint.npz) or a .npz file -> the file's path."""
    if str(spec) in PRETRAINED_FILES:
        path = Path(str(resources.files("fastpong").joinpath(PRETRAINED_FILES[str(spec)])))
        if not path.is_file():
            raise CheckpointError(f"this installation of fastpong does not ship {spec} ({path} is missing)")
        return path
    path = Path(spec)
    if path.is_dir():
        path = path / "checkpoint.npz"
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    return path


def load_player(spec) -> Player:
    """Any agent's policy from 'pretrained', a run directory, a checkpoint or weights file."""
    agent, config, weights = load_agent_weights(resolve_checkpoint(spec))
    if config is None:
        return Player(agent, agent.policy_from_weights(weights, None))
    return Player(agent, agent.policy_from_weights(weights, config), config.env_id, config.frameskip)


def load_policy(spec) -> Policy:
    """The tutorial agent's Policy from 'pretrained', a run directory or a checkpoint file."""
    player = load_player(spec)
    if player.agent.name != "karpathy":
        raise CheckpointError(f"{spec} holds a policy of agent {player.agent.name!r}, not the tutorial's")
    return player.policy


def _as_player(checkpoint) -> Player:
    if isinstance(checkpoint, Player):
        return checkpoint
    if isinstance(checkpoint, Policy):
        return Player(get_agent("karpathy"), checkpoint)
    return load_player(checkpoint)


def evaluate(checkpoint=PRETRAINED, *, env_id: str | None = None, episodes: int = 10,
             num_envs: int | None = None, seed: int | None = 0, greedy: bool = False,
             video=None, max_steps: int | None = None, frameskip: int | None = None):
    """Plays `episodes` full episodes with a checkpoint's policy on the parallel fast path.

    ``checkpoint``: 'pretrained', a run directory, a checkpoint or weights file, a Policy or a
    Player. ``env_id``: by default the one the policy was trained on (Pong for the shipped
    policy). ``frameskip`` (Atari): by default the one the policy was trained with (the
    environment's own for a run that set none, or a bare policy). Actions are sampled as in
    training (``greedy=True``: the most probable action).
    ``video`` records the first episode (MP4 or GIF). ``max_steps`` caps the agent steps of the
    whole evaluation (for quick checks): episodes still going then count, marked truncated.

    Returns an EvalResult (Pong: points won and lost per game) or a ReturnEvalResult (CartPole:
    return and length per episode)."""
    from .video import check_video_path

    player = _as_player(checkpoint)
    check_positive_int("episodes", episodes)
    for label, value in (("num_envs", num_envs), ("max_steps", max_steps)):
        if value is not None:
            check_positive_int(label, value)
    env_id = env_id or player.env_id or DEFAULT_ENV_ID
    check_agent_plays(player.agent, env_id)
    if player.agent.env_kind == ATARI:
        from ..envs import check_frameskip, validate_env_id

        validate_env_id(env_id)
        frameskip = check_frameskip(frameskip if frameskip is not None else player.frameskip)
    elif frameskip is not None:
        raise frameskip_without_frames(env_id)
    video_path = check_video_path(video) if video is not None else None
    if player.agent.env_kind != ATARI:
        return _evaluate_returns(player.policy, env_id, episodes, min(num_envs or 16, episodes), seed, greedy,
                                 video_path, max_steps)
    game_class = _LabPongGame if player.agent.frame_input == "lab" else _PongGame
    return _evaluate_pong(player.policy, env_id, episodes, min(num_envs or 4, episodes), seed, greedy,
                          video_path, max_steps, game_class, frameskip)


def _evaluate_pong(policy, env_id, episodes, num_envs, seed, greedy, video_path, max_steps,
                   game_class=None, frameskip=None) -> EvalResult:
    from ..envs import make_env_batch
    from .video import VideoWriter

    game = (game_class or _PongGame)(policy, num_envs, np.random.default_rng(seed), greedy)
    writer = VideoWriter(video_path) if video_path is not None else None
    envs = make_env_batch(env_id, num_envs, seed=seed, frameskip=frameskip)
    return EvalResult(_play(envs, game, episodes, seed, max_steps, writer))


def _evaluate_returns(policy, env_id, episodes, num_envs, seed, greedy, video_path, max_steps) -> ReturnEvalResult:
    from ..envs.classic import ClassicEnvBatch, require_renderer
    from .video import VideoWriter

    if video_path is not None:
        require_renderer()
    game = _ReturnGame(policy, env_id, num_envs, np.random.default_rng(seed), greedy)
    writer = VideoWriter(video_path, fps=50) if video_path is not None else None  # CartPole: 50 steps/s
    envs = ClassicEnvBatch(env_id, num_envs, render=writer is not None)
    return ReturnEvalResult(_play(envs, game, episodes, seed, max_steps, writer))


def _play(envs, game, episodes: int, seed, max_steps, writer) -> list:
    """Each environment plays whole episodes; once `episodes` have been started, an environment
    that finishes is left idle, so short episodes are not favoured over long ones. `game` knows
    what is particular to the environment: choosing actions, drawing a video frame, counting a
    step's rewards, an episode's result. `writer` (or None) records the first environment's first
    episode. Closes `envs`."""
    num_envs = envs.num_envs
    started = num_envs
    active = np.ones(num_envs, dtype=bool)
    results = []
    recording = writer is not None
    try:
        observations = envs.reset(seed=seed)
        step = 0
        while active.any() and (max_steps is None or step < max_steps):
            actions = game.actions(observations)
            if recording:
                game.draw(writer, observations, envs)
            observations, rewards, ends = envs.step(actions)
            step += 1
            game.count(rewards)
            for env in np.flatnonzero(ends & active):
                results.append(game.result(env, ended=True))
                if env == 0 and recording:
                    writer.close()
                    recording = False
                game.restart(env)
                if started < episodes:
                    started += 1
                else:
                    active[env] = False
        # Episodes still going when max_steps ran out count with what they had.
        results.extend(game.result(env, ended=False) for env in np.flatnonzero(active))
        if recording:
            writer.close()
            recording = False
    except BaseException:
        if recording:
            writer.abort()
        raise
    finally:
        envs.close()
    return results


class _PongGame:
    """The tutorial's agent on Pong: frame differences in, up or down out, points counted."""

    def __init__(self, policy, num_envs: int, rng, greedy: bool):
        self.policy, self.rng, self.greedy = policy, rng, greedy
        self.differencer = _core.FrameDifferencer(num_envs)
        self.won = np.zeros(num_envs, dtype=np.int64)
        self.lost = np.zeros(num_envs, dtype=np.int64)
        self.steps = np.zeros(num_envs, dtype=np.int64)
        self.x = None

    def actions(self, frames):
        self.x = self.differencer.step(frames)
        p, _ = self.policy.forward(self.x)
        up = p > 0.5 if self.greedy else self.rng.random(p.shape[0]) < p
        return np.where(up, UP, DOWN)

    def draw(self, writer, frames, envs):
        network_input = self.x.to_dense(self.policy.input_size)[0].reshape(80, 80)
        writer.add_frame(frames[0], network_input, (int(self.won[0]), int(self.lost[0])))

    def count(self, rewards):
        self.won += rewards > 0
        self.lost += rewards < 0
        self.steps += 1

    def result(self, env, ended: bool) -> EpisodeResult:
        won, lost = int(self.won[env]), int(self.lost[env])
        return EpisodeResult(won, lost, int(self.steps[env]), truncated=not ended or max(won, lost) < 21)

    def restart(self, env):
        self.won[env] = self.lost[env] = self.steps[env] = 0
        self.differencer.reset(env)


class _LabPongGame(_PongGame):
    """The MIT lab's CNN on Pong: 40x40 frame changes (prev - curr, zero on a game's first frame),
    or the actor-critic's frame and change where it was trained on that, in; one of the six
    actions out (sampled, or the most probable with greedy)."""

    def __init__(self, policy, num_envs: int, rng, greedy: bool):
        from ..nn.conv_policy import LabFrameDifferencer

        super().__init__(policy, num_envs, rng, greedy)
        # The actor-critic may have been trained on another input (its --observation).
        self.lab_differencer = LabFrameDifferencer(num_envs, getattr(policy, "observation", CHANGE))

    def actions(self, frames):
        from .. import sample_actions

        self.x = self.lab_differencer.step(frames)
        probs = self.policy.forward(self.x)
        if self.greedy:
            return np.argmax(probs, axis=1).astype(np.int32)
        return sample_actions(probs, self.rng.random(probs.shape[0], dtype=np.float32))

    def draw(self, writer, frames, envs):
        from .video import FRAME_AND_CHANGE_INPUT, LAB_INPUT

        panel = FRAME_AND_CHANGE_INPUT if self.lab_differencer.observation == "frame-and-change" else LAB_INPUT
        network_input = np.repeat(np.repeat(self.x[0], 2, axis=0), 2, axis=1)  # 40x40 shown 2x
        writer.add_frame(frames[0], network_input, (int(self.won[0]), int(self.lost[0])), panel)

    def restart(self, env):
        super().restart(env)
        self.lab_differencer.reset(env)


class _ReturnGame:
    """A categorical policy on CartPole: observations in, sampled (or most probable) actions out,
    returns and lengths counted."""

    def __init__(self, policy, env_id: str, num_envs: int, rng, greedy: bool):
        from ..envs.classic import CLASSIC_ENV_IDS

        self.policy, self.rng, self.greedy = policy, rng, greedy
        self.time_limit = CLASSIC_ENV_IDS[env_id]
        self.returns = np.zeros(num_envs)
        self.steps = np.zeros(num_envs, dtype=np.int64)

    def actions(self, observations):
        from .. import sample_actions

        probs = self.policy.forward(observations)
        if self.greedy:
            return np.argmax(probs, axis=1).astype(np.int32)
        return sample_actions(probs, self.rng.random(probs.shape[0]))

    def draw(self, writer, observations, envs):
        writer.add_image(envs.render_first())

    def count(self, rewards):
        self.returns += rewards
        self.steps += 1

    def result(self, env, ended: bool) -> ReturnEpisode:
        steps = int(self.steps[env])
        return ReturnEpisode(float(self.returns[env]), steps, truncated=not ended or steps >= self.time_limit)

    def restart(self, env):
        self.returns[env] = self.steps[env] = 0


def record_video(path, checkpoint=PRETRAINED, *, env_id: str | None = None, seed: int | None = 0,
                 greedy: bool = False, max_steps: int | None = None):
    """Plays one episode and records it to `path` (.mp4 or .gif); returns its result."""
    return evaluate(checkpoint, env_id=env_id, episodes=1, num_envs=1, seed=seed, greedy=greedy,
                    video=path, max_steps=max_steps).episodes[0]


from .._callable_module import call_through  # noqa: E402  (the module must be complete first)

call_through(__name__, "evaluate")
