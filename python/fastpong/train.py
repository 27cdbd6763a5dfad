"""``fastpong.train``: the episode/batch loop, the run directory, checkpoints and resuming."""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from . import _core
from .agents import ATARI, CLASSIC
from .checkpoint import (CheckpointError, check_tensors, load_checkpoint, remove_stale_temporaries,
                         save_checkpoint, write_atomically)
from .config import (ALGORITHM_FIELDS, RESUMABLE_FIELDS, RETURN_WINDOW, RUN_FIELDS, TrainConfig,
                     solved_return)
from .metrics import MetricsLog, columns_for
from .periodic_video import PeriodicVideo
from .runlock import RunLock

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.npz"
METRICS_FILE = "metrics.csv"
LEARNING_RATES_FILE = "learning_rates.csv"
#: The tutorial's running reward: an exponential average over roughly the last 100 episodes.
RUNNING_DECAY = 0.99
#: A checkpoint is written after an update unless the last one is younger than this (seconds), and
#: always at the end. CartPole updates after every episode, many per second, and writing each (an
#: fsync) would take most of the time; a crash loses at most this much training. Pong's updates are
#: a few seconds apart early in training (short games) and minutes apart later.
CHECKPOINT_INTERVAL = 10.0


@dataclass
class TrainSummary:
    run_dir: str
    steps: int
    episodes: int
    updates: int
    seconds: float  # wall-clock of this session
    steps_per_second: float  # of this session
    running_reward: float | None
    interrupted_by: int | None = None  # the signal number that stopped the run, if any
    #: Why a resumed run stopped before its first step (its stop rule was already met), else None.
    nothing_to_do: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def log_learning_rate_change(run_dir: Path, episodes: int, previous: float, current: float) -> None:
    """Appends `episodes,current` to RUN_DIR/learning_rates.csv (made with the run's first rate,
    from game 0, the first time): the run's learning-rate schedule, one row per rate."""
    path = run_dir / LEARNING_RATES_FILE
    text = path.read_text() if path.exists() else f"episode,learning_rate\n0,{previous!r}\n"
    text += f"{episodes},{current!r}\n"
    write_atomically(path, lambda f: f.write(text.encode()))


class RunError(ValueError):
    """A run that cannot start: bad run directory, missing or mismatched checkpoint."""


class TrainingCrash(RuntimeError):
    """An error raised inside a running training loop, after its checkpoint was written: a bug
    (or a kernel refusing what fastpong itself passed it), never a usage error, whatever the
    original exception's type. ``__cause__`` is the original, with its traceback."""

    def __init__(self, checkpoint_path, error: BaseException):
        self.checkpoint_path = checkpoint_path
        self.error = error
        super().__init__(f"training crashed: {type(error).__name__}: {_one_line(error)}; "
                         f"checkpoint written to {checkpoint_path}")


