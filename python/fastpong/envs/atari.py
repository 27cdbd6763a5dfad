"""A batch of N Atari (ALE) environments stepped together.

Each environment of an :class:`EnvBatch` behaves exactly like
``gymnasium.make(env_id)`` (frames, rewards, episode ends), with two
differences in API only:

* ``step`` takes and returns whole batches (NumPy arrays);
* episodes restart inside the step on which they end ("same-step" autoreset):
  when env ``i`` ends on a step, ``frames[i]`` returned by that step is already
  the first frame of its next episode, while ``rewards[i]`` and
  ``episode_ends[i]`` belong to the final step of the old episode.

Two implementations sit behind the same API:

* native: ``ale_py.vector_env.AtariVectorEnv`` (C++ threads, no Python per
  env), used whenever the id's settings can be expressed with it (fixed integer
  frameskip, RGB observations, default game mode and difficulty, ...).
  ``ALE/Pong-v5`` and ``PongNoFrameskip-v4`` are native.
* fallback: ``gymnasium.vector.SyncVectorEnv`` over ``gymnasium.make(env_id)``
  envs, for everything else (e.g. ``Pong-v0``/``Pong-v4``, whose frameskip is
  drawn at random from (2, 5) on every step; given a fixed ``frameskip``, as
  the MIT lab's ``Pong-v0`` with 5, they are native too).

Known differences of the native path from gymnasium.make, both only with
sticky actions (repeat_action_probability > 0):

* seeds: see ``_native_ale_seed``; about half of all seeds can't be passed on
  to AtariVectorEnv the way gym.make passes them to ALE;
* after an episode ends in the middle of a frameskip, gym.make's AtariEnv
  still calls ``ale.act()`` for the remaining frames (the game is over, so
  nothing is emulated, but ALE draws a sticky-action random number on each
  call) while AtariVectorEnv stops at once: from the next episode on, the
  sticky-action random streams are offset, and play differs.
With repeat_action_probability=0 the native path is identical to gym.make,
episode ends and resets included.

This module is standalone: it imports only the standard library, NumPy,
gymnasium and ale_py (not the rest of fastpong).
"""

from __future__ import annotations

import difflib
import inspect
import os
from dataclasses import dataclass, field
from typing import Any

import ale_py
import gymnasium
import numpy as np

__all__ = [
    "EnvBatch",
    "check_frameskip",
    "default_num_envs",
    "make_env_batch",
    "validate_env_id",
]

gymnasium.register_envs(ale_py)

_ALE_ENTRY_POINT = "ale_py.env:AtariEnv"
_EXAMPLE_IDS = "'ALE/Pong-v5', 'PongNoFrameskip-v4' or 'Pong-v0'"

# AtariEnv's own defaults, for settings an id's spec leaves out.
_ATARI_ENV_DEFAULTS = {
    name: p.default
    for name, p in inspect.signature(ale_py.env.AtariEnv.__init__).parameters.items()
    if p.default is not inspect.Parameter.empty
}

# ALE treats max_num_frames_per_episode <= 0 (or unset) as "no limit", but
# AtariVectorEnv needs a number: 2**30 frames is ~200 days of play at 60 fps,
# and leaves headroom below INT_MAX (it initialises a counter to limit + 1).
_UNLIMITED_FRAMES = 2**30


# --------------------------------------------------------------------------
# Environment ids
# --------------------------------------------------------------------------


def _is_ale_spec(spec: gymnasium.envs.registration.EnvSpec) -> bool:
    entry = spec.entry_point
    if isinstance(entry, str):
        return entry == _ALE_ENTRY_POINT
    return isinstance(entry, type) and issubclass(entry, ale_py.env.AtariEnv)


def _ale_ids() -> list[str]:
    return [k for k, s in gymnasium.registry.items() if _is_ale_spec(s)]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def validate_env_id(env_id: str) -> None:
    """Raise ``ValueError`` (one line) unless ``env_id`` is a registered ALE id.

    Cheap: only looks at gymnasium's registry, never creates an emulator.
    """
    if not isinstance(env_id, str):
        raise ValueError(
            f"environment id must be a string such as {_EXAMPLE_IDS}, "
            f"got {type(env_id).__name__} {env_id!r}"
        )
    try:
        spec = gymnasium.spec(env_id)
    except gymnasium.error.Error as exc:
        close = difflib.get_close_matches(env_id, _ale_ids(), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown environment id {env_id!r}: expected a gymnasium ALE id such as "
            f"{_EXAMPLE_IDS} (gymnasium says: {_one_line(exc)}){hint}"
        ) from None
    if not _is_ale_spec(spec):
        raise ValueError(
            f"environment id {env_id!r} is registered in gymnasium but is not an ALE "
            f"(Atari) environment (entry point {spec.entry_point!r}): expected an id such "
            f"as {_EXAMPLE_IDS}"
        )


