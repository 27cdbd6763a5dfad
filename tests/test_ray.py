"""Training on a Ray cluster: a real two-node ``ray.cluster_utils.Cluster`` on loopback.

Each node has one CPU (one rollout worker each), a small object store and no dashboard. The
cluster tests are skipped when Ray is not installed; the tests of what happens without Ray, and
of the CLI's one-line errors, run either way.
"""

import csv
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fastpong.checkpoint import load_checkpoint
from fastpong.config import TrainConfig
from fastpong.distributed.ray_train import CHUNK_STEPS, PIPELINE
from fastpong.distributed.rollout_worker import RolloutWorker
from fastpong.learners import FastLearner
from fastpong.train import train

HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="Ray is not installed (pip install 'fastpong[ray]')")
NODE = dict(num_cpus=1, object_store_memory=80 * 2**20)  # each of the two nodes
GRADIENT_BYTES = (200 * 6400 + 200) * 4  # one game's gradient, float32
# Small, fast games: one env per worker, an update every two games.
SMALL = dict(num_envs=1, batch_size=2, progress=False)


def cli(*args, env=None, **kwargs):
    return subprocess.run([sys.executable, "-m", "fastpong", *args], capture_output=True, text=True,
                          env=env, timeout=120, **kwargs)


def read_metrics(run_dir):
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def descendants(pid: int) -> dict[int, str]:
    """{pid: command line} of every process below `pid` (from /proc; no psutil needed)."""
    children: dict[int, list[int]] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            commands[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = {}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = commands.get(child, "")
            todo.append(child)
    return found


def rollout_worker_pids() -> list[int]:
    return sorted(pid for pid, command in descendants(os.getpid()).items()
                  if command.startswith("ray::RolloutWorker"))


@pytest.fixture(scope="module")
def cluster():
    """Two nodes of one CPU each, bound to 127.0.0.1, every process it starts gone afterwards."""
    settings = {
        # On Linux this makes Ray take 127.0.0.1 as the node's address. Ray reads it once, when it
        # is first imported: hence before the import, and the check that it took.
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        # Ray's memory monitor kills workers while the *machine* is above 95% of its memory, which
        # on a shared CI machine may be anyone's doing; the kernel's OOM killer still applies.
        "RAY_memory_monitor_refresh_ms": "0",
    }
    previous = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    assert not ray_constants.ENABLE_RAY_CLUSTER, "ray was imported before the loopback setting"
    cluster = Cluster(initialize_head=True, head_node_args=dict(NODE, include_dashboard=False))
    try:
        cluster.add_node(**NODE)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        import ray

        started = descendants(os.getpid())
        ray.shutdown()
        cluster.shutdown()
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and set(started) & set(descendants(os.getpid())):
            time.sleep(0.2)
        left = {pid: cmd for pid, cmd in descendants(os.getpid()).items() if pid in started}
        assert not left, f"Ray processes left running: {left}"


def check_counts(summary, run_dir, episodes, batch_size):
    """Every game counted once, an update every batch_size games, metrics = checkpoint."""
    rows = read_metrics(run_dir)
    assert [int(r["episode"]) for r in rows] == list(range(1, episodes + 1))
    for r in rows:  # whole Pong games: one side reached 21
        assert max(int(r["points_won"]), int(r["points_lost"])) == 21
    assert summary.episodes == episodes and summary.updates == episodes // batch_size
    ckpt = load_checkpoint(Path(run_dir) / "checkpoint.npz", hidden=200, input_size=6400)
    assert ckpt["episodes"] == episodes and ckpt["updates"] == episodes // batch_size
    assert ckpt["episodes_in_batch"] == episodes % batch_size
    assert ckpt["env_steps"] == summary.steps >= int(rows[-1]["env_steps"])
    return ckpt


@needs_ray
def test_two_workers_count_every_game_once_and_repeat_with_the_same_seed(cluster, tmp_path):
    runs = []
    for name in ("a", "b"):
        summary = train(run_dir=tmp_path / name, episodes=5, seed=3, ray=cluster.address, workers=2, **SMALL)
        ckpt = check_counts(summary, tmp_path / name, episodes=5, batch_size=2)
        assert summary.workers == 2 and summary.worker_restarts == 0 and summary.interrupted_by is None
        assert summary.bytes_per_game == GRADIENT_BYTES
        # each env ends at most one game per chunk: at most (2 x 2 - 1) x 1 games ahead of any game
        assert summary.max_staleness <= math.ceil((PIPELINE * 2 - 1) * SMALL["num_envs"] / SMALL["batch_size"])
        assert np.any(ckpt["grad_W1"] != 0)  # the fifth game waits in the batch
        runs.append((ckpt, read_metrics(tmp_path / name)))
    (a, rows_a), (b, rows_b) = runs
    # Results are taken in a fixed round-robin order: the same seed gives the same run.
    assert np.array_equal(a["W1"], b["W1"]) and np.array_equal(a["grad_W1"], b["grad_W1"])
    assert [r["reward"] for r in rows_a] == [r["reward"] for r in rows_b]


def read_config(run_dir) -> dict:
    return json.loads((Path(run_dir) / "config.json").read_text())


@needs_ray
def test_cartpole_on_two_workers_and_resume_between_local_and_ray(cluster, tmp_path):
    """The MIT lab's agent through the same seam: every episode counted once, an update every
    batch_size episodes; config.json records how each session played; --resume switches freely."""
    run, hidden = tmp_path / "run", 8
    cartpole = dict(env_id="CartPole-v1", hidden=hidden, batch_size=2, num_envs=2, seed=9, progress=False)
    local = train(run_dir=run, episodes=3, **cartpole)
    assert local.updates == 1 and read_config(run)["ray"] is None and read_config(run)["workers"] is None
    summary = train(run_dir=run, resume=True, episodes=11, ray=cluster.address, workers=2, **cartpole)
    assert summary.episodes == 11 and summary.updates == 5 and summary.workers == 2
    assert summary.worker_restarts == 0 and summary.interrupted_by is None
    assert summary.bytes_per_game == (4 * hidden + hidden + hidden * 2 + 2) * 4  # float32 Keras layout
    config = read_config(run)
    assert (config["ray"], config["workers"], config["agent"]) == ("address", 2, "mit-cartpole")
    rows = read_metrics(run)
    assert [int(r["episode"]) for r in rows] == list(range(1, 12))
    assert "points_won" not in rows[0]
    for r in rows:  # CartPole: +1 a step, up to the time limit
        assert float(r["reward"]) == int(r["length"]) and 1 <= int(r["length"]) <= 500
    ckpt = load_checkpoint(run / "checkpoint.npz")
    assert (ckpt["episodes"], ckpt["updates"], ckpt["episodes_in_batch"]) == (11, 5, 1)
    assert ckpt["env_steps"] == summary.steps >= sum(int(r["length"]) for r in rows)
    assert np.any(ckpt["tensors"]["grad/dense_0/kernel"])  # the eleventh episode waits in the batch
    back = train(run_dir=run, resume=True, episodes=13, **cartpole)  # and locally again
    assert back.episodes == 13 and back.updates == 6 and read_config(run)["ray"] is None


@needs_ray
def test_killed_worker_is_restarted_and_no_game_counted_twice(cluster, tmp_path, capfd):
    killed, earlier = [], set(rollout_worker_pids())  # earlier runs' workers may still be exiting

    def kill_a_worker(row):
        if not killed:
            pids = [pid for pid in rollout_worker_pids() if pid not in earlier]
            assert len(pids) == 2
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    summary = train(run_dir=tmp_path / "run", episodes=6, seed=4, ray=cluster.address, workers=2,
                    on_episode=kill_a_worker, **SMALL)
    check_counts(summary, tmp_path / "run", episodes=6, batch_size=2)
    assert summary.worker_restarts == 1 and summary.workers_dropped == 0
    assert killed and killed[0] not in rollout_worker_pids()
    assert "restarting it" in capfd.readouterr().err


@needs_ray
def test_lost_node_the_run_goes_on_with_the_other_worker(cluster, tmp_path, capfd):
    """The second node goes away mid-run: its worker cannot be restarted anywhere (the head's one
    CPU is taken), so the run finishes on the head's worker, every game counted once."""
    lost = []

    def remove_node(row):
        if not lost:
            lost.append(cluster.list_all_nodes()[1])
            cluster.remove_node(lost[0], allow_graceful=False)

    try:
        summary = train(run_dir=tmp_path / "run", episodes=5, seed=6, ray=cluster.address, workers=2,
                        on_episode=remove_node, **SMALL)
    finally:
        if lost:
            cluster.add_node(**NODE)  # the cluster as the other tests expect it
            cluster.wait_for_nodes()
    check_counts(summary, tmp_path / "run", episodes=5, batch_size=2)
    assert summary.worker_restarts == 1
    assert "restarting it" in capfd.readouterr().err


@needs_ray
def test_ctrl_c_stops_the_workers_and_resume_continues(cluster, tmp_path):
    run = tmp_path / "run"
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    driver = subprocess.Popen(
        [sys.executable, "-m", "fastpong", "train", "--ray", cluster.address, "--workers", "2", "--num-envs", "1",
         "--batch-size", "1", "--seed", "5", "--run-dir", str(run), "--quiet"],
        stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 90
        while not ((run / "metrics.csv").exists() and len(read_metrics(run)) >= 2):
            assert driver.poll() is None and time.monotonic() < deadline, "the run ended or made no progress"
            time.sleep(0.2)
        driver.send_signal(signal.SIGINT)
        _, err = driver.communicate(timeout=60)
    finally:
        driver.kill()
    assert driver.returncode == 128 + signal.SIGINT, err
    assert "stopped by SIGINT" in err and "--resume" in err
    stopped = load_checkpoint(run / "checkpoint.npz")
    assert stopped["episodes"] >= 2 and stopped["updates"] == stopped["episodes"]
    assert len(read_metrics(run)) == stopped["episodes"]
    summary = train(run_dir=run, resume=True, episodes=stopped["episodes"] + 2, ray=cluster.address,
                    workers=2, num_envs=1, progress=False)
    check_counts(summary, run, episodes=stopped["episodes"] + 2, batch_size=1)


@needs_ray
def test_steps_limit_stops_within_a_chunk(cluster, tmp_path):
    summary = train(run_dir=tmp_path / "run", steps=1500, seed=8, ray=cluster.address, workers=2, **SMALL)
    assert 1500 <= summary.steps < 1500 + CHUNK_STEPS + 2  # a chunk ends on a whole lane step
    assert load_checkpoint(tmp_path / "run" / "checkpoint.npz")["env_steps"] == summary.steps


@needs_ray
def test_more_workers_than_cpus_is_refused(cluster, tmp_path):
    with pytest.raises(ValueError, match="a worker takes one CPU and the Ray cluster .* has 2"):
        train(run_dir=tmp_path / "run", episodes=1, ray=cluster.address, workers=3, **SMALL)
    assert not (tmp_path / "run" / "config.json").exists()


@pytest.mark.parametrize("address, words", [
    ("127.0.0.1:1", "no Ray cluster at 127.0.0.1:1"),
    ("127.0.0.1", "must be host:port"),
])
@needs_ray
def test_bad_address_is_one_line_and_exit_2(tmp_path, address, words):
    result = cli("train", "--ray", address, "--episodes", "1", "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "run").exists()


# The learner seam the driver and the workers use, and the worker itself: no Ray needed.

def pong_episodes(pong_play, count=2):
    """The recorded Pong frames cut into `count` episodes: [(frames (T, 210, 160, 3), rewards (T,))]."""
    cuts = np.linspace(0, len(pong_play.rewards), count + 1).astype(int)
    return [(pong_play.frames[a:b], pong_play.rewards[a:b].astype(np.float32)) for a, b in zip(cuts, cuts[1:])]


def cartpole_episodes(count=3):
    """Made-up CartPole states of episodes of different lengths (one of a single step), a reward
    of 1 a step."""
    rng = np.random.default_rng(21)
    return [(rng.normal(0, 0.5, (n, 1, 4)).astype(np.float32)[:, 0], np.ones(n, np.float32))
            for n in (9, 1, 23)[:count]]


AGENT_CASES = {  # agent -> (settings, episodes(pong_play), gradient name to look at)
    "karpathy": (dict(seed=11, batch_size=2), lambda play: pong_episodes(play), "W1"),
    "mit-cartpole": (dict(env_id="CartPole-v1", seed=11, batch_size=3, hidden=8),
                     lambda play: cartpole_episodes(), "dense_0/kernel"),
}


def make_learner(settings, rng_seed=5):
    config = TrainConfig(**settings).validate()
    return config.agent_record().learners["fast"](config, [1], np.random.default_rng(rng_seed))


def play(learner, episodes, take=False) -> list:
    """Plays the episodes on lane 0 (one env) as the loop does; with take, takes each episode's
    gradient as a rollout worker does and returns them."""
    taken = []
    for observations, rewards in episodes:
        for obs, reward in zip(observations, rewards):
            learner.observe(0, obs[None])
            learner.act(0)
            learner.record_rewards(0, np.array([reward], dtype=np.float32))
        learner.finish_episode(0, 0)
        if take:
            taken.append(learner.take_gradient())
    return taken


@pytest.mark.parametrize("agent", AGENT_CASES)
def test_a_ray_update_equals_a_local_one_on_the_same_episodes(pong_play, agent):
    """A worker takes each episode's gradient, the driver adds them and updates: the same weights
    as the local loop playing those episodes (for the lab's agent, a sum of per-episode means that
    update() divides by the batch size, on both sides)."""
    settings, make_episodes, name = AGENT_CASES[agent]
    episodes = make_episodes(pong_play)
    assert len(episodes) == settings["batch_size"]
    local, worker, driver = make_learner(settings), make_learner(settings), make_learner(settings, rng_seed=99)
    play(local, episodes)
    gradients = play(worker, episodes, take=True)
    for gradient, (_, rewards) in zip(gradients, episodes):  # one step: standardized returns are 0
        assert np.any(gradient[name]) == (len(rewards) > 1)
    assert not np.any(worker.take_gradient()[name])  # taken, then zeroed
    for gradient in gradients:
        driver.add_gradient(gradient)
    local.update()
    driver.update()
    for key, value in local.weights().items():
        np.testing.assert_allclose(driver.weights()[key], value, rtol=0, atol=1e-7, err_msg=key)
    assert not np.array_equal(driver.weights()[name], worker.weights()[name])  # the update moved it
    worker.load_weights(driver.weights())
    for key, value in driver.weights().items():
        np.testing.assert_array_equal(worker.weights()[key], value)


def test_an_added_gradient_is_in_the_checkpoint(pong_play):
    settings, _, _ = AGENT_CASES["karpathy"]
    worker, driver = make_learner(settings), make_learner(settings)
    gradient = play(worker, pong_episodes(pong_play, 1), take=True)[0]
    driver.add_gradient(gradient)
    np.testing.assert_array_equal(driver.tensors()["grad_W1"], gradient["W1"])
    driver.update()
    assert not np.any(driver.tensors()["grad_W1"])  # the update consumed the batch


@pytest.mark.slow
def test_rollout_worker_sends_whole_games_with_their_gradients():
    config = TrainConfig(seed=2, num_envs=2, batch_size=1).resolved()
    worker = RolloutWorker(config.to_dict(), worker=0)
    weights = FastLearner(config, [1, 1], np.random.default_rng(0)).weights()
    games, steps, calls = [], 0, 0
    while not games:
        result = worker.play((0, 0), 7, weights, 512)
        games, steps, calls = result["games"], steps + result["steps"], calls + 1
        assert result["steps"] >= 512 and result["steps"] % 2 == 0
    worker.close()
    for game in games:
        episode = game["episode"]
        assert max(episode["points_won"], episode["points_lost"]) == 21
        assert episode["reward"] == episode["points_won"] - episode["points_lost"]
        assert game["version"] == 7 and 0 < episode["length"] <= steps
        assert game["gradient"]["W1"].shape == (200, 6400) and np.any(game["gradient"]["W1"])


def test_rollout_worker_plays_cartpole_episodes_the_same_way_again():
    config = TrainConfig(env_id="CartPole-v1", seed=2, num_envs=3, hidden=8).resolved()
    weights = make_learner(dict(env_id="CartPole-v1", seed=4, hidden=8)).weights()
    results = []
    for _ in range(2):
        worker = RolloutWorker(config.to_dict(), worker=1)
        results.append(worker.play((0, 0), 3, weights, 512))
        worker.close()
    result = results[0]
    assert result["steps"] >= 512 and result["steps"] % 3 == 0 and len(result["games"]) > 3
    assert sum(game["episode"]["length"] for game in result["games"]) <= result["steps"]
    for game in result["games"]:
        assert set(game["episode"]) == {"reward", "length"} and game["version"] == 3
        assert game["episode"]["reward"] == game["episode"]["length"] >= 1
        assert set(game["gradient"]) == set(weights)
    again = results[1]["games"]  # same seeds, same weights: the same episodes and gradients
    assert [g["episode"] for g in again] == [g["episode"] for g in result["games"]]
    for a, b in zip(again, result["games"]):
        for name in weights:
            np.testing.assert_array_equal(a["gradient"][name], b["gradient"][name])


def test_config_records_how_the_run_played():
    assert TrainConfig(ray="local", workers=2).validate().workers == 2
    with pytest.raises(ValueError, match="ray must be one of local, auto, address or None, got 'host:1'"):
        TrainConfig(ray="host:1").validate()
    with pytest.raises(ValueError, match="workers is a setting of a Ray run"):
        TrainConfig(workers=2).validate()
    with pytest.raises(ValueError, match="--ray runs the fast engine"):
        TrainConfig(env_id="CartPole-v1", engine="reference", ray="auto").validate()


@needs_ray
def test_reference_engine_on_ray_is_one_line_and_touches_nothing(tmp_path):
    result = cli("train", "--env", "CartPole-v1", "--engine", "reference", "--ray", "local", "--episodes", "1",
                 "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2 and "--ray runs the fast engine" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_workers_without_ray_is_an_error(tmp_path):
    result = cli("train", "--workers", "2", "--episodes", "1", "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2 and "--workers needs --ray" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_without_ray_the_flag_says_how_to_get_it(tmp_path):
    # ray made unimportable in the child, whether or not it is installed here
    code = ("import sys; sys.modules['ray'] = None; from fastpong.cli import main; "
            f"sys.exit(main(['train', '--ray', 'local', '--episodes', '1', '--run-dir', {str(tmp_path / 'r')!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == 'fastpong train: error: Ray is not installed: pip install "fastpong[ray]"'


def test_importing_fastpong_never_imports_ray():
    code = ("import sys, fastpong, fastpong.train, fastpong.cli, fastpong.distributed, "
            "fastpong.distributed.ray_train, fastpong.distributed.rollout_worker; "
            "fastpong.train; print('ray' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr
