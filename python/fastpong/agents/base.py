"""What every agent declares, and the parts its learners share.

An agent is a policy-gradient algorithm fastpong can train: the tutorial's Pong agent
(``karpathy``), the MIT lab's CartPole agent (``mit-cartpole``), later the lab's Pong CNN. The
training loop, evaluation and remote workers know an agent only through its :class:`Agent`
record and its learners, which all offer the same methods:

- ``observe(lane, observations)``, ``act(lane) -> actions``, ``record_rewards(lane, rewards)``,
  ``finish_episode(lane, env)`` (which may return a dict of the episode's own statistics, the
  agent's ``episode_columns``), ``update()``: the loop's side;
- ``tensors()`` / ``load_tensors(dict)``: everything a checkpoint holds of the learner (policy,
  optimizer state, the gradient of the batch in progress), by the names the agent declares;
- ``weights()`` / ``load_weights(dict)``: copies of the policy's weights only;
- ``take_gradient()`` / ``add_gradient(dict)``: the gradient accumulated from finished episodes
  since the last update or take (then zeroed), and adding one into the batch's gradient, so that
  episodes played elsewhere (remote workers) count in the next update.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

ATARI, CLASSIC = "atari", "classic"
#: Pong's ids with frames, as gymnasium registers them (ale-py): what the Pong agents are built
#: for. Their preprocessing crops Pong's court and erases its background, and they play Pong's
#: actions; on another game they would run and learn nothing (Breakout's ball is never served).
PONG_ENV_IDS = ("ALE/Pong-v5", "Pong-v0", "Pong-v4", "PongNoFrameskip-v0", "PongNoFrameskip-v4")


@dataclass(frozen=True)
class Agent:
    name: str
    summary: str
    env_kind: str  # ATARI (frames from ale-py) or CLASSIC (CartPole's state vector)
    #: The environment ids it plays; train and eval refuse any other (exit 2, listing these).
    #: Required: an agent names the games its preprocessing and actions were built for.
    env_ids: tuple
    #: Algorithm settings the agent takes when none is given (hidden, batch_size, learning_rate,
    #: gamma, optimizer, and decay_rate for RMSProp).
    defaults: dict
    #: engine name -> learner class; an agent without a NumPy twin has only "fast".
    learners: dict
    #: (config) -> {name: shape} of the policy's weights, as checkpoints store them.
    weight_shapes: Callable
    #: (config) -> {name: shape} of every tensor of a checkpoint, but for the optimizer state
    #: (which the optimizer's load_state validates).
    tensor_shapes: Callable
    #: (tensors, config or None) -> a policy object for evaluation (forward(obs) -> what the
    #: player needs); the config, where the file holds one, says what input the policy was
    #: trained on (ppo's observation).
    policy_from_weights: Callable
    #: Whether its reference engine may step several environments.
    reference_many_envs: bool = True
    optimizers: tuple = ("rmsprop", "adam")
    #: Whether Ray's rollout workers can feed it (they send episodes' gradients).
    ray: bool = True
    #: What its network sees of a Pong frame: "tutorial" (80x80 differences) or "lab" (the lab's
    #: 40x40 frame changes); evaluation and videos preprocess accordingly.
    frame_input: str = "tutorial"
    #: The settings of config.AGENT_FIELDS it takes (ppo's rollout settings, mit-pong's entropy
    #: bonus...): refused for any agent that does not name them.
    settings: tuple = ()
    #: metrics.csv columns from each finished episode's own statistics, which the learner's
    #: ``finish_episode`` returns as a dict (mit-pong: the policy's mean entropy over the game).
    episode_columns: tuple = ()
    #: metrics.csv columns beyond the episode's own, filled from the learner's ``update_stats``
    #: (its last update's diagnostics; empty before the first update).
    update_columns: tuple = ()
    #: The optimizers its reference engine implements (in NumPy, as its original did).
    reference_optimizers: tuple = ()
    #: {setting: value} that a config file written before the setting existed implies: what
    #: such runs trained with, whatever the default for new runs is (ppo: the frame change).
    old_config_settings: dict = field(default_factory=dict)

    def plays(self, env_id: str) -> bool:
        return env_id in self.env_ids


def make_optimizer(config):
    """The optimizer a config names, with its settings."""
    import fastpong

    if config.optimizer == "adam":
        return fastpong.Adam(learning_rate=config.learning_rate)
    return fastpong.RMSProp(config.learning_rate, config.decay_rate)


def clip_global_norm(grads: dict, max_norm: float) -> float:
    """Scales every gradient by max_norm / norm when their global L2 norm exceeds max_norm (as
    torch.nn.utils.clip_grad_norm_, with its 1e-6); returns the norm before clipping. ppo's
    update and mit-pong's --max-grad-norm."""
    norm = float(np.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) for g in grads.values())))
    if norm > max_norm:
        scale = np.float32(max_norm / (norm + 1e-6))
        for g in grads.values():
            g *= scale
    return norm