# --------------------------------------------------------------------------
# Default batch size
# --------------------------------------------------------------------------


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_num_envs() -> int:
    """Number of environments that keeps this machine's cores busy: 4 per core,
    at least 2 and at most 16.

    Measured with EnvBatch/AtariVectorEnv on ALE/Pong-v5 (RGB 210x160,
    frameskip 4, sticky actions, random up/down actions, num_threads=0) on a
    2-core machine that other jobs shared (so +-15% noise; medians of runs
    taken while the machine was otherwise idle), env-steps/s:
        N=1: 2.2k  N=2: 3.2-4.5k  N=4: 3.9-4.8k  N=8: 5.0-5.3k  N=16: 5.3-5.5k
        N=32: 5.1-6.1k  N=64: 4.6k
    With one env per core the workers wait on each other and on the Python
    side (copying frames, submitting actions) every step; from ~4 per core on,
    that overhead is amortised and the rate is within noise of its plateau.
    Far beyond it, per-step frame buffers (100 KB per env, freshly allocated)
    and emulator state stop fitting in the caches and it falls again. We stay
    at the low end of the plateau because every env also holds an episode in
    flight in the learner (memory, and with Karpathy's 10-episode batches,
    episodes started under an older policy).
    """
    return max(2, min(16, 4 * _cpu_count()))


# --------------------------------------------------------------------------
# Configuration derived from the gymnasium spec
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Config:
    env_id: str
    game: str
    # Keyword arguments for gymnasium.make (the fallback path); only overrides.
    make_kwargs: dict[str, Any]
    # AtariEnv settings after applying spec kwargs and overrides.
    settings: dict[str, Any]
    max_episode_steps: int | None  # spec's TimeLimit, in agent steps
    native_reasons: tuple[str, ...] = field(default=())  # why not native; empty if native

    @property
    def native_ok(self) -> bool:
        return not self.native_reasons


def check_frameskip(frameskip: Any) -> int | None:
    """``frameskip`` as an int, or None (the id's own); ValueError unless None or an int >= 1."""
    if frameskip is None:
        return None
    if isinstance(frameskip, (bool, np.bool_)) or not isinstance(frameskip, (int, np.integer)) \
            or frameskip < 1:
        raise ValueError(f"frameskip must be a positive integer (emulator frames per agent step), "
                         f"got {frameskip!r}")
    return int(frameskip)


def _resolve_config(
    env_id: str, repeat_action_probability: float | None, frameskip: int | None = None
) -> _Config:
    validate_env_id(env_id)
    spec = gymnasium.spec(env_id)
    settings = dict(_ATARI_ENV_DEFAULTS)
    settings.update(spec.kwargs)
    make_kwargs: dict[str, Any] = {}
    frameskip = check_frameskip(frameskip)
    if frameskip is not None:
        # A fixed skip replaces the id's own (Pong-v0's random 2 to 4): as gymnasium.make(env_id,
        # frameskip=k), and with an int skip the id can run on the native path.
        settings["frameskip"] = frameskip
        make_kwargs["frameskip"] = frameskip
    if repeat_action_probability is not None:
        rap = float(repeat_action_probability)
        if not 0.0 <= rap <= 1.0:
            raise ValueError(
                f"repeat_action_probability must be in [0, 1], got {repeat_action_probability!r}"
            )
        settings["repeat_action_probability"] = rap
        make_kwargs["repeat_action_probability"] = rap

    if settings.get("continuous"):
        raise ValueError(
            f"environment id {env_id!r} uses continuous actions; EnvBatch only supports "
            "discrete action indices"
        )

    reasons = []
    frameskip = settings.get("frameskip")
    if type(frameskip) is not int:
        reasons.append(f"frameskip {frameskip!r} is not a fixed integer")
    if settings.get("obs_type", "rgb") != "rgb":
        reasons.append(f"obs_type {settings.get('obs_type')!r} is not 'rgb'")
    for key in ("mode", "difficulty", "render_mode"):
        if settings.get(key) is not None:
            reasons.append(f"{key}={settings[key]!r}")
    if settings.get("sound_obs"):
        reasons.append("sound_obs=True")
    known = set(_ATARI_ENV_DEFAULTS) | {"game"}
    unknown = sorted(set(settings) - known)
    if unknown:
        reasons.append(f"unknown AtariEnv settings {unknown}")
    if spec.additional_wrappers or getattr(spec, "apply_api_compatibility", False):
        reasons.append("the spec adds wrappers")
    if ale_py.roms.get_rom_path(settings["game"]) is None:
        reasons.append(f"no ROM for game {settings['game']!r}")

    return _Config(
        env_id=env_id,
        game=settings["game"],
        make_kwargs=make_kwargs,
        settings=settings,
        max_episode_steps=spec.max_episode_steps,
        native_reasons=tuple(reasons),
    )


