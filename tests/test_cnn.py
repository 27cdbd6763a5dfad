"""The MIT lab's CNN: fastpong.ConvPolicy (float32, C++) against fastpong.reference.cnn (float64).

Tolerances: float32 sums of up to 800 products per layer through six layers; logits and gradients
are held to rtol 1e-4 plus an absolute floor of 2e-5 (forward) / 1e-4 (gradients) times the largest
magnitude of the expected array, so that entries that cancel to near zero are not held to a
relative bound. Observed errors are about 1e-6 relative.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastpong
from fastpong import _core
from fastpong.reference import cnn

FORWARD_RTOL, FORWARD_ATOL = 1e-4, 2e-5
GRAD_RTOL, GRAD_ATOL = 1e-4, 1e-4


def assert_close(actual, desired, rtol, scale_atol, what="result"):
    actual = np.asarray(actual, dtype=np.float64)
    desired = np.asarray(desired, dtype=np.float64)
    assert actual.shape == desired.shape, f"{what}: shape {actual.shape} != {desired.shape}"
    scale = max(float(np.max(np.abs(desired), initial=0.0)), 1e-30)
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=scale_atol * scale, err_msg=what)


def params_with_biases(seed, spread=0.1):
    """Glorot kernels and biases of both signs, so that a ReLU sees every case, the zero frame
    included (its activations are relu(bias) in the first layer)."""
    rng = np.random.default_rng(seed + 1000)
    params = cnn.init_params(seed)
    for name in params:
        if name.endswith("/bias"):
            params[name] = rng.normal(scale=spread, size=params[name].shape)
    # float32 values, so that both paths start from the same numbers
    return {k: v.astype(np.float32).astype(np.float64) for k, v in params.items()}


@pytest.fixture(scope="module")
def params():
    return params_with_biases(3)


@pytest.fixture(scope="module")
def policy(params):
    return fastpong.ConvPolicy.from_model(params)


@pytest.fixture(scope="module")
def pong_changes(pong_play):
    """The lab's network input along real play: prev - curr of the 40x40 images (T, 40, 40)."""
    frames = pong_play.frames
    changes = np.stack([cnn.frame_change(p, f) for p, f in zip(frames[:-1], frames[1:])])
    assert (changes != 0).sum(axis=(1, 2)).mean() > 5, "real play moves paddles and ball"
    return changes


# --- 'same' padding, the reference's convolution -------------------------------------------------


@pytest.mark.parametrize("size, kernel, stride, expected", [
    (40, 5, 2, (20, 1, 2)), (20, 5, 2, (10, 1, 2)), (10, 3, 2, (5, 0, 1)), (5, 3, 2, (3, 1, 1)),
    (7, 3, 1, (7, 1, 1)), (8, 4, 1, (8, 1, 2)), (8, 3, 2, (4, 0, 1)), (7, 5, 2, (4, 2, 2)),
    (4, 1, 2, (2, 0, 0)), (3, 5, 3, (1, 1, 1)),
])
def test_same_padding_follows_tensorflow(size, kernel, stride, expected):
    """out = ceil(size / stride); the odd unit of padding goes after (bottom/right)."""
    assert cnn.same_padding(size, kernel, stride) == expected


def test_same_padding_offsets_on_an_asymmetric_example():
    """A 2x2 kernel one-hot at its bottom-right corner, stride 1 on a 4x4 image: TensorFlow pads
    one row/column at the bottom/right only, so out[i, j] = x[i + 1, j + 1], zero past the edge.
    (Padding at the top/left would give out = x.)"""
    x = np.arange(16.0).reshape(1, 4, 4, 1)
    kernel = np.zeros((2, 2, 1, 1))
    kernel[1, 1] = 1
    out = cnn.conv2d_forward(x, kernel, np.zeros(1), 1)[0, :, :, 0]
    np.testing.assert_array_equal(out, [[5, 6, 7, 0], [9, 10, 11, 0], [13, 14, 15, 0], [0, 0, 0, 0]])
    # stride 2, 3x3 kernel one-hot at its top-left on 4x4: total padding 1, all of it after
    kernel = np.zeros((3, 3, 1, 1))
    kernel[0, 0] = 1
    out = cnn.conv2d_forward(x, kernel, np.zeros(1), 2)[0, :, :, 0]
    np.testing.assert_array_equal(out, [[0, 2], [8, 10]])


