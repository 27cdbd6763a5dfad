"""Threads: the kernels release the GIL. Reading one object from several threads gives the same
results as one thread; each thread with its own changing objects is fine; changing an object that
another thread is using raises RuntimeError (src/use_guard.hpp) instead of racing on it, and the
refused call leaves the object as it was. README "Threads" lists what may be shared."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import fastpong
from fastpong import _core
from fastpong import reference as ref
from fastpong.reference import cnn

THREADS = 8
ROUNDS = 40
IN_USE = "by another thread"


def run_in_threads(work, count=THREADS):
    """work(i) in `count` threads started together; their results, or the first exception raised."""
    barrier = threading.Barrier(count)
    results, errors = [None] * count, []

    def body(i):
        barrier.wait()
        try:
            results[i] = work(i)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def ternary(rng, shape):
    return rng.choice([-1.0, 0.0, 1.0], size=shape, p=[0.02, 0.96, 0.02]).astype(np.float32)


def test_concurrent_forward_passes_on_one_policy(pong_inputs):
    """The batched calls release the GIL, so these really overlap; every result is bitwise the
    one a single thread gets (the kernels' sums run in a fixed order)."""
    policy = fastpong.Policy(seed=3)
    rng = np.random.default_rng(3)
    dense = [ternary(rng, (16, 6400)) for _ in range(THREADS)]
    sparse = [fastpong.SparseFrames.from_dense(x) for x in dense]
    real = np.asarray(pong_inputs[:64], dtype=np.float32)
    expected = [(policy.forward(d), policy.forward(s), policy.forward(real), policy.forward(real[5]))
                for d, s in zip(dense, sparse)]

    def work(i):
        for _ in range(ROUNDS):
            got = (policy.forward(dense[i]), policy.forward(sparse[i]), policy.forward(real),
                   policy.forward(real[5]))
            for (p, h), (p0, h0) in zip(got, expected[i]):
                np.testing.assert_array_equal(p, p0)
                np.testing.assert_array_equal(h, h0)
        return True

    assert all(run_in_threads(work))
    assert _core._objects_in_use() == 0  # every registration was undone


def test_each_thread_with_its_own_buffers(pong_play):
    """One shared policy (read), and per thread a FrameDifferencer, an EpisodeBuffer and a
    GradientBuffer (changed): the gradients equal those of the same work done serially."""
    policy = fastpong.Policy(seed=4)
    frames = pong_play.frames[:60]

    def episode_gradient(i):
        differencer = fastpong.FrameDifferencer(1)
        episode = fastpong.EpisodeBuffer()
        grads = policy.gradient_buffer()
        for t, frame in enumerate(frames[i:i + 40]):
            x = differencer.step(frame[None])
            p, h = policy.forward(x)
            episode.append(x, h[0], float(t % 2) - float(p[0]))
            episode.set_last_reward(1.0 if t % 13 == 12 else 0.0)
        returns = fastpong.standardize(fastpong.discount_rewards(episode.rewards, 0.99))
        policy.accumulate_gradient(episode, returns, grads)
        return grads.to_model()

    serial = [episode_gradient(i) for i in range(THREADS)]
    for got, want in zip(run_in_threads(episode_gradient), serial):
        for k in ("W1", "W2"):
            np.testing.assert_array_equal(got[k], want[k])


def test_stateless_kernels_from_many_threads(pong_play):
    frames = pong_play.frames[:32]
    rewards = pong_play.rewards[:300]
    want_images = np.stack([ref.frame_preprocessing(f) for f in frames])
    want_returns = fastpong.discount_rewards(rewards, 0.99)

    def work(i):
        for _ in range(ROUNDS // 4):
            np.testing.assert_array_equal(fastpong.frame_preprocessing(frames), want_images)
            np.testing.assert_array_equal(fastpong.discount_rewards(rewards, 0.99), want_returns)
        return True

    assert all(run_in_threads(work))


def while_in_use(start_long_call, attempt_change, attempts=20):
    """Runs start_long_call() (a call that releases the GIL for a long while) in a thread and,
    once it has registered its objects, attempt_change() here. Returns the RuntimeError the
    change raised. The long call might end before the change gets in, on a loaded machine: then
    it tries again."""
    for _ in range(attempts):
        done = threading.Event()
        thread = threading.Thread(target=lambda: (start_long_call(), done.set()))
        thread.start()
        while _core._objects_in_use() == 0 and not done.is_set():
            time.sleep(0)  # lets the thread start; it holds nothing until it releases the GIL
        try:
            if done.is_set():
                continue
            try:
                attempt_change()
            except RuntimeError as exc:
                return exc
        finally:
            thread.join()
    pytest.fail("the long call never overlapped the change")


def test_changing_an_episode_another_thread_reads_raises():
    """accumulate_gradient reads the episode with the GIL released; appending to it then would
    reallocate the vectors under it (memory corruption). It raises instead, changing nothing."""
    policy = fastpong.Policy(seed=5)
    rng = np.random.default_rng(5)
    steps = 4000
    epx = ternary(rng, (steps, 6400))
    episode = fastpong.EpisodeBuffer.from_arrays(epx, rng.uniform(0, 1, (steps, 200)),
                                                 rng.uniform(-1, 1, steps), np.zeros(steps))
    grads = policy.gradient_buffer()
    advantages = np.ones(steps, dtype=np.float32)
    row = fastpong.SparseFrames.from_dense(epx[0])
    error = while_in_use(lambda: policy.accumulate_gradient(episode, advantages, grads),
                         lambda: episode.append(row, np.ones(200), 0.5))
    assert "EpisodeBuffer is being used by another thread" in str(error)
    assert len(episode) == steps  # the refused append added nothing
    error = while_in_use(lambda: policy.accumulate_gradient(episode, advantages, grads), episode.clear)
    assert IN_USE in str(error) and len(episode) == steps


def test_updating_a_policy_other_threads_read_raises():
    policy = fastpong.Policy(seed=6)
    before = policy.to_model()
    x = ternary(np.random.default_rng(6), (3000, 6400))
    grads, cache = policy.gradient_buffer(), policy.gradient_buffer()
    error = while_in_use(lambda: policy.forward(x),
                         lambda: _core.rmsprop_step(policy, grads, cache, 1e-3, 0.99))
    assert "Policy is being used by another thread" in str(error)
    error = while_in_use(lambda: policy.forward(x), lambda: policy.load_model(before))
    assert "Policy is being used" in str(error)
    after = policy.to_model()
    for k in before:
        np.testing.assert_array_equal(after[k], before[k])  # the refused update changed nothing
    # The other way round: a read while an update runs (the update itself releases the GIL).
    big = fastpong.Policy(hidden=2000, seed=6)  # an update of 12.8M weights: milliseconds
    big_grads, big_cache = big.gradient_buffer(), big.gradient_buffer()
    error = while_in_use(lambda: _core.rmsprop_step(big, big_grads, big_cache, 1e-3, 0.99),
                         lambda: big.forward(x[0]))
    assert "Policy is being changed" in str(error)


def test_one_differencer_stepped_from_two_threads_raises(pong_play):
    frames = np.repeat(pong_play.frames[10:11], 256, axis=0)
    differencer = fastpong.FrameDifferencer(256)
    error = while_in_use(lambda: differencer.step(frames), lambda: differencer.step(frames))
    assert "FrameDifferencer is being changed by another thread" in str(error)
    # The refused step changed nothing: the next difference is still against the last frame.
    later = np.repeat(pong_play.frames[11:12], 256, axis=0)
    want = ref.frame_preprocessing(pong_play.frames[11]).ravel() - ref.frame_preprocessing(pong_play.frames[10]).ravel()
    np.testing.assert_array_equal(differencer.step(later).to_dense()[7], want)


def test_rmsprop_refuses_one_buffer_as_grads_and_cache():
    policy = fastpong.Policy(hidden=4, input_size=6, seed=0)
    buffer = policy.gradient_buffer()
    with pytest.raises(ValueError, match="grads and cache must be two different GradientBuffers"):
        _core.rmsprop_step(policy, buffer, buffer, 1e-3, 0.99)


# --- the MIT lab's CNN (ConvPolicy, LabFrameDifferencer) ---------------------------------------


def lab_changes(pong_play, count, offset=0):
    """count (40, 40) frame changes of real Pong play, the CNN's input."""
    frames = pong_play.frames[offset:offset + count + 1]
    return fastpong.lab_frame_change(frames[:-1], frames[1:])


def test_concurrent_forward_passes_on_one_conv_policy(pong_play):
    """Batches (which share the policy's cached zero-frame activations), single frames and
    log-probabilities from many threads at once: each bitwise what one thread gets."""
    policy = fastpong.ConvPolicy(seed=3)
    rng = np.random.default_rng(3)
    batches = [np.concatenate([lab_changes(pong_play, 12, offset=20 * i),
                               ternary(rng, (4, 40, 40))]) for i in range(THREADS)]
    expected = [(policy.forward(b), policy.log_probs(b), policy.forward(b[i:i + 1])) for i, b in
                enumerate(batches)]

    def work(i):
        b = batches[i]
        for _ in range(ROUNDS // 4):
            got = (policy.forward(b), policy.log_probs(b), policy.forward(b[i:i + 1]))
            for g, want in zip(got, expected[i]):
                np.testing.assert_array_equal(g, want)
        return True

    assert all(run_in_threads(work))
    assert _core._objects_in_use() == 0


def test_each_thread_its_own_cnn_gradient(pong_play):
    """One shared ConvPolicy (read), a gradient buffer per thread: the gradients equal those of
    the same work done serially, to the bit."""
    policy = fastpong.ConvPolicy(seed=4)
    obs = lab_changes(pong_play, 24)
    actions = np.arange(24) % 6
    rng = np.random.default_rng(4)
    advantages = [rng.standard_normal(24).astype(np.float32) for _ in range(4)]

    def gradient(i):
        grads = policy.gradient_buffer()
        policy.accumulate_gradient(obs, actions, advantages[i], grads)
        return grads

    serial = [gradient(i) for i in range(4)]
    for got, want in zip(run_in_threads(gradient, count=4), serial):
        for name in want:
            np.testing.assert_array_equal(got[name], want[name])


def test_optimizer_step_on_a_conv_policy_another_thread_reads_raises(pong_play):
    """The weights are stepped in place through NumPy views; a step while another thread runs a
    forward pass would give it a mix of old and new weights. It raises, and changes nothing."""
    policy = fastpong.ConvPolicy(seed=5)
    x = np.tile(lab_changes(pong_play, 50), (40, 1, 1))  # 2000 frames: tens of milliseconds
    grads = policy.gradient_buffer()
    policy.accumulate_gradient(x[:8], np.zeros(8, dtype=np.int64), np.ones(8), grads)
    before = policy.to_model()
    optimizer = fastpong.Adam(1e-3)
    error = while_in_use(lambda: policy.forward(x), lambda: optimizer.step(policy, grads))
    assert "optimizer step is being used by another thread" in str(error)
    after = policy.to_model()
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])
    # The gradient arrays: two threads adding into one buffer at once would race too.
    steps = 600
    many = x[:steps]
    error = while_in_use(
        lambda: policy.accumulate_gradient(many, np.zeros(steps, dtype=np.int64), np.ones(steps), grads),
        lambda: policy.accumulate_gradient(many[:2], np.zeros(2, dtype=np.int64), np.ones(2), grads))
    assert "CNN gradient array is being changed by another thread" in str(error)
    assert _core._objects_in_use() == 0


def test_one_lab_differencer_stepped_from_two_threads_raises(pong_play):
    """lab_preprocess runs with the GIL released; a second thread's step would replace the kept
    images meanwhile. The second step raises, and the first one's result stands."""
    envs = 256
    first = np.repeat(pong_play.frames[10:11], envs, axis=0)
    second = np.repeat(pong_play.frames[11:12], envs, axis=0)
    for _ in range(50):
        differencer = fastpong.LabFrameDifferencer(envs)
        differencer.step(first)
        results = []
        thread = threading.Thread(target=lambda: results.append(differencer.step(second)))
        thread.start()
        while not differencer._busy.locked() and thread.is_alive():
            time.sleep(0)
        error = None
        try:
            differencer.step(first)
        except RuntimeError as exc:
            error = exc
        thread.join()
        if error is None:  # the thread's step ended first (a loaded machine): try again
            continue
        assert "LabFrameDifferencer is being changed by another thread" in str(error)
        want = np.broadcast_to(cnn.frame_change(pong_play.frames[10], pong_play.frames[11]), (envs, 40, 40))
        np.testing.assert_array_equal(results[0], want)
        # The refused step kept nothing: the next change is still against the second frames.
        np.testing.assert_array_equal(differencer.step(first)[3], -want[3])
        return
    pytest.fail("the two steps never overlapped")