def default_run_dir(env_id: str) -> Path:
    name = env_id.split("/")[-1].replace(":", "-")
    return Path("runs") / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def prepare_run(config: TrainConfig, run_dir, resume: bool, explicit=ALGORITHM_FIELDS,
                lock: RunLock | None = None):
    """Checks everything that can go wrong before any work starts; writes nothing on failure.

    Returns (config, run_dir, checkpoint or None). On resume the algorithm settings come from the
    checkpoint; those named in `explicit` (the ones the caller actually set) must agree with it.
    Run length, environments and threads always come from `config`.

    With `lock` (a RunLock the caller releases), the run directory is locked for this process:
    before anything in it is read when it exists, else as soon as it is created. Under the lock,
    temporary files of a killed earlier process are deleted."""
    config.validate()
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config.env_id)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"run directory {run_dir} exists and is not a directory")
    config_path, checkpoint_path = run_dir / CONFIG_FILE, run_dir / CHECKPOINT_FILE
    if lock is not None and run_dir.is_dir():
        lock.acquire(run_dir)  # what is checked below is what this process continues
    checkpoint = None
    if resume:
        if not checkpoint_path.exists():
            raise RunError(f"--resume: no checkpoint in {run_dir} (expected {checkpoint_path})")
        checkpoint = load_checkpoint(checkpoint_path)
        try:
            stored = TrainConfig.from_dict(checkpoint["config"])
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {checkpoint_path} holds an invalid config ({exc})") from None
        check_tensors(checkpoint_path, checkpoint["tensors"], stored.agent_record().tensor_shapes(stored))
        try:
            np.random.default_rng().bit_generator.state = checkpoint["rng_state"]
        except (TypeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"checkpoint {checkpoint_path} holds an invalid RNG state ({exc})") from None
        differences = [d for d in config.algorithm_differences(stored)
                       if d.split(":")[0] in explicit and d.split(":")[0] not in RESUMABLE_FIELDS]
        if differences:
            raise RunError(f"--resume: {run_dir} was trained with other settings ({'; '.join(differences)})")
        run_settings = {name: getattr(config, name) for name in RUN_FIELDS}
        run_settings.update({name: getattr(config, name) for name in RESUMABLE_FIELDS
                             if name in explicit and getattr(config, name) is not None})
        config = dataclasses.replace(stored, **run_settings).validate()
    elif config_path.exists() or checkpoint_path.exists():
        try:
            stored = TrainConfig.from_dict(json.loads(config_path.read_text()))
            differences = config.algorithm_differences(stored)
        except (OSError, ValueError, TypeError):
            differences = ["unreadable config.json"]
        what = f"a run with other settings ({'; '.join(differences)})" if differences else "a run"
        raise RunError(f"run directory {run_dir} already holds {what}: pass --resume to continue it "
                       "or choose another --run-dir")
    if config.agent_record().env_kind == ATARI:
        from .classic_envs import CLASSIC_ENV_IDS
        from .envs import validate_env_id

        try:
            validate_env_id(config.env_id)
        except ValueError as exc:  # say that there is more than Atari
            raise ValueError(f"{exc} (fastpong also trains {' and '.join(CLASSIC_ENV_IDS)})") from None
    _check_writable(run_dir)
    if lock is not None:
        if lock.run_dir is None:  # the directory was just made: lock it, then look again
            lock.acquire(run_dir)
            if config_path.exists() or checkpoint_path.exists():
                raise RunError(f"run directory {run_dir} already holds a run (another process started "
                               "it a moment ago): choose another --run-dir")
        remove_stale_temporaries(run_dir)
    return config, run_dir, checkpoint


