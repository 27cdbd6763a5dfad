"""Record the agent playing Pong as an MP4 or GIF.

Every video frame puts two views side by side:

* left, the Atari screen as a person sees it (210x160 RGB, upscaled 2x with
  nearest-neighbour sampling to 420x320);
* right, what the policy network actually receives, upscaled to 400x400, with -1, 0 and +1
  drawn in three distinct colours: the tutorial's 80x80 frame difference (5x), or the MIT lab's
  40x40 frame change (10x), whose sign runs the other way, or the actor-critic's 40x40 frame and
  change, with a fourth colour for -2; the panel's title and legend (``InputPanel``:
  ``TUTORIAL_INPUT``, ``LAB_INPUT``, ``FRAME_AND_CHANGE_INPUT``) say which.

A header strip above the panels carries the labels and the running score, and a
legend strip under the network panel explains its colours.  The composed frame
is 448x752 pixels (height x width); both are multiples of 16, so the H.264
encoder needs no resizing.

This module only depends on numpy, Pillow, imageio (with imageio-ffmpeg for MP4)
and the standard library, so it can be imported before the compiled core of
``fastpong`` has been built.

Typical use::

    path = check_video_path("runs/pong/episode.mp4")   # fail fast, before playing
    with VideoWriter(path, fps=30) as video:
        for ...:                                        # one agent step
            video.add_frame(observation, network_input, (points_won, points_lost))

The target file only appears once the ``with`` block ends without an exception;
until then frames stream into a hidden temporary file next to it.
"""

from __future__ import annotations

import functools
import io
import os
import struct
import uuid
from pathlib import Path
from typing import Any, NamedTuple, Optional, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "FRAME_HEIGHT",
    "FRAME_WIDTH",
    "GAME_PANEL_ORIGIN",
    "GAME_PANEL_SCALE",
    "NETWORK_PANEL_ORIGIN",
    "NETWORK_PANEL_SCALE",
    "NETWORK_INPUT_COLORS",
    "SUPPORTED_EXTENSIONS",
    "check_video_path",
    "compose_frame",
    "VideoWriter",
]

PathLike = Union[str, "os.PathLike[str]"]

SUPPORTED_EXTENSIONS = (".mp4", ".gif")

# --------------------------------------------------------------------------
# Layout.  Everything is in pixels, origins are (row, column) of the top-left
# corner of a panel inside the composed frame.
#
#   +--------------------------------------------------------------+  0
#   | game            agent 3 : 5 opponent | network input ...     |  header
#   +--------------------------------------+-----------------------+  28
#   |                                      |                       |
#   |   Atari screen, 2x  (420 x 320)      |  frame difference, 5x |
#   |                                      |  (400 x 400)          |
#   |                                      +-----------------------+  428
#   |                                      |  colour legend        |
#   +--------------------------------------+-----------------------+  448
#   0  8                                  328 344                 744 752

GAME_SHAPE = (210, 160, 3)
NETWORK_INPUT_SHAPE = (80, 80)

GAME_PANEL_SCALE = 2
NETWORK_PANEL_SCALE = 5
_MARGIN = 8
_GAP = 16
_HEADER = 28

GAME_PANEL_ORIGIN = (_HEADER, _MARGIN)
NETWORK_PANEL_ORIGIN = (_HEADER, _MARGIN + GAME_SHAPE[1] * GAME_PANEL_SCALE + _GAP)
FRAME_HEIGHT = _HEADER + GAME_SHAPE[0] * GAME_PANEL_SCALE  # 448
FRAME_WIDTH = NETWORK_PANEL_ORIGIN[1] + NETWORK_INPUT_SHAPE[1] * NETWORK_PANEL_SCALE + _MARGIN  # 752

assert FRAME_HEIGHT % 16 == 0 and FRAME_WIDTH % 16 == 0

# Colours.  The network-input colours differ strongly in hue and in
# brightness, so they stay apart after yuv420p chroma subsampling and for
# colour-blind viewers.
_BACKGROUND = (18, 18, 22)
_LABEL = (200, 200, 205)
_AGENT = (92, 186, 92)  # right paddle in Atari Pong
_OPPONENT = (213, 130, 74)  # left paddle in Atari Pong
NETWORK_INPUT_COLORS = {
    -1: (30, 144, 255),  # blue
    0: (52, 52, 60),  # dark slate: no change
    1: (255, 214, 10),  # amber
    -2: (230, 60, 170),  # magenta: only the actor-critic's frame-and-change input has it
}