@pytest.mark.parametrize("size", [7, 8, 9, 40])
@pytest.mark.parametrize("kernel, stride", [(3, 2), (5, 2), (4, 1), (3, 1)])
@pytest.mark.parametrize("corner", [(0, 0), (-1, -1), (0, -1)])
def test_corner_one_hot_kernels_shift_by_the_padding(size, kernel, stride, corner):
    """A kernel one-hot at tap (ky, kx) reads x[s*i + ky - top, s*j + kx - left]."""
    rng = np.random.default_rng(size)
    x = rng.normal(size=(2, size, size, 1))
    ky, kx = corner[0] % kernel, corner[1] % kernel
    w = np.zeros((kernel, kernel, 1, 1))
    w[ky, kx] = 1
    out = cnn.conv2d_forward(x, w, np.zeros(1), stride)[..., 0]
    n_out, top, _ = cnn.same_padding(size, kernel, stride)
    expected = np.zeros((2, n_out, n_out))
    for i in range(n_out):
        for j in range(n_out):
            r, c = stride * i + ky - top, stride * j + kx - top
            if 0 <= r < size and 0 <= c < size:
                expected[:, i, j] = x[:, r, c, 0]
    np.testing.assert_array_equal(out, expected)


# --- the reference's gradient by finite differences ----------------------------------------------


@pytest.mark.parametrize("entropy_coef", [0.0, 0.5])
def test_reference_gradient_matches_finite_differences(entropy_coef):
    """The whole float64 network, every parameter tensor, central differences on a small batch;
    with an entropy bonus too (its weight large enough that the bonus moves every entry)."""
    rng = np.random.default_rng(0)
    params = params_with_biases(0, spread=0.2)
    x = rng.choice([-1.0, 0.0, 1.0], p=[0.05, 0.9, 0.05], size=(4, 40, 40))
    actions = np.array([0, 5, 2, 3])
    advantages = np.array([1.0, -0.7, 0.3, 2.0])
    grads = cnn.objective_gradient(params, x, actions, advantages, entropy_coef=entropy_coef)

    def objective(p):
        logits, _ = cnn.policy_forward(x, p)
        log_p = cnn.log_softmax(logits)
        entropy = -(np.exp(log_p) * log_p).sum(axis=1)
        return np.mean(advantages * log_p[np.arange(4), actions] + entropy_coef * entropy)

    eps = 1e-6
    for name, value in params.items():
        flat = value.reshape(-1)
        # the largest-gradient entries and a few random ones
        picks = set(np.argsort(-np.abs(grads[name].reshape(-1)))[:3]) | set(
            rng.integers(0, flat.size, size=3))
        for i in picks:
            saved = flat[i]
            flat[i] = saved + eps
            plus = objective(params)
            flat[i] = saved - eps
            minus = objective(params)
            flat[i] = saved
            numeric = (plus - minus) / (2 * eps)
            analytic = grads[name].reshape(-1)[i]
            assert abs(numeric - analytic) <= 1e-6 + 1e-5 * abs(numeric), (name, i, numeric, analytic)


# --- forward: fast against the reference ---------------------------------------------------------


def test_forward_matches_reference_on_real_pong(policy, params, pong_changes):
    x = pong_changes
    logits, _ = cnn.policy_forward(x, params)
    fast = policy.log_probs(x.astype(np.float32))
    assert fast.dtype == np.float32 and fast.shape == (len(x), 6)
    assert_close(policy.forward(x), cnn.softmax(logits), FORWARD_RTOL, FORWARD_ATOL, "probs")
    assert_close(policy.log_probs(x), cnn.log_softmax(logits), FORWARD_RTOL, FORWARD_ATOL,
                 "log_probs")
    np.testing.assert_allclose(policy.forward(x).sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 17])
