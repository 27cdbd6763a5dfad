"""The CNN's two backward passes on real frames, for comparing two builds of fastpong side by side.

    python benches/cnn_gradient_rounds.py [--rounds 12]

Prints two medians, in milliseconds: the mit-pong gradient over a 5,000-step iteration
(``accumulate_gradient``, the lab's loss) and PPO's trunk step on 256 frames (``features`` kept for
the backward pass, then ``accumulate_feature_gradient``), on 1,000 steps of ALE/Pong-v5 random
play (repeated five times for the 5,000 steps). Only the compiled module is called, so the two
builds compared run the same Python. pytest-benchmark (benches/test_bench_cnn.py) times one
build against NumPy and TensorFlow in one process; two builds of the same extension cannot share
a process, so run this under each in turn, alternating, with ``OPENBLAS_NUM_THREADS=1``
(docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import fastpong

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pong_data import lab_inputs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    x = np.concatenate([lab_inputs(1000, np.random.default_rng(0))["change"]] * 5)
    rng = np.random.default_rng(0)
    net = fastpong._core._ConvPolicy()
    initial = fastpong.ConvPolicy(seed=0).parameters()
    for name, value in net.parameters().items():
        value[...] = initial[name]
        if name.endswith("/bias"):  # biases of both signs, as after some training
            value[...] = rng.normal(0, 0.05, value.shape)
    actions = rng.integers(0, 6, len(x))
    advantages = rng.normal(size=len(x)).astype(np.float32)
    minibatch = x[:256]
    feature_grad = rng.normal(size=(256, net.feature_size)).astype(np.float32)
    grads = {name: np.zeros_like(value) for name, value in net.parameters().items()}
    gradient, trunk = [], []
    for _ in range(args.rounds):
        start = time.perf_counter()
        net.accumulate_gradient(x, actions, advantages, grads, 1.0 / len(x), 0.0)
        gradient.append(time.perf_counter() - start)
        for _ in range(5):
            start = time.perf_counter()
            net.features(minibatch, True)
            net.accumulate_feature_gradient(minibatch, feature_grad, grads)
            trunk.append(time.perf_counter() - start)
    print(f"gradient, 5,000 steps: {np.median(gradient) * 1e3:.1f} ms; "
          f"PPO trunk step, 256 frames: {np.median(trunk) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
