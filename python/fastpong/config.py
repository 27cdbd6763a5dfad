"""Every setting of a training run, checked before any work starts."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

DEFAULT_ENV_ID = "ALE/Pong-v5"
ENGINES = ("fast", "reference")
OPTIMIZERS = ("rmsprop", "adam")

#: Settings that define what is learned: a resumed run must keep them. The rest (how long to run,
#: how many envs and threads) may change between sessions of the same run.
ALGORITHM_FIELDS = (
    "env_id", "batch_size", "learning_rate", "decay_rate", "gamma", "hidden", "seed", "engine",
    "agent", "optimizer", "frameskip", "rollout_steps", "epochs", "minibatches", "clip_coef",
    "entropy_coef", "value_coef", "gae_lambda", "max_grad_norm", "anneal_steps", "head_init_scale",
    "final_entropy_coef", "observation",
)
#: Settings that only some agents take, each agent naming its own (``Agent.settings``): the
#: actor-critic's rollout and loss settings (``--agent ppo``), and mit-pong's entropy bonus,
#: clipping and head initialization. None for an agent that does not take one; an agent fills
#: them from its defaults where it has one, and None where it has none means "off".
AGENT_FIELDS = ("rollout_steps", "epochs", "minibatches", "clip_coef", "entropy_coef", "value_coef",
                "gae_lambda", "max_grad_norm", "anneal_steps", "head_init_scale", "final_entropy_coef",
                "observation")
#: Algorithm settings that a resumed run may change when they are given explicitly, schedules
#: rather than what is learned: a step schedule for the learning rate (the optimizer's state
#: carries over; only the step size changes), and the actor-critic's annealing (its length, the
#: entropy weight's start and end), so that a run past its schedule can be given a longer one.
#: Each change is logged: the learning rate's in RUN_DIR/learning_rates.csv, the others' in
#: RUN_DIR/setting_changes.csv.
RESUMABLE_FIELDS = ("learning_rate", "anneal_steps", "entropy_coef", "final_entropy_coef")
RUN_FIELDS = ("num_envs", "episodes", "steps", "threads", "video_every", "target_return", "ray", "workers")
#: How a run's episodes were played (``TrainConfig.ray``): None in this process, else on Ray.
RAY_KINDS = ("local", "auto", "address")
#: Settings the agent chooses when none is given (see each agent's ``defaults``).
AGENT_DEFAULT_FIELDS = ("batch_size", "learning_rate", "gamma", "hidden", "optimizer")

#: Named starting points for `--preset`, by agent; flags typed after them still win.
PRESETS = {
    "karpathy": {
        # Karpathy's pg-pong.py: H 200, batch 10, learning rate 1e-4, gamma 0.99, RMSProp (decay
        # 0.99, the RMSProp default).
        "karpathy": dict(hidden=200, batch_size=10, learning_rate=1e-4, gamma=0.99),
        # The NumPy tutorial: the same, with an update every 3 games.
        "tutorial": dict(hidden=200, batch_size=3, learning_rate=1e-4, gamma=0.99),
        # Least wall-clock to running reward 0 on 2 cores among the runs in experiments/README.md:
        # Karpathy's settings with a 10x learning rate.
        "fast": dict(hidden=200, batch_size=10, learning_rate=1e-3, gamma=0.99),
    },
    "mit-cartpole": {
        # The MIT lab's CartPole settings as the lab runs them: gamma 0.95, Adam 1e-3, one
        # environment (mit-cartpole's defaults differ in gamma, learning rate and environments:
        # see the README).
        "lab": dict(hidden=32, batch_size=1, learning_rate=1e-3, gamma=0.95, optimizer="adam", num_envs=1),
    },
    "mit-pong": {
        # The MIT lab's Pong: Pong-v0 (sticky actions 0.25) with a fixed frameskip of 5, 5 games
        # at once and per Adam step (1e-3), gamma 0.99. Only the environment differs from
        # mit-pong's defaults (ALE/Pong-v5, frameskip 4).
        "lab": dict(env_id="Pong-v0", frameskip=5, batch_size=5, learning_rate=1e-3, gamma=0.99,
                    optimizer="adam", num_envs=5),
        # The lab's settings and one change: A3C's entropy bonus (0.01), without which the lab's
        # policy collapses onto one way of playing (docs: the lab's Pong agent).
        "lab-entropy": dict(env_id="Pong-v0", frameskip=5, batch_size=5, learning_rate=1e-3, gamma=0.99,
                            optimizer="adam", num_envs=5, entropy_coef=0.01),
    },
}
#: Every preset's name, for `--preset`'s choices.
PRESET_NAMES = tuple(sorted({name for presets in PRESETS.values() for name in presets}))
#: Episodes over which --target-return averages the return (gymnasium's "solved" rule for CartPole).
RETURN_WINDOW = 100
#: Games played at once in one process. Each Atari game is an emulator with frame buffers of its
#: own; past a few per core they stop adding speed (envs.default_num_envs), and far past this an
#: unlucky typo (--num-envs 100000) would spend minutes and gigabytes building emulators.
MAX_NUM_ENVS = 1024
#: RMSProp's decay when none is given.
DEFAULT_DECAY_RATE = 0.99


@dataclass
class TrainConfig:
    """Settings left at None take the agent's defaults when the config is made: for the tutorial's
    agent (``karpathy``, Pong) H 200, lr 1e-4, gamma 0.99, RMSProp decay 0.99 and batch_size 10
    as Karpathy's original (the tutorial used 3); for the MIT lab's CartPole agent
    (``mit-cartpole``) H 32, lr 1e-3, gamma 0.95, Adam, one episode per update. The agent itself
    defaults to the environment's: mit-cartpole for CartPole ids, karpathy for Atari ones."""

    env_id: str = DEFAULT_ENV_ID
    num_envs: int | None = None  # None: the agent's choice (Atari: enough to keep every core busy)
    episodes: int | None = None  # stop after this many finished episodes (None: no limit)
    steps: int | None = None  # stop after this many environment steps (None: no limit)
    batch_size: int | None = None
    learning_rate: float | None = None
    decay_rate: float | None = None  # RMSProp only
    gamma: float | None = None
    hidden: int | None = None
    seed: int | None = None  # None: drawn at random and recorded, so the run can be repeated
    threads: int | None = None  # None: every core
    engine: str = "fast"
    video_every: int | None = None  # record video/update-XXXX.mp4 every this many updates
    agent: str | None = None  # None: the environment's agent
    optimizer: str | None = None  # rmsprop or adam; None: the agent's
    #: stop once the mean return of the last RETURN_WINDOW finished episodes reaches this
    target_return: float | None = None
    #: Where the episodes were played, recorded by train(): None (this process), or on Ray rollout
    #: workers: "local" (a Ray instance of this machine), "auto" (the cluster it joined) or
    #: "address" (a cluster's host:port, which is not recorded: it may differ next session).
    ray: str | None = None
    workers: int | None = None  # with ray: how many rollout workers
    #: Atari only: emulator frames per agent step, a fixed int (None: the environment id's own,
    #: e.g. 4 for ALE/Pong-v5; configs written before this setting existed read as None).
    frameskip: int | None = None
    # --- the actor-critic agent's settings (--agent ppo; see fastpong/agents/ppo.py) ---
    rollout_steps: int | None = None  # steps of every environment per update
    epochs: int | None = None  # passes over each rollout
    minibatches: int | None = None  # minibatches a pass is cut into, one Adam step each
    clip_coef: float | None = None  # PPO's ratio clip (and the value clip)
    entropy_coef: float | None = None  # weight of the entropy bonus
    value_coef: float | None = None  # weight of the value loss
    gae_lambda: float | None = None  # GAE's lambda
    max_grad_norm: float | None = None  # the gradient's global norm is clipped to this
    anneal_steps: int | None = None  # the learning rate falls linearly to 0 over these env steps
    #: the entropy bonus's weight falls linearly from entropy_coef to this over anneal_steps, with
    #: the learning rate; None: it stays at entropy_coef (CleanRL's)
    final_entropy_coef: float | None = None
    #: what the network sees of a step: "change" (the lab's 40x40 frame change) or
    #: "frame-and-change" (the current frame in the same channel; reference.ppo.frame_and_change)
    observation: str | None = None
    # --- mit-pong's (entropy_coef and max_grad_norm above, too) ---
    #: the logits layer's initial kernel is multiplied by this (CleanRL's 0.01: a near-uniform
    #: first policy); None: the lab's Glorot initialization as it is
    head_init_scale: float | None = None

    def __post_init__(self):
        from .agents import AGENTS, default_agent

        if self.agent is None and isinstance(self.env_id, str):
            self.agent = default_agent(self.env_id)
        agent = AGENTS.get(self.agent) if isinstance(self.agent, str) else None
        if agent is None:
            return  # validate() names the bad agent
        for name in AGENT_DEFAULT_FIELDS:
            if getattr(self, name) is None:
                setattr(self, name, agent.defaults[name])
        if self.decay_rate is None and self.optimizer == "rmsprop":
            self.decay_rate = DEFAULT_DECAY_RATE
        for name in AGENT_FIELDS:
            if getattr(self, name) is None and name in agent.defaults:
                setattr(self, name, agent.defaults[name])

    def agent_record(self):
        """The :class:`fastpong.agents.Agent` this config trains."""
        from .agents import get_agent

        return get_agent(self.agent)

    def validate(self) -> "TrainConfig":
        """Raises ValueError naming the first bad setting; returns self."""
        from .agents import ATARI, check_agent_plays

        if not isinstance(self.env_id, str) or not self.env_id:
            raise ValueError(f"env id must be a non-empty string, got {self.env_id!r}")
        agent = self.agent_record()
        check_agent_plays(agent, self.env_id)
        if self.optimizer not in agent.optimizers:
            raise ValueError(f"optimizer must be one of {', '.join(agent.optimizers)}, got {self.optimizer!r}")
        if self.optimizer != "rmsprop" and self.decay_rate is not None:
            raise ValueError(f"decay rate is a setting of RMSProp; this run's optimizer is {self.optimizer}")
        if self.frameskip is not None:
            if agent.env_kind != ATARI:
                raise frameskip_without_frames(self.env_id)
            check_positive_int("frameskip", self.frameskip)
        if self.ray is not None and self.ray not in RAY_KINDS:
            raise ValueError(f"ray must be one of {', '.join(RAY_KINDS)} or None, got {self.ray!r}")
        if self.workers is not None and self.ray is None:
            raise ValueError("workers is a setting of a Ray run; this run has ray=None")
        if self.ray is not None and not agent.ray:
            raise ValueError(f"the {agent.name} agent trains in one process: --ray is not supported for it "
                             "(its update needs whole rollouts, which Ray's workers do not send)")
        if self.ray is not None and self.engine != "fast":
            raise ValueError("--ray runs the fast engine (the reference engines are the originals' NumPy "
                             "code, for comparison on one machine)")
        for name in ("num_envs", "episodes", "steps", "threads", "video_every", "workers"):
            value = getattr(self, name)
            if value is not None:
                check_positive_int(name.replace("_", " "), value)
        if self.num_envs is not None and self.num_envs > MAX_NUM_ENVS:
            raise ValueError(f"num envs must be at most {MAX_NUM_ENVS} (games played at once in one process), "
                             f"got {self.num_envs}")
        for name in ("batch_size", "hidden"):
            check_positive_int(name.replace("_", " "), getattr(self, name))
        if self.seed is not None and (not _is_int(self.seed) or self.seed < 0):
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not _is_real(self.learning_rate) or not self.learning_rate > 0 or not math.isfinite(self.learning_rate):
            raise ValueError(f"learning rate must be a positive number, got {self.learning_rate!r}")
        if self.optimizer == "rmsprop" and (not _is_real(self.decay_rate) or not 0 <= self.decay_rate < 1):
            raise ValueError(f"decay rate must be in [0, 1), got {self.decay_rate!r}")
        if not _is_real(self.gamma) or not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma!r}")
        if self.target_return is not None and (not _is_real(self.target_return)
                                               or not math.isfinite(self.target_return)):
            raise ValueError(f"target return must be a finite number, got {self.target_return!r}")
        self._validate_agent_settings(agent)
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.engine not in agent.learners:
            raise ValueError(f"agent {agent.name!r} has no {self.engine} engine "
                             f"(it has: {', '.join(agent.learners)})")
        if self.engine == "reference" and not agent.reference_many_envs and self.num_envs not in (None, 1):
            raise ValueError(
                f"the reference engine runs one environment (the tutorial's loop), got num_envs={self.num_envs}"
            )
        if self.engine == "reference" and self.optimizer not in agent.reference_optimizers:
            raise ValueError(f"the {agent.name} agent's reference engine runs "
                             f"{' or '.join(agent.reference_optimizers)}, not {self.optimizer}")
        return self

    def _validate_agent_settings(self, agent) -> None:
        """The settings only some agents take: refused for the others, checked where given."""
        from .agents import AGENTS

        for name in AGENT_FIELDS:
            if getattr(self, name) is not None and name not in agent.settings:
                takers = [other.name for other in AGENTS.values() if name in other.settings]
                raise ValueError(f"{name.replace('_', ' ')} is a setting of the {' and '.join(takers)} "
                                 f"agent{'s' if len(takers) > 1 else ''}; this run's agent is {agent.name}")
        for name, positive in (("clip_coef", True), ("max_grad_norm", True), ("head_init_scale", True),
                               ("entropy_coef", False), ("value_coef", False),
                               ("final_entropy_coef", False)):
            value = getattr(self, name)
            if value is None and name not in agent.defaults:
                continue  # an agent's optional setting, off
            if not _is_real(value) or not math.isfinite(value) or value < 0 or (positive and value == 0):
                bound = "a positive number" if positive else "a number >= 0"
                raise ValueError(f"{name.replace('_', ' ')} must be {bound}, got {value!r}")
        if "observation" in agent.settings:
            from .reference.ppo import check_observation

            check_observation(self.observation)
        if "rollout_steps" in agent.settings:
            self._validate_rollout_settings(agent)

    def _validate_rollout_settings(self, agent) -> None:
        """The actor-critic's: its network and how its rollouts are cut."""
        if self.hidden != agent.defaults["hidden"]:
            raise ValueError(f"the {agent.name} agent's network has {agent.defaults['hidden']} hidden "
                             f"units (the lab's CNN), got hidden={self.hidden}")
        for name in ("rollout_steps", "epochs", "minibatches", "anneal_steps"):
            check_positive_int(name.replace("_", " "), getattr(self, name))
        if not _is_real(self.gae_lambda) or not 0 <= self.gae_lambda <= 1:
            raise ValueError(f"gae lambda must be in [0, 1], got {self.gae_lambda!r}")
        if self.num_envs is not None and self.rollout_steps * self.num_envs < self.minibatches:
            raise ValueError(f"a rollout of {self.rollout_steps} steps x {self.num_envs} environments "
                             f"cannot be cut into {self.minibatches} minibatches")

    def resolved(self) -> "TrainConfig":
        """A copy with the machine-dependent defaults (num_envs, threads) filled in, and the
        default stop of a classic-control run with none (see solved_return)."""
        from .envs import default_num_envs

        threads = self.threads or os.cpu_count() or 1
        agent = self.agent_record()
        if self.engine == "reference" and not agent.reference_many_envs:
            num_envs = 1
        else:
            num_envs = self.num_envs or agent.defaults.get("num_envs") or default_num_envs()
        target = self.target_return
        if target is None and self.episodes is None and self.steps is None:
            target = solved_return(self.env_id)
        return dataclasses.replace(self, threads=threads, num_envs=num_envs, target_return=target)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        if not isinstance(data, dict):
            raise ValueError(f"config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"config has unknown settings: {', '.join(unknown)}")
        from .agents import AGENTS

        # Settings the file predates: what its run trained with, not today's defaults.
        agent = AGENTS.get(data.get("agent")) if isinstance(data.get("agent"), str) else None
        if agent is not None:
            data = {**agent.old_config_settings, **data}
        return cls(**data).validate()

    def algorithm_differences(self, other: "TrainConfig") -> list[str]:
        """'learning_rate: 0.001 != 0.0001' for each algorithm setting that differs. A seed of
        None (not chosen) differs from nothing."""
        return [
            f"{name}: {_shown(name, getattr(self, name))} != {_shown(name, getattr(other, name))}"
            for name in ALGORITHM_FIELDS
            if getattr(self, name) != getattr(other, name)
            and not (name == "seed" and self.seed is None)
        ]


def solved_return(env_id: str) -> float | None:
    """gymnasium's reward_threshold of a classic-control id (CartPole-v1: 475, CartPole-v0: 195),
    the mean return over RETURN_WINDOW episodes at which it counts as solved: where a run given
    no stop rule stops, since CartPole's return has a ceiling and training on at it learns
    nothing. None for the Atari ids: Pong has no threshold, and runs until interrupted."""
    from .envs.classic import is_classic_env_id

    if not is_classic_env_id(env_id):
        return None
    import gymnasium

    return gymnasium.spec(env_id).reward_threshold


def frameskip_without_frames(env_id: str) -> ValueError:
    """The error for a frameskip given to an environment that is not Atari (CartPole)."""
    return ValueError(f"frameskip is a setting of Atari environments; {env_id} has none")


def _shown(name: str, value) -> str:
    """A setting's value as a mismatch message shows it: a frameskip of None is the id's own."""
    if name == "frameskip" and value is None:
        return "None (the environment's own)"
    return repr(value)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_positive_int(label: str, value) -> None:
    """ValueError '<label> must be a positive integer, got ...' unless value is an int > 0."""
    if not _is_int(value) or value <= 0:
        raise ValueError(f"{label} must be a positive integer, got {value!r}")
