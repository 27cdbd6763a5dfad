"""The training run: its directory, lock, config.json, checkpoints, metrics, counting, signals
and update schedule, fed by a rollout source.

A rollout source plays the games and hands the run what it needs of them: the local lanes
(local_lanes.py) step environments here and let the learner play in place; Ray's workers
(``fastpong.distributed``) play elsewhere and send each finished episode's gradient. Either way the run counts
episodes, writes their metrics rows and updates the learner on the same schedule. This module
knows no source by name: ``fastpong.train`` picks one.
"""

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
from datetime import datetime
from pathlib import Path
from typing import Protocol

import numpy as np

from .. import _core
from ..agents import ATARI
from .checkpoint import (CheckpointError, check_tensors, load_checkpoint, remove_stale_temporaries,
                         save_checkpoint, write_atomically)
from ..config import (ALGORITHM_FIELDS, RESUMABLE_FIELDS, RETURN_WINDOW, RUN_FIELDS, TrainConfig,
                      solved_return)
from .blas_threads import blas_limit_for
from .metrics import MetricsLog, columns_for
from ..watch.periodic_video import PeriodicVideo
from .runlock import RunLock

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.npz"
METRICS_FILE = "metrics.csv"
LEARNING_RATES_FILE = "learning_rates.csv"
SETTING_CHANGES_FILE = "setting_changes.csv"
#: The tutorial's running reward: an exponential average over roughly the last 100 episodes.
RUNNING_DECAY = 0.99
#: A checkpoint is written after an update unless the last one is younger than this (seconds), and
#: always at the end. CartPole updates after every episode, many per second, and writing each (an
#: fsync) would take most of the time; a crash loses at most this much training. Pong's updates are
#: a few seconds apart early in training (short games) and minutes apart later.
CHECKPOINT_INTERVAL = 10.0


@dataclasses.dataclass
class TrainSummary:
    """What ``train()`` returns: the run's counters (of the whole run, earlier sessions included)
    and this session's speed; ``to_dict()`` is the ``--json`` summary. A Ray run's summary also
    holds its workers' counts and staleness."""

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


def log_setting_change(run_dir: Path, episodes: int, name: str, previous, current) -> None:
    """Appends `episodes,name,previous,current` to RUN_DIR/setting_changes.csv: a schedule setting
    other than the learning rate (config.RESUMABLE_FIELDS) changed by a resume from that game on."""
    path = run_dir / SETTING_CHANGES_FILE
    text = path.read_text() if path.exists() else "episode,setting,previous,current\n"
    text += f"{episodes},{name},{previous!r},{current!r}\n"
    write_atomically(path, lambda f: f.write(text.encode()))


def _setting_text(value) -> str:
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else f"{value:,}"


class RunError(ValueError):
    """A run that cannot start: bad run directory, missing or mismatched checkpoint."""


class SourceFailure(RuntimeError):
    """A rollout source that cannot go on (Ray: every worker lost): raised as it is, after the
    checkpoint is written, not as a crash."""


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
    if not resume:  # a resumed run is validated as it will run: the checkpoint's settings and the typed ones
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
        from ..envs.classic import CLASSIC_ENV_IDS
        from ..envs import validate_env_id

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


class RolloutSource(Protocol):
    """What feeds a Run: it plays the games and reports each one to the run.

    ``configure(config)`` returns the config the run records (a source may fill in its own run
    settings, e.g. Ray's worker count) and ``lane_sizes(config)`` how the learner's environments
    are split. ``play(run, stop)`` plays until ``run.done()`` or a stop signal, telling the run of
    every env step (``run.count_steps``) and finished episode (``run.episode_finished``), and
    asking for an update when the learner wants one (``run.update``). ``summarize(summary)`` may
    add the source's own figures to the summary; ``close()`` releases what it holds and may be
    called more than once."""

    def configure(self, config: TrainConfig) -> TrainConfig: ...

    def lane_sizes(self, config: TrainConfig) -> list[int]: ...

    def play(self, run: "Run", stop: StopSignals) -> None: ...

    def summarize(self, summary: TrainSummary) -> TrainSummary: ...

    def close(self) -> None: ...


