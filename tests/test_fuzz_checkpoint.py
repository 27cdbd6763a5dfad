"""Fuzzing checkpoint loading: random byte flips (anywhere, and aimed at the zip and .npy headers),
truncations, wrong arrays, wrong dtypes, a pickle inside, another format version. The loaders give
a checkpoint that passes every check or one CheckpointError line; `fastpong eval --checkpoint` and
`fastpong train --resume` give exit 2 and one line, never a traceback or a crash.

The counts below (FLIPS, TRUNCATIONS, len(DAMAGES)) are the figures in README "Reliability".
"""

from __future__ import annotations

import io
import json
import pickle
import signal
import struct
import zipfile

import numpy as np
import pytest
from test_cli import assert_one_line_error, run_cli

from fastpong import checkpoint as ckpt
from fastpong.checkpoint import CheckpointError, load_agent_weights, load_checkpoint, load_policy_weights
from fastpong.cli import main
from fastpong.train import train

FLIPS = 400  # half anywhere in the file, half in the zip and .npy headers
TRUNCATIONS = 120
CLI_FLIPS = 24  # of the flipped files, through `fastpong eval` and `fastpong train --resume` in-process


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> bytes:
    """A real checkpoint of a small network (hidden 8), after one update."""
    run = tmp_path_factory.mktemp("fuzz") / "run"
    train(run_dir=run, episodes=1, num_envs=1, batch_size=1, hidden=8, seed=5, progress=False)
    return (run / "checkpoint.npz").read_bytes()


@pytest.fixture
def keep_signal_handlers():
    """main() installs stop-signal handlers for good (it owns its process); put pytest's back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def structure_ranges(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges of the zip local headers with the .npy headers after them, and of the central
    directory: where a flip changes structure rather than a weight."""
    ranges = []
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            start = info.header_offset
            ranges.append((start, min(len(data), start + 30 + len(info.filename) + 128)))
    end_record = data.rfind(b"PK\x05\x06")
    directory_start = int.from_bytes(data[end_record + 16:end_record + 20], "little")
    ranges.append((directory_start, len(data)))
    return ranges


