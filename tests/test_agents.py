"""Several agents behind one loop: the registry, the learner seam every agent offers, wrong
combinations refused, checkpoints of every format and optimizer."""

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from fastpong.agents import AGENTS, ATARI, CLASSIC, check_agent_plays, env_kind, get_agent
from fastpong.checkpoint import load_checkpoint
from fastpong.config import AGENT_DEFAULT_FIELDS, TrainConfig
from fastpong.train import train

from test_cli import assert_one_line_error, run_cli, snapshot

REPO = Path(__file__).resolve().parents[1]
V1_RUN = REPO / "experiments" / "runs" / "lr1e-3-b10"


def test_registry():
    assert set(AGENTS) == {"karpathy", "mit-cartpole", "mit-pong", "ppo"}
    assert env_kind("CartPole-v1") == env_kind("CartPole-v0") == CLASSIC
    assert env_kind("ALE/Pong-v5") == ATARI
    for agent in AGENTS.values():
        assert set(AGENT_DEFAULT_FIELDS) <= set(agent.defaults)
        assert "fast" in agent.learners
    with pytest.raises(ValueError, match="agent 'mit-cartpole' plays CartPole-v1, CartPole-v0, not 'ALE/Pong-v5' "
                                         r"\(ALE/Pong-v5 is played by karpathy or mit-pong or ppo\)"):
        check_agent_plays(get_agent("mit-cartpole"), "ALE/Pong-v5")
    with pytest.raises(ValueError, match="agent must be one of karpathy, mit-cartpole, mit-pong, ppo, got 'x'"):
        get_agent("x")


def _drive(learner, observations, steps=30):
    """Plays `steps` steps of one env on made-up observations with reward 1, then ends the episode."""
    for t in range(steps):
        learner.observe(0, observations[t][None])
        learner.act(0)
        learner.record_rewards(0, np.array([1.0 if t % 3 == 0 else 0.0], dtype=np.float32))
    learner.finish_episode(0, 0)


@pytest.mark.parametrize("agent_name, engine", [("karpathy", "fast"), ("karpathy", "reference"),
                                                ("mit-cartpole", "fast"), ("mit-cartpole", "reference")])
def test_every_learner_offers_the_seam(agent_name, engine):
    """weights/load_weights and take_gradient/add_gradient, what remote workers need."""
    env_id = "ALE/Pong-v5" if agent_name == "karpathy" else "CartPole-v1"
    config = TrainConfig(env_id=env_id, seed=1, hidden=8, num_envs=1, engine=engine).validate()
    learner = get_agent(agent_name).learners[engine](config, [1], np.random.default_rng(0))
    rng = np.random.default_rng(1)
    if agent_name == "karpathy":
        observations = rng.integers(0, 255, size=(31, 210, 160, 3), dtype=np.uint8)
    else:
        observations = rng.normal(size=(31, 4)).astype(np.float32) * 0.05
    weights = learner.weights()
    assert set(weights) == set(get_agent(agent_name).weight_shapes(config))
    _drive(learner, observations)
    taken = learner.take_gradient()
    assert set(taken) == set(weights) and any(np.any(g) for g in taken.values())
    assert not any(np.any(g) for g in learner.take_gradient().values())  # zeroed by the take
    learner.add_gradient(taken)
    learner.add_gradient(taken)
    again = learner.take_gradient()
    for name in taken:
        np.testing.assert_allclose(again[name], 2 * np.asarray(taken[name]), rtol=1e-6)
    changed = {k: np.asarray(v) + 0.5 for k, v in weights.items()}
    learner.load_weights(changed)
    for name, value in learner.weights().items():
        np.testing.assert_allclose(value, changed[name], rtol=1e-6)
    weights_back = learner.weights()  # a copy: changing it does not touch the learner
    next(iter(weights_back.values()))[...] = 0
    assert any(np.any(v) for v in learner.weights().values())


def test_tutorial_learner_folds_added_gradients_into_its_checkpoint_and_checks_shapes():
    config = TrainConfig(env_id="ALE/Pong-v5", seed=1, hidden=8, num_envs=1).validate()
    learner = get_agent("karpathy").learners["fast"](config, [1], np.random.default_rng(0))
    gradient = {"W1": np.full((8, 6400), 0.25, np.float32), "W2": np.arange(8, dtype=np.float32)}
    learner.add_gradient(gradient)
    learner.add_gradient(gradient)
    tensors = learner.tensors()  # what a checkpoint written now holds
    np.testing.assert_array_equal(tensors["grad_W1"], 0.5)
    np.testing.assert_array_equal(tensors["grad_W2"], 2 * gradient["W2"])
    with pytest.raises(ValueError, match=r"gradient W1 must have shape \(8, 6400\), got \(8, 80\)"):
        learner.add_gradient({"W1": np.zeros((8, 80)), "W2": np.zeros(8)})


