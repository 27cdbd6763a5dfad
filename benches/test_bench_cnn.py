"""The MIT lab's CNN: reference (NumPy float64), NumPy float32 (im2col + matmul), TensorFlow
(the lab's own Keras model compiled with tf.function, where ``pip install ".[keras]"`` installed
it) and fastpong.

Each group times them side by side on the same real Pong data (the lab's settings: Pong-v0,
frameskip 5, six actions, a random player), and every timed call's result is checked against
another path's, so a benchmark cannot report a fast wrong answer. ``benches/cnn_speedups.py``
turns ``--benchmark-json`` output into the README's table.

The backward pass covers BACKWARD_STEPS = 5,000 steps: one iteration of the lab's loop, 5 games
of about 1,000 steps (a random player's game lasts about 700 steps at frameskip 5; a learning
one's grows longer).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np
import pytest

import fastpong
from fastpong.reference import cnn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cnn_numpy32  # noqa: E402

ENV_ID = "Pong-v0"
FRAMESKIP = 5
SEED = 0
BATCH = 8
BACKWARD_STEPS = 5000


@dataclass
class LabPlay:
    frames: np.ndarray  # (T + 1, 210, 160, 3) uint8
    changes: np.ndarray  # (T, 40, 40) float32, the lab's inputs (zeros at an episode start)
    actions: np.ndarray  # (T,)
    advantages: np.ndarray  # (T,) the lab's discounted, batch-normalized returns
    batch_rows: np.ndarray  # BATCH steps with a nonzero change, for the forward benchmarks


@pytest.fixture(scope="session")
def lab_play() -> LabPlay:
    import ale_py
    import gymnasium

    gymnasium.register_envs(ale_py)
    env = gymnasium.make(ENV_ID, frameskip=FRAMESKIP)
    rng = np.random.default_rng(SEED)
    try:
        observation, _ = env.reset(seed=SEED)
        frames, previous, actions, rewards = [observation], [observation], [], []
        for _ in range(BACKWARD_STEPS):
            action = int(rng.integers(env.action_space.n))
            last = observation
            observation, reward, terminated, truncated, _ = env.step(action)
            actions.append(action)
            rewards.append(reward)
            if terminated or truncated:
                observation, _ = env.reset()
                last = observation
            frames.append(observation)
            previous.append(last)
    finally:
        env.close()
    frames, previous = np.stack(frames), np.stack(previous)
    # input t: the change from the frame before to frame t (zero right after a reset)
    changes = fastpong.lab_frame_change(previous[:BACKWARD_STEPS], frames[:BACKWARD_STEPS])
    for t in range(0, BACKWARD_STEPS, 97):  # the fused kernel is the reference, exactly
        np.testing.assert_array_equal(changes[t], cnn.frame_change(previous[t], frames[t]))
    nonzero = np.flatnonzero(np.count_nonzero(changes, axis=(1, 2)))
    start = len(nonzero) // 2
    return LabPlay(frames, changes, np.asarray(actions), cnn.discount_rewards(rewards),
                   nonzero[start:start + BATCH])


@pytest.fixture(scope="session")
def params() -> dict:
    """Keras' initialization with small biases of both signs, as after some training."""
    params = cnn.init_params(SEED)
    rng = np.random.default_rng(SEED)
    for name in params:
        if name.endswith("/bias"):
            params[name] = rng.normal(scale=0.05, size=params[name].shape)
    return params


@pytest.fixture(scope="session")
def params32(params) -> dict:
    return cnn_numpy32.params_float32(params)


@pytest.fixture(scope="session")
def policy(params) -> fastpong.ConvPolicy:
    return fastpong.ConvPolicy.from_model(params)


def assert_close(actual, desired, rtol, scale_atol, what):
    actual, desired = np.asarray(actual, np.float64), np.asarray(desired, np.float64)
    scale = max(float(np.abs(desired).max(initial=0.0)), 1e-30)
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=scale_atol * scale, err_msg=what)


# --- forward: a batch of 8 frame changes -> action probabilities -------------------------------


@pytest.mark.benchmark(group="cnn-forward-batch8")
def test_cnn_forward_reference(benchmark, lab_play, params, policy):
    x = lab_play.changes[lab_play.batch_rows]
    probs = benchmark(lambda: cnn.softmax(cnn.policy_forward(x, params)[0]))
    assert_close(policy.forward(x), probs, 1e-4, 1e-5, "fast vs reference")


