"""Tests for fastpong.video: frame composition and atomic MP4/GIF writing."""

import gc
import os
import warnings

import imageio.v3 as iio
import numpy as np
import pytest

from fastpong.video import (
    FRAME_HEIGHT,
    FRAME_WIDTH,
    GAME_PANEL_ORIGIN,
    GAME_PANEL_SCALE,
    NETWORK_INPUT_COLORS,
    NETWORK_PANEL_ORIGIN,
    NETWORK_PANEL_SCALE,
    FRAME_AND_CHANGE_INPUT,
    LAB_INPUT,
    TUTORIAL_INPUT,
    VideoWriter,
    check_video_path,
    compose_frame,
)

N_FRAMES = 12


def random_inputs(rng):
    game = rng.integers(0, 256, size=(210, 160, 3), dtype=np.uint8)
    net = rng.integers(-1, 2, size=(80, 80)).astype(np.float32)
    return game, net


def write_clip(path, n=N_FRAMES, fps=30, seed=0):
    rng = np.random.default_rng(seed)
    with VideoWriter(path, fps=fps) as video:
        for i in range(n):
            game, net = random_inputs(rng)
            video.add_frame(game, net, (i // 4, i // 3))
    return video


def read_video(path):
    """All frames of a video as one (n, height, width, 3) array."""
    # imageio-ffmpeg's reader leaves its pipes to the garbage collector, which
    # emits ResourceWarnings; collect them here so they cannot fail a run
    # made with -W error.  They concern the reader, not the writer under test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        frames = iio.imread(path, index=None)
        gc.collect()
    return frames


def net_pixel(row, col):
    """Centre of the upscaled cell (row, col) of the network-input panel."""
    s = NETWORK_PANEL_SCALE
    return NETWORK_PANEL_ORIGIN[0] + row * s + s // 2, NETWORK_PANEL_ORIGIN[1] + col * s + s // 2


# ---------------------------------------------------------------- compose_frame


def test_compose_frame_shape_and_dtype():
    rng = np.random.default_rng(1)
    game, net = random_inputs(rng)
    frame = compose_frame(game, net, (3, 5))
    assert frame.shape == (FRAME_HEIGHT, FRAME_WIDTH, 3) == (448, 752, 3)
    assert frame.dtype == np.uint8
    assert FRAME_HEIGHT % 16 == 0 and FRAME_WIDTH % 16 == 0
    assert frame.flags.writeable  # a fresh array, not a cached one


def test_compose_frame_network_input_colours():
    net = np.zeros((80, 80), dtype=np.float64)
    net[10, 20] = -1.0
    net[10, 21] = 1.0
    net[79, 79] = 1.0
    net[0, 0] = -1.0
    game = np.zeros((210, 160, 3), dtype=np.uint8)
    frame = compose_frame(game, net, (0, 0))

    colours = {v: tuple(int(c) for c in rgb) for v, rgb in NETWORK_INPUT_COLORS.items()}
    assert len(set(colours.values())) == 4  # -1, 0, +1, and -2 of the frame-and-change input
    # The colours are far apart, not just different.
    for a in colours.values():
        for b in colours.values():
            if a != b:
                assert sum(abs(x - y) for x, y in zip(a, b)) > 150

    assert tuple(frame[net_pixel(10, 20)]) == colours[-1]
    assert tuple(frame[net_pixel(10, 21)]) == colours[1]
    assert tuple(frame[net_pixel(0, 0)]) == colours[-1]
    assert tuple(frame[net_pixel(79, 79)]) == colours[1]
    assert tuple(frame[net_pixel(40, 40)]) == colours[0]
    # Every pixel of an upscaled cell has the cell's colour.
    s = NETWORK_PANEL_SCALE
    r0, c0 = NETWORK_PANEL_ORIGIN[0] + 10 * s, NETWORK_PANEL_ORIGIN[1] + 20 * s
    assert (frame[r0 : r0 + s, c0 : c0 + s] == colours[-1]).all()


def test_the_lab_s_input_has_its_own_title_and_legend():
    """The MIT lab's 40x40 change (previous minus current) is not the tutorial's 80x80 difference
    (current minus previous): the panel says which, and its legend reads the sign the right way."""
    game, net = random_inputs(np.random.default_rng(4))
    tutorial = compose_frame(game, net, (0, 0))
    lab = compose_frame(game, net, (0, 0), LAB_INPUT)
    assert LAB_INPUT.title != TUTORIAL_INPUT.title and "40x40" in LAB_INPUT.title
    assert (LAB_INPUT.plus, LAB_INPUT.minus) == (TUTORIAL_INPUT.minus.replace("-1", "+1"),
                                                 TUTORIAL_INPUT.plus.replace("+1", "-1"))
    title = (slice(0, NETWORK_PANEL_ORIGIN[0]), slice(NETWORK_PANEL_ORIGIN[1], None))
    legend = slice(NETWORK_PANEL_ORIGIN[0] + 80 * NETWORK_PANEL_SCALE, None)
    assert (tutorial[title] != lab[title]).any() and (tutorial[legend] != lab[legend]).any()
    # The game, the score and the network's pixels are drawn alike.
    panels = slice(NETWORK_PANEL_ORIGIN[0], NETWORK_PANEL_ORIGIN[0] + 80 * NETWORK_PANEL_SCALE)
    np.testing.assert_array_equal(tutorial[panels], lab[panels])
    with pytest.raises(ValueError, match="panel must be an InputPanel"):
        compose_frame(game, net, (0, 0), "lab")


def test_the_frame_and_change_input_shows_its_fourth_value():
    """The actor-critic's frame-and-change input has -2 (an object that arrived) beside -1 (one
    that stayed): its own colour, and a legend that names all four values."""
    game, _ = random_inputs(np.random.default_rng(5))
    net = np.zeros((80, 80), dtype=np.float32)
    net[0, 0], net[0, 1], net[0, 2] = 1.0, -1.0, -2.0
    frame = compose_frame(game, net, (0, 0), FRAME_AND_CHANGE_INPUT)
    for col, value in ((0, 1), (1, -1), (2, -2), (3, 0)):
        assert tuple(frame[net_pixel(0, col)]) == NETWORK_INPUT_COLORS[value], value
    # The legend draws a swatch of each of the four colours; the lab's change has three.
    legend = slice(NETWORK_PANEL_ORIGIN[0] + 80 * NETWORK_PANEL_SCALE, None)
    lab = compose_frame(game, net, (0, 0), LAB_INPUT)
    magenta = np.array(NETWORK_INPUT_COLORS[-2], dtype=np.uint8)
    assert (frame[legend] == magenta).all(axis=-1).any()
    assert not (lab[legend] == magenta).all(axis=-1).any()


def test_compose_frame_flat_network_input_and_near_values():
    game = np.zeros((210, 160, 3), dtype=np.uint8)
    net = np.zeros(6400, dtype=np.float32)
    net[0] = 0.9999999  # float noise still maps to +1
    net[1] = -1.0000001
    frame = compose_frame(game, net, (0, 0))
    assert tuple(frame[net_pixel(0, 0)]) == NETWORK_INPUT_COLORS[1]
    assert tuple(frame[net_pixel(0, 1)]) == NETWORK_INPUT_COLORS[-1]


def test_compose_frame_game_panel_is_nearest_neighbour_upscale():
    rng = np.random.default_rng(2)
    game, net = random_inputs(rng)
    frame = compose_frame(game, net, (0, 0))
    s = GAME_PANEL_SCALE
    r, c = GAME_PANEL_ORIGIN
    panel = frame[r : r + 210 * s, c : c + 160 * s]
    np.testing.assert_array_equal(panel[::s, ::s], game)
    np.testing.assert_array_equal(panel[s - 1 :: s, s - 1 :: s], game)


def test_compose_frame_draws_the_score():
    rng = np.random.default_rng(3)
    game, net = random_inputs(rng)
    header = slice(0, GAME_PANEL_ORIGIN[0])
    a = compose_frame(game, net, (0, 0))[header]
    b = compose_frame(game, net, (21, 7))[header]
    assert (a != b).any()
    # The score only changes the header; the panels are identical.
    np.testing.assert_array_equal(
        compose_frame(game, net, (0, 0))[GAME_PANEL_ORIGIN[0] :],
        compose_frame(game, net, (21, 7))[GAME_PANEL_ORIGIN[0] :],
    )


@pytest.mark.parametrize(
    "game, net, score",
    [
        (np.zeros((210, 160), np.uint8), np.zeros((80, 80)), (0, 0)),
        (np.zeros((210, 160, 3), np.float32), np.zeros((80, 80)), (0, 0)),
        (np.zeros((210, 160, 3), np.uint8), np.zeros((80, 79)), (0, 0)),
        (np.zeros((210, 160, 3), np.uint8), np.zeros((80, 80)), (1,)),
        (np.zeros((210, 160, 3), np.uint8), np.zeros((80, 80)), (-1, 0)),
    ],
)
def test_compose_frame_rejects_bad_input(game, net, score):
    with pytest.raises(ValueError):
        compose_frame(game, net, score)


# ---------------------------------------------------------------- check_video_path


def test_check_video_path_accepts_mp4_and_gif(tmp_path):
    assert check_video_path(tmp_path / "a.mp4") == tmp_path / "a.mp4"
    assert check_video_path(str(tmp_path / "b.GIF")) == tmp_path / "b.GIF"


def test_check_video_path_bad_extension(tmp_path):
    with pytest.raises(ValueError, match=r"unsupported video extension '\.avi' for '.*x\.avi': expected \.mp4 or \.gif"):
        check_video_path(tmp_path / "x.avi")
    with pytest.raises(ValueError, match="unsupported video extension"):
        check_video_path(tmp_path / "noextension")


def test_check_video_path_missing_or_bad_directory(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        check_video_path(tmp_path / "missing" / "x.mp4")
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.raises(ValueError, match="not a directory"):
        check_video_path(not_a_dir / "x.gif")
    (tmp_path / "d.mp4").mkdir()
    with pytest.raises(ValueError, match="existing directory"):
        check_video_path(tmp_path / "d.mp4")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write anywhere")
def test_check_video_path_unwritable_directory(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ValueError, match="not writable"):
            check_video_path(locked / "x.mp4")
        with pytest.raises(ValueError, match="not writable"):
            VideoWriter(locked / "x.gif")
    finally:
        locked.chmod(0o700)


def test_check_video_path_unwritable_directory_reported(tmp_path, monkeypatch):
    # Works as root too, where chmod cannot make a directory unwritable.
    monkeypatch.setattr(os, "access", lambda path, mode, **kwargs: False)
    with pytest.raises(ValueError, match=r"directory '.*' is not writable"):
        check_video_path(tmp_path / "x.mp4")
    with pytest.raises(ValueError, match="not writable"):
        VideoWriter(tmp_path / "x.gif")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_video_writer_checks_path_and_fps(tmp_path):
    with pytest.raises(ValueError, match="unsupported video extension"):
        VideoWriter(tmp_path / "x.avi")
    with pytest.raises(ValueError, match="does not exist"):
        VideoWriter(tmp_path / "missing" / "x.mp4")
    with pytest.raises(ValueError, match="fps"):
        VideoWriter(tmp_path / "x.mp4", fps=0)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- writing


@pytest.mark.parametrize("ext", [".mp4", ".gif"])
def test_write_and_read_back(tmp_path, ext):
    path = tmp_path / f"clip{ext}"
    video = write_clip(path, fps=30)
    assert video.frames_written == N_FRAMES
    assert video.closed
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left

    frames = read_video(path)
    assert frames.shape == (N_FRAMES, FRAME_HEIGHT, FRAME_WIDTH, 3)
    assert frames.dtype == np.uint8

    # The content survives encoding: each cell of the network panel in the
    # first frame is still nearest to the colour of the value that was drawn.
    rng = np.random.default_rng(0)
    _, net = random_inputs(rng)
    centres = frames[0][net_pixel(np.arange(80)[:, None], np.arange(80)[None, :])].astype(np.float64)
    values = np.array([-1, 0, 1])
    palette = np.array([NETWORK_INPUT_COLORS[v] for v in values], dtype=np.float64)
    nearest = values[np.argmin(((centres[:, :, None, :] - palette) ** 2).sum(-1), axis=-1)]
    agreement = (nearest == net).mean()
    assert agreement == 1.0 if ext == ".gif" else agreement > 0.97


def test_gif_loops_and_has_frame_delays(tmp_path):
    from PIL import Image

    path = tmp_path / "clip.gif"
    write_clip(path, n=6, fps=25)
    with Image.open(path) as im:
        assert im.info.get("loop") == 0
        assert im.n_frames == 6
        durations = []
        for i in range(im.n_frames):
            im.seek(i)
            durations.append(im.info["duration"])
    assert durations == [40] * 6


def test_exception_inside_with_leaves_nothing(tmp_path):
    for ext in (".mp4", ".gif"):
        path = tmp_path / f"clip{ext}"
        with pytest.raises(KeyboardInterrupt):
            with VideoWriter(path) as video:
                game, net = random_inputs(np.random.default_rng(4))
                video.add_frame(game, net, (0, 0))
                video.add_frame(game, net, (0, 1))
                raise KeyboardInterrupt
        assert video.closed
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("ext", [".mp4", ".gif"])
def test_existing_target_untouched_on_error_and_replaced_on_success(tmp_path, ext):
    path = tmp_path / f"clip{ext}"
    path.write_bytes(b"previous video")
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(path) as video:
            game, net = random_inputs(np.random.default_rng(5))
            video.add_frame(game, net, (0, 0))
            raise RuntimeError("boom")
    assert path.read_bytes() == b"previous video"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]

    write_clip(path, n=3)
    assert path.read_bytes() != b"previous video"
    assert read_video(path).shape[0] == 3
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_bad_frame_inside_with_aborts(tmp_path):
    path = tmp_path / "clip.gif"
    with pytest.raises(ValueError, match="game_frame"):
        with VideoWriter(path) as video:
            video.add_frame(np.zeros((10, 10, 3), np.uint8), np.zeros((80, 80)), (0, 0))
    assert list(tmp_path.iterdir()) == []


def test_temp_file_is_a_hidden_sibling_with_the_same_extension(tmp_path):
    path = tmp_path / "clip.gif"
    with VideoWriter(path) as video:
        game, net = random_inputs(np.random.default_rng(6))
        video.add_frame(game, net, (0, 0))
        (tmp,) = list(tmp_path.iterdir())
        assert tmp.name.startswith(".") and tmp.suffix == ".gif"
        assert not path.exists()
    assert path.exists() and not tmp.exists()


def test_no_frames_is_an_error_and_writes_nothing(tmp_path):
    path = tmp_path / "clip.mp4"
    with pytest.raises(RuntimeError, match="no frames"):
        with VideoWriter(path):
            pass
    assert list(tmp_path.iterdir()) == []


def test_add_frame_after_close_raises(tmp_path):
    video = write_clip(tmp_path / "clip.gif", n=2)
    game, net = random_inputs(np.random.default_rng(7))
    with pytest.raises(RuntimeError, match="closed"):
        video.add_frame(game, net, (0, 0))
    video.close()  # idempotent
