"""Memory per step: the fast EpisodeBuffer against the tutorial's dense episode rows.

    python benches/episode_memory.py [--steps 1000] [--seed 0]

Plays a real segment of Pong (random up/down player), records it both ways and prints bytes per
step. The tutorial keeps, per step, the frame difference (6400 float64), the hidden activations
(200 float64), dlogp and the reward (a float64 each), stacked with np.vstack before the backward
pass; the EpisodeBuffer keeps the difference's nonzero pixels (int32 index + int8 sign, plus an
int64 row offset) and h, dlogp, reward in float32.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pong_data  # noqa: E402

import fastpong  # noqa: E402
from fastpong import reference  # noqa: E402


def fast_episode(recording: pong_data.Recording, policy: fastpong.Policy) -> fastpong.EpisodeBuffer:
    """The fast path's rollout bookkeeping: FrameDifferencer -> sparse forward -> append."""
    differencer = fastpong.FrameDifferencer(1)
    buffer = fastpong.EpisodeBuffer(policy.hidden, policy.input_size)
    steps = zip(recording.frames, recording.actions, recording.rewards, recording.episode_starts,
                strict=True)
    for frame, action, reward, starting in steps:
        if starting:
            differencer.reset(0)
        x = differencer.step(frame[None])
        p, h = policy.forward(x)
        y = 1.0 if action == reference.UP else 0.0
        buffer.append(x, h[0], y - float(p[0]))
        buffer.set_last_reward(reward)
    return buffer


def measure(recording: pong_data.Recording, seed: int = pong_data.SEED) -> dict:
    """Both paths' episode storage for one recording, in bytes."""
    model = reference.init_model(pong_data.HIDDEN, pong_data.INPUT_SIZE, seed)
    policy = fastpong.Policy.from_model(model)
    x = pong_data.reference_differences(recording)
    tutorial = pong_data.tutorial_episode(x, recording.actions, recording.rewards, model)
    buffer = fast_episode(recording, policy)
    steps = len(recording)
    nonzeros = buffer.inputs.nonzeros
    return {
        "steps": steps,
        "nonzeros_per_step": nonzeros / steps,
        "reference_bytes": tutorial.nbytes,
        "reference_bytes_per_step": tutorial.nbytes / steps,
        "reference_input_bytes_per_step": tutorial.epx.nbytes / steps,
        "fast_bytes": buffer.nbytes,
        "fast_bytes_per_step": buffer.nbytes / steps,
        "fast_hidden_bytes_per_step": policy.hidden * np.dtype(np.float32).itemsize,
        "ratio": tutorial.nbytes / buffer.nbytes,
        "buffer": buffer,
        "tutorial": tutorial,
    }


def report(m: dict) -> str:
    fast_input = m["fast_bytes_per_step"] - m["fast_hidden_bytes_per_step"] - 8  # dlogp, reward
    return "\n".join([
        f"{m['steps']} steps of {pong_data.ENV_ID}, {m['nonzeros_per_step']:.1f} changed pixels "
        "per frame difference on average",
        "",
        "| storage | bytes per step | of which the input | episode total |",
        "|---|---:|---:|---:|",
        f"| tutorial dense rows (float64 epx, eph, dlogp, reward) | "
        f"{m['reference_bytes_per_step']:,.0f} | {m['reference_input_bytes_per_step']:,.0f} | "
        f"{m['reference_bytes'] / 2**20:,.1f} MiB |",
        f"| fastpong EpisodeBuffer (sparse input, float32 h) | {m['fast_bytes_per_step']:,.0f} | "
        f"{fast_input:,.0f} | {m['fast_bytes'] / 2**20:,.2f} MiB |",
        "",
        f"The EpisodeBuffer is {m['ratio']:.1f}x smaller per step; its hidden activations "
        f"({m['fast_hidden_bytes_per_step']} bytes) are now most of it.",
    ])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=pong_data.EPISODE_STEPS)
    parser.add_argument("--seed", type=int, default=pong_data.SEED)
    args = parser.parse_args(argv)
    print(report(measure(pong_data.play(args.steps, seed=args.seed), seed=args.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
