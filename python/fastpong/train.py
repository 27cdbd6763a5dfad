"""``fastpong.train``: trains an agent. It picks the rollout source (this machine's lanes, or Ray's
workers with ``ray=``) and hands it to the run (training/run.py), which does everything else.

The names that lived here before the run had a module of its own (``RunError``, ``StopSignals``,
``TrainSummary``, ``prepare_run``, ``lane_sizes``, ...) are still importable from here.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .config import ALGORITHM_FIELDS, TrainConfig
from .training.local_lanes import LocalLanes, lane_sizes
from .training.run import (CHECKPOINT_FILE, CHECKPOINT_INTERVAL, CONFIG_FILE, LEARNING_RATES_FILE, METRICS_FILE,
                  RUNNING_DECAY, RolloutSource, Run, RunError, StopSignals, TrainingCrash, TrainSummary, default_run_dir,
                  log_learning_rate_change, prepare_run)
from .training.runlock import RunLock

#: The run's class under its name from before it had a module of its own.
_Run = Run

__all__ = ["CHECKPOINT_FILE", "CHECKPOINT_INTERVAL", "CONFIG_FILE", "LEARNING_RATES_FILE", "METRICS_FILE",
           "RUNNING_DECAY", "RolloutSource", "Run", "RunError", "StopSignals", "TrainingCrash", "TrainSummary",
           "default_run_dir", "lane_sizes", "log_learning_rate_change", "prepare_run", "train"]


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
    An exception inside the running loop is raised as ``fastpong.train.TrainingCrash`` after the final
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
            source = LocalLanes()
        else:
            from .distributed.ray_train import RaySource

            source = RaySource(address=ray, workers=workers)
        try:
            config = source.configure(config)
            run = Run(config, run_dir, checkpoint, progress, on_episode, source.lane_sizes(config))
        except BaseException:
            source.close()
            raise
        if stop_signals is not None:
            return run.execute(source, stop_signals)
        with StopSignals() as stop:
            return run.execute(source, stop)


def _ray_of(config: TrainConfig) -> tuple:
    """(ray, workers) for train() from a config's own ``ray`` ("local" or "auto"; a cluster's
    address is not recorded, so it has to be passed)."""
    if config.ray == "address":
        raise ValueError("config.ray is 'address': pass train(ray='HOST:PORT') to name the cluster")
    return config.ray, config.workers


from ._callable_module import call_through  # noqa: E402  (the module must be complete first)

call_through(__name__, "train")
