"""Checkpoints: plain .npz files (no pickle), written atomically, validated on load.

A checkpoint holds the weights in the tutorial's layout (``W1`` (H, D), ``W2`` (H,)), so numpy
alone can load a policy from it, plus everything needed to resume: the RMSProp cache, the gradient
buffer of the batch in progress, the counters, the running reward, the config and the RNG state.
"""

from __future__ import annotations

import json
import os
import struct
import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np

#: The format this fastpong writes, and the ones it reads. A change to the arrays or their meaning
#: bumps FORMAT_VERSION; a loader that can still read an older format keeps its number in the set.
FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = frozenset({1})
TENSOR_KEYS = ("W1", "W2", "cache_W1", "cache_W2", "grad_W1", "grad_W2")
COUNTER_KEYS = ("episodes", "env_steps", "updates", "episodes_in_batch")
FLOAT_KEYS = ("running_reward", "wall_seconds")
TEXT_KEYS = ("config", "rng_state")


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated, corrupt or of other shapes."""


#: Temporary files of write_atomically are named ".<name>.tmp-<pid>".
TEMPORARY_MARKER = ".tmp-"


def write_atomically(path: Path, write) -> None:
    """Calls write(file) on a temporary file beside `path`, flushes it to disk, then renames it
    over `path`: a reader sees the old file or the new one, never half of one.

    A failed write (disk full, file too large, no permission) removes the temporary file and
    raises OSError naming `path`, the file that was not replaced. A process killed mid-write
    leaves its temporary file: see remove_stale_temporaries."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}{TEMPORARY_MARKER}{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename != str(path):
            raise OSError(exc.errno, f"cannot write {path}: {exc.strerror}") from exc
        raise