class Run:
    """One session of a run: what a rollout source reports is counted here, logged, and turned
    into updates and checkpoints. The source drives it through ``done``, ``count_steps``,
    ``episode_finished`` and ``update``; ``execute`` plays a session from start to summary."""

    def __init__(self, config: TrainConfig, run_dir: Path, checkpoint, progress: bool, on_episode,
                 lane_sizes: list[int]):
        self.config = config
        self.run_dir = run_dir
        self.progress = progress
        self.on_episode = on_episode
        self.agent = config.agent_record()
        self.checkpoint_path = run_dir / CHECKPOINT_FILE
        _core.set_num_threads(config.threads)
        self.rng = np.random.default_rng([config.seed, 1])  # actions; weights use the seed itself
        self.learner = self.agent.learners[config.engine](config, lane_sizes, self.rng)
        # An agent whose learner says when to update (update_due) is not updated per batch of
        # finished episodes: its source asks for each update (run.update) instead.
        self.updates_per_batch = not hasattr(self.learner, "update_due")
        self.episodes = self.env_steps = self.updates = self.episodes_in_batch = 0
        self.running_reward: float | None = None
        self.recent_returns: collections.deque = collections.deque(maxlen=RETURN_WINDOW)
        # Pong: (points won, points lost) of the last RETURN_WINDOW games, for the progress line.
        self.recent_points: collections.deque = collections.deque(maxlen=RETURN_WINDOW)
        self.wall_offset = 0.0  # wall seconds of earlier sessions of this run
        self.start, self.session_steps, self.bar = time.perf_counter(), 0, None  # execute() sets them again
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
            self._log_schedule_changes(checkpoint["config"], progress)
        else:
            # Before config.json: a run killed at any moment after this line can be resumed, and
            # one killed before it left no config.json behind to block a fresh start. The first
            # update is still saved whenever it comes (CHECKPOINT_INTERVAL counts from there).
            self._save(0.0)
            self.last_save = -math.inf
        write_atomically(run_dir / CONFIG_FILE,
                         lambda f: f.write(json.dumps(config.to_dict(), indent=2, sort_keys=True).encode()))
        self.metrics = MetricsLog(run_dir / METRICS_FILE, keep_episodes=self.episodes if checkpoint else 0,
                                  columns=columns_for(self.agent.env_kind) + self.agent.episode_columns
                                  + self.agent.update_columns)
        self.recent_points.extend((int(row["points_won"]), int(row["points_lost"]))
                                  for row in self.metrics.kept_rows if row.get("points_won"))
        self.video = (PeriodicVideo(run_dir, config.video_every, config.env_id, config.seed)
                      if config.video_every else None)

    def _log_schedule_changes(self, stored: dict, progress: bool) -> None:
        """A resume that changed a schedule setting (config.RESUMABLE_FIELDS): logged in the run
        directory and, with progress on, said on stderr."""
        for name in RESUMABLE_FIELDS:
            previous, current = stored.get(name), getattr(self.config, name)
            if previous == current:
                continue
            if name == "learning_rate":
                log_learning_rate_change(self.run_dir, self.episodes, previous, current)
                where = LEARNING_RATES_FILE
            else:
                log_setting_change(self.run_dir, self.episodes, name, previous, current)
                where = SETTING_CHANGES_FILE
            if progress:
                print(f"fastpong train: {name.replace('_', ' ')} {_setting_text(previous)} -> "
                      f"{_setting_text(current)} from game {self.episodes:,} on (logged in "
                      f"{self.run_dir / where})", file=sys.stderr)

    def done(self) -> bool:
        """Whether the run has reached its --episodes, --steps or --target-return."""
        c = self.config
        return (c.episodes is not None and self.episodes >= c.episodes) or (
            c.steps is not None and self.env_steps >= c.steps) or self._target_reached()

    def _stop_reason(self) -> str:
        """Which stop rule is met, in words (for a run that is done())."""
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

    def execute(self, source: RolloutSource, stop: StopSignals) -> TrainSummary:
        """Plays a session on `source` until the run is done or `stop` is signalled; the
        checkpoint is written at the end whatever happens, and the source closed."""
        self.start = time.perf_counter()
        self.session_steps = 0
        self.bar = self._progress_bar()
        crash = None
        # A resumed run that is already done only loads; the caller is told why (it used to
        # report success silently, as though it had trained).
        nothing_to_do = self._stop_reason() if self.done() else None
        try:
            with blas_limit_for(self.config.engine):
                source.play(self, stop)
        except SourceFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - mid-run, any error is fastpong's, not the user's input
            crash = exc
        finally:
            elapsed = time.perf_counter() - self.start
            try:  # a full disk fails this save too: the environments must still be closed
                self._save(elapsed)
            finally:
                self.metrics.close()
                source.close()
                if self.video is not None:
                    self.video.close(wait=stop.signum is None)
                if self.bar is not None:
                    self.bar.close()
        if crash is not None:  # raised only now: the checkpoint above is written
            raise TrainingCrash(self.checkpoint_path, crash) from crash
        return source.summarize(TrainSummary(
            run_dir=str(self.run_dir), steps=self.env_steps, episodes=self.episodes,
            updates=self.updates, seconds=elapsed,
            steps_per_second=self.session_steps / elapsed if elapsed > 0 else 0.0,
            running_reward=self.running_reward, interrupted_by=stop.signum, nothing_to_do=nothing_to_do,
        ))

    def count_steps(self, steps: int) -> None:
        """Counts env steps played (by every environment together)."""
        self.env_steps += steps
        self.session_steps += steps
        if self.bar is not None and self.config.steps is not None:
            self.bar.update(steps)

    def episode_finished(self, episode: dict) -> bool:
        """Counts a finished episode (its reward, length and, for Pong, points), logs its metrics
        row, and updates when the batch is full; returns whether it updated."""
        elapsed = time.perf_counter() - self.start
        steps_per_second = self.session_steps / max(elapsed, 1e-9)
        reward = episode["reward"]
        self.episodes += 1
        self.episodes_in_batch += 1
        self.recent_returns.append(reward)
        if "points_won" in episode:
            self.recent_points.append((episode["points_won"], episode["points_lost"]))
        self.running_reward = (reward if self.running_reward is None
                               else self.running_reward * RUNNING_DECAY + reward * (1 - RUNNING_DECAY))
        row = dict(episode=self.episodes, env_steps=self.env_steps, running_reward=self.running_reward,
                   wall_seconds=self.wall_offset + elapsed, steps_per_second=steps_per_second, **episode)
        if self.agent.update_columns:  # the learner's last update's diagnostics (PPO)
            stats = self.learner.update_stats
            row.update({name: stats.get(name, "") for name in self.agent.update_columns})
        self.metrics.append(row)
        updated = self.updates_per_batch and self.episodes_in_batch >= self.config.batch_size
        if updated:
            self.update()
        if self.bar is not None:
            if self.config.steps is None:
                self.bar.update(1)
            target = {} if self.config.target_return is None else {  # the stop rule's own number
                f"mean_last_{RETURN_WINDOW}": f"{sum(self.recent_returns) / len(self.recent_returns):.1f}"}
            self.bar.set_postfix(running_reward=f"{self.running_reward:+.2f}", **target, **self._points_won(),
                                 steps_s=f"{steps_per_second:,.0f}", updates=self.updates, refresh=False)
        if self.on_episode is not None:
            self.on_episode({name: row.get(name, "") for name in self.metrics.columns})
        return updated

    def _points_won(self) -> dict:
        """Pong: the share of points won over the last RETURN_WINDOW games, the progress line's
        early sign of learning (and of a collapse) long before the reward reaches 0."""
        played = sum(won + lost for won, lost in self.recent_points)
        if not played:
            return {}
        won = sum(won for won, _ in self.recent_points)
        return {"point_win_rate": f"{100 * won / played:.1f}%"}

    def update(self) -> None:
        """Applies the learner's update and what follows one: the count, a checkpoint when the
        last is older than CHECKPOINT_INTERVAL, the periodic video."""
        self.learner.update()
        self.updates += 1
        self.episodes_in_batch = 0
        if time.perf_counter() - self.last_save >= CHECKPOINT_INTERVAL:
            self._save(time.perf_counter() - self.start)
        if self.video is not None:
            self.video.after_update(self.updates, self.learner.weights(), self.config.to_dict())

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
