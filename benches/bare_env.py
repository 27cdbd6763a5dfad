"""The bound a training loop is held to: the same vector environment stepped with random
actions and nothing learned, as a whole process, to time beside ``fastpong train``.

    python benches/bare_env.py [--steps 100000] [--num-envs 8] [--threads 2] [--frameskip 4]

Builds one ale-py C++ vector environment of --num-envs Pong games with ``ALE/Pong-v5``'s settings,
as fastpong's EnvBatch builds it (full RGB frames, frameskip 4, sticky actions 0.25), with
--threads worker threads; resets it; plays --steps env steps in all with random up/down actions;
exits. ``--frameskip 5`` makes it the MIT lab's ``Pong-v0`` as ``--preset lab`` plays it (the same
sticky actions). It imports ale-py and NumPy, not fastpong, so its start-up is the emulator's
alone. Timed as whole processes, alternating, against ``fastpong train --steps N --num-envs 8
--threads 2``, it gives the loop's rate against the emulator's, start-up included; with ``--steps
8`` against ``fastpong train --steps 8``, fastpong's own start-up on top of the emulator's
(docs/benchmarks.md).
"""

from __future__ import annotations

import argparse

import gymnasium
import numpy as np
from ale_py.vector_env import AtariVectorEnv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frameskip", type=int, default=4)
    args = parser.parse_args()
    n = args.num_envs
    envs = AtariVectorEnv(
        game="pong", num_envs=n, batch_size=n, num_threads=args.threads, img_height=210,
        img_width=160, grayscale=False, stack_num=1, frameskip=args.frameskip, maxpool=False,
        noop_max=0, use_fire_reset=False, reward_clipping=False, episodic_life=False,
        repeat_action_probability=0.25, full_action_space=False, max_num_frames_per_episode=108_000,
        autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP)
    try:
        envs.reset(seed=np.arange(1, n + 1))
        rng = np.random.default_rng(0)
        up, down = 2, 3  # in Pong's minimal action set, 2 and 3 move the paddle
        for _ in range(-(-args.steps // n)):
            envs.step(rng.integers(up, down + 1, size=n))
    finally:
        envs.close()


if __name__ == "__main__":
    main()
