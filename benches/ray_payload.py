"""What a Ray rollout worker should send back for a finished game: its gradient (what
``fastpong train --ray`` sends), or the episode itself as sparse steps for the driver to backprop.

    python benches/ray_payload.py [--games 3] [--markdown]

Plays real Pong games (the tutorial's initial weights, seed 0, one env) on the fast path, then for
each game times both ways through Ray's object store in a one-CPU local Ray instance: the work on
the worker, ``ray.put`` + ``ray.get`` of the message, and the work on the driver. On one machine
the store is shared memory; across machines add the message's bytes over the network.

The episode's driver side is timed as its backward pass on an episode buffer that already exists
(a lower bound: fastpong has no bulk constructor from sparse arrays, the one it has
(EpisodeBuffer.from_arrays) takes dense inputs, also timed).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def play_game(seed: int):
    """One whole game of Pong with the tutorial's initial weights: (policy, episode buffer)."""
    from fastpong import EpisodeBatch, FrameDifferencer, Policy
    from fastpong.envs import make_env_batch

    policy, differencer, batch = Policy(seed=0), FrameDifferencer(1), EpisodeBatch(1)
    rng = np.random.default_rng(seed)
    with make_env_batch("ALE/Pong-v5", 1, threads=1, seed=seed) as envs:
        frames = envs.reset(seed=seed)
        while True:
            x = differencer.step(frames)
            p, h = policy.forward(x)
            up = rng.random(1) < p
            batch.append(x, h, up.astype(np.float32) - p)
            frames, rewards, ends = envs.step(np.where(up, 2, 3).astype(np.int32))
            batch.set_last_rewards(rewards)
            if ends[0]:
                return policy, batch.episode(0)


def timed(function, repeat: int = 5):
    """(result of the last call, median seconds per call)."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return result, float(np.median(times))


def through_store(ray, message):
    """ray.put on the worker's side, ray.get on the driver's: (message back, seconds, bytes)."""
    def round_trip():
        return ray.get(ray.put(message))

    back, seconds = timed(round_trip)
    return back, seconds, sum(np.asarray(a).nbytes for a in _arrays(message))


def _arrays(message):
    return message.values() if isinstance(message, dict) else message


def measure_game(ray, policy, episode) -> dict:
    from fastpong import _core
    from fastpong.config import TrainConfig
    from fastpong.learners import FastLearner

    def backward_into(grads):
        returns = _core.standardize(_core.discount_rewards(episode.rewards, 0.99))
        policy.accumulate_gradient(episode, returns, grads)

    # The gradient: the worker does the backward pass and takes the gradient; the driver adds it.
    grads = policy.gradient_buffer()

    def worker_gradient():
        grads.zero()
        backward_into(grads)
        return grads.to_model()

    gradient, worker_g = timed(worker_gradient)
    _, store_g, bytes_g = through_store(ray, gradient)
    learner = FastLearner(TrainConfig(seed=0, num_envs=1), [1], np.random.default_rng(0))
    _, driver_g = timed(lambda: learner.add_gradient(gradient))
    _, fold = timed(learner.take_gradient)  # once per update, not per game

    # The episode: the worker copies its sparse steps out; the driver does the backward pass.
    def worker_episode():
        inputs = episode.inputs
        return dict(offsets=inputs.offsets, indices=inputs.indices, values=inputs.values,
                    hidden=episode.hidden_states, dlogps=episode.dlogps, rewards=episode.rewards)

    message, worker_e = timed(worker_episode)
    _, store_e, bytes_e = through_store(ray, message)
    driver_grads = policy.gradient_buffer()
    _, driver_e = timed(lambda: backward_into(driver_grads))
    dense = episode.inputs.to_dense(6400)
    _, rebuild = timed(lambda: _core.EpisodeBuffer.from_arrays(dense, message["hidden"], message["dlogps"],
                                                               message["rewards"]), repeat=3)
    # An update's broadcast: the driver puts its weights once; each worker gets and loads them.
    _, put = timed(lambda: ray.put(learner.weights()))
    ref = ray.put(learner.weights())
    _, get_load = timed(lambda: learner.load_weights(ray.get(ref)))
    return dict(steps=len(episode), gradient=(bytes_g, worker_g, store_g, driver_g), fold=fold,
                broadcast=(put, get_load),
                episode=(bytes_e, worker_e, store_e, driver_e), rebuild_dense=rebuild)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--games", type=int, default=3)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    import ray

    from fastpong import _core

    _core.set_num_threads(1)
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        results = [measure_game(ray, *play_game(seed)) for seed in range(args.games)]
    finally:
        ray.shutdown()
    print(f"ALE/Pong-v5, initial weights, {args.games} games; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores; medians of 5 calls, milliseconds")
    print("| game steps | message | bytes | bytes/step | worker | put+get | driver | total |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        for name in ("gradient", "episode"):
            nbytes, worker, store, driver = r[name]
            print(f"| {r['steps']:,} | {name} | {nbytes:,} | {nbytes / r['steps']:,.0f} | {1e3 * worker:.2f} | "
                  f"{1e3 * store:.2f} | {1e3 * driver:.2f} | {1e3 * (worker + store + driver):.2f} |")
    print(f"gradient: folding the added gradients into the batch at an update: "
          f"{1e3 * np.median([r['fold'] for r in results]):.2f} ms per update; "
          f"episode: rebuilding a buffer from dense inputs (the API there is): "
          f"{1e3 * np.median([r['rebuild_dense'] for r in results]):.1f} ms per game")
    put, get_load = np.median([r["broadcast"] for r in results], axis=0)
    print(f"an update's broadcast: weights() + ray.put on the driver {1e3 * put:.2f} ms, "
          f"ray.get + load_weights on each worker {1e3 * get_load:.2f} ms")


if __name__ == "__main__":
    main()