class InputPanel(NamedTuple):
    """The network panel's title, and what its +1 and -1 pixels mean (the legend under it);
    an input with a fourth value, -2, names it too, and what 0 means where it is not a change."""

    title: str
    plus: str
    minus: str
    minus_two: Optional[str] = None
    zero: str = "0 unchanged"


#: The tutorial's input: this frame's 80x80 image minus the previous frame's.
TUTORIAL_INPUT = InputPanel("network input (80x80 frame difference)", "+1 now", "-1 previous frame")
#: The MIT lab's CNN input: the previous frame's 40x40 image minus this frame's (the lab's sign),
#: each of its pixels drawn as 2x2 of the panel's 80x80.
LAB_INPUT = InputPanel("network input (40x40 frame change)", "+1 previous frame", "-1 now")
#: The actor-critic's ``--observation frame-and-change``: the lab's change minus this frame's image.
FRAME_AND_CHANGE_INPUT = InputPanel("network input (40x40 frame and change)", "+1 left", "-1 still",
                                    "-2 arrived", "0 empty")
_NET_LUT = np.array(
    [NETWORK_INPUT_COLORS[-1], NETWORK_INPUT_COLORS[0], NETWORK_INPUT_COLORS[1], NETWORK_INPUT_COLORS[-2]],
    dtype=np.uint8,
)


