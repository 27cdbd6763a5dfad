"""The loop's learner hook: a learner with ``update_due()`` is asked after each lane's observe and
before its act, and the run updates (with its bookkeeping) whenever it says so, instead of per
batch of finished episodes. Learners without the hook keep the episode batches."""

from __future__ import annotations

import dataclasses

import pytest

from fastpong.agents import MIT_CARTPOLE
from fastpong.config import TrainConfig
from fastpong.train import train

EVERY = 7  # observations between two updates the learner asks for


def _hooked(learner_class):
    class HookedLearner(learner_class):
        """mit-cartpole's learner, asking for an update every EVERY observations."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.calls: list[str] = []
            self.updates_done = 0
            HookedLearner.last = self

        def observe(self, lane, observations):
            self.calls.append("observe")
            super().observe(lane, observations)

        def act(self, lane):
            self.calls.append("act")
            return super().act(lane)

        def update_due(self):
            self.calls.append("due")
            return self.calls.count("observe") % EVERY == 0

        def update(self):
            self.calls.append("update")
            self.updates_done += 1
            super().update()

    return HookedLearner


@pytest.fixture
def hooked_cartpole(monkeypatch):
    learner = _hooked(MIT_CARTPOLE.learners["fast"])
    monkeypatch.setitem(MIT_CARTPOLE.learners, "fast", learner)
    return learner


def test_the_run_updates_when_the_learner_asks(hooked_cartpole, tmp_path):
    summary = train(run_dir=tmp_path / "run", env_id="CartPole-v1", num_envs=4, steps=400, seed=0,
                    batch_size=1, progress=False)
    learner = hooked_cartpole.last
    observes = learner.calls.count("observe")
    # One question per observation, between it and the next act; an update only when asked.
    assert learner.calls.count("due") == observes
    questions = [call for call in learner.calls if call in ("observe", "due", "act")]
    assert questions[:3] == ["observe", "due", "act"]
    assert all(questions[i:i + 3] == ["observe", "due", "act"] for i in range(0, len(questions) - 2, 3))
    assert summary.updates == learner.updates_done == observes // EVERY
    # With batch_size 1 the episode batches would have updated once per episode instead.
    assert summary.episodes != summary.updates


def test_learners_without_the_hook_update_per_batch_of_episodes(tmp_path):
    assert not hasattr(MIT_CARTPOLE.learners["fast"], "update_due")
    summary = train(run_dir=tmp_path / "run", env_id="CartPole-v1", num_envs=4, steps=400, seed=0,
                    batch_size=2, progress=False)
    assert summary.updates == summary.episodes // 2


def test_ray_refuses_a_learner_with_its_own_schedule(hooked_cartpole):
    from fastpong.distributed.ray_train import RaySource

    config = dataclasses.replace(TrainConfig(env_id="CartPole-v1"), seed=0).resolved()
    with pytest.raises(ValueError, match="own schedule"):
        RaySource(address="local", workers=1).configure(config)
