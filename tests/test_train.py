"""The training loop: run directory, checkpoints, resume, determinism, and the fast engine
computing the reference engine's algorithm."""

import csv
import json

import numpy as np
import pytest

import fastpong
from fastpong.checkpoint import load_checkpoint
from fastpong.config import TrainConfig
from fastpong.learners import FastLearner, ReferenceLearner
from fastpong.metrics import COLUMNS
from fastpong.train import RunError, train

EPS32 = float(np.finfo(np.float32).eps)
#: The fast engine's episode gradient against the reference's, elementwise: a float32 sum of T terms
#: is off by at most about T * eps32 * (the sum of the terms' magnitudes), the magnitudes being the
#: reference's backward pass run on |h|, |x|, |dlogp * advantage| and |W2|. The inputs of the sum
#: (h, p, the advantages) carry float32 rounding of their own, covered by the factor. (Measured on
#: the test's episode: the largest error is 0.38 of T * eps32 * magnitude for dW1.)
GRAD_K = 2
#: The RMSProp cache both engines step from in the weight check. Far above 1 - decay times the
#: gradients' squares, it makes the step about lr * g / sqrt(decay * cache): proportional to g, so
#: the weights check the gradient's size, where a first step from an empty cache moves every weight
#: by about lr * 10 * sign(g) and checks only signs.
CACHE = 1e-4