@pytest.mark.benchmark(group="cnn-forward-batch8")
def test_cnn_forward_numpy32(benchmark, lab_play, params, params32):
    x = lab_play.changes[lab_play.batch_rows]
    probs = benchmark(cnn_numpy32.probabilities, params32, x)
    assert probs.dtype == np.float32
    assert_close(probs, cnn.softmax(cnn.policy_forward(x, params)[0]), 1e-4, 1e-5, "numpy32")


@pytest.mark.benchmark(group="cnn-forward-batch8")
def test_cnn_forward_fast(benchmark, lab_play, params, policy):
    x = lab_play.changes[lab_play.batch_rows]
    probs = benchmark(policy.forward, x)
    assert_close(probs, cnn.softmax(cnn.policy_forward(x, params)[0]), 1e-4, 1e-5, "fast")


# --- backward: the gradient of mean_t A_t log pi(a_t|s_t) over one 5-game iteration ------------


def _fast_gradient(policy, play):
    grads = policy.gradient_buffer()
    policy.accumulate_gradient(play.changes, play.actions, play.advantages, grads)
    return grads


def _check_grads(actual: dict, expected: dict, what: str):
    for name in cnn.PARAMETER_NAMES:
        assert_close(actual[name], expected[name], 1e-3, 1e-4, f"{what}: {name}")


@pytest.mark.benchmark(group="cnn-backward-5games")
def test_cnn_backward_reference(benchmark, lab_play, params, policy):
    grads = benchmark.pedantic(cnn.objective_gradient, rounds=1, iterations=1, args=(
        params, lab_play.changes, lab_play.actions, lab_play.advantages))
    _check_grads(_fast_gradient(policy, lab_play), grads, "fast vs reference")


@pytest.mark.benchmark(group="cnn-backward-5games")
def test_cnn_backward_numpy32(benchmark, lab_play, params32, policy):
    grads = benchmark.pedantic(cnn_numpy32.objective_gradient, rounds=3, iterations=1, args=(
        params32, lab_play.changes, lab_play.actions, lab_play.advantages))
    _check_grads(grads, _fast_gradient(policy, lab_play), "numpy32 vs fast")


@pytest.mark.benchmark(group="cnn-backward-5games")
def test_cnn_backward_fast(benchmark, lab_play, params32, policy):
    grads = benchmark.pedantic(_fast_gradient, rounds=5, iterations=1, args=(policy, lab_play))
    _check_grads(grads, cnn_numpy32.objective_gradient(
        params32, lab_play.changes, lab_play.actions, lab_play.advantages), "fast vs numpy32")


# --- the same network in TensorFlow (pip install ".[keras]"), as a user of the lab would run it --


@pytest.fixture(scope="session")
def keras_model(params):
    """The lab's own Keras model (fastpong.reference.keras_lab) holding the same weights."""
    tf = pytest.importorskip("tensorflow", reason='TensorFlow is optional: pip install ".[keras]"')
    from fastpong.reference import keras_lab

    # As many threads as fastpong's kernels (--fastpong-threads, else every core): a fair race.
    threads = fastpong.get_num_threads()
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    model = keras_lab.create_pong_model()
    keras_lab.set_weights(model, cnn_numpy32.params_float32(params))
    return model


@pytest.mark.benchmark(group="cnn-forward-batch8")
def test_cnn_forward_tensorflow(benchmark, lab_play, params, keras_model):
    """A compiled (tf.function) forward pass: the fastest way a lab user gets probabilities."""
    import tensorflow as tf

    probabilities = tf.function(lambda x: tf.nn.softmax(keras_model(x)))
    x = tf.constant(lab_play.changes[lab_play.batch_rows][..., None])
    probabilities(x)  # traced once, outside the timing
    probs = benchmark(lambda: probabilities(x).numpy())
    assert_close(probs, cnn.softmax(cnn.policy_forward(x.numpy(), params)[0]), 1e-4, 1e-5, "tensorflow")


