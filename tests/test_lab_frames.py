"""The MIT lab's 40x40 input: fastpong.lab_preprocess / lab_frame_change against reference.cnn.

Like the tutorial's preprocessing, these involve only comparisons, ORs and a subtraction of 0/1
values, so the fast path must agree with the reference EXACTLY (tolerance 0): on real Pong frames,
on random frames of Pong's colors, at the image borders (where the dilation meets the outside),
single and batched, on any thread count.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastpong
from fastpong.reference import cnn

FRAME_SHAPE = (210, 160, 3)
#: Red-channel values of Pong: background shades 144 and 109, black, paddles, ball, and
#: neighbours of the background shades that are objects.
PALETTE = (0, 144, 109, 92, 213, 147, 236, 1, 108, 110, 143, 145, 255)


def ref_changes(prev_frames, frames) -> np.ndarray:
    return np.stack([cnn.frame_change(p, f) for p, f in zip(prev_frames, frames)])


def background_frame(shade=144) -> np.ndarray:
    return np.full(FRAME_SHAPE, shade, dtype=np.uint8)


def test_preprocess_matches_reference_on_real_pong_frames(pong_play):
    frames = pong_play.frames
    batch = fastpong.lab_preprocess(frames)
    assert batch.dtype == np.float32 and batch.shape == (len(frames), 40, 40)
    expected = np.stack([cnn.preprocess(f) for f in frames])
    np.testing.assert_array_equal(batch, expected)
    for t in (0, 1, len(frames) // 2, len(frames) - 1):
        single = fastpong.lab_preprocess(frames[t])
        assert single.shape == (40, 40)
        np.testing.assert_array_equal(single, expected[t])
    assert expected.any(), "real frames hold paddles and ball"


def test_frame_change_matches_reference_on_real_pong_frames(pong_play):
    frames = pong_play.frames
    changes = fastpong.lab_frame_change(frames[:-1], frames[1:])
    assert changes.dtype == np.float32 and changes.shape == (len(frames) - 1, 40, 40)
    np.testing.assert_array_equal(changes, ref_changes(frames[:-1], frames[1:]))
    assert set(np.unique(changes)) == {-1.0, 0.0, 1.0}
    for t in (0, 5, len(frames) - 2):
        np.testing.assert_array_equal(fastpong.lab_frame_change(frames[t], frames[t + 1]),
                                      changes[t])


@pytest.mark.parametrize("n", [1, 3, 16, 17])
def test_frame_change_random_palette_frames(n):
    rng = np.random.default_rng(n)
    # mostly background, so that dilation and differences are neither all-on nor all-off
    p = np.full(len(PALETTE), 0.1 / (len(PALETTE) - 2))
    p[1], p[2] = 0.45, 0.45
    prev = rng.choice(np.asarray(PALETTE, dtype=np.uint8), size=(n, *FRAME_SHAPE), p=p)
    frames = rng.choice(np.asarray(PALETTE, dtype=np.uint8), size=(n, *FRAME_SHAPE), p=p)
    np.testing.assert_array_equal(fastpong.lab_frame_change(prev, frames), ref_changes(prev, frames))
    np.testing.assert_array_equal(fastpong.lab_preprocess(frames),
                                  np.stack([cnn.preprocess(f) for f in frames]))


def test_sign_is_prev_minus_current():
    """An object present only in the previous frame gives +1 (the lab's sign, not the tutorial's)."""
    prev, frame = background_frame(), background_frame()
    prev[35 + 40:35 + 44, 60:64, 0] = 236
    change = fastpong.lab_frame_change(prev, frame)
    assert change.max() == 1.0 and change.min() == 0.0
    np.testing.assert_array_equal(change, cnn.frame_change(prev, frame))
    np.testing.assert_array_equal(fastpong.lab_frame_change(frame, prev), -change)


@pytest.mark.parametrize("row, col", [(0, 0), (1, 1), (0, 79), (79, 0), (79, 79), (78, 78),
                                      (40, 1), (1, 40), (2, 2), (39, 39)])
def test_dilation_at_the_borders(row, col):
    """One object pixel of the 80x80 image at and near the borders: the 3x3 dilation must treat
    the outside as 0 and keep every second row and column starting at 0."""
    frame = background_frame(109)
    frame[35 + 2 * row, 2 * col, 0] = 213
    image = fastpong.lab_preprocess(frame)
    expected = cnn.preprocess(frame)
    np.testing.assert_array_equal(image, expected)
    # by hand: lab pixel (R, C) is on when |2R - row| <= 1 and |2C - col| <= 1
    rows = [r for r in range(40) if abs(2 * r - row) <= 1]
    cols = [c for c in range(40) if abs(2 * c - col) <= 1]
    assert sorted(zip(*np.nonzero(image))) == sorted((r, c) for r in rows for c in cols)


def test_all_background_and_all_object_frames():
    assert not fastpong.lab_preprocess(background_frame(144)).any()
    assert not fastpong.lab_preprocess(background_frame(109)).any()
    assert fastpong.lab_preprocess(background_frame(236)).all()
    change = fastpong.lab_frame_change(background_frame(236), background_frame(144))
    np.testing.assert_array_equal(change, np.ones((40, 40), np.float32))


def test_strided_and_readonly_inputs_are_not_written(pong_play):
    frames = pong_play.frames[:9]  # read-only
    strided = frames[::2]  # not contiguous in the batch axis
    np.testing.assert_array_equal(fastpong.lab_preprocess(strided),
                                  np.stack([cnn.preprocess(f) for f in strided]))
    flipped = frames[:, :, ::-1]  # a strided view inside each frame
    np.testing.assert_array_equal(fastpong.lab_frame_change(flipped[:-1], flipped[1:]),
                                  ref_changes(flipped[:-1], flipped[1:]))


def test_results_do_not_depend_on_thread_count(pong_play, restore_threads):
    frames = pong_play.frames[:65]
    fastpong.set_num_threads(1)
    one = fastpong.lab_frame_change(frames[:-1], frames[1:])
    fastpong.set_num_threads(2)
    np.testing.assert_array_equal(fastpong.lab_frame_change(frames[:-1], frames[1:]), one)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((210, 160, 3), np.float32), "uint8"),
    (np.zeros((210, 160), np.uint8), r"\(210, 160, 3\)"),
    (np.zeros((2, 84, 84, 3), np.uint8), r"\(N, 210, 160, 3\)"),
    ("frame", "uint8"),
])
def test_bad_frames(bad, message):
    with pytest.raises(ValueError, match=message):
        fastpong.lab_preprocess(bad)
    with pytest.raises(ValueError, match=message):
        fastpong.lab_frame_change(bad, bad)


def test_mismatched_frame_pairs():
    one = np.zeros((1, *FRAME_SHAPE), np.uint8)
    two = np.zeros((2, *FRAME_SHAPE), np.uint8)
    with pytest.raises(ValueError, match="same shape"):
        fastpong.lab_frame_change(one, two)
    with pytest.raises(ValueError, match="same shape"):
        fastpong.lab_frame_change(one[0], one)


def test_lab_frame_differencer_keeps_each_envs_previous_frame(pong_play):
    frames = np.stack([pong_play.frames[:6], pong_play.frames[100:106]], axis=1)  # (6, 2, ...)
    differencer = fastpong.LabFrameDifferencer(2)
    assert not differencer.step(frames[0]).any(), "an episode's first change is zero"
    for t in range(1, 6):
        np.testing.assert_array_equal(differencer.step(frames[t]),
                                      ref_changes(frames[t - 1], frames[t]))
    differencer.reset(1)  # env 1 starts a new episode: zero for it, env 0 carries on
    change = differencer.step(frames[0])
    np.testing.assert_array_equal(change[0], cnn.frame_change(frames[5][0], frames[0][0]))
    assert not change[1].any()


def test_frame_and_change_differencer_matches_reference_on_real_pong_frames(pong_play):
    """The actor-critic's --observation frame-and-change: the change minus the current image,
    exactly as reference.ppo.frame_and_change, with a game's first step minus its own image."""
    from fastpong.reference import ppo

    frames = np.stack([pong_play.frames[:6], pong_play.frames[100:106]], axis=1)
    differencer = fastpong.LabFrameDifferencer(2, "frame-and-change")
    first = differencer.step(frames[0])
    np.testing.assert_array_equal(first, -np.stack([cnn.preprocess(f) for f in frames[0]]))
    for t in range(1, 6):
        want = np.stack([ppo.frame_and_change(p, f) for p, f in zip(frames[t - 1], frames[t])])
        got = differencer.step(frames[t])
        np.testing.assert_array_equal(got, want)
        assert got.dtype == np.float32 and set(np.unique(got)) <= {-2.0, -1.0, 0.0, 1.0}
    # Pong's paddles stand on every frame: the input is never empty, unlike the change.
    assert (got != 0).sum(axis=(1, 2)).min() > (ref_changes(frames[4], frames[5]) != 0).sum(axis=(1, 2)).min()
    differencer.reset(0)
    np.testing.assert_array_equal(differencer.step(frames[0])[0], -cnn.preprocess(frames[0][0]))