def take_gradient_from(grads: dict) -> dict:
    """A copy of a dict of gradient arrays, which are then zeroed (``take_gradient``)."""
    taken = {name: g.copy() for name, g in grads.items()}
    for g in grads.values():
        g[...] = 0
    return taken


def add_gradient_into(grads: dict, gradient: dict) -> None:
    """grads[name] += gradient[name] for every name of grads, in grads' dtype (``add_gradient``)."""
    for name, g in grads.items():
        g += np.asarray(gradient[name], dtype=g.dtype)


class StepHistory:
    """The steps of the episodes in progress of a lane of N environments, stored together.

    Step t of every env is a row of (T, N, ...) arrays; env i's episode started at row start[i].
    A finished episode is read out as a column slice, and its env starts again at the next row.
    When the arrays are full the rows no episode needs any more are dropped (or the arrays grow),
    so memory stays at about the longest episode in progress."""

    def __init__(self, num_envs: int, observation_size: int, capacity: int = 512):
        self.num_envs = num_envs
        self.observations = np.zeros((capacity, num_envs, observation_size), dtype=np.float32)
        self.actions = np.zeros((capacity, num_envs), dtype=np.int32)
        self.rewards = np.zeros((capacity, num_envs), dtype=np.float32)
        self.start = np.zeros(num_envs, dtype=np.int64)
        self.length = 0  # rows in use

    def append(self, observations: np.ndarray, actions: np.ndarray) -> None:
        if self.length == self.observations.shape[0]:
            self._make_room()
        t = self.length
        self.observations[t] = observations
        self.actions[t] = actions
        self.rewards[t] = 0
        self.length = t + 1

    def set_last_rewards(self, rewards: np.ndarray) -> None:
        self.rewards[self.length - 1] = rewards

    def episode(self, env: int):
        """(observations (T, D), actions (T,), rewards (T,)) of env's episode, contiguous copies."""
        rows = slice(int(self.start[env]), self.length)
        return (np.ascontiguousarray(self.observations[rows, env]),
                np.ascontiguousarray(self.actions[rows, env]),
                np.ascontiguousarray(self.rewards[rows, env]))

    def restart(self, env: int) -> None:
        self.start[env] = self.length

    def _make_room(self) -> None:
        first = int(self.start.min()) if self.num_envs else self.length
        if first > 0:  # drop the rows of finished episodes
            kept = self.length - first
            for array in (self.observations, self.actions, self.rewards):
                array[:kept] = array[first:self.length]
            self.start -= first
            self.length = kept
        if self.length == self.observations.shape[0]:  # still full: grow
            for name in ("observations", "actions", "rewards"):
                array = getattr(self, name)
                grown = np.zeros((2 * array.shape[0], *array.shape[1:]), dtype=array.dtype)
                grown[:self.length] = array[:self.length]
                setattr(self, name, grown)
