"""Tests for fastpong.envs: EnvBatch must behave like gymnasium.make per env."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from fastpong.envs import EnvBatch, default_num_envs, make_env_batch, validate_env_id
from fastpong.envs.atari import _native_seed_matches_gym

# gymnasium warns that Pong-v0 is "out of date"; using it is deliberate here.
pytestmark = pytest.mark.filterwarnings("ignore:.*out of date.*:DeprecationWarning")

FRAME_SHAPE = (210, 160, 3)


def _make_refs(env_id, n, seed, repeat_action_probability):
    kwargs = {}
    if repeat_action_probability is not None:
        kwargs["repeat_action_probability"] = repeat_action_probability
    refs = [gym.make(env_id, **kwargs) for _ in range(n)]
    firsts = [env.reset(seed=seed + i)[0] for i, env in enumerate(refs)]
    return refs, np.stack(firsts)


def lockstep(
    env_id,
    *,
    n=2,
    seed=0,
    repeat_action_probability=0.0,
    min_steps=0,
    max_steps=5000,
    stop_after_points=1,
    stop_after_episode_ends=0,
    steps_after_end=0,
    action_seed=0,
    expect_native=None,
):
    """Step an EnvBatch and n gym.make envs with the same seeds and random actions,
    asserting identical frames, rewards and episode ends on every step. After an
    episode end, the gym.make env is reset without a seed (it continues its own
    RNG), and its first frame must equal the batch's same-step autoreset frame.

    Runs for at least min_steps and until stop_after_points nonzero rewards and
    stop_after_episode_ends episode ends were seen, then steps_after_end more
    steps (failing after max_steps).
    Returns (steps, points, episode_ends as [(step, env)]).
    """
    refs, first = _make_refs(env_id, n, seed, repeat_action_probability)
    points, ends = 0, []
    with make_env_batch(
        env_id, n, seed=seed, repeat_action_probability=repeat_action_probability
    ) as batch:
        if expect_native is not None:
            assert batch.native is expect_native
        frames = batch.reset()
        assert np.array_equal(frames, first)
        rng = np.random.default_rng(action_seed)
        for t in range(max_steps):
            if (
                t >= min_steps
                and points >= stop_after_points
                and len(ends) >= stop_after_episode_ends
                and (not ends or t > ends[-1][0] + steps_after_end)
            ):
                for env in refs:
                    env.close()
                return t, points, ends
            actions = rng.integers(0, batch.num_actions, size=n)
            frames, rewards, dones = batch.step(actions)
            for i, env in enumerate(refs):
                obs, reward, terminated, truncated, _ = env.step(int(actions[i]))
                done = terminated or truncated
                if done:
                    obs, _ = env.reset()
                    ends.append((t, i))
                points += reward != 0
                assert rewards[i] == reward, f"env {i} step {t}: reward {rewards[i]} != {reward}"
                assert dones[i] == done, f"env {i} step {t}: episode end {dones[i]} != {done}"
                assert np.array_equal(frames[i], obs), (
                    f"env {i} step {t}: frames differ (episode end: {done})"
                )
    for env in refs:
        env.close()
    pytest.fail(
        f"{env_id}: after {max_steps} steps only {points} points and {len(ends)} episode ends"
    )


# ---------------------------------------------------------------------------
# Ids
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env_id", ["ALE/Pong-v5", "PongNoFrameskip-v4", "Pong-v0", "ALE/Breakout-v5"]
)
def test_validate_env_id_accepts_ale_ids(env_id):
    validate_env_id(env_id)


@pytest.mark.parametrize(
    "env_id, expected",
    [
        ("ALE/Pnog-v5", "unknown environment id 'ALE/Pnog-v5'"),
        ("Pong-v9", "unknown environment id 'Pong-v9'"),
        ("ALE/Pong-v4", "unknown environment id 'ALE/Pong-v4'"),
        ("pong", "unknown environment id 'pong'"),
        ("", "unknown environment id ''"),
        ("CartPole-v1", "not an ALE"),
        (42, "must be a string"),
    ],
)
def test_validate_env_id_errors(env_id, expected):
    with pytest.raises(ValueError) as info:
        validate_env_id(env_id)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert "ALE/Pong-v5" in message  # says what is expected


def test_validate_env_id_creates_no_emulator(monkeypatch):
    import ale_py

    def no_emulator(*args, **kwargs):
        raise AssertionError("validate_env_id created an emulator")

    monkeypatch.setattr(ale_py.env.AtariEnv, "__init__", no_emulator)
    monkeypatch.setattr(ale_py, "ALEInterface", no_emulator)
    validate_env_id("ALE/Pong-v5")
    with pytest.raises(ValueError):
        validate_env_id("ALE/Pnog-v5")


def test_make_env_batch_rejects_bad_ids_and_arguments():
    with pytest.raises(ValueError, match="unknown environment id 'ALE/Pnog-v5'"):
        make_env_batch("ALE/Pnog-v5", 2)
    with pytest.raises(ValueError, match="num_envs"):
        make_env_batch("ALE/Pong-v5", 0)
    with pytest.raises(ValueError, match="repeat_action_probability"):
        make_env_batch("ALE/Pong-v5", 2, repeat_action_probability=1.5)
    with pytest.raises(ValueError, match="seed"):
        make_env_batch("ALE/Pong-v5", 2, seed=-1)


def test_default_num_envs():
    n = default_num_envs()
    assert isinstance(n, int) and 1 <= n <= 64


# ---------------------------------------------------------------------------
# Basic API
# ---------------------------------------------------------------------------


def test_native_batch_api():
    with make_env_batch("ALE/Pong-v5", 3, repeat_action_probability=0.0) as batch:
        assert isinstance(batch, EnvBatch)
        assert batch.native is True
        assert batch.num_envs == 3
        assert batch.env_id == "ALE/Pong-v5"
        assert batch.frame_shape == FRAME_SHAPE
        assert batch.num_actions == 6
        assert batch.action_meanings[2:4] == ["RIGHT", "LEFT"]  # up, down in Pong
        frames = batch.reset(seed=1)
        assert frames.shape == (3, *FRAME_SHAPE) and frames.dtype == np.uint8
        assert frames.flags["C_CONTIGUOUS"]
        frames, rewards, ends = batch.step(np.array([2, 3, 2]))
        assert frames.shape == (3, *FRAME_SHAPE) and frames.dtype == np.uint8
        assert frames.flags["C_CONTIGUOUS"]
        assert rewards.shape == (3,) and rewards.dtype == np.float32
        assert ends.shape == (3,) and ends.dtype == np.bool_
        # A list and other integer dtypes are accepted too.
        batch.step([2, 3, 0])
        batch.step(np.array([2, 3, 5], dtype=np.uint8))


@pytest.fixture(scope="module")
def pong3():
    with make_env_batch("ALE/Pong-v5", 3) as batch:
        batch.reset(seed=0)
        yield batch


@pytest.mark.parametrize(
    "actions, expected",
    [
        (np.array([2, 3]), r"shape \(3,\), got shape \(2,\)"),
        (np.array([[2, 3, 2]]), r"shape \(3,\), got shape \(1, 3\)"),
        (np.int64(2), r"shape \(3,\), got shape \(\)"),
        (np.array([2, 6, 3]), r"\[0, 6\).*got \[6\]"),
        (np.array([-1, 2, 3]), r"\[0, 6\).*got \[-1\]"),
        (np.array([2.0, 3.0, 2.0]), "integer.*got dtype float64"),
        (np.array([True, False, True]), "integer.*got dtype bool"),
    ],
)
def test_bad_actions_raise_value_error(pong3, actions, expected):
    with pytest.raises(ValueError, match=expected):
        pong3.step(actions)
    pong3.step(np.array([2, 3, 2]))  # still usable


@pytest.mark.parametrize("env_id", ["ALE/Pong-v5", "Pong-v0"])
def test_returned_frames_are_not_reused(env_id):
    with make_env_batch(env_id, 2, repeat_action_probability=0.0) as batch:
        kept = [batch.reset(seed=0)]
        for _ in range(20):
            kept.append(batch.step(np.array([2, 3]))[0])
        copies = [k.copy() for k in kept]
        for _ in range(5):
            batch.step(np.array([3, 2]))
        assert all(np.array_equal(k, c) for k, c in zip(kept, copies))
        assert not np.array_equal(kept[0], kept[-1])


def test_step_before_reset_and_after_close():
    batch = make_env_batch("ALE/Pong-v5", 2)
    with pytest.raises(RuntimeError, match="reset"):
        batch.step(np.array([2, 3]))
    batch.reset(seed=0)
    batch.close()
    batch.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        batch.step(np.array([2, 3]))
    with pytest.raises(RuntimeError, match="closed"):
        batch.reset()


# ---------------------------------------------------------------------------
# Equivalence with gymnasium.make
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", ["ALE/Pong-v5", "PongNoFrameskip-v4"])
def test_native_lockstep_matches_gym_make(env_id):
    # Up to the first points of both envs (and at least 100 steps).
    _, points, _ = lockstep(
        env_id, n=2, seed=0, min_steps=100, stop_after_points=2, expect_native=True
    )
    assert points >= 2


@pytest.mark.slow
def test_native_full_episode_same_step_autoreset_matches_gym_make():
    # Random play loses 0-21 after ~800-1000 steps at frameskip 4. The batch's
    # frame on the ending step must be gym.make's first frame of the next
    # episode (env.reset() without a seed), and play must stay identical after.
    steps, _, ends = lockstep(
        "ALE/Pong-v5", n=2, seed=0, stop_after_episode_ends=1, steps_after_end=100, max_steps=3000
    )
    assert 500 < ends[0][0] < steps - 100


def test_fallback_pong_v0_matches_gym_make():
    # Pong-v0 draws its frameskip from {2, 3, 4} each step: AtariVectorEnv can't do
    # that, so EnvBatch falls back to gymnasium's vector env. Sticky actions as
    # the id's own (0.25); seeds map to gym.make's exactly here.
    with make_env_batch("Pong-v0", 2) as batch:
        assert batch.native is False
        assert batch.frame_shape == FRAME_SHAPE
    lockstep(
        "Pong-v0", n=2, seed=5, repeat_action_probability=None, min_steps=150, expect_native=False
    )


def test_fallback_full_episode():
    _, _, ends = lockstep(
        "Pong-v0", n=2, seed=0, repeat_action_probability=0.0, stop_after_episode_ends=1,
        steps_after_end=20, max_steps=4000,
    )
    assert ends


def test_sticky_actions_seeding_matches_gym_make_in_first_episode():
    # With sticky actions the seed matters. reset(seed=s) gives env i the ALE
    # seed gym.make(...).reset(seed=s + i) would use whenever AtariVectorEnv can
    # express it (see envs._native_ale_seed); 15 and 16 are such seeds.
    # Only up to the first episode end: there gym.make's AtariEnv keeps calling
    # ale.act() for the rest of the frameskip after the game is over, and ALE
    # draws a sticky-action random number on each of those calls, while
    # AtariVectorEnv stops at once; the two RNG streams are offset from then on.
    assert _native_seed_matches_gym(15) and _native_seed_matches_gym(16)
    lockstep("ALE/Pong-v5", n=2, seed=15, repeat_action_probability=None, min_steps=300)


def test_seeding_is_reproducible_and_seed_dependent():
    def run(seed, reset_seed):
        with make_env_batch("ALE/Pong-v5", 2, seed=seed) as batch:  # sticky actions 0.25
            frames = [batch.reset(seed=reset_seed)]
            rng = np.random.default_rng(1)
            for _ in range(200):
                frames.append(batch.step(rng.integers(0, 6, size=2))[0])
        return np.stack(frames)

    a = run(None, 2)  # 2 and 3: seeds AtariVectorEnv can't pass on as gym.make would
    assert not _native_seed_matches_gym(2)
    assert np.array_equal(a, run(2, None))  # make_env_batch(seed=...) seeds the first reset
    assert np.array_equal(a, run(None, 2))
    assert not np.array_equal(a, run(None, 4))


def _register_once(env_id, **kwargs):
    if env_id not in gym.registry:
        gym.register(env_id, entry_point="ale_py.env:AtariEnv", **kwargs)


def test_time_limits_match_gym_make():
    # ALE's own frame limit (max_num_frames_per_episode, 1001 frames: ends inside
    # a frameskip) and gymnasium's TimeLimit (max_episode_steps), both truncation.
    _register_once(
        "FastpongTest/PongFrameLimit-v0",
        kwargs=dict(
            game="pong", frameskip=4, repeat_action_probability=0.0, max_num_frames_per_episode=1001
        ),
    )
    _register_once(
        "FastpongTest/PongStepLimit-v0",
        kwargs=dict(game="pong", frameskip=4, repeat_action_probability=0.0),
        max_episode_steps=60,
    )
    # 1001 frames end on agent step 251 (frames 1001-1004); TimeLimit after 60 steps.
    for env_id, period in [
        ("FastpongTest/PongFrameLimit-v0", 251),
        ("FastpongTest/PongStepLimit-v0", 60),
    ]:
        with make_env_batch(env_id, 2) as batch:
            assert batch.native
        _, _, ends = lockstep(env_id, n=2, stop_after_episode_ends=4, stop_after_points=0)
        assert [t for t, _ in ends] == [period - 1] * 2 + [2 * period - 1] * 2


def test_other_game_breakout():
    with make_env_batch("ALE/Breakout-v5", 2) as batch:
        assert batch.native and batch.num_actions == 4
    lockstep("ALE/Breakout-v5", n=2, seed=3, min_steps=150, stop_after_points=0)
