"""The policies shipped inside the package: load, have the documented layout, play."""

import numpy as np
import pytest

from fastpong import ConvPolicy, reference
from fastpong.checkpoint import CheckpointError
from fastpong.evaluate import evaluate, resolve_checkpoint
from fastpong.watch.evaluate import load_player


def test_shipped_policy_has_the_tutorials_layout():
    path = resolve_checkpoint("pretrained")
    with np.load(path, allow_pickle=False) as npz:  # numpy alone opens it
        assert sorted(npz.files) == ["W1", "W2"]
        w1, w2 = npz["W1"], npz["W2"]
    assert w1.shape == (200, 6400) and w2.shape == (200,)
    assert w1.dtype == np.float16 and w2.dtype == np.float16
    assert np.all(np.isfinite(w1)) and np.all(np.isfinite(w2))
    # the tutorial's own forward pass can play it
    model = {"W1": w1.astype(np.float64), "W2": w2.astype(np.float64)}
    x = np.zeros(6400)
    x[[1000, 1080]] = [1, -1]
    p, h = reference.policy_forward(x, model)
    assert 0 < p < 1 and h.shape == (200,)


def test_shipped_policy_plays_a_short_evaluation():
    result = evaluate("pretrained", episodes=2, num_envs=2, seed=0, max_steps=400)
    summary = result.summary()
    assert summary["episodes"] == 2
    assert summary["points_won"] + summary["points_lost"] > 0  # a handful of points were played
    for episode in result.episodes:
        assert episode.steps == 400 or max(episode.points_won, episode.points_lost) == 21


def test_an_unknown_shipped_name_is_a_path():
    with pytest.raises(CheckpointError, match="no checkpoint at pretrained-dqn"):
        resolve_checkpoint("pretrained-dqn")  # not a shipped name: an ordinary (missing) path


def test_shipped_cnn_policy_is_the_lab_agent_on_the_lab_s_environment():
    player = load_player("pretrained-cnn")
    assert player.agent.name == "mit-pong"
    assert (player.env_id, player.frameskip) == ("Pong-v0", 5)  # what it was trained on
    with np.load(resolve_checkpoint("pretrained-cnn"), allow_pickle=False) as npz:  # no pickles
        names = set(npz.files) - {"config", "format_version"}
        assert names == set(ConvPolicy.PARAMETER_NAMES)
        assert all(npz[name].dtype == np.float32 and np.all(np.isfinite(npz[name])) for name in names)


def test_shipped_cnn_policy_plays_a_short_evaluation():
    result = evaluate("pretrained-cnn", episodes=2, num_envs=2, seed=0, max_steps=300)
    summary = result.summary()
    assert summary["episodes"] == 2
    assert summary["points_won"] + summary["points_lost"] > 0


def test_shipped_ppo_policy_is_the_actor_critic_on_pong_v5():
    from fastpong.nn.actor_critic import ActorCriticCNN

    player = load_player("pretrained-ppo")
    assert player.agent.name == "ppo"
    assert (player.env_id, player.frameskip) == ("ALE/Pong-v5", None)  # the id's own frameskip, 4
    with np.load(resolve_checkpoint("pretrained-ppo"), allow_pickle=False) as npz:  # no pickles
        names = set(npz.files) - {"config", "format_version"}
        assert names == set(ActorCriticCNN.PARAMETER_NAMES)  # the weights only, no Adam state
        for name in names:
            assert npz[name].shape == ActorCriticCNN.PARAMETER_SHAPES[name], name
            assert npz[name].dtype == np.float32 and np.all(np.isfinite(npz[name])), name


def test_shipped_ppo_policy_plays_a_short_evaluation():
    result = evaluate("pretrained-ppo", episodes=2, num_envs=2, seed=0, max_steps=300)
    summary = result.summary()
    assert summary["episodes"] == 2
    assert summary["points_won"] + summary["points_lost"] > 0


def test_eval_help_names_every_shipped_policy(capsys):
    from fastpong.cli import main
    from fastpong.shipped import SHIPPED_POLICIES

    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--help"])
    assert exit_info.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for name in SHIPPED_POLICIES:
        assert f"'{name}'" in help_text, name