# --- wrong combinations: one line, exit 2, nothing written --------------------------------------

@pytest.mark.parametrize("args, fragments", [
    (["--env", "ALE/Pong-v5", "--agent", "mit-cartpole"], ["agent 'mit-cartpole' plays CartPole-v1"]),
    (["--env", "CartPole-v1", "--agent", "karpathy"], ["agent 'karpathy' plays ALE/Pong-v5, Pong-v0, Pong-v4, PongNoFrameskip-v0, "
                                                       "PongNoFrameskip-v4, not 'CartPole-v1'",
                                                       "played by mit-cartpole"]),
    (["--env", "CartPole-v1", "--preset", "karpathy"], ["--preset karpathy holds settings of agent 'karpathy', not of 'mit-cartpole'"]),
    (["--preset", "lab"], ["--preset lab holds settings of agents 'mit-cartpole' and 'mit-pong', not of 'karpathy'"]),
    (["--env", "CartPole-v1", "--decay-rate", "0.9"], ["decay rate is a setting of RMSProp", "optimizer is adam"]),
    (["--optimizer", "adam", "--decay-rate", "0.9"], ["decay rate is a setting of RMSProp"]),
    (["--engine", "reference", "--optimizer", "adam"], ["karpathy agent's reference engine runs rmsprop, not adam"]),
    (["--env", "CartPole-v1", "--engine", "reference", "--optimizer", "rmsprop"],
     ["mit-cartpole agent's reference engine runs adam, not rmsprop"]),
    (["--env", "CartPole-v1", "--optimizer", "sgd"], ["invalid choice: 'sgd'"]),
    (["--agent", "no-such-agent"], ["invalid choice: 'no-such-agent'"]),
    (["--env", "CartPole-v2"], ["unknown environment id 'CartPole-v2'", "also trains CartPole-v1 and CartPole-v0"]),
    (["--env", "Acrobot-v1"], ["is not an ALE (Atari) environment", "also trains CartPole-v1"]),
    (["--env", "CartPole-v1", "--target-return", "nan"], ["target return must be a finite number"]),
])
def test_wrong_combinations(tmp_path, args, fragments):
    result = run_cli("train", "--run-dir", str(tmp_path / "run"), *args)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "run").exists()


def test_an_agent_without_a_reference_engine_is_refused(monkeypatch):
    """The lab's Pong CNN will have only the fast engine: asking for reference is refused."""
    import fastpong.agents as agents

    fast_only = dataclasses.replace(agents.AGENTS["mit-cartpole"], name="fast-only",
                                    learners={"fast": agents.AGENTS["mit-cartpole"].learners["fast"]})
    monkeypatch.setitem(agents.AGENTS, "fast-only", fast_only)
    with pytest.raises(ValueError, match="agent 'fast-only' has no reference engine"):
        TrainConfig(env_id="CartPole-v1", agent="fast-only", engine="reference").validate()


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("agents") / "cartpole"
    train(run_dir=run, env_id="CartPole-v1", episodes=3, seed=1, progress=False)
    return run


def test_cartpole_run_resumed_as_pong_is_refused(cartpole_run):
    before = snapshot(cartpole_run)
    for args, fragment in ((["--env", "ALE/Pong-v5"], "env_id: 'ALE/Pong-v5' != 'CartPole-v1'"),
                           (["--agent", "karpathy"], "agent: 'karpathy' != 'mit-cartpole'"),
                           (["--optimizer", "rmsprop", "--env", "CartPole-v1"], "optimizer: 'rmsprop' != 'adam'")):
        result = run_cli("train", "--run-dir", str(cartpole_run), "--resume", "--episodes", "5", *args)
        assert_one_line_error(result, "was trained with other settings", fragment)
    assert snapshot(cartpole_run) == before