def test_frame_and_change_gives_each_pixel_pair_its_own_value():
    from fastpong.reference import ppo

    previous, current = background_frame(), background_frame()
    # Objects (white) in the tutorial's crop, rows 35..194, far enough apart that their 40x40
    # pixels do not touch: one that left, one that stayed, one that arrived.
    previous[60:64, 20:24] = 236
    previous[100:104, 60:64] = current[100:104, 60:64] = 236
    current[140:144, 100:104] = 236
    x = ppo.frame_and_change(previous, current)
    before, after = cnn.preprocess(previous), cnn.preprocess(current)
    # Each set is non-empty, or the comparison with {value} fails.
    assert set(np.unique(x[(before == 1) & (after == 0)])) == {1.0}
    assert set(np.unique(x[(before == 1) & (after == 1)])) == {-1.0}
    assert set(np.unique(x[(before == 0) & (after == 1)])) == {-2.0}
    assert set(np.unique(x[(before == 0) & (after == 0)])) == {0.0}
    for kind, want in (("change", cnn.frame_change(previous, current)), ("frame-and-change", x)):
        np.testing.assert_array_equal(ppo.observation(kind, previous, current), want)
    with pytest.raises(ValueError, match="observation must be one of change, frame-and-change, got 'frames'"):
        ppo.observation("frames", previous, current)
    with pytest.raises(ValueError, match="observation must be one of"):
        fastpong.LabFrameDifferencer(2, "frames")