# --------------------------------------------------------------------------
# Seeding
# --------------------------------------------------------------------------


def _check_seed(seed: Any) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
    return int(seed)


def _native_ale_seed(seed: int) -> int:
    """ALE ``random_seed`` for AtariVectorEnv so that it behaves like
    ``gymnasium.make(env_id).reset(seed=seed)`` where it can.

    ``AtariEnv.reset(seed=s)`` sets the emulator's ``random_seed`` to the second
    32-bit word of ``np.random.SeedSequence(s)``, as a (possibly negative)
    int32; ALE then seeds its RNG (used for sticky actions) with that value cast
    to uint32, and 0 means "seed from the clock". AtariVectorEnv passes its
    seeds to ALE unchanged but ignores negative ones (it keeps the current RNG
    state). So a positive derived value is used as is (identical to gym.make);
    a negative one can't be expressed and is replaced by its low 31 bits
    (deterministic, but a different sticky-action sequence from gym.make(seed=s));
    0 becomes 1 to stay reproducible. Without sticky actions
    (repeat_action_probability=0) the emulator doesn't use this RNG (checked
    for Pong: any seeds give identical play), so the seed doesn't matter there.
    """
    word = int(np.random.SeedSequence(seed).generate_state(n_words=2)[1])
    as_int32 = word - 2**32 if word >= 2**31 else word
    if as_int32 > 0:
        return as_int32
    return (as_int32 & 0x7FFFFFFF) or 1


def _native_seed_matches_gym(seed: int) -> bool:
    """Whether a native EnvBatch env seeded with ``seed`` reproduces
    ``gymnasium.make(...).reset(seed=seed)`` also with sticky actions
    (see ``_native_ale_seed``). Always true in the fallback path."""
    word = int(np.random.SeedSequence(seed).generate_state(n_words=2)[1])
    return 0 < word < 2**31


# --------------------------------------------------------------------------
# The batch
# --------------------------------------------------------------------------