def _check_writable(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test.tmp-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise RunError(f"run directory {run_dir} is not writable ({exc.strerror or exc})") from None


class StopSignals:
    """Turns SIGINT/SIGTERM into a flag the loop checks, so a run stops between steps, with its
    checkpoint written, instead of dying wherever the signal lands; a second signal only sets the
    flag again.

    ``train()`` installs one for the duration of the run and restores the previous handlers
    after its final checkpoint. A program that owns its process (the CLI) installs one itself,
    before any work, and never restores it: a signal that arrives after the run, while the program
    reports and exits, must not kill it either."""

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}

    def install(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def ignore(self) -> None:
        """Ignores the stop signals from now on, for a process that has only to report and exit:
        at interpreter shutdown Python resets handlers written in Python (ours) to the default,
        which would let a late second signal kill the process, but it leaves ignored ones be."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)

    def _handle(self, signum, frame):
        self.signum = signum

    def __enter__(self):
        return self.install()

    def __exit__(self, *exc):
        self.restore()


def lane_sizes(config: TrainConfig) -> list[int]:
    """How the environments are split into lanes that take turns: two lanes (when there are two
    Atari environments or more) let the emulator step one lane while the network works on the
    other, so neither the cores nor the emulator wait. The order is fixed, so runs stay
    reproducible. CartPole steps in NumPy in this thread, so there is nothing to overlap: one lane."""
    n = config.num_envs
    if config.engine == "reference" or n < 2 or config.agent_record().env_kind != ATARI:
        return [n]
    return [n - n // 2, n // 2]


def _make_lanes(config: TrainConfig, sizes: list[int], seed: int) -> list:
    if config.agent_record().env_kind == CLASSIC:
        from .classic_envs import ClassicEnvBatch

        return [ClassicEnvBatch(config.env_id, sizes[0])]
    from .envs import make_env_batch

    if config.engine == "reference":
        return [_SingleGymEnv(config.env_id, config.frameskip)]
    threads = max(1, config.threads // len(sizes))
    return [make_env_batch(config.env_id, size, threads=threads, seed=seed + sum(sizes[:i]),
                           frameskip=config.frameskip)
            for i, size in enumerate(sizes)]


class _SingleGymEnv:
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


def train(config: TrainConfig | None = None, *, run_dir=None, resume: bool = False,
          progress: bool = True, on_episode=None, stop_signals: StopSignals | None = None,
          ray: str | None = None, workers: int | None = None, **settings) -> TrainSummary:
    """Trains an agent and returns a summary; see ``fastpong train --help``.

    ``config`` or keyword settings (``fastpong.train(episodes=20, learning_rate=1e-3)``,
    ``fastpong.train(env_id="CartPole-v1", target_return=475)``) give the run's settings; the
    environment picks the agent (karpathy for Pong, mit-cartpole for CartPole) unless ``agent``
    names one, and the agent fills in the settings not given. The run directory receives config.json, metrics.csv and checkpoint.npz.
    ``on_episode(row)`` is called with each metrics row (a dict). With ``resume=True`` the
    algorithm settings are the checkpoint's; ``episodes`` and ``steps`` count the whole run.
    A CartPole run given none of ``episodes``, ``steps`` and ``target_return`` stops once solved:
    at gymnasium's ``reward_threshold`` (475 for CartPole-v1) over the last 100 episodes.
    An exception inside the running loop is raised as :class:`TrainingCrash` after the final
    checkpoint is written.
    ``stop_signals``: an installed StopSignals of the caller's (by default the run installs its
    own and restores the previous handlers at the end).
    ``ray`` ('local', 'auto' or a cluster's host:port) and ``workers``: play on Ray rollout workers,
    ``num_envs`` games each, with the learner here (fastpong.distributed; needs fastpong[ray]), for
    every agent; config.json records them as run settings (``ray``: local, auto or address), and a
    ``config`` whose ``ray`` is local or auto asks for Ray itself."""
    if ray is None and workers is None and config is not None and config.ray is not None:
        ray, workers = _ray_of(config)  # a config that asks for Ray itself
    if ray is not None or workers is not None:
        from .distributed import address_kind, check_ray_args

        check_ray_args(ray, workers)
        settings.update(ray=address_kind(ray), workers=workers)  # recorded in config.json
    else:
        settings.update(ray=None, workers=None)
    explicit = set(settings) if config is None else set(ALGORITHM_FIELDS)
    if config is None:
        config = TrainConfig(**settings)
    else:
        config = dataclasses.replace(config, **settings)
    with RunLock() as lock:  # one process per run directory, until the final checkpoint is written
        config, run_dir, checkpoint = prepare_run(config, run_dir, resume, explicit, lock)
        if config.seed is None:
            config = dataclasses.replace(config, seed=int(np.random.SeedSequence().entropy % 2**31))
        if ray is not None and config.num_envs is None and "num_envs" not in config.agent_record().defaults:
            from .distributed.ray_train import WORKER_NUM_ENVS  # Atari: a worker's core, not the machine's

            config = dataclasses.replace(config, num_envs=WORKER_NUM_ENVS)
        config = config.resolved()
        if ray is None:
            run = _Run(config, run_dir, checkpoint, progress, on_episode)
        else:
            from .distributed.ray_train import RayRun

            run = RayRun(config, run_dir, checkpoint, progress, on_episode, address=ray, workers=workers)
        if stop_signals is not None:
            return run.execute(stop_signals)
        with StopSignals() as stop:
            return run.execute(stop)


def _ray_of(config: TrainConfig) -> tuple:
    """(ray, workers) for train() from a config's own ``ray`` ("local" or "auto"; a cluster's
    address is not recorded, so it has to be passed)."""
    if config.ray == "address":
        raise ValueError("config.ray is 'address': pass train(ray='HOST:PORT') to name the cluster")
    return config.ray, config.workers


class _Run:
    def __init__(self, config: TrainConfig, run_dir: Path, checkpoint, progress: bool, on_episode):
        self.config = config
        self.run_dir = run_dir
        self.progress = progress
        self.on_episode = on_episode
        self.agent = config.agent_record()
        self.checkpoint_path = run_dir / CHECKPOINT_FILE
        _core.set_num_threads(config.threads)
        self.rng = np.random.default_rng([config.seed, 1])  # actions; weights use the seed itself
        self.lane_sizes = lane_sizes(config)
        self.learner = self.agent.learners[config.engine](config, self.lane_sizes, self.rng)
        self.episodes = self.env_steps = self.updates = self.episodes_in_batch = 0
        self.running_reward: float | None = None
        self.recent_returns: collections.deque = collections.deque(maxlen=RETURN_WINDOW)
        self.wall_offset = 0.0  # wall seconds of earlier sessions of this run
        self.last_save = -math.inf  # perf_counter() of the last checkpoint
        if checkpoint is not None:
            try:
                self.learner.load_tensors(checkpoint["tensors"])
            except (KeyError, ValueError) as exc:  # e.g. an optimizer state of other names or shapes
                raise CheckpointError(f"checkpoint {self.checkpoint_path}: {_one_line(exc)}") from None
            self.episodes = checkpoint["episodes"]
            self.env_steps = checkpoint["env_steps"]
            self.updates = checkpoint["updates"]
            self.episodes_in_batch = checkpoint["episodes_in_batch"]
            self.running_reward = checkpoint["running_reward"]
            self.recent_returns.extend(checkpoint["recent_returns"])
            self.wall_offset = checkpoint["wall_seconds"]
            self.rng.bit_generator.state = checkpoint["rng_state"]
            previous_rate = checkpoint["config"].get("learning_rate")
            if previous_rate != config.learning_rate:
                log_learning_rate_change(run_dir, self.episodes, previous_rate, config.learning_rate)
                if progress:
                    print(f"fastpong train: learning rate {previous_rate:g} -> {config.learning_rate:g} "
                          f"from game {self.episodes:,} on (logged in {run_dir / LEARNING_RATES_FILE})",
                          file=sys.stderr)
        else:
            # Before config.json: a run killed at any moment after this line can be resumed, and
            # one killed before it left no config.json behind to block a fresh start. The first
            # update is still saved whenever it comes (CHECKPOINT_INTERVAL counts from there).
            self._save(0.0)
            self.last_save = -math.inf
        write_atomically(run_dir / CONFIG_FILE,
                         lambda f: f.write(json.dumps(config.to_dict(), indent=2, sort_keys=True).encode()))
        self.metrics = MetricsLog(run_dir / METRICS_FILE, keep_episodes=self.episodes if checkpoint else 0,
                                  columns=columns_for(self.agent.env_kind))
        self.video = (PeriodicVideo(run_dir, config.video_every, config.env_id, config.seed)
                      if config.video_every else None)

    def _done(self) -> bool:
        c = self.config
        return (c.episodes is not None and self.episodes >= c.episodes) or (
            c.steps is not None and self.env_steps >= c.steps) or self._target_reached()

    def _stop_reason(self) -> str:
        """Which stop rule is met, in words (for a run that is _done())."""
        c = self.config
        if c.episodes is not None and self.episodes >= c.episodes:
            return f"it has {self.episodes:,} episodes and --episodes {c.episodes:,} counts the whole run"
        if c.steps is not None and self.env_steps >= c.steps:
            return f"it has {self.env_steps:,} steps and --steps {c.steps:,} counts the whole run"
        mean = sum(self.recent_returns) / RETURN_WINDOW
        return f"the mean return of its last {RETURN_WINDOW} episodes, {mean:g}, reaches {c.target_return:g}"

    def _target_reached(self) -> bool:
        target = self.config.target_return
        return (target is not None and len(self.recent_returns) == RETURN_WINDOW
                and sum(self.recent_returns) / RETURN_WINDOW >= target)

    def execute(self, stop: StopSignals) -> TrainSummary:
        config, learner = self.config, self.learner
        # A resumed run continues on fresh games: the emulators' state is not checkpointed.
        first_seed = config.seed + self.episodes
        lanes = _make_lanes(config, self.lane_sizes, first_seed)
        offsets = np.cumsum([0, *self.lane_sizes])  # lane i holds envs offsets[i]:offsets[i + 1]
        n = config.num_envs
        scored = self.agent.env_kind == ATARI  # Pong: rewards are points, most steps score none
        reward_sums = np.zeros(n)
        lengths = np.zeros(n, dtype=np.int64)
        points_won = np.zeros(n, dtype=np.int64)
        points_lost = np.zeros(n, dtype=np.int64)
        start = time.perf_counter()
        session_steps = 0
        bar = self._progress_bar()
        crash = None
        # A resumed run that is already done only loads; the caller is told why (it used to
        # report success silently, as though it had trained).
        nothing_to_do = self._stop_reason() if self._done() else None
        try:
            running = not self._done() and stop.signum is None
            for i, envs in enumerate(lanes if running else []):
                learner.observe(i, envs.reset(seed=first_seed + int(offsets[i])))
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
                    self.env_steps += envs.num_envs
                    session_steps += envs.num_envs
                    for env in np.flatnonzero(ends) if ends.any() else ():
                        learner.finish_episode(i, env)
                        g = offsets[i] + env
                        elapsed = time.perf_counter() - start
                        episode = dict(reward=float(reward_sums[g]), length=int(lengths[g]))
                        if scored:
                            episode.update(points_won=int(points_won[g]), points_lost=int(points_lost[g]))
                        self._episode_finished(episode, elapsed, session_steps / max(elapsed, 1e-9), bar)
                        reward_sums[g] = lengths[g] = points_won[g] = points_lost[g] = 0
                        if self._done():
                            break
                    if bar is not None and config.steps is not None:
                        bar.update(envs.num_envs)
                    if self._done() or stop.signum is not None:
                        running = False
                        break
                    learner.observe(i, observations)
                    envs.send(learner.act(i))
        except Exception as exc:  # noqa: BLE001 - mid-run, any error is fastpong's, not the user's input
            crash = exc
        finally:
            elapsed = time.perf_counter() - start
            try:  # a full disk fails this save too: the environments must still be closed
                self._save(elapsed)
            finally:
                self.metrics.close()
                for envs in lanes:
                    envs.close()
                if self.video is not None:
                    self.video.close(wait=stop.signum is None)
                if bar is not None:
                    bar.close()
        if crash is not None:  # raised only now: the checkpoint above is written
            raise TrainingCrash(self.checkpoint_path, crash) from crash
        return TrainSummary(
            run_dir=str(self.run_dir), steps=self.env_steps, episodes=self.episodes,
            updates=self.updates, seconds=elapsed,
            steps_per_second=session_steps / elapsed if elapsed > 0 else 0.0,
            running_reward=self.running_reward, interrupted_by=stop.signum, nothing_to_do=nothing_to_do,
        )

    def _episode_finished(self, episode: dict, elapsed, steps_per_second, bar) -> None:
        """Counts a finished episode (its reward, length and, for Pong, points), logs its metrics
        row, and applies the update when the batch is full."""
        reward = episode["reward"]
        self.episodes += 1
        self.episodes_in_batch += 1
        self.recent_returns.append(reward)
        self.running_reward = (reward if self.running_reward is None
                               else self.running_reward * RUNNING_DECAY + reward * (1 - RUNNING_DECAY))
        row = dict(episode=self.episodes, env_steps=self.env_steps, running_reward=self.running_reward,
                   wall_seconds=self.wall_offset + elapsed, steps_per_second=steps_per_second, **episode)
        self.metrics.append(row)
        if self.episodes_in_batch >= self.config.batch_size:
            self.learner.update()
            self.updates += 1
            self.episodes_in_batch = 0
            if time.perf_counter() - self.last_save >= CHECKPOINT_INTERVAL:
                self._save(elapsed)
            if self.video is not None:
                self.video.after_update(self.updates, self.learner.weights(), self.config.to_dict())
        if bar is not None:
            if self.config.steps is None:
                bar.update(1)
            target = {} if self.config.target_return is None else {  # the stop rule's own number
                f"mean_last_{RETURN_WINDOW}": f"{sum(self.recent_returns) / len(self.recent_returns):.1f}"}
            bar.set_postfix(running_reward=f"{self.running_reward:+.2f}", **target,
                            steps_s=f"{steps_per_second:,.0f}", updates=self.updates, refresh=False)
        if self.on_episode is not None:
            self.on_episode({name: row[name] for name in self.metrics.columns})

    def _save(self, elapsed: float) -> None:
        self.last_save = time.perf_counter()
        save_checkpoint(
            self.checkpoint_path, tensors=self.learner.tensors(),
            counters=dict(episodes=self.episodes, env_steps=self.env_steps, updates=self.updates,
                          episodes_in_batch=self.episodes_in_batch),
            running_reward=self.running_reward, wall_seconds=self.wall_offset + elapsed,
            config=self.config.to_dict(), rng_state=self.rng.bit_generator.state,
            recent_returns=list(self.recent_returns),
        )

    def _progress_bar(self):
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        by_steps = self.config.steps is not None
        total = self.config.steps if by_steps else self.config.episodes
        initial = self.env_steps if by_steps else self.episodes
        return tqdm(total=total, initial=initial, unit=" steps" if by_steps else " episodes",
                    unit_scale=by_steps, dynamic_ncols=True, smoothing=0.05, desc=self._stop_rule())

    def _stop_rule(self) -> str | None:
        """The progress line's words for a return target, saying where a default one came from."""
        target = self.config.target_return
        if target is None:
            return None
        solved = f" ({self.config.env_id} solved)" if target == solved_return(self.config.env_id) else ""
        return f"stop at mean_last_{RETURN_WINDOW} >= {target:g}{solved}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