def array_data_ranges(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges of the array values (past each member's .npy header)."""
    ranges = []
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
            start = info.header_offset + 30 + name_length + extra_length
            npy_header = 10 + int.from_bytes(data[start + 8:start + 10], "little")  # format 1.0
            ranges.append((start + npy_header, start + info.compress_size))
    return ranges


def flipped(data: bytes, rng: np.random.Generator, aimed: bool, at: list | None = None) -> bytes:
    """data with one byte changed: in the headers (aimed) or anywhere. `at` receives the position."""
    buffer = bytearray(data)
    if aimed:
        ranges = structure_ranges(data)
        start, end = ranges[rng.integers(len(ranges))]
        position = int(rng.integers(start, end))
    else:
        position = int(rng.integers(len(buffer)))
    buffer[position] ^= int(rng.integers(1, 256))
    if at is not None:
        at.append(position)
    return bytes(buffer)


def assert_loads_or_refuses(path, outcomes: dict) -> None:
    """Both loaders: a checkpoint that passes the checks, or a one-line CheckpointError."""
    for loader in (lambda p: load_checkpoint(p, input_size=6400), load_policy_weights):
        try:
            result = loader(path)
        except CheckpointError as exc:
            message = str(exc)
            assert message and "\n" not in message and str(path) in message, message
            outcomes["refused"] += 1
        else:
            assert all(np.isfinite(result[k]).all() for k in ("W1", "W2"))
            outcomes["loaded"] += 1


def test_byte_flips(good, tmp_path):
    """Every flip: loaded and valid, or refused in one line. A flip in the values of an array is
    always refused by the full loader (the zip's CRC-32 of each member catches it): a damaged
    checkpoint never resumes with silently changed weights."""
    rng = np.random.default_rng(11)
    path = tmp_path / "checkpoint.npz"
    outcomes = {"refused": 0, "loaded": 0}
    in_values = 0
    values = array_data_ranges(good)
    for i in range(FLIPS):
        at = []
        path.write_bytes(flipped(good, rng, aimed=i % 2 == 1, at=at))
        assert_loads_or_refuses(path, outcomes)
        if any(start <= at[0] < end for start, end in values):
            in_values += 1
            with pytest.raises(CheckpointError, match="truncated or corrupt"):
                load_checkpoint(path)
    print(f"{FLIPS} byte flips, two loaders each: {outcomes}; {in_values} flips in array values, all refused")
    assert in_values > FLIPS // 4


def test_truncations(good, tmp_path):
    rng = np.random.default_rng(12)
    path = tmp_path / "checkpoint.npz"
    cuts = {0, 1, 4, 21, 22, len(good) - 22, len(good) - 21, len(good) - 1}
    for start, end in structure_ranges(good):
        cuts |= {start, start + 1, end - 1, end}
    cuts = sorted(c for c in cuts if 0 <= c < len(good))
    cuts += [int(c) for c in rng.integers(0, len(good), TRUNCATIONS - len(cuts))]
    assert len(cuts) == TRUNCATIONS
    for cut in cuts:
        path.write_bytes(good[:cut])
        for loader in (load_checkpoint, load_policy_weights):
            with pytest.raises(CheckpointError, match="truncated or corrupt|holds no policy|no format_version"):
                loader(path)


def arrays_of(data: bytes) -> dict:
    with np.load(io.BytesIO(data)) as npz:
        return dict(npz)


def saved(arrays: dict) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def changed(**replacements):
    """A damage that replaces arrays (None: removes one)."""
    def damage(arrays):
        for key, value in replacements.items():
            if value is None:
                arrays.pop(key)
            else:
                arrays[key] = value
        return saved(arrays)
    return damage


def with_pickle(arrays):
    arrays["config"] = np.array([{"evil": "__reduce__"}], dtype=object)  # stored as a pickle
    return saved(arrays)


def compressed_member(arrays):
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


#: name -> (bytes of the damaged file from the good checkpoint's arrays, fragment of the message)
DAMAGES = {
    "empty file": (lambda a: b"", "truncated or corrupt"),
    "text": (lambda a: b"W1,W2\n1,2\n", "truncated or corrupt"),
    "a pickle of the arrays": (lambda a: pickle.dumps(a), "truncated or corrupt"),
    "a pickled object array inside": (with_pickle, "truncated or corrupt"),
    "a .npy, not an .npz": (lambda a: _npy(a["W1"]), "not an .npz archive"),
    "a zip of text": (lambda a: _zip_of({"W1.npy": b"hello"}), "'W1' is not a .npy array"),
    "a member that is not a .npy": (lambda a: _zip_of({f"{k}.npy": b"hello" if k == "W1" else _npy(v)
                                                       for k, v in a.items()}), "'W1' is not a .npy array"),
    "W1 missing": (changed(W1=None), "missing W1"),
    "W2 missing": (changed(W2=None), "missing W2"),
    "cache missing": (changed(cache_W1=None), "missing cache_W1"),
    "counters missing": (changed(episodes=None, updates=None), "missing episodes, updates"),
    "format version missing": (changed(format_version=None), None),  # read as format 1: it loads
    "format version 7": (changed(format_version=np.int64(7)), "has format version 7; this fastpong reads versions 1, 2"),
    "format version 0": (changed(format_version=np.int64(0)), "has format version 0"),
    "format version text": (changed(format_version=np.array("1")), "format_version must be an integer"),
    "format version float": (changed(format_version=np.float64(1.0)), "format_version must be an integer"),
    "W1 of ints": (lambda a: changed(W1=a["W1"].astype(np.int32))(a), "W1 must be float of shape (8, 6400)"),
    "W1 flat": (lambda a: changed(W1=a["W1"].ravel())(a), "W1 must have shape (H, D)"),
    "W1 3-D": (lambda a: changed(W1=a["W1"][None])(a), "W1 must have shape (H, D)"),
    "W1 of strings": (lambda a: changed(W1=a["W1"].astype("U8"))(a), "W1 must be numeric"),
    "W1 complex": (lambda a: changed(W1=a["W1"].astype(np.complex64))(a), "W1 must be numeric"),
    "W1 other input size": (lambda a: changed(W1=a["W1"][:, :100])(a), "W1 must be float of shape (8, 6400), got float32 (8, 100)"),
    "W2 other hidden": (lambda a: changed(W2=a["W2"][:3])(a), "W2 must be float of shape (8,)"),
    "cache other shape": (lambda a: changed(cache_W1=a["cache_W1"][:, :50])(a), "cache_W1 must be float"),
    "grad of bools": (lambda a: changed(grad_W2=a["grad_W2"] > 0)(a), "grad_W2 must be numeric"),
    "NaN weight": (lambda a: changed(W2=np.where(np.arange(8) == 3, np.nan, a["W2"]))(a), "non-finite"),
    "infinite cache": (lambda a: changed(cache_W2=np.full(8, np.inf))(a), "non-finite"),
    "negative episodes": (changed(episodes=np.int64(-1)), "episodes must be a non-negative integer"),
    "episodes as float": (changed(episodes=np.float64(3)), "episodes must be a non-negative integer"),
    "steps as array": (changed(env_steps=np.arange(3)), "env_steps must be a non-negative integer"),
    "config not JSON": (changed(config=np.array("{not json")), "not valid JSON"),
    "rng state not JSON": (changed(rng_state=np.array("]")), "not valid JSON"),
    "running reward as text": (changed(running_reward=np.array("high")), "running_reward must be a number"),
    "compressed members": (compressed_member, None),  # still a valid .npz: must load
}


def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _zip_of(members: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def resume(run, good, capsys) -> tuple[int, list[str]]:
    """`fastpong train --resume` in-process on `run`, for a run already done: it only loads."""
    steps = str(arrays_of(good)["env_steps"])
    code = main(["train", "--run-dir", str(run), "--resume", "--steps", steps, "--quiet", "--num-envs", "1"])
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("name", list(DAMAGES))
def test_wrong_contents(good, tmp_path, name, capsys, keep_signal_handlers):
    """What resuming checks (the loader, then the agent's tensor shapes, the config, the RNG
    state): each damage refused in one line naming the file and what is wrong."""
    make, fragment = DAMAGES[name]
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(make(arrays_of(good)))
    code, err = resume(tmp_path, good, capsys)
    if fragment is None:
        assert code == 0, err
        assert load_checkpoint(path)["W1"].shape == (8, 6400)
        return
    assert code == 2 and len(err) == 1, err
    assert fragment in err[0] and str(path) in err[0], err[0]


def test_a_huge_claimed_array_is_refused(good, tmp_path):
    """An .npy header may claim any shape: the loader must not try to allocate it."""
    arrays = arrays_of(good)
    data = bytearray(saved(arrays))
    header = b"'shape': (8, 6400)"
    at = data.find(header)
    assert at > 0
    data[at:at + len(header)] = b"'shape': (8**9,99)"  # same length: the zip stays well formed
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(bytes(data))
    for loader in (load_checkpoint, load_policy_weights):
        with pytest.raises(CheckpointError):
            loader(path)


def test_other_format_version_names_both(good, tmp_path):
    arrays = arrays_of(good)
    arrays["format_version"] = np.int64(3)
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(saved(arrays))
    expected = f"checkpoint {path} has format version 3; this fastpong reads versions 1, 2"
    for loader in (load_checkpoint, load_policy_weights, load_agent_weights):
        with pytest.raises(CheckpointError, match="format version 3") as refused:
            loader(path)
        assert str(refused.value) == expected
    assert ckpt.FORMAT_VERSION in ckpt.SUPPORTED_FORMAT_VERSIONS
    # A bare {W1, W2} export (the shipped policy) has no version and still loads for eval.
    bare = tmp_path / "bare.npz"
    np.savez(bare, W1=arrays["W1"], W2=arrays["W2"])
    assert load_policy_weights(bare)["W1"].shape == (8, 6400)


def test_commands_refuse_damaged_checkpoints_in_one_line(good, tmp_path, capsys, keep_signal_handlers):
    """In-process main(), the command's code minus the interpreter, on every damaged file of
    DAMAGES and CLI_FLIPS flipped ones: `train --resume` refuses each damaged file with exit 2 and
    one line; `eval` (which reads only W1, W2 and the format version, and never unpickles) refuses
    the same way or, where the damage is in what it does not read, plays (exit 0). A flip that hurt
    nothing runs normally."""
    rng = np.random.default_rng(13)
    files = [(name, make(arrays_of(good)), True) for name, (make, fragment) in DAMAGES.items() if fragment]
    files += [(f"flip {i}", flipped(good, rng, aimed=True), False) for i in range(CLI_FLIPS)]
    steps = str(arrays_of(good)["env_steps"])  # a resumed run that is already done: it just loads
    outcomes = {"refused": 0, "ran": 0}
    for name, data, damaged in files:
        run = tmp_path / name.replace(" ", "-").replace("/", "-")
        run.mkdir()
        (run / "checkpoint.npz").write_bytes(data)
        for argv in (["eval", "--checkpoint", str(run), "--episodes", "1", "--max-steps", "1", "--num-envs", "1"],
                     ["train", "--run-dir", str(run), "--resume", "--steps", steps, "--quiet", "--num-envs", "1"]):
            code = main(argv)
            err = capsys.readouterr().err.strip().splitlines()
            if code == 0:
                assert not (damaged and argv[0] == "train"), f"train --resume accepted: {name}"
                outcomes["ran"] += 1
                continue
            assert code == 2 and len(err) == 1 and "error:" in err[0], (name, argv[0], code, err)
            outcomes["refused"] += 1
    print(f"{len(files)} damaged files, through eval and train --resume: {outcomes}")


@pytest.mark.parametrize("name", ["a .npy, not an .npz", "format version 7", "W1 other input size",
                                  "a member that is not a .npy"])
def test_command_processes_refuse_in_one_line(good, tmp_path, name):
    """The real commands, in their own processes: one line, exit 2, no traceback."""
    make, fragment = DAMAGES[name]
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.npz").write_bytes(make(arrays_of(good)))
    assert_one_line_error(run_cli("eval", "--checkpoint", str(run), "--episodes", "1"), "fastpong eval: error:")
    assert_one_line_error(run_cli("train", "--run-dir", str(run), "--resume", "--steps", "10"), fragment)
