"""Frames: fastpong.frame_preprocessing, FrameDifferencer and SparseFrames against the reference.

Preprocessing and frame differencing involve no arithmetic beyond comparisons and a subtraction of
0/1 values, so the fast path must agree with the reference EXACTLY (tolerance 0), on real Pong
frames, on random frames made of Pong's colors, and on strided views.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastpong
from fastpong import _core, reference

FRAME_SHAPE = (210, 160, 3)
#: Red-channel values that occur in Pong (background 144 and 109, black, paddles 92/213/147, ball
#: 236) and a few neighbours of the background shades that must NOT be erased.
PALETTE = (0, 144, 109, 92, 213, 147, 236, 1, 108, 110, 143, 145, 255)


def ref_image(frame) -> np.ndarray:
    return reference.frame_preprocessing(np.asarray(frame))


def ref_diff(prev_frame, cur_frame) -> np.ndarray:
    prev_x = None if prev_frame is None else ref_image(prev_frame).ravel()
    return reference.update_input(prev_x, ref_image(cur_frame).ravel())


def palette_frames(rng, n, palette=PALETTE, p=None) -> np.ndarray:
    return rng.choice(np.asarray(palette, dtype=np.uint8), size=(n, *FRAME_SHAPE), p=p)


def check_rows_well_formed(rows: fastpong.SparseFrames) -> None:
    offsets, indices, values = rows.offsets, rows.indices, rows.values
    assert offsets[0] == 0 and offsets[-1] == rows.nonzeros == len(indices) == len(values)
    assert np.all(np.diff(offsets) >= 0)
    assert set(np.unique(values)) <= {-1, 1}
    for r in range(len(rows)):
        row = indices[offsets[r]:offsets[r + 1]]
        assert np.all(np.diff(row) > 0), "indices must increase within a row"


# --- frame_preprocessing ------------------------------------------------------------------------


def test_preprocessing_matches_reference_on_real_pong_frames(pong_play):
    frames = pong_play.frames
    before = frames.copy()
    batch = fastpong.frame_preprocessing(frames)
    assert batch.dtype == np.float32 and batch.shape == (len(frames), 80, 80)
    for t in range(0, len(frames), 7):
        single = fastpong.frame_preprocessing(frames[t])
        assert single.dtype == np.float32 and single.shape == (80, 80)
        np.testing.assert_array_equal(single, ref_image(frames[t]))
    expected = np.stack([ref_image(f) for f in frames])
    np.testing.assert_array_equal(batch, expected)
    np.testing.assert_array_equal(frames, before)
    # The paddles and the ball are there: a real frame is not all background.
    assert batch.sum(axis=(1, 2)).max() > 0


@pytest.mark.parametrize("seed", range(3))
def test_preprocessing_matches_reference_on_palette_frames(seed):
    rng = np.random.default_rng(seed)
    # Mostly background, as in Pong, but every palette color appears many times.
    p = np.full(len(PALETTE), 0.3 / (len(PALETTE) - 2))
    p[1] = p[2] = 0.35
    frames = palette_frames(rng, 5, p=p)
    before = frames.copy()
    out = fastpong.frame_preprocessing(frames)
    np.testing.assert_array_equal(out, np.stack([ref_image(f) for f in frames]))
    np.testing.assert_array_equal(frames, before)
    assert 0 < out.mean() < 1


def test_preprocessing_any_byte_value():
    # Every one of the 256 red values at a sampled pixel: only 0, 144 and 109 are background.
    frame = np.zeros(FRAME_SHAPE, dtype=np.uint8)
    frame[35:195:2, ::2, 0].flat[:256] = np.arange(256, dtype=np.uint8)
    out = fastpong.frame_preprocessing(frame)
    np.testing.assert_array_equal(out, ref_image(frame))
    expected = np.ones(256, dtype=np.float32)
    expected[[0, 109, 144]] = 0
    np.testing.assert_array_equal(out.ravel()[:256], expected)


def test_preprocessing_reads_only_the_sampled_red_pixels():
    rng = np.random.default_rng(1)
    frame = palette_frames(rng, 1)[0]
    base = fastpong.frame_preprocessing(frame)
    changed = frame.copy()
    changed[:, :, 1:] = rng.integers(0, 256, size=changed[:, :, 1:].shape)  # green, blue
    changed[:35] = 255  # score board
    changed[195:] = 255  # bottom border
    changed[36:195:2] = 255  # odd rows of the crop
    changed[:, 1::2] = 255  # odd columns
    np.testing.assert_array_equal(fastpong.frame_preprocessing(changed), base)
    np.testing.assert_array_equal(ref_image(changed), base)


def test_preprocessing_batch_of_one_and_empty_batch(pong_play):
    frame = np.ascontiguousarray(pong_play.frames[50])
    one = fastpong.frame_preprocessing(frame[None])
    assert one.shape == (1, 80, 80)
    np.testing.assert_array_equal(one[0], ref_image(frame))
    empty = fastpong.frame_preprocessing(np.zeros((0, *FRAME_SHAPE), dtype=np.uint8))
    assert empty.shape == (0, 80, 80) and empty.dtype == np.float32


def test_preprocessing_all_background_and_all_black():
    for value in (0, 144, 109):
        frame = np.full(FRAME_SHAPE, value, dtype=np.uint8)
        np.testing.assert_array_equal(fastpong.frame_preprocessing(frame), np.zeros((80, 80)))
    frame = np.full(FRAME_SHAPE, 92, dtype=np.uint8)
    np.testing.assert_array_equal(fastpong.frame_preprocessing(frame), np.ones((80, 80)))


def strided_views(frames: np.ndarray):
    """Non-contiguous views holding the same frames as `frames` (N, 210, 160, 3)."""
    n = len(frames)
    wide = np.zeros((n, 210, 320, 3), dtype=np.uint8)  # every second column is the frame
    wide[:, :, ::2] = frames
    yield "every-second-column", wide[:, :, ::2]
    channels = np.zeros((n, 210, 160, 5), dtype=np.uint8)  # pixel stride of 5 bytes
    channels[..., 1:4] = frames
    yield "channel-slice", channels[..., 1:4]
    spaced = np.zeros((2 * n, *FRAME_SHAPE), dtype=np.uint8)  # every second frame
    spaced[::2] = frames
    yield "every-second-frame", spaced[::2]
    yield "negative-row-stride", np.ascontiguousarray(frames[:, ::-1])[:, ::-1]
    yield "negative-frame-stride", np.ascontiguousarray(frames[::-1])[::-1]
    yield "negative-channel-stride", np.ascontiguousarray(frames[..., ::-1])[..., ::-1]
    yield "fortran-order", np.asfortranarray(frames)
    raw = np.zeros(frames.nbytes + 1, dtype=np.uint8)  # starts at an odd address
    misaligned = raw[1:].reshape(frames.shape)
    misaligned[...] = frames
    yield "misaligned", misaligned


def test_preprocessing_strided_and_misaligned_views(pong_play):
    frames = np.ascontiguousarray(pong_play.frames[100:104])
    expected = fastpong.frame_preprocessing(frames)
    np.testing.assert_array_equal(expected, np.stack([ref_image(f) for f in frames]))
    for name, view in strided_views(frames):
        before = view.copy()
        np.testing.assert_array_equal(fastpong.frame_preprocessing(view), expected, err_msg=name)
        np.testing.assert_array_equal(fastpong.frame_preprocessing(view[1]), expected[1], name)
        np.testing.assert_array_equal(view, before, err_msg=name)


def test_preprocessing_never_writes_its_input():
    rng = np.random.default_rng(2)
    frames = palette_frames(rng, 3)
    before = frames.copy()
    fastpong.frame_preprocessing(frames)
    fastpong.frame_preprocessing(frames[0])
    np.testing.assert_array_equal(frames, before)
    frames.flags.writeable = False  # read-only input is accepted
    np.testing.assert_array_equal(fastpong.frame_preprocessing(frames[2]), ref_image(before[2]))
    # The reference works on a copy too (the tutorial's version writes into the caller's frame).
    reference.frame_preprocessing(before[0])
    np.testing.assert_array_equal(before, frames)


def test_preprocessing_with_threads_is_bitwise_the_same(pong_play, restore_threads):
    frames = pong_play.frames[:64]  # 64 * 6400 pixels: above the kernels' parallel threshold
    fastpong.set_num_threads(1)
    one = fastpong.frame_preprocessing(frames)
    fastpong.set_num_threads(2)
    two = fastpong.frame_preprocessing(frames)
    np.testing.assert_array_equal(one, two)


# --- FrameDifferencer ---------------------------------------------------------------------------


def test_differencer_matches_reference_on_real_play(pong_play, pong_inputs):
    differencer = fastpong.FrameDifferencer(1)
    nonzeros = []
    for t, frame in enumerate(pong_play.frames):
        if t in pong_play.starts:
            differencer.reset(0)
        rows = differencer.step(frame[None])
        assert len(rows) == 1
        check_rows_well_formed(rows)
        dense = rows.to_dense()
        assert dense.shape == (1, 6400) and dense.dtype == np.float32
        np.testing.assert_array_equal(dense[0], pong_inputs[t])
        if t in pong_play.starts:
            assert rows.nonzeros == 0, "an episode's first input is all zeros"
        else:
            nonzeros.append(rows.nonzeros)
    # Real play with a random agent: about 28 nonzero pixels per step on average (27.65 over the
    # 400 steps of PONG_SEED 0, from 0 to 66; two steps had none), i.e. under half a percent of
    # the 6400 inputs. test_differencer_same_frame_twice_is_all_zero covers the all-zero case
    # without depending on the emulator.
    mean = float(np.mean(nonzeros))
    assert 5 < mean < 100, mean
    assert max(nonzeros) < 6400 * 0.02


def test_differencer_first_frame_and_reset_give_empty_rows(pong_play):
    frames = pong_play.frames
    differencer = fastpong.FrameDifferencer(2)
    assert differencer.num_envs == 2
    first = differencer.step(frames[[10, 20]])
    assert len(first) == 2 and first.nonzeros == 0
    np.testing.assert_array_equal(first.offsets, [0, 0, 0])
    np.testing.assert_array_equal(first.to_dense(), np.zeros((2, 6400)))
    second = differencer.step(frames[[11, 21]])
    np.testing.assert_array_equal(second.to_dense()[0], ref_diff(frames[10], frames[11]))
    np.testing.assert_array_equal(second.to_dense()[1], ref_diff(frames[20], frames[21]))
    differencer.reset(1)  # env 1 starts over; env 0 continues
    third = differencer.step(frames[[12, 22]])
    np.testing.assert_array_equal(third.to_dense()[0], ref_diff(frames[11], frames[12]))
    np.testing.assert_array_equal(third.to_dense()[1], np.zeros(6400))
    assert third.offsets[2] == third.offsets[1] == third.nonzeros
    fourth = differencer.step(frames[[13, 23]])
    np.testing.assert_array_equal(fourth.to_dense()[1], ref_diff(frames[22], frames[23]))
    differencer.reset_all()
    assert differencer.step(frames[[14, 24]]).nonzeros == 0


def test_differencer_same_frame_twice_is_all_zero(pong_play):
    differencer = fastpong.FrameDifferencer(1)
    frame = pong_play.frames[30][None]
    differencer.step(frame)
    rows = differencer.step(frame)
    assert rows.nonzeros == 0 and len(rows) == 1
    np.testing.assert_array_equal(rows.to_dense(), np.zeros((1, 6400)))


@pytest.mark.parametrize("num_envs", [1, 3, 8])
def test_differencer_batch_of_envs_matches_per_env_reference(pong_play, num_envs):
    frames = pong_play.frames
    steps = 40
    # Env e plays the real sequence from its own offset; env 0 restarts halfway through.
    offsets = [17 * e for e in range(num_envs)]
    differencer = fastpong.FrameDifferencer(num_envs)
    previous = [None] * num_envs
    for t in range(steps):
        if t == steps // 2:
            differencer.reset(0)
            previous[0] = None
        batch = np.stack([frames[o + t] for o in offsets])
        rows = differencer.step(batch)
        check_rows_well_formed(rows)
        dense = rows.to_dense()
        for e in range(num_envs):
            np.testing.assert_array_equal(dense[e], ref_diff(previous[e], batch[e]))
            previous[e] = batch[e]


def test_differencer_strided_batch_and_input_untouched(pong_play):
    frames = np.ascontiguousarray(pong_play.frames[200:206])
    expected = []
    contiguous = fastpong.FrameDifferencer(2)
    for t in range(0, 6, 2):
        expected.append(contiguous.step(frames[t:t + 2]).to_dense())
    for name, view in strided_views(frames):
        before = view.copy()
        differencer = fastpong.FrameDifferencer(2)
        for k, t in enumerate(range(0, 6, 2)):
            rows = differencer.step(view[t:t + 2])
            np.testing.assert_array_equal(rows.to_dense(), expected[k], err_msg=name)
        np.testing.assert_array_equal(view, before, err_msg=name)


def test_differencer_with_threads_is_bitwise_the_same(pong_play, restore_threads):
    # 40 environments * 6400 pixels is above the parallel threshold.
    frames = pong_play.frames
    results = {}
    for threads in (1, 2):
        fastpong.set_num_threads(threads)
        differencer = fastpong.FrameDifferencer(40)
        rows = [differencer.step(frames[t:t + 40]) for t in range(3)]
        results[threads] = [(r.offsets, r.indices, r.values) for r in rows]
    for a, b in zip(results[1], results[2], strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)


# --- SparseFrames -------------------------------------------------------------------------------


def test_sparse_frames_round_trip():
    rng = np.random.default_rng(3)
    dense = rng.choice(np.array([-1.0, 0.0, 1.0]), size=(5, 37), p=[0.1, 0.8, 0.1])
    dense[2] = 0  # an empty row in the middle
    rows = fastpong.SparseFrames.from_dense(dense)
    assert len(rows) == 5 and rows.nonzeros == np.count_nonzero(dense)
    check_rows_well_formed(rows)
    np.testing.assert_array_equal(rows.to_dense(37), dense)
    np.testing.assert_array_equal(rows.to_dense(40)[:, :37], dense)
    np.testing.assert_array_equal(rows.to_dense(40)[:, 37:], 0)
    r, c = np.nonzero(dense)
    np.testing.assert_array_equal(rows.indices, c)
    np.testing.assert_array_equal(rows.values, dense[r, c])
    np.testing.assert_array_equal(rows.offsets, np.r_[0, np.cumsum(np.count_nonzero(dense, 1))])
    single = fastpong.SparseFrames.from_dense(dense[0])
    assert len(single) == 1
    np.testing.assert_array_equal(single.to_dense(37)[0], dense[0])
    # float32, integer and strided inputs give the same rows
    wide = np.zeros((5, 74), dtype=np.int8)
    wide[:, ::2] = dense
    for variant in (dense.astype(np.float32), dense.astype(np.int64), wide[:, ::2]):
        np.testing.assert_array_equal(fastpong.SparseFrames.from_dense(variant).to_dense(37), dense)
    empty = fastpong.SparseFrames.from_dense(np.zeros((0, 6400)))
    assert len(empty) == 0 and empty.nonzeros == 0 and empty.to_dense().shape == (0, 6400)
    assert "rows=5" in repr(rows)


# --- property tests -----------------------------------------------------------------------------

#: Frames are 100 KB each; hypothesis should not flag that as a problem.
BIG_DATA = [HealthCheck.too_slow, HealthCheck.data_too_large]
palette_values = st.sampled_from(PALETTE)
#: A frame of palette colors: the background everywhere (one drawn color, with some scattered
#: others) and an independently drawn 80x80 grid of the pixels preprocessing samples.
frames_strategy = st.builds(
    lambda base, sampled: _with_sampled(base, sampled),
    hnp.arrays(np.uint8, FRAME_SHAPE, elements=palette_values, fill=palette_values),
    hnp.arrays(np.uint8, (80, 80), elements=palette_values),
)


def _with_sampled(base: np.ndarray, sampled: np.ndarray) -> np.ndarray:
    frame = base.copy()
    frame[35:195:2, ::2, 0] = sampled
    return frame


@settings(max_examples=40, deadline=None, suppress_health_check=BIG_DATA)
@given(frame=frames_strategy)
def test_property_preprocessing_equals_reference(frame):
    before = frame.copy()
    out = fastpong.frame_preprocessing(frame)
    np.testing.assert_array_equal(out, ref_image(before))
    np.testing.assert_array_equal(frame, before)


@settings(max_examples=30, deadline=None, suppress_health_check=BIG_DATA)
@given(prev=frames_strategy, cur=frames_strategy)
def test_property_differencer_equals_reference(prev, cur):
    pair = np.stack([prev, cur])
    before = pair.copy()
    differencer = fastpong.FrameDifferencer(1)
    assert differencer.step(pair[:1]).nonzeros == 0
    rows = differencer.step(pair[1:])
    check_rows_well_formed(rows)
    np.testing.assert_array_equal(rows.to_dense()[0], ref_diff(prev, cur))
    np.testing.assert_array_equal(pair, before)


# --- every SIMD kernel --------------------------------------------------------------------------
# Preprocessing runs the best kernel the CPU has (AVX-512 VBMI, AVX2, or the portable loop); the
# tests above see only that one. These run each kernel this CPU can, so a machine with AVX-512
# checks the AVX2 and portable kernels too.

KERNELS = _core._preprocess_kernels()


@pytest.fixture(params=KERNELS)
def kernel(request):
    before = _core._preprocess_kernel()
    _core._use_preprocess_kernel(request.param)
    yield request.param
    _core._use_preprocess_kernel(before)


def test_kernels_listed_best_first():
    assert KERNELS[-1] == "scalar" and len(set(KERNELS)) == len(KERNELS)
    assert set(KERNELS) <= {"avx512vbmi", "avx2", "scalar"}
    assert _core._preprocess_kernel() == KERNELS[0]
    with pytest.raises(ValueError, match="kernel must be one of"):
        _core._use_preprocess_kernel("sse9")


def test_kernel_preprocessing_and_differencing(kernel, pong_play, pong_inputs):
    rng = np.random.default_rng(4)
    frames = np.concatenate([pong_play.frames[:60], palette_frames(rng, 4)])
    all_bytes = np.zeros(FRAME_SHAPE, dtype=np.uint8)
    all_bytes[35:195:2, ::2, 0].flat[:256] = np.arange(256, dtype=np.uint8)
    frames = np.concatenate([frames, all_bytes[None]])
    expected = np.stack([ref_image(f) for f in frames])
    np.testing.assert_array_equal(fastpong.frame_preprocessing(frames), expected)
    for t in range(len(frames)):
        np.testing.assert_array_equal(fastpong.frame_preprocessing(frames[t]), expected[t])
    differencer = fastpong.FrameDifferencer(1)
    for t, frame in enumerate(pong_play.frames[:60]):
        if t in pong_play.starts:
            differencer.reset(0)
        np.testing.assert_array_equal(differencer.step(frame[None]).to_dense()[0], pong_inputs[t])
    pair = fastpong.FrameDifferencer(1)
    pair.step(frames[-2][None])
    np.testing.assert_array_equal(pair.step(frames[-1][None]).to_dense()[0],
                                  ref_diff(frames[-2], frames[-1]))


#: Any byte value among the sampled pixels, not only Pong's colors.
any_byte_frames = st.builds(
    lambda base, sampled: _with_sampled(base, sampled),
    hnp.arrays(np.uint8, FRAME_SHAPE, elements=palette_values, fill=palette_values),
    hnp.arrays(np.uint8, (80, 80), elements=st.one_of(palette_values, st.integers(0, 255))),
)


@settings(max_examples=20, deadline=None,
          suppress_health_check=[*BIG_DATA, HealthCheck.function_scoped_fixture])
@given(frame=any_byte_frames)
def test_property_kernel_equals_reference(kernel, frame):
    np.testing.assert_array_equal(fastpong.frame_preprocessing(frame), ref_image(frame))