@functools.lru_cache(maxsize=None)
def _font(size: int) -> Any:
    """Pillow's bundled font at ``size`` pixels, or its fixed bitmap font on old Pillow."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: no size argument
        return ImageFont.load_default()


def _text_width(draw: ImageDraw.ImageDraw, text: str, font: Any) -> int:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    return int(right - left)


@functools.lru_cache(maxsize=4)
def _base_canvas(panel: InputPanel) -> np.ndarray:
    """The parts of every frame that never change: background, labels, legend."""
    img = Image.new("RGB", (FRAME_WIDTH, FRAME_HEIGHT), _BACKGROUND)
    draw = ImageDraw.Draw(img)
    font = _font(14)
    small = _font(12)
    text_y = 6

    draw.text((GAME_PANEL_ORIGIN[1], text_y), "game", fill=_LABEL, font=font)
    net_x = NETWORK_PANEL_ORIGIN[1]
    draw.text((net_x, text_y), panel.title, fill=_LABEL, font=font)

    # Legend under the network panel: a swatch and a caption per value.
    legend_top = NETWORK_PANEL_ORIGIN[0] + NETWORK_INPUT_SHAPE[0] * NETWORK_PANEL_SCALE
    swatch = 10
    y = legend_top + (FRAME_HEIGHT - legend_top - swatch) // 2
    x = net_x
    entries = [(1, panel.plus), (-1, panel.minus), (-2, panel.minus_two), (0, panel.zero)]
    for value, caption in [(value, caption) for value, caption in entries if caption is not None]:
        draw.rectangle([x, y, x + swatch - 1, y + swatch - 1], fill=NETWORK_INPUT_COLORS[value])
        x += swatch + 5
        draw.text((x, y - 2), caption, fill=_LABEL, font=small)
        x += _text_width(draw, caption, small) + 18

    canvas = np.asarray(img, dtype=np.uint8).copy()
    canvas.setflags(write=False)
    return canvas


@functools.lru_cache(maxsize=64)
def _score_strip(won: int, lost: int) -> np.ndarray:
    """The header strip above the game panel with the score written in it."""
    game_left = GAME_PANEL_ORIGIN[1]
    game_right = game_left + GAME_SHAPE[1] * GAME_PANEL_SCALE
    strip = Image.fromarray(np.ascontiguousarray(_base_canvas(TUTORIAL_INPUT)[:_HEADER, :game_right]))
    draw = ImageDraw.Draw(strip)
    font = _font(14)
    # Right-aligned over the game: "agent 3 : 5 opponent", each side in its paddle colour.
    parts = ((f"agent {won}", _AGENT), ("  :  ", _LABEL), (f"{lost} opponent", _OPPONENT))
    x = game_right - sum(_text_width(draw, text, font) for text, _ in parts)
    for text, colour in parts:
        draw.text((x, 6), text, fill=colour, font=font)
        x += _text_width(draw, text, font)
    out = np.asarray(strip, dtype=np.uint8).copy()
    out.setflags(write=False)
    return out


def _validate_score(score: Any) -> Tuple[int, int]:
    try:
        won, lost = score
        won_i, lost_i = int(won), int(lost)
    except (TypeError, ValueError):
        raise ValueError(f"score must be a (points_won, points_lost) pair, got {score!r}") from None
    if won_i != won or lost_i != lost or won_i < 0 or lost_i < 0:
        raise ValueError(f"score must be two non-negative integers, got {score!r}")
    return won_i, lost_i


def compose_frame(game_frame: np.ndarray, network_input: np.ndarray, score: Tuple[int, int],
                  panel: InputPanel = TUTORIAL_INPUT) -> np.ndarray:
    """Build one video frame: the game, the network's input, labels and the score.

    Parameters
    ----------
    game_frame:
        The (210, 160, 3) uint8 RGB Atari screen.
    network_input:
        The (80, 80) frame difference fed to the policy (a flat array of 6400
        values is accepted too).  Values are expected in {-1, 0, +1} (and -2 for
        the frame-and-change input); anything above 0.5 is drawn as +1, below -1.5
        as -2, below -0.5 as -1, the rest as 0.
    score:
        ``(points_won, points_lost)`` from the agent's point of view (the agent
        is the green right paddle).
    panel:
        The network panel's title and legend: :data:`TUTORIAL_INPUT` (the default),
        :data:`LAB_INPUT` for the MIT lab's 40x40 frame change, whose sign is the other way, or
        :data:`FRAME_AND_CHANGE_INPUT` for the actor-critic's frame and change.

    Returns
    -------
    numpy.ndarray
        A new (FRAME_HEIGHT, FRAME_WIDTH, 3) = (448, 752, 3) uint8 RGB array.
    """
    game = np.asarray(game_frame)
    if game.shape != GAME_SHAPE:
        raise ValueError(f"game_frame must have shape {GAME_SHAPE}, got {game.shape}")
    if game.dtype != np.uint8:
        raise ValueError(f"game_frame must be uint8, got {game.dtype}")

    net = np.asarray(network_input)
    if net.shape == (NETWORK_INPUT_SHAPE[0] * NETWORK_INPUT_SHAPE[1],):
        net = net.reshape(NETWORK_INPUT_SHAPE)
    if net.shape != NETWORK_INPUT_SHAPE:
        raise ValueError(f"network_input must have shape {NETWORK_INPUT_SHAPE} (or 6400 values), got {net.shape}")
    won, lost = _validate_score(score)

    if not isinstance(panel, InputPanel):
        raise ValueError(f"panel must be an InputPanel (TUTORIAL_INPUT, LAB_INPUT or "
                         f"FRAME_AND_CHANGE_INPUT), got {panel!r}")
    frame = _base_canvas(panel).copy()
    strip = _score_strip(won, lost)
    frame[: strip.shape[0], : strip.shape[1]] = strip

    s = GAME_PANEL_SCALE
    r, c = GAME_PANEL_ORIGIN
    h, w = GAME_SHAPE[0] * s, GAME_SHAPE[1] * s
    frame[r : r + h, c : c + w] = game.repeat(s, axis=0).repeat(s, axis=1)

    # Index 0, 1, 2, 3 for -1, 0, +1, -2 (NaN compares False both ways and lands on 0).
    idx = np.ones(NETWORK_INPUT_SHAPE, dtype=np.intp)
    idx[net > 0.5] = 2
    idx[net < -0.5] = 0
    idx[net < -1.5] = 3
    s = NETWORK_PANEL_SCALE
    r, c = NETWORK_PANEL_ORIGIN
    h, w = NETWORK_INPUT_SHAPE[0] * s, NETWORK_INPUT_SHAPE[1] * s
    frame[r : r + h, c : c + w] = _NET_LUT[idx].repeat(s, axis=0).repeat(s, axis=1)
    return frame


# --------------------------------------------------------------------------
# Path checks


def check_video_path(path: PathLike) -> Path:
    """Validate where a video will be written, before any work starts.

    Returns the path as a :class:`pathlib.Path`.  Raises :class:`ValueError`
    (with a one-line message) if the extension is not ``.mp4`` or ``.gif``
    (case-insensitive), if the parent directory does not exist or is not
    writable, or if the path names an existing directory.
    """
    p = Path(os.fspath(path))
    ext = p.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise ValueError(f"unsupported video extension {p.suffix!r} for {str(p)!r}: expected .mp4 or .gif")
    parent = p.parent
    if not parent.exists():
        raise ValueError(f"cannot write video {str(p)!r}: directory {str(parent)!r} does not exist")
    if not parent.is_dir():
        raise ValueError(f"cannot write video {str(p)!r}: {str(parent)!r} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write video {str(p)!r}: directory {str(parent)!r} is not writable")
    if p.is_dir():
        raise ValueError(f"cannot write video {str(p)!r}: it is an existing directory")
    return p


def _temp_sibling(target: Path) -> Path:
    """Create an empty, uniquely named hidden file next to ``target`` with the same extension.

    Created with ``open(..., "x")`` rather than mkstemp so that it gets the
    usual umask-derived permissions, which the final file then keeps.
    """
    for _ in range(100):
        tmp = target.with_name(f".{target.stem}.tmp-{uuid.uuid4().hex[:12]}{target.suffix}")
        try:
            with open(tmp, "xb"):
                pass
        except FileExistsError:
            continue
        return tmp
    raise OSError(f"could not create a temporary file next to {str(target)!r}")


# --------------------------------------------------------------------------
# Frame sinks


class _Mp4Sink:
    """H.264 / yuv420p MP4 through imageio's ffmpeg plugin; frames are piped to ffmpeg."""

    def __init__(self, path: Path, fps: float) -> None:
        import imageio.v2 as iio  # imported lazily: loading the plugin is not free

        self._writer = iio.get_writer(
            str(path),
            format="FFMPEG",
            mode="I",
            fps=fps,
            codec="libx264",
            pixelformat="yuv420p",
            macro_block_size=16,
            quality=None,  # we set the rate control ourselves
            ffmpeg_log_level="error",
            output_params=["-crf", "18", "-preset", "medium", "-movflags", "+faststart"],
        )

    def write(self, frame: np.ndarray) -> None:
        self._writer.append_data(frame)

    def close(self) -> None:
        self._writer.close()