@pytest.mark.parametrize("damage", ["missing", "shape", "adam"])
def test_cartpole_checkpoint_is_validated_against_the_agent(tmp_path, cartpole_run, damage):
    run = tmp_path / "run"
    shutil.copytree(cartpole_run, run)
    checkpoint = run / "checkpoint.npz"
    with np.load(checkpoint) as npz:
        arrays = dict(npz)
    if damage == "missing":
        del arrays["logits/bias"]
    elif damage == "shape":
        arrays["dense_0/kernel"] = arrays["dense_0/kernel"][:, :5]
    else:
        arrays["adam/v_logits/bias"] = -np.ones(2, dtype=np.float32)
    with open(checkpoint, "wb") as f:
        np.savez(f, **arrays)
    before = snapshot(run)
    result = run_cli("train", "--run-dir", str(run), "--resume", "--episodes", "5")
    assert_one_line_error(result, str(checkpoint))
    assert snapshot(run) == before


# --- checkpoints of the tutorial's agent --------------------------------------------------------

def test_version_1_checkpoint_resumes(tmp_path):
    """The shipped training run's checkpoint (format 1, before several agents) still resumes; the
    next checkpoint is format 2 with the same tensor names."""
    if not (V1_RUN / "checkpoint.npz").is_file():
        pytest.skip("experiments/runs/lr1e-3-b10 is not in this checkout")
    run = tmp_path / "run"
    shutil.copytree(V1_RUN, run)
    before = load_checkpoint(run / "checkpoint.npz")
    assert before["format_version"] == 1
    summary = train(run_dir=run, resume=True, steps=before["env_steps"] + 64, num_envs=2, threads=1,
                    progress=False)
    after = load_checkpoint(run / "checkpoint.npz")
    assert after["format_version"] == 2 and summary.steps == before["env_steps"] + 64
    assert after["config"]["agent"] == "karpathy" and after["config"]["optimizer"] == "rmsprop"
    assert set(after["tensors"]) == {"W1", "W2", "cache_W1", "cache_W2", "grad_W1", "grad_W2"}
    assert after["updates"] == before["updates"]  # 64 steps finish no game: no update
    np.testing.assert_array_equal(after["W1"], before["W1"])


def test_pong_with_adam_trains_and_resumes(tmp_path):
    run = tmp_path / "run"
    train(run_dir=run, optimizer="adam", episodes=1, num_envs=1, batch_size=1, hidden=16, seed=0,
          progress=False)
    first = load_checkpoint(run / "checkpoint.npz")
    assert first["config"]["optimizer"] == "adam" and first["config"]["decay_rate"] is None
    assert int(first["adam/step"]) == 1 and first["adam/m_W1"].shape == (16, 6400)
    assert "cache_W1" not in first["tensors"]
    summary = train(run_dir=run, resume=True, episodes=2, num_envs=1, progress=False)
    second = load_checkpoint(run / "checkpoint.npz")
    assert summary.updates == 2 and int(second["adam/step"]) == 2
    assert not np.array_equal(second["adam/v_W1"], first["adam/v_W1"])


def test_step_history_keeps_episodes_through_compaction_and_growth():
    """Episodes of 3 envs of different lengths, in a history of 4 rows: rows of finished episodes
    are dropped when it fills, and it grows when one episode needs more than it has."""
    from fastpong.agents.base import StepHistory

    history = StepHistory(3, 2, capacity=4)
    lengths = {0: 3, 1: 7, 2: 1}  # env 1 outlives the capacity: growth
    expected = {env: [] for env in lengths}
    played = {env: 0 for env in lengths}
    finished = {env: [] for env in lengths}
    for t in range(40):
        obs = np.array([[t, env] for env in range(3)], dtype=np.float32)
        history.append(obs, np.array([t % 2, t % 3, t % 5], dtype=np.int32))
        history.set_last_rewards(np.array([t, -t, 2 * t], dtype=np.float32))
        for env in range(3):
            expected[env].append(t)
            played[env] += 1
            if played[env] == lengths[env]:
                observations, actions, rewards = history.episode(env)
                assert observations[:, 0].tolist() == expected[env] and np.all(observations[:, 1] == env)
                assert actions.tolist() == [s % (2, 3, 5)[env] for s in expected[env]]
                assert rewards.tolist() == [s * (1, -1, 2)[env] for s in expected[env]]
                finished[env].append(len(expected[env]))
                history.restart(env)
                expected[env], played[env] = [], 0
    assert all(len(finished[env]) == 40 // lengths[env] for env in lengths)
    assert history.observations.shape[0] == 8  # grew once, for env 1's 7 steps
