"""Checkpoints: plain .npz files (no pickle), written atomically, validated on load.

A checkpoint holds the learner's tensors under the names its agent declares (the tutorial's agent:
its weights in the tutorial's layout, ``W1`` (H, D) and ``W2`` (H,), so numpy alone can load a
policy from it; the RMSProp cache ``cache_W1``/``cache_W2`` or Adam's state ``adam/...``; the
gradient of the batch in progress ``grad_W1``/``grad_W2``. The MIT lab's agents: Keras-layout names
such as ``dense_0/kernel``, ``grad/<name>``, ``adam/<key>``), plus everything needed to resume:
counters, running reward, the returns of the last episodes, the config (which names the agent) and
the RNG state.

Format 2 (this one) stores any agent's tensors; format 1 (fastpong before it had several agents)
held the tutorial agent's six tensors and no returns window, and is read as such.
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
FORMAT_VERSION = 2
SUPPORTED_FORMAT_VERSIONS = frozenset({1, 2})
#: The tutorial agent's tensors, the only ones of a format-1 checkpoint.
TENSOR_KEYS = ("W1", "W2", "cache_W1", "cache_W2", "grad_W1", "grad_W2")
COUNTER_KEYS = ("episodes", "env_steps", "updates", "episodes_in_batch")
FLOAT_KEYS = ("running_reward", "wall_seconds")
TEXT_KEYS = ("config", "rng_state")
#: Everything of a checkpoint that is not a learner's tensor.
META_KEYS = (*COUNTER_KEYS, *FLOAT_KEYS, *TEXT_KEYS, "format_version", "recent_returns")


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
                    config: dict, rng_state: dict, recent_returns=()) -> None:
    clash = sorted(set(tensors) & set(META_KEYS))
    if clash:
        raise ValueError(f"tensor names {clash} are reserved for the checkpoint's own fields")
    arrays = {key: np.asarray(value) for key, value in tensors.items()}
    arrays.update({key: np.int64(counters[key]) for key in COUNTER_KEYS})
    arrays["running_reward"] = np.float64(np.nan if running_reward is None else running_reward)
    arrays["wall_seconds"] = np.float64(wall_seconds)
    arrays["recent_returns"] = np.asarray(recent_returns, dtype=np.float64)
    arrays["config"] = np.array(json.dumps(config, sort_keys=True))
    arrays["rng_state"] = np.array(json.dumps(rng_state))
    arrays["format_version"] = np.int64(FORMAT_VERSION)
    write_atomically(Path(path), lambda f: np.savez(f, **arrays))


def load_checkpoint(path, *, hidden: int | None = None, input_size: int | None = None) -> dict:
    """The checkpoint's contents as a dict; CheckpointError with one line if anything is off.

    Its tensors are under "tensors" and, as before, at the top level by name. hidden /
    input_size, when given, are the tutorial network's shapes the caller expects (W1 (H, D))."""
    path = Path(path)
    data = _read_arrays(path)
    version = format_version(path, data)
    required = (*TENSOR_KEYS, *COUNTER_KEYS, *FLOAT_KEYS, *TEXT_KEYS) if version == 1 else (
        *COUNTER_KEYS, *FLOAT_KEYS, *TEXT_KEYS)
    missing = [k for k in required if k not in data]
    if missing:
        raise CheckpointError(f"checkpoint {path} is missing {', '.join(missing)}")
    tensors = {key: value for key, value in data.items() if key not in META_KEYS}
    for key, value in tensors.items():
        if value.dtype.kind not in "fiu":
            raise CheckpointError(f"checkpoint {path}: {key} must be numeric, got {value.dtype} {value.shape}")
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise CheckpointError(f"checkpoint {path}: {key} holds non-finite values")
    if "W1" in tensors:
        _check_tutorial_network(path, tensors, hidden, input_size)
    result = dict(tensors)
    result["tensors"] = tensors
    result["format_version"] = version
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
    recent = data.get("recent_returns", np.zeros(0))
    if recent.ndim != 1 or recent.dtype.kind != "f" or not np.all(np.isfinite(recent)):
        raise CheckpointError(f"checkpoint {path}: recent_returns must be finite floats of shape (K,)")
    result["recent_returns"] = [float(r) for r in recent]
    try:
        result["config"] = json.loads(str(data["config"]))
        result["rng_state"] = json.loads(str(data["rng_state"]))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint {path}: config or RNG state is not valid JSON ({exc})") from None
    return result