def test_forward_batch_sizes(policy, params, pong_changes, n):
    x = pong_changes[40:40 + n]
    logits, _ = cnn.policy_forward(x, params)
    assert_close(policy.log_probs(x), cnn.log_softmax(logits), FORWARD_RTOL, FORWARD_ATOL,
                 f"log_probs, n={n}")


@pytest.mark.parametrize("fill", [0.0, 1.0, -1.0])
def test_forward_constant_inputs(policy, params, fill):
    x = np.full((3, 40, 40), fill)
    logits, _ = cnn.policy_forward(x, params)
    assert_close(policy.log_probs(x), cnn.log_softmax(logits), FORWARD_RTOL, FORWARD_ATOL,
                 f"all {fill}")


def test_forward_at_every_border_pixel(policy, params):
    """One nonzero pixel at each position of the two outer rings: every 'same' padding offset of
    the first layers, and the sparse first layer's window arithmetic, against the reference."""
    positions = [(r, c) for r in range(40) for c in range(40)
                 if min(r, c) < 2 or max(r, c) > 37]
    x = np.zeros((len(positions), 40, 40))
    for i, (r, c) in enumerate(positions):
        x[i, r, c] = 1.0 if i % 2 else -1.0
    logits, _ = cnn.policy_forward(x, params)
    assert_close(policy.log_probs(x), cnn.log_softmax(logits), FORWARD_RTOL, FORWARD_ATOL,
                 "border pixels")


def test_forward_accepts_a_channel_axis_and_any_real_dtype(policy, pong_changes):
    x = pong_changes[:5]
    expected = policy.log_probs(x.astype(np.float32))
    np.testing.assert_array_equal(policy.log_probs(x[..., None]), expected)
    np.testing.assert_array_equal(policy.log_probs(x.astype(np.int8)), expected)
    np.testing.assert_array_equal(policy.log_probs(x), expected)


def test_batched_forward_matches_one_frame_at_a_time(policy, pong_changes):
    """Batches build the conv outputs a frame change reaches from the zero frame's plus the
    change's departures; one frame is computed in full. Both agree to float32 rounding."""
    x = pong_changes[:24].astype(np.float32)
    batched = policy.log_probs(x)
    single = np.concatenate([policy.log_probs(x[i:i + 1]) for i in range(len(x))])
    assert not np.array_equal(x[0], np.zeros_like(x[0]))
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-6)


def test_a_frame_gives_the_same_bits_in_any_batch(policy, pong_changes):
    """A frame's result depends on that frame alone, whatever else its batch holds and however the
    batch is split over threads."""
    x = pong_changes[:300].astype(np.float32)
    whole = policy.log_probs(x)  # 300 frames: split over the threads
    np.testing.assert_array_equal(policy.log_probs(x[5:11]), whole[5:11])
    np.testing.assert_array_equal(policy.log_probs(x[::-1])[::-1], whole)
    np.testing.assert_array_equal(policy.log_probs(x[[7, 7]]), whole[[7, 7]])


def test_zero_frame_skipping_matches_computing_every_output(policy, pong_changes):
    """Copying the zero frame's conv outputs where a window sees no change, and building the
    others from its pre-activations plus the change, must give what computing every output gives,
    forward and backward, to float32 rounding."""
    x = pong_changes[:70].astype(np.float32)
    actions = np.arange(70) % 6
    advantages = np.sin(np.arange(70.0))
    results = {}
    try:
        for skipping in (True, False):
            _core.set_zero_frame_skipping(skipping)
            grads = policy.gradient_buffer()
            policy.accumulate_gradient(x, actions, advantages, grads)
            results[skipping] = (policy.log_probs(x), grads)
    finally:
        _core.set_zero_frame_skipping(True)
    np.testing.assert_allclose(results[True][0], results[False][0], rtol=1e-5, atol=1e-6)
    for name in results[True][1]:
        assert_close(results[True][1][name], results[False][1][name], GRAD_RTOL, GRAD_ATOL, name)


