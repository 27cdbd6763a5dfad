"""NumPy's BLAS runs on one thread while the fast engine trains (training/blas_threads.py): its
worker threads otherwise took the cores fastpong's own kernels wanted. The reference engines keep
NumPy's threads, and the setting is restored when the session ends."""

from __future__ import annotations

import pytest
from threadpoolctl import threadpool_info

from fastpong.agents import MIT_CARTPOLE
from fastpong.train import train
from fastpong.training.blas_threads import blas_limit_for


def blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


@pytest.fixture
def blas():
    before = blas_threads()
    if not before:
        pytest.skip("NumPy reports no BLAS library to threadpoolctl")
    if before == [1] * len(before):
        pytest.skip("NumPy's BLAS already runs one thread here (one core?): a limit of 1 would not show")
    return before


def test_the_fast_engine_limits_blas_to_one_thread_and_restores_it(blas):
    with blas_limit_for("fast"):
        assert blas_threads() == [1] * len(blas)
    assert blas_threads() == blas


def test_the_reference_engine_leaves_blas_alone(blas):
    with blas_limit_for("reference"):
        assert blas_threads() == blas


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_a_training_session_updates_under_its_engine_s_limit(blas, monkeypatch, tmp_path, engine):
    seen = []
    base = MIT_CARTPOLE.learners[engine]

    class Recording(base):
        def update(self, *args, **kwargs):
            seen.append(blas_threads())
            return super().update(*args, **kwargs)

    monkeypatch.setitem(MIT_CARTPOLE.learners, engine, Recording)
    train(run_dir=tmp_path / "run", env_id="CartPole-v1", engine=engine, num_envs=2, episodes=4, seed=0,
          batch_size=1, progress=False)
    assert seen, "the session made no update"
    expected = [1] * len(blas) if engine == "fast" else blas
    assert all(threads == expected for threads in seen)
    assert blas_threads() == blas  # restored when the session ended