def _gif_image_block(frame: np.ndarray) -> bytes:
    """Encode one RGB frame as a GIF image block (descriptor, local palette, LZW data).

    Pillow does the colour quantisation and the LZW compression by saving the
    frame as a one-frame GIF in memory; we then lift the image out of that
    file and move its global palette into a local one.  This lets the writer
    stream frames to disk one at a time, whereas Pillow's (and imageio's)
    animated-GIF writers hold every frame in memory until the file is closed.
    """
    img = Image.fromarray(frame, "RGB")
    quantize = getattr(Image, "Quantize", None)
    dither = getattr(Image, "Dither", None)
    img = img.quantize(
        colors=256,
        method=quantize.MEDIANCUT if quantize is not None else Image.MEDIANCUT,
        dither=dither.NONE if dither is not None else Image.NONE,
    )
    buf = io.BytesIO()
    img.save(buf, format="GIF", interlace=False)
    data = buf.getvalue()

    # Logical screen descriptor: width, height, flags, background, aspect.
    _, _, flags, _, _ = struct.unpack_from("<HHBBB", data, 6)
    pos = 13
    global_table = b""
    global_bits = 0
    if flags & 0x80:
        global_bits = flags & 0x07
        size = 3 * (2 << global_bits)
        global_table = data[pos : pos + size]
        pos += size

    while pos < len(data):
        kind = data[pos]
        if kind == 0x21:  # extension: introducer, label, then data sub-blocks
            pos += 2
            while data[pos]:
                pos += data[pos] + 1
            pos += 1
        elif kind == 0x2C:  # image descriptor
            left, top, width, height, iflags = struct.unpack_from("<HHHHB", data, pos + 1)
            pos += 10
            if iflags & 0x80:
                size = 3 * (2 << (iflags & 0x07))
                table = data[pos : pos + size]
                pos += size
            else:
                if not global_table:
                    raise RuntimeError("Pillow wrote a GIF frame without a colour table")
                table = global_table
                iflags = (iflags & ~0x27) | 0x80 | global_bits  # local table, no sort flag
            start = pos
            pos += 1  # LZW minimum code size
            while data[pos]:
                pos += data[pos] + 1
            pos += 1  # block terminator
            descriptor = b"," + struct.pack("<HHHHB", left, top, width, height, iflags)
            return descriptor + table + data[start:pos]
        else:
            break
    raise RuntimeError("could not find the image data in Pillow's GIF output")


class _GifSink:
    """Looping animated GIF, written frame by frame with bounded memory."""

    def __init__(self, path: Path, fps: float) -> None:
        self._fps = float(fps)
        self._index = 0
        self._file = open(path, "wb")
        self._size: Optional[Tuple[int, int]] = None

    def _header(self, width: int, height: int) -> bytes:
        # No global colour table (every frame carries its own); colour resolution 8 bits.
        screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x70, 0, 0)
        # NETSCAPE2.0 application extension: loop count 0 = loop forever.
        loop = b"!\xff\x0bNETSCAPE2.0\x03\x01" + struct.pack("<H", 0) + b"\x00"
        return screen + loop

    def write(self, frame: np.ndarray) -> None:
        height, width = frame.shape[:2]
        if self._size is None:
            self._size = (width, height)
            self._file.write(self._header(width, height))
        elif self._size != (width, height):
            raise ValueError(f"frame size changed from {self._size} to {(width, height)}")
        # Delays are whole centiseconds; accumulate the rounding so the average
        # frame rate is right (30 fps -> 3, 3, 4, 3, 3, 4, ... cs).
        delay = round((self._index + 1) * 100 / self._fps) - round(self._index * 100 / self._fps)
        delay = max(1, min(delay, 0xFFFF))
        # Graphic control extension: disposal 1 (leave frame in place), delay, no transparency.
        control = b"!\xf9\x04" + struct.pack("<BHB", 1 << 2, delay, 0) + b"\x00"
        self._file.write(control + _gif_image_block(frame))
        self._index += 1

    def close(self) -> None:
        if not self._file.closed:
            if self._size is not None:
                self._file.write(b";")
            self._file.close()