@pytest.mark.parametrize("kernel", _core.conv_kernels())
def test_every_kernel_variant_matches_reference(params, pong_changes, kernel):
    before = _core.conv_kernel()
    try:
        assert _core.use_conv_kernel(kernel)
        policy = fastpong.ConvPolicy.from_model(params)
        x = pong_changes[:9]
        logits, _ = cnn.policy_forward(x, params)
        assert_close(policy.log_probs(x), cnn.log_softmax(logits), FORWARD_RTOL, FORWARD_ATOL,
                     kernel)
        actions = np.arange(9) % 6
        advantages = np.linspace(-1, 1, 9)
        grads = policy.gradient_buffer()
        policy.accumulate_gradient(x, actions, advantages, grads)
        expected = cnn.objective_gradient(params, x, actions, advantages)
        for name in expected:
            assert_close(grads[name], expected[name], GRAD_RTOL, GRAD_ATOL, f"{kernel} {name}")
    finally:
        _core.use_conv_kernel(before)
    assert not _core.use_conv_kernel("no-such-kernel")


# --- gradients: fast against the reference -------------------------------------------------------


#: ConvPolicy::kStepChunk (cpp/include/fastpong/conv.hpp): the steps a backward pass takes at a time.
STEP_CHUNK = 128


@pytest.mark.parametrize("steps", [1, 2, 100, STEP_CHUNK, STEP_CHUNK + 1, 399])
def test_gradient_matches_reference_on_real_pong(policy, params, pong_changes, pong_play, steps):
    """Around the chunk size and over several chunks."""
    x = pong_changes[:steps]
    rng = np.random.default_rng(steps)
    actions = rng.integers(0, 6, size=steps)
    advantages = cnn.discount_rewards(pong_play.rewards[:steps]) if steps > 1 else np.ones(1)
    advantages = advantages + rng.normal(scale=0.5, size=steps)  # no step without a signal
    grads = policy.gradient_buffer()
    policy.accumulate_gradient(x, actions, advantages, grads)
    expected = cnn.objective_gradient(params, x, actions, advantages)
    for name in cnn.PARAMETER_NAMES:
        assert grads[name].dtype == np.float32
        assert_close(grads[name], expected[name], GRAD_RTOL, GRAD_ATOL, name)


@pytest.mark.parametrize("steps", [1, 7, STEP_CHUNK + 1])
@pytest.mark.parametrize("zero_advantages", [False, True])
def test_entropy_bonus_gradient_matches_reference(policy, params, pong_changes, steps, zero_advantages):
    """The entropy bonus (A3C's, for mit-pong's --entropy-coef) against the float64 reference,
    alone (advantages all zero: a normalized batch of one game whose returns are all equal) and
    beside the policy gradient, in one chunk and across two."""
    x = pong_changes[:steps]
    rng = np.random.default_rng(100 + steps)
    actions = rng.integers(0, 6, size=steps)
    advantages = np.zeros(steps) if zero_advantages else rng.normal(size=steps)
    grads = policy.gradient_buffer()
    policy.accumulate_gradient(x, actions, advantages, grads, entropy_coef=0.01)
    expected = cnn.objective_gradient(params, x, actions, advantages, entropy_coef=0.01)
    for name in cnn.PARAMETER_NAMES:
        assert_close(grads[name], expected[name], GRAD_RTOL, GRAD_ATOL, name)
    if zero_advantages:  # the bonus alone still moves the policy: not a no-op
        assert np.abs(grads["logits/kernel"]).max() > 0


def test_entropy_bonus_raises_entropy(policy, pong_changes):
    """A small step along the bonus alone makes the policy more uniform on these frames."""
    x = pong_changes[:20]
    stepped = fastpong.ConvPolicy.from_model(policy.to_model())
    grads = stepped.gradient_buffer()
    stepped.accumulate_gradient(x, np.zeros(20, np.int64), np.zeros(20), grads, entropy_coef=1.0)
    for name, view in stepped.parameters().items():
        view += 0.5 * grads[name]

    def entropy(p):
        log_p = p.log_probs(x).astype(np.float64)
        return -(np.exp(log_p) * log_p).sum(axis=1)

    assert entropy(stepped).mean() > entropy(policy).mean()


