"""A rollout worker: its own environments and a copy of the policy, playing in chunks of steps.

Plain Python, no Ray in here: ray_train.py wraps the class as an actor. Each ``play`` call steps
the worker's games for a chunk of env steps with the newest weights it was handed, and returns
what the learner needs of every episode that finished in the chunk: its return, length (and
Pong's points) and its gradient (``take_gradient``), one per episode (see README "Training on a Ray cluster" for why one per game).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from .. import _core
from ..agents import ATARI
from ..config import TrainConfig
from ..training.local_lanes import lane_sizes, make_lanes


def worker_seeds(seed: int, episodes: int, worker: int, incarnation: int) -> tuple[int, np.random.SeedSequence]:
    """(first env seed, action-sampling seed) of one incarnation of one worker in one session: all
    different, and the same again for the same run, worker, session start and restart count."""
    sequence = np.random.SeedSequence([seed, episodes, worker, incarnation])
    env_seed, action_sequence = sequence.spawn(2)
    return int(env_seed.generate_state(1)[0] % 2**31), action_sequence


class RolloutWorker:
    """Steps ``num_envs`` games in lanes, as the local loop does, on one core."""

    def __init__(self, config: dict, worker: int):
        # A worker is given one CPU: one kernel thread, one emulator thread per lane.
        self.config = dataclasses.replace(TrainConfig.from_dict(config), threads=1)
        self.worker = worker
        _core.set_num_threads(1)
        self.lane_sizes = lane_sizes(self.config)
        self.scored = self.config.agent_record().env_kind == ATARI  # Pong: points won and lost
        self.offsets = np.cumsum([0, *self.lane_sizes])
        self.lanes = None
        self.learner = None
        self.version = -1  # the learner's update count that our weights come from

    def ping(self) -> int:
        return os.getpid()

    def _start(self, episodes: int, incarnation: int) -> None:
        env_seed, action_seed = worker_seeds(self.config.seed, episodes, self.worker, incarnation)
        rng = np.random.default_rng(action_seed)
        self.learner = self.config.agent_record().learners[self.config.engine](self.config, self.lane_sizes, rng)
        self.lanes = make_lanes(self.config, self.lane_sizes, env_seed)
        n = self.config.num_envs
        self.reward_sums = np.zeros(n)
        self.points_won = np.zeros(n, dtype=np.int64)
        self.points_lost = np.zeros(n, dtype=np.int64)
        self.game_steps = np.zeros(n, dtype=np.int64)
        self._first_frames = [envs.reset(seed=env_seed + int(self.offsets[i])) for i, envs in enumerate(self.lanes)]

    def play(self, start: tuple[int, int], version: int, weights: dict, steps: int) -> dict:
        """Plays at least `steps` env steps with `weights` (the learner's after `version` updates)
        and returns {'steps', 'pid', 'games': [{'episode', 'version', 'gradient'}]}: 'episode' is
        what the local loop counts of a finished episode ({'reward', 'length'}, for Pong
        'points_won', 'points_lost', and the agent's episode_columns). `start` = (episodes at session start, incarnation) seeds the games of a
        fresh worker; a worker already playing ignores it."""
        if self.lanes is None:
            self._start(*start)
        if version != self.version:
            self.learner.load_weights(weights)
            self.version = version
        learner, games, played = self.learner, [], 0
        if self._first_frames is not None:  # the first call: the lanes have no actions yet
            for i, (envs, frames) in enumerate(zip(self.lanes, self._first_frames)):
                learner.observe(i, frames)
                envs.send(learner.act(i))
            self._first_frames = None
        while played < steps:
            for i, envs in enumerate(self.lanes):
                frames, rewards, ends = envs.recv()
                learner.record_rewards(i, rewards)
                lane = slice(self.offsets[i], self.offsets[i + 1])
                self.game_steps[lane] += 1
                if not self.scored:
                    self.reward_sums[lane] += rewards
                elif rewards.any():  # a point was scored (most steps: nothing to count)
                    self.reward_sums[lane] += rewards
                    self.points_won[lane] += rewards > 0
                    self.points_lost[lane] += rewards < 0
                played += envs.num_envs
                for env in np.flatnonzero(ends) if ends.any() else ():
                    own_stats = learner.finish_episode(i, env)  # a dict, for an agent's episode_columns
                    games.append(self._finished(self.offsets[i] + env, own_stats))
                learner.observe(i, frames)
                envs.send(learner.act(i))  # the emulator plays on while this call returns
        return {"steps": played, "pid": os.getpid(), "games": games}

    def _finished(self, g: int, own_stats: dict | None) -> dict:
        episode = dict(reward=float(self.reward_sums[g]), length=int(self.game_steps[g]), **(own_stats or {}))
        if self.scored:
            episode.update(points_won=int(self.points_won[g]), points_lost=int(self.points_lost[g]))
        game = dict(episode=episode, version=self.version, gradient=self.learner.take_gradient())
        self.reward_sums[g] = self.points_won[g] = self.points_lost[g] = self.game_steps[g] = 0
        return game

    def close(self) -> None:
        for envs in self.lanes or ():
            envs.close()
        self.lanes = None