def read_metrics(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_run_directory_contents(tmp_path):
    summary = train(run_dir=tmp_path / "run", episodes=3, num_envs=2, batch_size=2, seed=0, progress=False)
    run = tmp_path / "run"
    assert summary.episodes == 3 and summary.updates == 1 and summary.steps > 0
    config = json.loads((run / "config.json").read_text())
    assert config["num_envs"] == 2 and config["threads"] >= 1 and config["seed"] == 0
    assert config["batch_size"] == 2 and config["learning_rate"] == 1e-4
    rows = read_metrics(run)
    assert list(rows[0]) == list(COLUMNS)
    assert [int(r["episode"]) for r in rows] == [1, 2, 3]
    for r in rows:  # Pong: one side reaches 21, reward = won - lost
        assert max(int(r["points_won"]), int(r["points_lost"])) == 21
        assert float(r["reward"]) == int(r["points_won"]) - int(r["points_lost"])
    assert int(rows[-1]["env_steps"]) == summary.steps
    ckpt = load_checkpoint(run / "checkpoint.npz", hidden=200, input_size=6400)
    assert ckpt["episodes"] == 3 and ckpt["updates"] == 1 and ckpt["episodes_in_batch"] == 1
    assert ckpt["running_reward"] == pytest.approx(float(rows[-1]["running_reward"]), abs=1e-5)
    assert np.any(ckpt["grad_W1"] != 0)  # the third episode's gradient waits for the next batch
    assert np.any(ckpt["cache_W1"] != 0)


@pytest.mark.parametrize("num_envs", [1, 2])
def test_same_seed_same_weights(tmp_path, num_envs):
    """Reproducible with one environment, and with two (two lanes that take turns in a fixed
    order)."""
    weights = []
    for name in ("a", "b"):
        train(run_dir=tmp_path / name, episodes=2, num_envs=num_envs, batch_size=1, seed=7, progress=False)
        weights.append(load_checkpoint(tmp_path / name / "checkpoint.npz")["W1"])
    assert np.array_equal(weights[0], weights[1])
    assert not np.array_equal(weights[0], fastpong.Policy(seed=7).to_model()["W1"])  # it learned


def test_resume_continues_counters_and_metrics(tmp_path):
    run = tmp_path / "run"
    first = train(run_dir=run, episodes=2, num_envs=2, batch_size=1, seed=3, progress=False)
    before = load_checkpoint(run / "checkpoint.npz")
    second = train(run_dir=run, resume=True, episodes=4, num_envs=2, progress=False)
    after = load_checkpoint(run / "checkpoint.npz")
    assert (first.episodes, second.episodes) == (2, 4)
    assert second.updates == 4 and after["updates"] == 4
    assert after["env_steps"] > before["env_steps"]
    assert [int(r["episode"]) for r in read_metrics(run)] == [1, 2, 3, 4]
    assert after["wall_seconds"] > before["wall_seconds"]
    assert after["config"]["seed"] == 3 and after["config"]["batch_size"] == 1


def test_resume_keeps_the_rows_of_a_run_begun_before_a_column_was_added(tmp_path):
    """A run whose metrics.csv predates a column (mit-pong's entropy) keeps every row it had up
    to the checkpoint, the new column left empty, and hands its last rows to the run (the
    progress line's point win rate)."""
    from fastpong.metrics import MetricsLog

    path = tmp_path / "metrics.csv"
    rows = [",".join(str(v) for v in [i, 800 * i, -21 + i, -20.0, i, 21, 10.0 * i, 900.0]) for i in (1, 2, 3)]
    path.write_text(",".join(COLUMNS) + "\n" + "\n".join(rows) + "\n")
    log = MetricsLog(path, keep_episodes=2, columns=COLUMNS + ("entropy",))
    log.append(dict(episode=3, env_steps=2500, reward=-18.0, running_reward=-19.5, points_won=3,
                    points_lost=21, wall_seconds=31.0, steps_per_second=900.0, entropy=1.5))
    log.close()
    assert [r["episode"] for r in log.kept_rows] == ["1", "2"]
    assert [r["points_won"] for r in log.kept_rows] == ["1", "2"]
    kept = read_metrics(tmp_path)
    assert [r["episode"] for r in kept] == ["1", "2", "3"]
    assert [r["entropy"] for r in kept] == ["", "", "1.5"]
    assert b"\r" not in path.read_bytes()  # one line ending, the kept rows' and the new ones'


def test_resume_refuses_other_settings(tmp_path):
    run = tmp_path / "run"
    train(run_dir=run, episodes=1, num_envs=1, seed=3, progress=False)
    with pytest.raises(RunError, match=r"gamma: 0\.9 != 0\.99"):
        train(run_dir=run, resume=True, episodes=2, gamma=0.9, learning_rate=1e-3, progress=False)
    with pytest.raises(RunError, match="already holds a run"):
        train(run_dir=run, episodes=2, progress=False)
    assert not (run / "learning_rates.csv").exists()  # the refused resume changed nothing


def read_learning_rates(run_dir):
    with open(run_dir / "learning_rates.csv", newline="") as f:
        return [(int(r["episode"]), float(r["learning_rate"])) for r in csv.DictReader(f)]


def test_resume_with_a_new_learning_rate_logs_the_schedule(tmp_path):
    run = tmp_path / "run"
    train(run_dir=run, episodes=2, num_envs=1, batch_size=1, seed=3, progress=False)
    assert not (run / "learning_rates.csv").exists()  # one rate so far: nothing to log
    train(run_dir=run, resume=True, episodes=3, learning_rate=1e-3, progress=False)
    assert read_learning_rates(run) == [(0, 1e-4), (2, 1e-3)]
    assert json.loads((run / "config.json").read_text())["learning_rate"] == 1e-3
    assert load_checkpoint(run / "checkpoint.npz")["config"]["learning_rate"] == 1e-3
    train(run_dir=run, resume=True, episodes=4, progress=False)  # no flag: the run's current rate
    train(run_dir=run, resume=True, episodes=5, learning_rate=1e-3, progress=False)  # the same rate
    assert load_checkpoint(run / "checkpoint.npz")["config"]["learning_rate"] == 1e-3
    train(run_dir=run, resume=True, episodes=6, learning_rate=2e-4, progress=False)
    assert read_learning_rates(run) == [(0, 1e-4), (2, 1e-3), (5, 2e-4)]


def test_a_new_learning_rate_scales_the_next_step_and_keeps_the_optimizer_state(tmp_path):
    """Resumed twice from one checkpoint, the runs play the same game (same RNG state, same
    seeds); the first update after it moves the weights 10x as far with a 10x rate, and RMSProp's
    cache continues from the checkpoint's (decay * old + (1 - decay) * g^2 >= decay * old; a
    cache started afresh would hold (1 - decay) * g^2 alone)."""
    import shutil

    base = tmp_path / "base"
    train(run_dir=base, episodes=2, num_envs=1, batch_size=1, seed=5, progress=False)
    before = load_checkpoint(base / "checkpoint.npz")
    steps = {}
    for name, rate in (("same", 1e-4), ("tenfold", 1e-3)):
        shutil.copytree(base, tmp_path / name)
        train(run_dir=tmp_path / name, resume=True, episodes=3, learning_rate=rate, progress=False)
        after = load_checkpoint(tmp_path / name / "checkpoint.npz")
        assert after["updates"] == before["updates"] + 1
        steps[name] = after["W1"].astype(np.float64) - before["W1"]
        assert np.all(after["cache_W1"] >= np.float32(0.99) * before["cache_W1"] * (1 - 1e-6))
    assert np.abs(steps["same"]).max() > 0
    np.testing.assert_allclose(steps["tenfold"], 10 * steps["same"], rtol=1e-3, atol=1e-7)


def test_reference_engine_runs_the_same_command(tmp_path):
    summary = train(run_dir=tmp_path / "ref", engine="reference", steps=300, seed=1, progress=False)
    assert summary.steps == 300 and summary.episodes == 0
    ckpt = load_checkpoint(tmp_path / "ref" / "checkpoint.npz")
    assert ckpt["config"]["engine"] == "reference" and ckpt["config"]["num_envs"] == 1
    with pytest.raises(ValueError, match="reference engine runs one environment"):
        TrainConfig(engine="reference", num_envs=4).validate()


def _play(learner, frames_seq, rewards_seq):
    """Drives a learner through recorded frames; returns its actions."""
    actions = []
    for frames, reward in zip(frames_seq, rewards_seq):
        learner.observe(0, frames[None])
        actions.append(int(learner.act(0)[0]))
        learner.record_rewards(0, np.array([reward], dtype=np.float32))
    return actions


def test_fast_learner_computes_the_reference_algorithm(pong_play):
    """Same frames, same random stream: the fast engine takes the reference's actions, and its
    episode gradient, RMSProp update and weights match the tutorial's float64 code. (The frames
    are replayed from a recording, whatever the learners choose.)"""
    frames, rewards = pong_play.frames[:-1], pong_play.rewards
    assert pong_play.starts == (0,)  # one episode segment
    assert np.count_nonzero(rewards) > 0  # with scored points in it
    config = TrainConfig(seed=11, learning_rate=1e-3).validate()
    fast = FastLearner(config, [1], np.random.default_rng(5))
    reference = ReferenceLearner(config, [1], np.random.default_rng(5))
    fast_actions = _play(fast, frames, rewards)
    reference_actions = _play(reference, frames, rewards)
    # p agrees to ~1e-6, so a uniform draw lands on different sides only by a freak coincidence
    assert fast_actions == reference_actions
    magnitude = _gradient_magnitude(reference, config.gamma)
    steps = len(reference.xs)
    fast.finish_episode(0, 0)
    reference.finish_episode(0, 0)
    fast_grads, ref_grads = fast.tensors(), reference.tensors()
    gradient_error = {}
    for key in ("W1", "W2"):
        got, expected = fast_grads["grad_" + key].astype(np.float64), ref_grads["grad_" + key]
        gradient_error[key] = np.abs(got - expected)
        tolerance = GRAD_K * EPS32 * steps * magnitude[key]
        worst = np.unravel_index(np.argmax(gradient_error[key] - tolerance), tolerance.shape)
        assert np.all(gradient_error[key] <= tolerance), (
            f"grad_{key}: error {gradient_error[key][worst]:.3g} > {tolerance[worst]:.3g} at {worst}")
    assert np.count_nonzero(ref_grads["grad_W1"]) > 1000  # the check has entries to hold

    # One RMSProp step from the same nonzero cache on both sides (see CACHE).
    for learner in (fast, reference):
        tensors = learner.tensors()
        learner.load_tensors({**tensors, **{f"cache_{k}": np.full_like(tensors[k], CACHE) for k in ("W1", "W2")}})
    before = reference.tensors()
    before = {k: before[k].copy() for k in ("W1", "W2")}
    fast.update()
    reference.update()
    fast_w, ref_w = fast.tensors(), reference.tensors()
    # The step lr * g / (sqrt(cache') + 1e-5) has slope at most lr / sqrt(decay * CACHE) in g, so
    # the weights may differ by that times the gradients' difference, plus float32 rounding of
    # the weights (the fast engine holds them in float32 from the start) and of the step. The step
    # is nearly linear in g here, so the slope bound is nearly reached (0.98 of it measured): the
    # factor 2 is room for other SIMD widths' rounding, far under what a wrong step size gives.
    slope = config.learning_rate / np.sqrt(config.decay_rate * CACHE)
    for key in ("W1", "W2"):
        step = ref_w[key] - before[key]
        assert np.median(np.abs(step[step != 0])) > 100 * EPS32 * np.abs(before[key]).max()  # it moved
        tolerance = 2 * slope * gradient_error[key] + 4 * EPS32 * (np.abs(before[key]) + np.abs(step))
        error = np.abs(fast_w[key].astype(np.float64) - ref_w[key])
        assert np.all(error <= tolerance), f"{key} after the step: error {(error - tolerance).max():.3g} over"
    assert not np.any(fast.tensors()["grad_W1"])  # the step consumed the batch gradient


def _gradient_magnitude(reference: ReferenceLearner, gamma: float) -> dict:
    """The sum of the magnitudes of the terms behind each entry of the episode gradient that
    reference.finish_episode is about to take (from its stored steps)."""
    from fastpong import reference as ref

    epx, eph = np.vstack(reference.xs), np.vstack(reference.hs)
    advantages = ref.standardize_returns(ref.discount_rewards(np.vstack(reference.drs), gamma))
    weighted = np.abs(np.vstack(reference.dlogps) * advantages)
    model = {k: np.abs(v) for k, v in reference.model.items()}
    return ref.policy_backward(np.abs(eph), np.abs(epx), weighted, model)