@pytest.mark.parametrize("fill", [0.0, 1.0])
def test_gradient_constant_inputs(policy, params, fill):
    x = np.full((5, 40, 40), fill)
    actions = np.array([0, 1, 2, 3, 4])
    advantages = np.array([1.0, -1.0, 0.5, 0.25, -2.0])
    grads = policy.gradient_buffer()
    policy.accumulate_gradient(x, actions, advantages, grads)
    expected = cnn.objective_gradient(params, x, actions, advantages)
    for name in cnn.PARAMETER_NAMES:
        assert_close(grads[name], expected[name], GRAD_RTOL, GRAD_ATOL, f"all {fill}: {name}")


def test_gradient_accumulates_and_scales(policy, pong_changes):
    x = pong_changes[:10]
    actions = np.arange(10) % 6
    advantages = np.linspace(-1, 2, 10)
    once = policy.gradient_buffer()
    policy.accumulate_gradient(x, actions, advantages, once)
    twice = policy.gradient_buffer()
    policy.accumulate_gradient(x, actions, advantages, twice)
    policy.accumulate_gradient(x, actions, advantages, twice)
    summed = policy.gradient_buffer()
    policy.accumulate_gradient(x, actions, advantages, summed, scale=1.0)
    # The second call adds into a nonzero buffer, so its sums round differently: float32 agreement.
    for name in once:
        assert_close(twice[name], 2 * once[name], 1e-5, 1e-6, name)
        assert_close(summed[name], 10 * once[name], 1e-5, 1e-6, name)


def test_empty_episode_adds_nothing(policy):
    grads = policy.gradient_buffer()
    policy.accumulate_gradient(np.zeros((0, 40, 40), np.float32), np.zeros(0, np.int64),
                               np.zeros(0), grads)
    assert all(not g.any() for g in grads.values())


def test_results_do_not_depend_on_thread_count(policy, pong_changes, restore_threads):
    x = pong_changes[:STEP_CHUNK + 30].astype(np.float32)  # more than one chunk, large enough
    actions = np.arange(len(x)) % 6                         # for the kernels to use threads
    advantages = np.cos(np.arange(float(len(x))))
    results = []
    for threads in (1, 2):
        fastpong.set_num_threads(threads)
        grads = policy.gradient_buffer()
        policy.accumulate_gradient(x, actions, advantages, grads)
        results.append((policy.log_probs(x), grads))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    for name in results[0][1]:
        np.testing.assert_array_equal(results[0][1][name], results[1][1][name])


# --- parameters, Keras layout, initialization ----------------------------------------------------


def test_keras_layout_round_trip(policy, params, pong_changes):
    model = policy.to_model()
    assert list(model) == list(cnn.PARAMETER_NAMES)
    assert model["conv2d_0/kernel"].shape == (5, 5, 1, 32)
    assert model["conv2d_1/kernel"].shape == (5, 5, 32, 48)
    assert model["conv2d_3/kernel"].shape == (3, 3, 64, 64)
    assert model["dense_0/kernel"].shape == (576, 128)
    assert model["logits/kernel"].shape == (128, 6) and model["logits/bias"].shape == (6,)
    for name, value in model.items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, params[name].astype(np.float32))
    copy = fastpong.ConvPolicy.from_model(model)
    x = pong_changes[:6]
    np.testing.assert_array_equal(copy.log_probs(x), policy.log_probs(x))
    model["logits/bias"][:] = 5.0  # a copy: the policy is untouched
    np.testing.assert_array_equal(copy.log_probs(x), policy.log_probs(x))