class EnvBatch:
    """N ALE environments of one id, stepped together.

    Create with :func:`make_env_batch`. Attributes: ``num_envs``, ``env_id``,
    ``native`` (True when running on ``AtariVectorEnv``), ``frame_shape``
    (``(210, 160, 3)`` for RGB ids), ``num_actions``, ``action_meanings``.
    """

    def __init__(
        self,
        config: _Config,
        num_envs: int,
        threads: int | None,
        seed: int | None,
    ) -> None:
        self.env_id = config.env_id
        self.num_envs = num_envs
        self.native = config.native_ok
        #: emulator frames per step: an int, or Pong-v0's (2, 5) (a random skip of 2 to 4)
        self.frameskip = config.settings["frameskip"]
        self._config = config
        self._pending_seed = seed
        self._started = False
        self._closed = False
        self._max_episode_steps = config.max_episode_steps
        self._elapsed = np.zeros(num_envs, dtype=np.int64)
        self._in_flight = None  # actions sent and not yet received

        if self.native:
            self._venv = self._make_native(config, num_envs, threads)
            self.num_actions = int(self._venv.single_action_space.n)
            self.frame_shape = tuple(self._venv.single_observation_space.shape[1:])
        else:
            self._venv = self._make_fallback(config, num_envs)
            self.num_actions = int(self._venv.single_action_space.n)
            self.frame_shape = tuple(self._venv.single_observation_space.shape)
        self.action_meanings = self._action_meanings(config)

    # -- construction ------------------------------------------------------

    @staticmethod
    def _make_native(config: _Config, num_envs: int, threads: int | None):
        from ale_py.vector_env import AtariVectorEnv

        s = config.settings
        max_frames = s.get("max_num_frames_per_episode")
        if max_frames is None or max_frames <= 0:
            max_frames = _UNLIMITED_FRAMES
        return AtariVectorEnv(
            game=config.game,
            num_envs=num_envs,
            batch_size=num_envs,
            num_threads=threads or 0,
            img_height=210,
            img_width=160,
            grayscale=False,
            stack_num=1,
            frameskip=s["frameskip"],
            maxpool=False,
            noop_max=0,
            use_fire_reset=False,
            reward_clipping=False,
            episodic_life=False,
            repeat_action_probability=float(s["repeat_action_probability"]),
            full_action_space=bool(s["full_action_space"]),
            max_num_frames_per_episode=int(max_frames),
            autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP,
        )

    @staticmethod
    def _make_fallback(config: _Config, num_envs: int):
        env_id, kwargs = config.env_id, dict(config.make_kwargs)

        def make():
            return gymnasium.make(env_id, **kwargs)

        # copy=True: hand out a fresh frames array per step (SyncVectorEnv would
        # otherwise reuse one buffer), as the native path does.
        return gymnasium.vector.SyncVectorEnv(
            [make] * num_envs,
            copy=True,
            autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP,
        )

    def _action_meanings(self, config: _Config) -> list[str]:
        if self.native:
            # Same action set as AtariEnv: minimal or legal set of the ROM.
            names = {v: k for k, v in ale_py.Action.__members__.items()}
            return [names[a] for a in self._venv.ale.get_action_set()]
        return list(self._venv.envs[0].unwrapped.get_action_meanings())

    # -- API -----------------------------------------------------------------

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Reset all envs; returns frames, uint8 ``(N, *frame_shape)``, C-contiguous.

        ``seed=s`` seeds env ``i`` like ``gymnasium.make(env_id).reset(seed=s + i)``
        (see ``_native_ale_seed`` for the one limit of the native path with
        sticky actions). ``seed=None`` uses the ``seed`` given to
        :func:`make_env_batch` on the first reset, and afterwards continues each
        env's random state, like ``env.reset()`` without a seed.
        """
        self._check_open()
        if self._in_flight is not None:
            self.recv()  # finish the step in flight; its results belong to the old episodes
        seed = _check_seed(seed)
        if seed is None and not self._started:
            seed = self._pending_seed
        self._started = True
        self._elapsed[:] = 0
        if self.native:
            if seed is None:
                obs, _ = self._venv.reset()
            else:
                seeds = np.array(
                    [_native_ale_seed(seed + i) for i in range(self.num_envs)], dtype=np.int64
                )
                obs, _ = self._venv.reset(seed=seeds)
            return self._native_frames(obs)
        obs, _ = self._venv.reset(seed=seed)
        return np.ascontiguousarray(obs)

    def step(self, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Step every env with ``actions[i]`` (an index into the env's action set).

        Returns ``(frames, rewards, episode_ends)``: uint8 ``(N, *frame_shape)``,
        float32 ``(N,)``, bool ``(N,)`` (terminated or truncated). An env whose
        episode ends on this step is reset within it: its frame is the first
        frame of the next episode, its reward the final step's reward.
        """
        self.send(actions)
        return self.recv()

    def send(self, actions) -> None:
        """First half of :meth:`step`: the native path starts emulating in its
        worker threads and returns at once, so the caller can work meanwhile
        (e.g. on another batch) until :meth:`recv`. One send, then one recv."""
        self._check_open()
        if not self._started:
            raise RuntimeError("EnvBatch.step() called before reset()")
        if self._in_flight is not None:
            raise RuntimeError("EnvBatch.send() called twice without recv()")
        acts = self._check_actions(actions)
        if self.native:
            self._venv.send(acts)
            self._in_flight = True
        else:
            self._in_flight = acts  # the fallback steps synchronously, in recv()

    def recv(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Second half of :meth:`step`: waits for the step sent last; same results."""
        self._check_open()
        if self._in_flight is None:
            raise RuntimeError("EnvBatch.recv() called without send()")
        acts, self._in_flight = self._in_flight, None
        if self.native:
            obs, rew, term, trunc, _ = self._venv.recv()
            frames = self._native_frames(obs)
            ends = np.logical_or(term, trunc)
            if self._max_episode_steps is not None:
                self._native_time_limit(frames, ends)
        else:
            obs, rew, term, trunc, _ = self._venv.step(acts)
            frames = np.ascontiguousarray(obs)
            ends = np.logical_or(term, trunc)
        return frames, np.asarray(rew, dtype=np.float32), ends

    def close(self) -> None:
        """Release the emulators. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        venv, self._venv = self._venv, None
        if venv is not None:
            if self.native and self._in_flight is not None:
                venv.recv()  # let the workers finish the step they are on
            venv.close()
            if self.native:
                # VectorEnv.close() does not free AtariVectorEnv's C++ workers;
                # dropping the last reference to the interface does.
                venv.ale = None

    def __enter__(self) -> EnvBatch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "native AtariVectorEnv" if self.native else "gymnasium SyncVectorEnv"
        return f"EnvBatch({self.env_id!r}, num_envs={self.num_envs}, {kind})"

    # -- helpers ---------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("EnvBatch is closed")

    def _check_actions(self, actions) -> np.ndarray:
        arr = np.asarray(actions)
        n, k = self.num_envs, self.num_actions
        if arr.shape != (n,):
            raise ValueError(
                f"actions: expected an integer array of shape ({n},), got shape "
                f"{arr.shape} (dtype {arr.dtype})"
            )
        if arr.dtype.kind not in "iu":  # signed or unsigned integers; bool is kind "b"
            raise ValueError(
                f"actions: expected integer action indices in [0, {k}), got dtype {arr.dtype}"
            )
        if n and (arr.min() < 0 or arr.max() >= k):
            bad = arr[(arr < 0) | (arr >= k)]
            raise ValueError(
                f"actions: expected action indices in [0, {k}) for {self.env_id!r}, "
                f"got {bad.tolist()[:8]}"
            )
        if self.native:
            return np.ascontiguousarray(arr, dtype=np.int32)
        return arr.astype(np.int64, copy=False)

    def _native_frames(self, obs: np.ndarray) -> np.ndarray:
        # (N, stack=1, H, W, 3) -> (N, H, W, 3); a fresh array each call.
        return np.ascontiguousarray(obs.reshape((obs.shape[0],) + obs.shape[2:]))

    def _native_time_limit(self, frames: np.ndarray, ends: np.ndarray) -> None:
        """Reproduce gymnasium's TimeLimit(max_episode_steps) on the native path."""
        self._elapsed += 1
        self._elapsed[ends] = 0
        hit = self._elapsed >= self._max_episode_steps
        if hit.any():
            obs, _ = self._venv.reset(options={"reset_mask": hit})
            frames[hit] = self._native_frames(obs)[hit]
            ends |= hit
            self._elapsed[hit] = 0


def make_env_batch(
    env_id: str,
    num_envs: int,
    *,
    threads: int | None = None,
    seed: int | None = None,
    repeat_action_probability: float | None = None,
    frameskip: int | None = None,
) -> EnvBatch:
    """Create an :class:`EnvBatch` of ``num_envs`` copies of ``env_id``.

    threads: worker threads of the native path (None or 0: AtariVectorEnv's
        default, one per core up to num_envs); ignored by the fallback path,
        which steps its envs one after another in this thread.
    seed: used by the first ``reset()`` called without a seed.
    repeat_action_probability: sticky-action probability; None keeps the id's
        own (0.25 for ``ALE/*-v5`` and ``*-v0``, 0.0 for ``*-v4``).
    frameskip: emulator frames per step, a fixed int >= 1; None keeps the id's
        own (4 for ``ALE/*-v5``, 1 for ``*NoFrameskip-v4``, 2 to 4 at random for
        ``*-v0``/``*-v4``). ``Pong-v0`` with ``frameskip=5`` is the MIT lab's Pong.
    """
    if isinstance(num_envs, (bool, np.bool_)) or not isinstance(num_envs, (int, np.integer)):
        raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
    if num_envs < 1:
        raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 0
    ):
        raise ValueError(f"threads must be a non-negative int or None, got {threads!r}")
    seed = _check_seed(seed)
    config = _resolve_config(env_id, repeat_action_probability, frameskip)
    return EnvBatch(config, int(num_envs), None if threads is None else int(threads), seed)