def _check_tutorial_network(path: Path, tensors: dict, hidden, input_size) -> None:
    w1 = tensors["W1"]
    if w1.ndim != 2:
        raise CheckpointError(f"checkpoint {path}: W1 must have shape (H, D), got {w1.shape}")
    h, d = w1.shape
    if (hidden is not None and h != hidden) or (input_size is not None and d != input_size):
        raise CheckpointError(
            f"checkpoint {path} holds a network of hidden={h}, input_size={d}; "
            f"expected hidden={hidden}, input_size={input_size}"
        )


def check_tensors(path, tensors: dict, expected: dict) -> None:
    """CheckpointError naming the first tensor of `expected` ({name: shape}) that is missing or
    of another shape or kind."""
    for name, shape in expected.items():
        value = tensors.get(name)
        if value is None:
            raise CheckpointError(f"checkpoint {path} is missing {name}")
        if value.shape != tuple(shape) or value.dtype.kind != "f":
            raise CheckpointError(
                f"checkpoint {path}: {name} must be float of shape {tuple(shape)}, got {value.dtype} {value.shape}"
            )


def load_policy_weights(path) -> dict:
    """Just {'W1', 'W2'} from a checkpoint or any .npz holding them (e.g. the shipped policy)."""
    path = Path(path)
    data = _read_arrays(path, keys=("W1", "W2", "format_version"))
    format_version(path, data)  # a bare {W1, W2} export (the shipped policy) counts as format 1
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


def format_version(path: Path, data: dict) -> int:
    """The checkpoint's format version (1 when it has none: fastpong's first checkpoints);
    CheckpointError naming both versions unless this fastpong reads it."""
    if "format_version" not in data:
        return 1
    value = data["format_version"]
    if value.shape != () or value.dtype.kind not in "iu":
        raise CheckpointError(f"checkpoint {path}: format_version must be an integer, got {value.dtype} {value.shape}")
    version = int(value)
    if version not in SUPPORTED_FORMAT_VERSIONS:
        readable = ", ".join(str(v) for v in sorted(SUPPORTED_FORMAT_VERSIONS))
        raise CheckpointError(f"checkpoint {path} has format version {version}; this fastpong reads "
                              f"version{'s' if len(SUPPORTED_FORMAT_VERSIONS) > 1 else ''} {readable}")
    return version


def load_agent_weights(path):
    """(agent, config or None, weights) from a checkpoint, a weights snapshot holding a config,
    or an .npz of the tutorial's W1/W2 alone (the shipped policy): any agent's policy."""
    from ..agents import get_agent
    from ..config import TrainConfig

    path = Path(path)
    text = _read_arrays(path, keys=("config", "format_version"))
    format_version(path, text)
    if "config" not in text:
        return get_agent("karpathy"), None, load_policy_weights(path)
    try:
        config = TrainConfig.from_dict(json.loads(str(text["config"])))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} holds an invalid config ({exc})") from None
    agent = config.agent_record()
    expected = agent.weight_shapes(config)
    weights = _read_arrays(path, keys=tuple(expected))
    check_tensors(path, weights, expected)
    for name, value in weights.items():
        if not np.all(np.isfinite(value)):
            raise CheckpointError(f"checkpoint {path}: {name} holds non-finite values")
    return agent, config, weights


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
    except CheckpointError:
        raise
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
