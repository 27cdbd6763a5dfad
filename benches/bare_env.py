"""The bound a training loop is held to: the same vector environment stepped with random
actions and nothing learned, as a whole process, to time beside ``fastpong train``.

    python benches/bare_env.py [--steps 100000] [--num-envs 8] [--threads 2] [--frameskip 4]
        [--lanes 1|2]

Builds one ale-py C++ vector environment of --num-envs Pong games with ``ALE/Pong-v5``'s settings,
as fastpong's EnvBatch builds it (full RGB frames, frameskip 4, sticky actions 0.25), with
--threads worker threads; resets it; plays --steps env steps in all with random up/down actions;
exits. ``--frameskip 5`` makes it the MIT lab's ``Pong-v0`` as ``--preset lab`` plays it (the same
sticky actions). It imports ale-py and NumPy, not fastpong, so its start-up is the emulator's
alone. Timed as whole processes, alternating, against ``fastpong train --steps N --num-envs 8
--threads 2``, it gives the loop's rate against the emulator's, start-up included; with ``--steps
8`` against ``fastpong train --steps 8``, fastpong's own start-up on top of the emulator's
(docs/benchmarks.md). ``--lanes 2`` steps the same games as the training loop does, in two vector
environments taking turns, still with random actions and nothing learned: what the lanes alone
cost against one batch.
"""

from __future__ import annotations

import argparse

import gymnasium
import numpy as np
from ale_py.vector_env import AtariVectorEnv


def make_envs(num_envs: int, threads: int, frameskip: int) -> AtariVectorEnv:
    """``num_envs`` Pong games on ``threads`` worker threads, as fastpong's EnvBatch builds them."""
    return AtariVectorEnv(
        game="pong", num_envs=num_envs, batch_size=num_envs, num_threads=threads, img_height=210,
        img_width=160, grayscale=False, stack_num=1, frameskip=frameskip, maxpool=False,
        noop_max=0, use_fire_reset=False, reward_clipping=False, episodic_life=False,
        repeat_action_probability=0.25, full_action_space=False, max_num_frames_per_episode=108_000,
        autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frameskip", type=int, default=4)
    parser.add_argument("--lanes", type=int, choices=(1, 2), default=1,
                        help="2: the games in two vector environments of half the games and half "
                             "the threads each, stepped in turn as fastpong's training loop steps "
                             "its lanes (default 1: one vector environment, the bound)")
    args = parser.parse_args()
    n = args.num_envs
    sizes = [n] if args.lanes == 1 else [n - n // 2, n // 2]
    lanes = [make_envs(size, max(1, args.threads // len(sizes)), args.frameskip) for size in sizes]
    rng = np.random.default_rng(0)
    up, down = 2, 3  # in Pong's minimal action set, 2 and 3 move the paddle
    try:
        for i, envs in enumerate(lanes):
            envs.reset(seed=np.arange(1, sizes[i] + 1) + sum(sizes[:i]))
        # send and recv are step's two halves: one lane steps as step() would, and two lanes
        # take turns, each emulated while the other's step is collected and sent
        for batch in range(-(-args.steps // n)):
            for envs, size in zip(lanes, sizes):
                if batch:
                    envs.recv()
                envs.send(rng.integers(up, down + 1, size=size))
        for envs in lanes:
            envs.recv()
    finally:
        for envs in lanes:
            envs.close()


if __name__ == "__main__":
    main()