def test_parameters_are_live_views(params, pong_changes):
    policy = fastpong.ConvPolicy.from_model(params)
    views = policy.parameters()
    assert set(views) == set(cnn.PARAMETER_NAMES)
    x = pong_changes[:3]
    before = policy.log_probs(x)
    views["logits/bias"][2] += 1.0  # what an optimizer step does
    after = policy.log_probs(x)
    # +1 on one logit: log pi shifts by 1 there, minus the change of the log-normalizer
    np.testing.assert_allclose(after - before - np.eye(6)[[2, 2, 2]],
                               np.broadcast_to((after - before)[:, :1], (3, 6)), atol=1e-5)
    del policy  # the views keep the weights alive
    assert np.isfinite(views["conv2d_0/kernel"]).all()


def test_initialization_is_keras_glorot_uniform():
    policy = fastpong.ConvPolicy(seed=7)
    model = policy.to_model()
    reference = cnn.init_params(7)
    for name, value in model.items():
        np.testing.assert_array_equal(value, reference[name].astype(np.float32))
        if name.endswith("/bias"):
            assert not value.any()
            continue
        shape = value.shape
        receptive = int(np.prod(shape[:-2])) if len(shape) == 4 else 1
        fan_in, fan_out = receptive * shape[-2], receptive * shape[-1]
        limit = np.sqrt(6 / (fan_in + fan_out))
        assert np.abs(value).max() <= limit
        assert abs(value.std() - limit / np.sqrt(3)) < 0.1 * limit, name
    assert not np.array_equal(fastpong.ConvPolicy(seed=8).to_model()["dense_0/kernel"],
                              model["dense_0/kernel"])


# --- the lab's discounting -------------------------------------------------------------------------


def test_discount_rewards_resets_at_every_point_and_normalizes_the_batch():
    rewards = np.array([0, 0, 1, 0, -1, 0, 0, 0, 1.0])  # two games' steps, concatenated
    gamma = 0.5
    raw = np.array([0.25, 0.5, 1, -0.5, -1, 0.125, 0.25, 0.5, 1.0])
    expected = (raw - raw.mean()) / raw.std()
    np.testing.assert_allclose(cnn.discount_rewards(rewards, gamma), expected, rtol=1e-12)
    assert cnn.GAMMA == 0.99
    assert not cnn.discount_rewards(np.zeros(5)).any()  # no point scored: zeros, not NaN
    assert cnn.discount_rewards(np.zeros(0)).shape == (0,)


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize("obs, message", [
    (np.zeros((2, 80, 80), np.float32), r"\(N, 40, 40\)"),
    (np.zeros((40, 40), np.float32), r"\(N, 40, 40\)"),
    (np.zeros((2, 40, 40, 2), np.float32), r"\(N, 40, 40, 1\)"),
    (np.full((1, 40, 40), np.nan, np.float32), "finite"),
    (np.zeros((1, 40, 40), bool), "real numeric"),
    ("frames", "numeric array"),
])
def test_bad_observations(policy, obs, message):
    with pytest.raises(ValueError, match=message):
        policy.forward(obs)
    with pytest.raises(ValueError, match=message):
        policy.accumulate_gradient(obs, [0], [1.0], policy.gradient_buffer())