def remove_stale_temporaries(directory) -> list[Path]:
    """Deletes the temporary files that killed processes left in `directory` mid-write and
    returns their paths. Only for a directory no live process writes to (a locked run directory)."""
    stale = sorted(Path(directory).glob(f".*{TEMPORARY_MARKER}*"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def save_checkpoint(path, *, tensors: dict, counters: dict, running_reward, wall_seconds: float,
                    config: dict, rng_state: dict) -> None:
    arrays = {key: np.asarray(tensors[key]) for key in TENSOR_KEYS}
    arrays.update({key: np.int64(counters[key]) for key in COUNTER_KEYS})
    arrays["running_reward"] = np.float64(np.nan if running_reward is None else running_reward)
    arrays["wall_seconds"] = np.float64(wall_seconds)
    arrays["config"] = np.array(json.dumps(config, sort_keys=True))
    arrays["rng_state"] = np.array(json.dumps(rng_state))
    arrays["format_version"] = np.int64(FORMAT_VERSION)
    write_atomically(Path(path), lambda f: np.savez(f, **arrays))


def load_checkpoint(path, *, hidden: int | None = None, input_size: int | None = None) -> dict:
    """The checkpoint's contents as a dict; CheckpointError with one line if anything is off.

    hidden / input_size, when given, are the shapes the caller expects."""
    path = Path(path)
    data = _read_arrays(path)
    _check_format_version(path, data, required=True)
    missing = [k for k in (*TENSOR_KEYS, *COUNTER_KEYS, *FLOAT_KEYS, *TEXT_KEYS) if k not in data]
    if missing:
        raise CheckpointError(f"checkpoint {path} is missing {', '.join(missing)}")
    w1 = data["W1"]
    if w1.ndim != 2:
        raise CheckpointError(f"checkpoint {path}: W1 must have shape (H, D), got {w1.shape}")
    h, d = w1.shape
    if (hidden is not None and h != hidden) or (input_size is not None and d != input_size):
        raise CheckpointError(
            f"checkpoint {path} holds a network of hidden={h}, input_size={d}; "
            f"expected hidden={hidden}, input_size={input_size}"
        )
    for key in TENSOR_KEYS:
        expected = (h, d) if key.endswith("W1") else (h,)
        value = data[key]
        if value.shape != expected or value.dtype.kind != "f":
            raise CheckpointError(
                f"checkpoint {path}: {key} must be float of shape {expected}, got {value.dtype} {value.shape}"
            )
        if not np.all(np.isfinite(value)):
            raise CheckpointError(f"checkpoint {path}: {key} holds non-finite values")
    result = {key: data[key] for key in TENSOR_KEYS}
    for key in COUNTER_KEYS:
        value = data[key]
        if value.shape != () or value.dtype.kind != "i" or int(value) < 0:
            raise CheckpointError(f"checkpoint {path}: {key} must be a non-negative integer")
        result[key] = int(value)
    for key in FLOAT_KEYS:
        value = data[key]
        if value.shape != () or value.dtype.kind not in "fiu":
            raise CheckpointError(f"checkpoint {path}: {key} must be a number, got {value.dtype} {value.shape}")
    running = float(data["running_reward"])
    result["running_reward"] = None if np.isnan(running) else running
    result["wall_seconds"] = float(data["wall_seconds"])
    try:
        result["config"] = json.loads(str(data["config"]))
        result["rng_state"] = json.loads(str(data["rng_state"]))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint {path}: config or RNG state is not valid JSON ({exc})") from None
    return result


def load_policy_weights(path) -> dict:
    """Just {'W1', 'W2'} from a checkpoint or any .npz holding them (e.g. the shipped policy)."""
    path = Path(path)
    data = _read_arrays(path, keys=("W1", "W2", "format_version"))
    # A bare {W1, W2} file (the shipped policy, an export) has no version; a checkpoint has one.
    _check_format_version(path, data, required=False)
    if "W1" not in data or "W2" not in data:
        raise CheckpointError(f"{path} holds no policy: expected arrays 'W1' and 'W2'")
    w1, w2 = data["W1"], data["W2"]
    if w1.ndim != 2 or w2.shape != (w1.shape[0],) or w1.dtype.kind != "f" or w2.dtype.kind != "f":
        raise CheckpointError(
            f"{path}: expected float W1 (H, D) and W2 (H,), got {w1.dtype} {w1.shape} and {w2.dtype} {w2.shape}"
        )
    if not (np.all(np.isfinite(w1)) and np.all(np.isfinite(w2))):
        raise CheckpointError(f"{path}: the weights hold non-finite values")
    return {"W1": w1, "W2": w2}


def _check_format_version(path: Path, data: dict, required: bool) -> None:
    if "format_version" not in data:
        if required:
            raise CheckpointError(f"checkpoint {path} has no format_version: not a fastpong checkpoint")
        return
    value = data["format_version"]
    if value.shape != () or value.dtype.kind not in "iu":
        raise CheckpointError(f"checkpoint {path}: format_version must be an integer, got {value.dtype} {value.shape}")
    if int(value) not in SUPPORTED_FORMAT_VERSIONS:
        readable = ", ".join(str(v) for v in sorted(SUPPORTED_FORMAT_VERSIONS))
        raise CheckpointError(f"checkpoint {path} has format version {int(value)}; this fastpong reads "
                              f"version{'s' if len(SUPPORTED_FORMAT_VERSIONS) > 1 else ''} {readable}")


def _read_arrays(path: Path, keys=None) -> dict:
    """The arrays of an .npz file: all of them, or those of `keys` it holds (only those are read).
    CheckpointError with one line if the file is missing, truncated or not an .npz."""
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a bare .npy array
            raise CheckpointError(f"checkpoint {path} is not an .npz archive of named arrays")
        with loaded as npz:
            names = npz.files if keys is None else [key for key in keys if key in npz.files]
            arrays = {key: npz[key] for key in names}
    except _CORRUPT_FILE_ERRORS as exc:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({_first_line(exc)})") from None
    for key, value in arrays.items():
        if not isinstance(value, np.ndarray):  # numpy hands a member that is not a .npy over as bytes
            raise CheckpointError(f"checkpoint {path} is corrupt: its member {key!r} is not a .npy array")
    return arrays


#: What numpy and zipfile raise on a damaged file, as the checkpoint fuzzer (tests/test_fuzz_checkpoint.py)
#: found them: numpy parses a .npy header as a Python literal (a flip there gives SyntaxError or
#: TokenError), zipfile reads a flipped compression method as NotImplementedError, and a header may
#: claim an array of any size (MemoryError, OverflowError).
_CORRUPT_FILE_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, MemoryError, OverflowError,
                        SyntaxError, tokenize.TokenError, NotImplementedError, struct.error, zlib.error)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