@pytest.mark.benchmark(group="cnn-backward-5games")
def test_cnn_backward_tensorflow(benchmark, lab_play, policy, keras_model):
    """The gradient of the lab's loss over the same 5,000 steps in a compiled tf.function (the
    lab's train_step without its Adam step, as fastpong's side has none either; oneDNN, every core)."""
    import tensorflow as tf
    from fastpong.reference import keras_lab

    @tf.function
    def gradient(x, actions, returns):
        with tf.GradientTape() as tape:
            loss = keras_lab.compute_loss(keras_model(x), actions, returns)
        return tape.gradient(loss, keras_model.trainable_variables)

    args = (tf.constant(lab_play.changes[..., None]), tf.constant(lab_play.actions),
            tf.constant(lab_play.advantages.astype(np.float32)))
    gradient(*args)  # traced once, outside the timing
    grads = benchmark.pedantic(lambda: [g.numpy() for g in gradient(*args)], rounds=3, iterations=1)
    # the lab's loss is minus the objective fastpong ascends
    _check_grads({n: -g for n, g in zip(cnn.PARAMETER_NAMES, grads)}, _fast_gradient(policy, lab_play),
                 "tensorflow vs fast")


# --- preprocessing: two RGB frames -> the 40x40 change ----------------------------------------


@pytest.mark.benchmark(group="lab-frame-change")
def test_lab_frame_change_reference(benchmark, lab_play):
    prev, frame = lab_play.frames[100], lab_play.frames[101]
    change = benchmark(cnn.frame_change, prev, frame)
    np.testing.assert_array_equal(change, fastpong.lab_frame_change(prev, frame))


@pytest.mark.benchmark(group="lab-frame-change")
def test_lab_frame_change_fast(benchmark, lab_play):
    prev, frame = lab_play.frames[100], lab_play.frames[101]
    change = benchmark(fastpong.lab_frame_change, prev, frame)
    np.testing.assert_array_equal(change, cnn.frame_change(prev, frame))


@pytest.mark.benchmark(group="lab-frame-change-batch8")
def test_lab_frame_change_batch8_reference(benchmark, lab_play):
    prev, frames = lab_play.frames[200:208], lab_play.frames[201:209]
    changes = benchmark(lambda: np.stack([cnn.frame_change(p, f) for p, f in zip(prev, frames)]))
    np.testing.assert_array_equal(changes, fastpong.lab_frame_change(prev, frames))


@pytest.mark.benchmark(group="lab-frame-change-batch8")
def test_lab_frame_change_batch8_fast(benchmark, lab_play):
    prev = np.ascontiguousarray(lab_play.frames[200:208])
    frames = np.ascontiguousarray(lab_play.frames[201:209])
    changes = benchmark(fastpong.lab_frame_change, prev, frames)
    np.testing.assert_array_equal(
        changes, np.stack([cnn.frame_change(p, f) for p, f in zip(prev, frames)]))


# --- the training loop's input: a lane of 4 games stepped through the differencer -------------

LANE = 4  # the CNN agents' lane: 8 environments in two lanes


def _lane_batches(lab_play, count=16):
    """count consecutive steps of LANE games: each game plays the recorded frames from its own
    offset, so the lanes' frames differ."""
    frames = lab_play.frames
    return [np.ascontiguousarray(frames[[100 + 300 * g + t for g in range(LANE)]]) for t in range(count)]


@pytest.mark.benchmark(group="lab-differencer-lane")
def test_lab_differencer_lane_reference(benchmark, lab_play):
    """The lab's loop: each game keeps its previous RGB frame and takes cnn.frame_change."""
    batches = _lane_batches(lab_play)

    def play():
        previous, out = list(batches[0]), None
        for frames in batches[1:]:
            out = np.stack([cnn.frame_change(p, f) for p, f in zip(previous, frames)])
            previous = list(frames)
        return out

    changes = benchmark(play)
    np.testing.assert_array_equal(changes, fastpong.lab_frame_change(batches[-2], batches[-1]))


@pytest.mark.benchmark(group="lab-differencer-lane")
def test_lab_differencer_lane_fast(benchmark, lab_play):
    """fastpong.LabFrameDifferencer over the same 16 steps (15 changes after the zeros of the
    first), what the mit-pong and ppo agents call once per lane step."""
    batches = _lane_batches(lab_play)

    def play():
        differencer, out = fastpong.LabFrameDifferencer(LANE), None
        for frames in batches:
            out = differencer.step(frames)
        return out

    changes = benchmark(play)
    np.testing.assert_array_equal(changes, np.stack([cnn.frame_change(p, f) for p, f in zip(batches[-2], batches[-1])]))