def test_bad_gradient_arguments(policy):
    x = np.zeros((3, 40, 40), np.float32)
    good = dict(obs=x, actions=[0, 1, 2], advantages=[1.0, 0.0, -1.0])
    grads = policy.gradient_buffer()
    with pytest.raises(ValueError, match=r"actions must be in \[0, 6\), got 6 at step 2"):
        policy.accumulate_gradient(**{**good, "actions": [0, 1, 6]}, grads=grads)
    with pytest.raises(ValueError, match=r"actions must be in \[0, 6\), got -1"):
        policy.accumulate_gradient(**{**good, "actions": [0, -1, 2]}, grads=grads)
    with pytest.raises(ValueError, match="integer array"):
        policy.accumulate_gradient(**{**good, "actions": [0.0, 1.0, 2.0]}, grads=grads)
    with pytest.raises(ValueError, match=r"advantages must have shape \(3,\)"):
        policy.accumulate_gradient(**{**good, "advantages": [1.0, 2.0]}, grads=grads)
    with pytest.raises(ValueError, match="advantages must be finite"):
        policy.accumulate_gradient(**{**good, "advantages": [1.0, np.inf, 0.0]}, grads=grads)
    for bad in (-0.01, np.nan, np.inf):
        with pytest.raises(ValueError, match=r"entropy_coef must be a finite number >= 0"):
            policy.accumulate_gradient(**good, grads=grads, entropy_coef=bad)
    with pytest.raises(ValueError, match="'dense_0/bias'"):
        policy.accumulate_gradient(**good, grads={k: v for k, v in grads.items()
                                                  if k != "dense_0/bias"})
    wrong_dtype = {**grads, "logits/kernel": grads["logits/kernel"].astype(np.float64)}
    with pytest.raises(ValueError, match="writable C-contiguous float32"):
        policy.accumulate_gradient(**good, grads=wrong_dtype)
    wrong_shape = {**grads, "logits/kernel": np.zeros((6, 128), np.float32)}
    with pytest.raises(ValueError, match=r"of shape \(128, 6\), got float32 \(6, 128\)"):
        policy.accumulate_gradient(**good, grads=wrong_shape)
    strided = {**grads, "logits/kernel": np.zeros((128, 12), np.float32)[:, ::2]}
    with pytest.raises(ValueError, match="C-contiguous"):
        policy.accumulate_gradient(**good, grads=strided)
    # A float32 view at an odd byte offset: the kernel writes through float pointers, which must be
    # aligned (the sanitizer build checks this), so it is refused rather than written misaligned.
    raw = np.zeros(6 * 4 + 1, np.uint8)[1:].view(np.float32)
    misaligned = {**grads, "logits/bias": raw}
    with pytest.raises(ValueError, match="misaligned"):
        policy.accumulate_gradient(**good, grads=misaligned)
    read_only = {**grads, "logits/bias": np.zeros(6, np.float32)}
    read_only["logits/bias"].flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        policy.accumulate_gradient(**good, grads=read_only)
    with pytest.raises(ValueError, match="not the policy's parameters"):
        policy.accumulate_gradient(**good, grads=policy.parameters())
    shared = {**grads, "conv2d_3/bias": grads["conv2d_2/bias"]}  # both (64,)
    with pytest.raises(ValueError, match="one array twice"):
        policy.accumulate_gradient(**good, grads=shared)
    assert all(not g.any() for g in grads.values()), "a refused call writes nothing"


def test_forward_refuses_an_absurd_batch(policy):
    """Its activations would take gigabytes: a ValueError up front, not a MemoryError. A
    broadcast view stands in for the batch, so the test allocates nothing."""
    huge = np.broadcast_to(np.zeros((1, 40, 40), np.float32), (1 << 17, 40, 40))
    with pytest.raises(ValueError, match="at most 65536 frames"):
        policy.forward(huge)


def test_bad_models(policy):
    model = policy.to_model()
    with pytest.raises(ValueError, match="missing"):
        fastpong.ConvPolicy.from_model({k: v for k, v in model.items() if k != "conv2d_2/bias"})
    with pytest.raises(ValueError, match=r"shape \(5, 5, 1, 32\)"):
        fastpong.ConvPolicy.from_model({**model, "conv2d_0/kernel": np.zeros((32, 1, 5, 5))})
    with pytest.raises(ValueError, match="finite"):
        fastpong.ConvPolicy.from_model({**model, "logits/bias": np.full(6, np.nan)})
    with pytest.raises(ValueError, match="mapping"):
        fastpong.ConvPolicy.from_model([1, 2, 3])
    before = policy.to_model()
    with pytest.raises(ValueError):
        policy.load_model({**model, "logits/bias": np.full(6, np.inf)})
    for name, value in policy.to_model().items():  # a refused model changes nothing
        np.testing.assert_array_equal(value, before[name])
