"""``fastpong train --ray``: rollout workers as Ray actors, the learner on the driver.

The driver is the run (training/run.py's ``Run``: run directory, config.json, metrics.csv, checkpoints,
the progress bar, signals, resume) fed by this rollout source instead of the local lanes: N actors play the
episodes of any agent (karpathy's Pong, mit-cartpole's CartPole; rollout_worker.py), each finished
episode comes back as its gradient (the learner's ``take_gradient``), the driver adds it to the
batch (``add_gradient``) and counts it exactly as the local loop counts an episode; every ``batch_size`` games it updates and puts the new weights into
Ray's object store once (``ray.put``), and every worker's next chunk takes that one object.

Order: each worker has ``PIPELINE`` calls in flight and the driver takes their results in a fixed
round-robin order, so a run is reproducible for any number of workers as long as none fails
(what a worker plays depends only on its seeds and the weights it was handed, and which weights
those are depends only on the order in which the driver took results).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass

from ..training.local_lanes import lane_sizes
from ..training.run import SourceFailure, TrainSummary

#: Env steps a worker plays per call: about a quarter of a second of a core, so that a call's
#: round trip (about a millisecond) costs well under 1% and new weights reach the workers soon.
CHUNK_STEPS = 512
#: Calls queued on each worker: while the driver handles one result the worker plays the next.
PIPELINE = 2
#: Games per worker unless --num-envs says: what keeps one core's emulator busy (envs.default_num_envs).
WORKER_NUM_ENVS = 4
#: Ray restarts a killed worker this many times before the run goes on without it.
MAX_RESTARTS = 3
INSTALL_HINT = 'Ray is not installed: pip install "fastpong[ray]"'
#: Ray's switch for token authentication (Ray >= 2.52), and where Ray looks for the token.
AUTH_MODE = "RAY_AUTH_MODE"
TOKEN_SOURCES = "RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token"


class RayRunError(SourceFailure):
    """The run could not go on: every worker is lost."""


@dataclass
class RaySummary(TrainSummary):
    """A Ray run's summary: the local run's, and how its workers fared."""

    workers: int = 0
    worker_restarts: int = 0  # workers that died and were restarted (or dropped) during the session
    workers_dropped: int = 0  # workers given up on after MAX_RESTARTS restarts
    max_staleness: int = 0  # updates between the weights that computed a game's gradient and its update
    mean_staleness: float = 0.0
    bytes_per_game: float = 0.0  # gradient bytes received per game


def check_ray_args(address, workers) -> None:
    """One-line ValueErrors, before any work: --workers without --ray, Ray not installed."""
    if address is None:
        if workers is not None:
            raise ValueError("--workers needs --ray (ADDRESS, auto or local): the local loop has no workers")
        return
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers <= 0):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if not isinstance(address, str) or not address:
        raise ValueError(f"ray address must be host:port, auto or local, got {address!r}")
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ValueError(INSTALL_HINT) from None
    if address not in ("auto", "local"):
        _check_reachable(address)
        _check_authenticated(address)


def _check_reachable(address: str) -> None:
    """Ray retries a wrong address for minutes; a plain TCP connect says at once."""
    host, _, port = address.rpartition(":")
    if address.startswith("ray://"):
        return
    if not host or not port.isdigit():
        raise ValueError(f"ray address must be host:port (the head node's GCS, port 6379 by default), "
                         f"auto or local, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise ValueError(f"no Ray cluster at {address} ({exc.strerror or exc}): start one with "
                         "`ray start --head`, or use --ray local") from None


def connect(address: str):
    """ray.init for 'local' (a Ray instance of this machine's cores, stopped at the end), 'auto'
    (the cluster this machine is part of) or host:port; returns (ray, whether we must shut it down).
    Keeps the caller's SIGINT/SIGTERM handlers: ray.init replaces SIGTERM's with sys.exit."""
    import logging

    import ray

    if ray.is_initialized():  # the caller's own Ray session (Python API)
        return ray, False
    authentication_error = getattr(ray.exceptions, "AuthenticationError", None)  # Ray >= 2.52
    if address != "local" and authentication_error is not None:
        use_token_if_present()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    options = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        # "local" is Ray's own word for a new instance; without an address Ray would join any
        # cluster this machine runs (RAY_ADDRESS, or the latest `ray start`).
        ray.init(address=address, **options)
    except ConnectionError as exc:
        raise ValueError(f"cannot connect to Ray at {address!r} ({str(exc).splitlines()[0].rstrip('.')}): "
                         "start a cluster with `ray start --head`, or use --ray local") from None
    except Exception as exc:
        if authentication_error is None or not isinstance(exc, authentication_error):
            raise
        raise ValueError(_authentication_failed(address)) from None
    finally:
        for sig, handler in handlers.items():
            if handler is not None:
                signal.signal(sig, handler)
    return ray, True


def token_auth_on() -> bool:
    return os.environ.get(AUTH_MODE, "").lower() == "token"


def use_token_if_present() -> bool:
    """What `ray start` does before it starts a head node: with RAY_AUTH_MODE unset and a token
    present (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token, looked up by Ray), token
    authentication is on. ray.init does the same only for a cluster it finds itself (auto), never
    for an address, so a head started after any local Ray run (which writes ~/.ray/auth_token)
    refused us. An explicit RAY_AUTH_MODE is the user's choice and is kept. Returns whether token
    authentication is on for this process."""
    from ray._raylet import AuthenticationTokenLoader, Config

    if AUTH_MODE not in os.environ and AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True):
        os.environ[AUTH_MODE] = "token"  # for this process and the ones it starts
        Config.initialize("")  # Ray caches its config: make this process read the mode again
    return token_auth_on()


def _check_authenticated(address: str) -> None:
    """One request to the cluster's GCS, before any work, which it answers at once when it
    refuses us: ray.init would retry for a while, then say only that it could not connect."""
    import ray

    authentication_error = getattr(ray.exceptions, "AuthenticationError", None)
    if authentication_error is None or address.startswith("ray://"):
        return  # a Ray without token authentication; a Ray Client address has no GCS to ask
    use_token_if_present()
    from ray._raylet import GcsClient

    try:
        with _c_stderr_silenced():  # Ray's C++ client logs the refusal there too, in its own words
            GcsClient(address=address)
    except authentication_error:
        raise ValueError(_authentication_failed(address)) from None
    except Exception:  # noqa: BLE001 - anything else: ray.init tries later and says what it finds
        pass


def _authentication_failed(address: str) -> str:
    """What to do when the cluster refused us, by what this process sent it."""
    mode = os.environ.get(AUTH_MODE, "")
    if token_auth_on():
        return (f"Ray at {address} refused this machine's token ({TOKEN_SOURCES}): use the head node's, "
                "as `ray get-auth-token` prints it there")
    if mode:
        return (f"Ray at {address} requires token authentication and {AUTH_MODE} is {mode!r} here: "
                f"unset it, with the head node's token in ~/.ray/auth_token (`ray get-auth-token` there)")
    return (f"Ray at {address} requires token authentication and this machine has no token: copy "
            f"the head node's (`ray get-auth-token` there) to ~/.ray/auth_token here, or set RAY_AUTH_TOKEN")


@contextlib.contextmanager
def _c_stderr_silenced():
    """File descriptor 2 to /dev/null for the block (what C++ code writes there included)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class RaySource:
    """A RolloutSource (see training/run.py) whose games are played by Ray actors; the learner stays with
    the run, here on the driver."""

    def __init__(self, *, address: str, workers: int | None):
        self.address = address
        self.requested_workers = workers
        self.ray = None
        self._owns_ray = False
        self.pool = None

    def configure(self, config):
        """Connects to Ray and records the number of workers in the config (config.json says how
        many played)."""
        if hasattr(config.agent_record().learners[config.engine], "update_due"):
            # Its updates are asked for between a lane's steps, which happen on the workers here.
            raise ValueError(f"--ray: the {config.agent} agent updates on its own schedule, which "
                             "Ray's workers do not follow yet; train it without --ray")
        self.ray, self._owns_ray = connect(self.address)
        cpus = int(self.ray.cluster_resources().get("CPU", 0))
        self.num_workers = self.requested_workers or max(1, cpus - 1)  # one core stays with the driver
        if self.num_workers > cpus:  # the round robin would wait for ever on a worker with no CPU
            raise ValueError(f"--workers {self.num_workers}: a worker takes one CPU and the Ray cluster "
                             f"at {self.address!r} has {cpus}")
        return dataclasses.replace(config, workers=self.num_workers)

    def lane_sizes(self, config) -> list[int]:
        return lane_sizes(config)  # the driver's learner is laid out as a worker's

    def play(self, run, stop) -> None:
        self.staleness = []
        self.gradient_bytes = 0
        if run.done() or stop.signum is not None:
            return
        self.pool = _WorkerPool(self.ray, run.config, self.num_workers, run.episodes)
        self._broadcast(run)
        self.pool.start(run.updates, self.weights_ref)
        self._drive(run, stop)

    def summarize(self, summary: TrainSummary) -> RaySummary:
        games = len(self.staleness)
        pool = self.pool
        return RaySummary(
            **dataclasses.asdict(summary), workers=self.num_workers,
            worker_restarts=pool.restarts if pool else 0, workers_dropped=pool.dropped if pool else 0,
            max_staleness=max(self.staleness, default=0),
            mean_staleness=sum(self.staleness) / games if games else 0.0,
            bytes_per_game=self.gradient_bytes / games if games else 0.0)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
        if self._owns_ray:
            self.ray.shutdown()
            self._owns_ray = False

    def _broadcast(self, run) -> None:
        # One object in the store for all workers; the previous one is freed once no call holds it.
        self.weights_ref = self.ray.put(run.learner.weights())

    def _drive(self, run, stop) -> None:
        pool = self.pool
        while not run.done() and stop.signum is None:
            taken = pool.next_result(stop)
            if taken is None:  # stopped while waiting
                return
            worker, result = taken
            run.count_steps(result["steps"])
            for game in result["games"]:
                if run.done():
                    break
                run.learner.add_gradient(game["gradient"])
                self.gradient_bytes += sum(g.nbytes for g in game["gradient"].values())
                self.staleness.append(run.updates - game["version"])
                if run.episode_finished(game["episode"]):
                    self._broadcast(run)
            if not run.done():
                pool.submit(worker, run.updates, self.weights_ref)


class _WorkerPool:
    """The actors, their calls in flight in round-robin order, and what happens when one dies."""

    def __init__(self, ray, config, workers: int, episodes: int):
        from .rollout_worker import RolloutWorker

        self.ray = ray
        self.episodes = episodes  # the session's start: seeds every worker's games
        actor = ray.remote(num_cpus=1, max_restarts=MAX_RESTARTS, max_task_retries=0)(RolloutWorker)
        self.actors = [actor.remote(config.to_dict(), w) for w in range(workers)]
        self.incarnation = [0] * workers
        self.inflight: deque = deque()  # (worker, ref), the order in which results are taken
        self.rejoining: dict = {}  # worker -> ping ref of a restarting actor
        self.restarts = self.dropped = 0
        self._latest = (0, None)

    def start(self, version: int, weights_ref) -> None:
        for _ in range(PIPELINE):
            for w in range(len(self.actors)):
                self.submit(w, version, weights_ref)

    def submit(self, worker: int, version: int, weights_ref) -> None:
        self._latest = (version, weights_ref)
        start = (self.episodes, self.incarnation[worker])
        ref = self.actors[worker].play.remote(start, version, weights_ref, CHUNK_STEPS)
        self.inflight.append((worker, ref))

    def next_result(self, stop):
        """(worker, result) of the oldest call in flight, or None once a stop signal came."""
        ray = self.ray
        while stop.signum is None:
            self._rejoin_ready()
            if not self.inflight:
                if not self.rejoining:
                    raise RayRunError("every Ray worker died and could not be restarted")
                ray.wait(list(self.rejoining.values()), num_returns=1, timeout=0.5)
                continue
            worker, ref = self.inflight[0]
            try:
                result = ray.get(ref, timeout=0.5)
            except ray.exceptions.GetTimeoutError:
                continue
            except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError) as exc:
                # the actor died, or its node did with the result in its object store
                self._lost(worker, exc)
                continue
            self.inflight.popleft()
            return worker, result
        return None

    def _lost(self, worker: int, exc) -> None:
        """A dead worker's calls in flight are dropped with the games they held (never counted, so
        never counted twice); Ray restarts the actor, and it rejoins once it answers."""
        self.inflight = deque(item for item in self.inflight if item[0] != worker)
        self.restarts += 1
        self.incarnation[worker] += 1
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if self.incarnation[worker] > MAX_RESTARTS:
            self.dropped += 1
            print(f"fastpong train: Ray worker {worker} died ({reason[:120]}); restarted {MAX_RESTARTS} times "
                  "already, going on without it", file=sys.stderr)
            return
        print(f"fastpong train: Ray worker {worker} died ({reason[:120]}); restarting it, its games in "
              "progress are lost", file=sys.stderr)
        self.rejoining[worker] = self.actors[worker].ping.remote()

    def _rejoin_ready(self) -> None:
        if not self.rejoining:
            return
        ray = self.ray
        ready, _ = ray.wait(list(self.rejoining.values()), num_returns=len(self.rejoining), timeout=0)
        for worker, ref in list(self.rejoining.items()):
            if ref not in ready:
                continue
            del self.rejoining[worker]
            try:
                ray.get(ref)
            except ray.exceptions.ActorUnavailableError:  # still restarting: ask again shortly
                time.sleep(0.1)
                self.rejoining[worker] = self.actors[worker].ping.remote()
                continue
            except ray.exceptions.RayActorError as exc:  # its new incarnation died too
                self._lost(worker, exc)
                continue
            version, weights_ref = self._latest
            for _ in range(PIPELINE):
                self.submit(worker, version, weights_ref)

    def close(self) -> None:
        for actor in self.actors:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone, or Ray itself is: nothing left to stop
                pass
