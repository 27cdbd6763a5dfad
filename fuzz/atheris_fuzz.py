"""Coverage-guided fuzzing (atheris, libFuzzer) of the two parsers of outside data: the checkpoint
loader (bytes of a file) and the frame kernels (bytes read as an array of any dtype and shape).

    pip install ".[fuzz]"
    python fuzz/atheris_fuzz.py checkpoint -max_total_time=30     # CI runs both for 30 s
    python fuzz/atheris_fuzz.py frames -max_total_time=30

Arguments after the target go to libFuzzer (-runs=N, -max_total_time=S, a corpus folder...). A
finding is an exception other than the expected refusal (CheckpointError; ValueError/TypeError for
the kernels), a wrong result, or a crash; libFuzzer then stops, prints the input and writes it to
crash-<hash>. The checkpoint target is guided by coverage of the Python that parses the file
(zipfile, numpy's .npy reader, fastpong.checkpoint) and starts from a real checkpoint, so mutations
explore the zip and .npy structure. The frame kernels are C++, which atheris does not see here:
that target mutates without guidance and holds every accepted input to the NumPy reference. The
hypothesis tests in tests/ are the first line; this finds what their strategies do not think of.
"""

from __future__ import annotations

import ast
import inspect
import io
import os
import sys
import tempfile
import zipfile

import atheris
import numpy as np

import fastpong
from fastpong import checkpoint, reference
from fastpong.checkpoint import CheckpointError, load_checkpoint, load_policy_weights

FRAME_SHAPES = [(210, 160, 3), (1, 210, 160, 3), (2, 210, 160, 3), (160, 210, 3), (210, 160), (0, 210, 160, 3)]
DTYPES = [np.uint8, np.int8, np.uint16, np.float32, np.float64, np.bool_]


def checkpoint_seed() -> bytes:
    """A real checkpoint's bytes (hidden 4) for the corpus."""
    arrays = {key: np.zeros((4, 6400) if key.endswith("W1") else 4, np.float32)
              for key in ("W1", "W2", "cache_W1", "cache_W2", "grad_W1", "grad_W2")}
    arrays.update(episodes=np.int64(3), env_steps=np.int64(2500), updates=np.int64(1),
                  episodes_in_batch=np.int64(0), running_reward=np.float64(-20.5),
                  wall_seconds=np.float64(3.0), config=np.array('{"hidden": 4}'),
                  rng_state=np.array("{}"), format_version=np.int64(1))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def fuzz_checkpoint(path: str):
    def one_input(data: bytes) -> None:
        with open(path, "wb") as f:
            f.write(data)
        for loader in (load_checkpoint, load_policy_weights):
            try:
                result = loader(path)
            except CheckpointError as exc:
                assert str(exc) and "\n" not in str(exc), repr(exc)
            else:
                assert np.isfinite(result["W1"]).all() and result["W1"].ndim == 2

    return one_input


def fuzz_frames(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    shape = FRAME_SHAPES[fdp.ConsumeIntInRange(0, len(FRAME_SHAPES) - 1)]
    dtype = np.dtype(DTYPES[fdp.ConsumeIntInRange(0, len(DTYPES) - 1)])
    size = int(np.prod(shape)) * dtype.itemsize
    raw = fdp.ConsumeBytes(size)
    raw += bytes(size - len(raw))  # the provider runs dry: pad with zeros
    frames = np.frombuffer(raw, dtype=dtype).reshape(shape)
    try:
        images = fastpong.frame_preprocessing(frames)
    except (ValueError, TypeError) as exc:
        assert str(exc)
        return
    batch = frames if frames.ndim == 4 else frames[None]
    expected = np.stack([reference.frame_preprocessing(f) for f in batch]) if len(batch) else np.zeros((0, 80, 80))
    np.testing.assert_array_equal(images.reshape(expected.shape), expected)
    if frames.ndim == 4 and len(frames):
        differencer = fastpong.FrameDifferencer(len(frames))
        differencer.step(frames)
        assert differencer.step(frames).nonzeros == 0  # the same frames twice: no difference


def instrument(*modules) -> None:
    """Coverage of the functions and methods these modules hold. (instrument_imports would miss
    modules numpy has already imported, and instrument_all takes half a minute and grows memory
    without bound here.)"""
    for module in modules:
        for value in vars(module).values():
            members = vars(value).values() if inspect.isclass(value) else [value]
            for member in members:
                if inspect.isfunction(member):
                    atheris.instrument_func(member)


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("checkpoint", "frames"):
        sys.exit("usage: python fuzz/atheris_fuzz.py checkpoint|frames [libFuzzer arguments]")
    target, libfuzzer_args = sys.argv[1], sys.argv[2:]
    with tempfile.TemporaryDirectory() as scratch:
        if target == "checkpoint":
            corpus = os.path.join(scratch, "corpus")
            os.mkdir(corpus)
            with open(os.path.join(corpus, "checkpoint.npz"), "wb") as f:
                f.write(checkpoint_seed())
            one_input = fuzz_checkpoint(os.path.join(scratch, "checkpoint.npz"))
            libfuzzer_args = [*libfuzzer_args, corpus]
        else:
            one_input = fuzz_frames
        atheris.Setup([sys.argv[0], *libfuzzer_args], one_input)
        if target == "checkpoint":
            instrument(zipfile, np.lib.format, np.lib.npyio, ast, checkpoint)
        else:
            # The kernels are C++, which atheris cannot see into: the coverage that guides this
            # target is its own branches (shapes, dtypes, the error path). Without it every input
            # looked the same to libFuzzer ("no interesting inputs"), which mutated blindly from a
            # 1-byte corpus. (Instrumenting the NumPy reference too grew memory by 8 KB an input,
            # past libFuzzer's 2 GB limit within 30 s.)
            atheris.instrument_func(fuzz_frames)
        atheris.Fuzz()


if __name__ == "__main__":
    main()