# --------------------------------------------------------------------------
# Public writer


class VideoWriter:
    """Write composed frames (see :func:`compose_frame`) to an MP4 or GIF file.

    ``VideoWriter(path, fps=30)`` validates ``path`` with
    :func:`check_video_path`.  Use it as a context manager::

        with VideoWriter("episode.mp4", fps=30) as video:
            video.add_frame(game_frame, network_input, (won, lost))

    Frames stream into a hidden temporary file in the same directory (same
    extension), which replaces ``path`` when the block exits normally.  If
    the block raises, the temporary file is deleted and ``path`` is left
    exactly as it was.  Memory use does not grow with the number of frames.

    MP4 files use H.264 with yuv420p pixels so that browsers and phones play
    them.  GIFs loop forever; their frame delays are whole centiseconds, so
    frame rates above 50 fps are not honoured by most viewers.  GIF encoding
    is slower and the files are much larger than MP4: prefer MP4 for whole
    episodes.

    Closing a writer to which no frame was added raises :class:`RuntimeError`
    and leaves ``path`` untouched.
    """

    def __init__(self, path: PathLike, fps: float = 30) -> None:
        self.path = check_video_path(path)
        if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)) or not fps > 0:
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        self.fps = float(fps)
        self._frames_written = 0
        self._closed = False
        self._tmp = _temp_sibling(self.path)
        try:
            if self.path.suffix.lower() == ".mp4":
                self._sink: Any = _Mp4Sink(self._tmp, self.fps)
            else:
                self._sink = _GifSink(self._tmp, self.fps)
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise

    @property
    def frames_written(self) -> int:
        """Number of frames added so far."""
        return self._frames_written

    @property
    def closed(self) -> bool:
        return self._closed

    def add_frame(self, game_frame: np.ndarray, network_input: np.ndarray, score: Tuple[int, int],
                  panel: InputPanel = TUTORIAL_INPUT) -> None:
        """Compose one frame (see :func:`compose_frame`) and append it to the video."""
        if self._closed:
            raise RuntimeError(f"VideoWriter for {str(self.path)!r} is closed")
        frame = compose_frame(game_frame, network_input, score, panel)
        self._sink.write(frame)
        self._frames_written += 1

    def add_image(self, image: np.ndarray) -> None:
        """Append any RGB uint8 (H, W, 3) image as it is (e.g. gymnasium's rgb_array render),
        padded at the bottom and right to a multiple of 16 pixels for the H.264 encoder. Every
        image of one video must have the same shape."""
        if self._closed:
            raise RuntimeError(f"VideoWriter for {str(self.path)!r} is closed")
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be uint8 of shape (H, W, 3), got {image.dtype} {image.shape}")
        height, width = (-(-n // 16) * 16 for n in image.shape[:2])
        if (height, width) != image.shape[:2]:
            padded = np.full((height, width, 3), 255, dtype=np.uint8)
            padded[: image.shape[0], : image.shape[1]] = image
            image = padded
        self._sink.write(np.ascontiguousarray(image))
        self._frames_written += 1

    def close(self) -> None:
        """Finish the file and move it into place.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._sink.close()
            if self._frames_written == 0:
                raise RuntimeError(f"no frames were added; {str(self.path)!r} was not written")
            os.replace(self._tmp, self.path)
        finally:
            self._tmp.unlink(missing_ok=True)

    def abort(self) -> None:
        """Discard everything written so far; ``path`` is left untouched.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._sink.close()
        except Exception:
            pass  # we are throwing the file away; a failing encoder does not matter
        finally:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        # A writer dropped without close() must not leave its temporary file behind.
        try:
            if not self._closed:
                self.abort()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"VideoWriter({str(self.path)!r}, fps={self.fps:g}, frames_written={self._frames_written}, {state})"
