"""The local rollout source: this process steps the games in lanes that take turns, and the
learner plays them in place (observe, act, record, finish). The run (run.py) counts what comes of
it; ``distributed/`` is the other source, with the games on Ray workers."""

from __future__ import annotations

import numpy as np

from ..agents import ATARI, CLASSIC
from ..config import TrainConfig


def lane_sizes(config: TrainConfig) -> list[int]:
    """How the environments are split into lanes that take turns: two lanes (when there are two
    Atari environments or more) let the emulator step one lane while the network works on the
    other, so neither the cores nor the emulator wait. The order is fixed, so runs stay
    reproducible. CartPole steps in NumPy in this thread, so there is nothing to overlap: one lane."""
    n = config.num_envs
    if config.engine == "reference" or n < 2 or config.agent_record().env_kind != ATARI:
        return [n]
    return [n - n // 2, n // 2]


def make_lanes(config: TrainConfig, sizes: list[int], seed: int) -> list:
    """One batch of environments per lane, seeded one after the other from ``seed``."""
    if config.agent_record().env_kind == CLASSIC:
        from ..envs.classic import ClassicEnvBatch

        return [ClassicEnvBatch(config.env_id, sizes[0])]
    from ..envs import make_env_batch

    if config.engine == "reference":
        return [SingleGymEnv(config.env_id, config.frameskip)]
    threads = max(1, config.threads // len(sizes))
    return [make_env_batch(config.env_id, size, threads=threads, seed=seed + sum(sizes[:i]),
                           frameskip=config.frameskip)
            for i, size in enumerate(sizes)]


def reset_lanes(lanes: list, seeds: list[int]) -> list:
    """Each lane's first frames, lane i reset with seeds[i]. ale-py lets go of the GIL while its
    emulators reset, so two lanes reset at once, each on a thread of its own: two lanes of four
    Pong games took 0.36 s instead of 0.72 one after the other, most of what a short session
    spent on top of the emulator's own start-up."""
    if len(lanes) == 1:
        return [lanes[0].reset(seed=seeds[0])]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(lanes), thread_name_prefix="fastpong-reset") as pool:
        return list(pool.map(lambda lane, seed: lane.reset(seed=seed), lanes, seeds))


class SingleGymEnv:
    """gymnasium.make(env_id) behind the batch interface: the tutorial's own environment
    (with ``frameskip`` if one is set, else the id's own)."""

    def __init__(self, env_id: str, frameskip: int | None = None):
        import ale_py
        import gymnasium

        gymnasium.register_envs(ale_py)
        self.env = gymnasium.make(env_id, **({} if frameskip is None else {"frameskip": frameskip}))
        self.num_envs = 1
        self._actions = None

    def reset(self, seed=None):
        frame, _ = self.env.reset(seed=seed)
        return frame[None]

    def send(self, actions):
        self._actions = actions

    def recv(self):
        frame, reward, terminated, truncated, _ = self.env.step(int(self._actions[0]))
        if terminated or truncated:
            frame, _ = self.env.reset()
        return frame[None], np.array([reward], dtype=np.float32), np.array([terminated or truncated])

    def close(self):
        self.env.close()


class LocalLanes:
    """A RolloutSource (see run.py): the run's games played here, in lanes that take turns."""

    def __init__(self):
        self.lanes: list = []

    def configure(self, config: TrainConfig) -> TrainConfig:
        return config

    def lane_sizes(self, config: TrainConfig) -> list[int]:
        return lane_sizes(config)

    def play(self, run, stop) -> None:
        config, learner = run.config, run.learner
        sizes = lane_sizes(config)
        # A resumed run continues on fresh games: the emulators' state is not checkpointed.
        first_seed = config.seed + run.episodes
        self.lanes = lanes = make_lanes(config, sizes, first_seed)
        offsets = np.cumsum([0, *sizes])  # lane i holds envs offsets[i]:offsets[i + 1]
        n = config.num_envs
        scored = config.agent_record().env_kind == ATARI  # Pong: rewards are points, most steps score none
        reward_sums = np.zeros(n)
        lengths = np.zeros(n, dtype=np.int64)
        points_won = np.zeros(n, dtype=np.int64)
        points_lost = np.zeros(n, dtype=np.int64)
        # A learner that decides for itself when to update (a fixed number of steps, say) says so
        # between observing a lane and acting on it; the others update per batch of episodes.
        update_due = getattr(learner, "update_due", None)
        running = not run.done() and stop.signum is None
        first_frames = reset_lanes(lanes, [first_seed + int(o) for o in offsets[:-1]]) if running else []
        for i, envs in enumerate(lanes if running else []):
            learner.observe(i, first_frames[i])
            if update_due is not None and update_due():
                run.update()
            envs.send(learner.act(i))
        # While one lane's games are emulated in ale-py's threads, the other lane's
        # frames go through the network here.
        while running:
            for i, envs in enumerate(lanes):
                observations, rewards, ends = envs.recv()
                learner.record_rewards(i, rewards)
                lane = slice(offsets[i], offsets[i + 1])
                lengths[lane] += 1
                if not scored:
                    reward_sums[lane] += rewards
                elif rewards.any():  # a point was scored (most steps: nothing to count)
                    reward_sums[lane] += rewards
                    points_won[lane] += rewards > 0
                    points_lost[lane] += rewards < 0
                run.count_steps(envs.num_envs)
                for env in np.flatnonzero(ends) if ends.any() else ():
                    own_stats = learner.finish_episode(i, env)  # a dict, for an agent's episode_columns
                    g = offsets[i] + env
                    episode = dict(reward=float(reward_sums[g]), length=int(lengths[g]), **(own_stats or {}))
                    if scored:
                        episode.update(points_won=int(points_won[g]), points_lost=int(points_lost[g]))
                    run.episode_finished(episode)
                    reward_sums[g] = lengths[g] = points_won[g] = points_lost[g] = 0
                    if run.done():
                        break
                if run.done() or stop.signum is not None:
                    running = False
                    break
                learner.observe(i, observations)
                if update_due is not None and update_due():
                    run.update()
                envs.send(learner.act(i))

    def summarize(self, summary):
        return summary

    def close(self) -> None:
        lanes, self.lanes = self.lanes, []
        for envs in lanes:
            envs.close()
