"""The MIT lab's learning step over a categorical (softmax) policy, shared by the lab's agents.

Per step: the policy's action probabilities for each environment's observation, an action sampled
from them (one uniform draw per environment, inverse CDF). Per finished episode: returns
discounted (with or without the reset at each point), standardized over the episode (mean 0,
std 1), and the gradient of mean_t(return_t * log pi(a_t|s_t)) added to the batch's gradient.
Every ``batch_size`` episodes the optimizer steps along the mean of the episodes' gradients (for
the lab's one episode per update, exactly the lab's loss, mean over steps of -log pi * return).

``LabLearner`` runs on fastpong's kernels (float32, C++): ``CategoricalPolicy``,
``sample_actions``, ``discount_rewards``, ``standardize``, ``Adam``. ``LabReferenceLearner`` is the
same in NumPy float64 (``fastpong.reference.lab``). Both store the steps of the episodes in progress in a
:class:`StepHistory`. An agent subclasses them to name its policy and observation preprocessing.
"""

from __future__ import annotations

import numpy as np

from .base import StepHistory, make_optimizer

GRAD_PREFIX = "grad/"


class LabLearner:
    #: Discount with the reset at every nonzero reward (Pong's points) or a plain discounted sum.
    reset_at_points = False

    def __init__(self, config, lane_sizes: list[int], rng: np.random.Generator, policy, observation_size: int):
        self.rng = rng
        self.gamma = config.gamma
        self.batch_size = config.batch_size
        self.optimizer_name = config.optimizer
        self.policy = policy
        self.optimizer = make_optimizer(config)
        self.grads = policy.gradient_buffer()
        self.lanes = [StepHistory(n, observation_size) for n in lane_sizes]
        self._observations = [None] * len(lane_sizes)

    def preprocess(self, lane: int, observations: np.ndarray) -> np.ndarray:
        """What the policy sees of the environments' observations (float32 (N, D))."""
        return np.asarray(observations, dtype=np.float32)

    def observe(self, lane: int, observations: np.ndarray) -> None:
        self._observations[lane] = self.preprocess(lane, observations)

    def act(self, lane: int) -> np.ndarray:
        from .. import sample_actions

        x = self._observations[lane]
        actions = sample_actions(self.policy.forward(x), self.rng.random(x.shape[0]))
        self.lanes[lane].append(x, actions)
        return actions

    def record_rewards(self, lane: int, rewards: np.ndarray) -> None:
        self.lanes[lane].set_last_rewards(rewards)

    def finish_episode(self, lane: int, env: int) -> None:
        from .. import _core, discount_rewards

        history = self.lanes[lane]
        observations, actions, rewards = history.episode(env)
        history.restart(env)
        returns = _core.standardize(discount_rewards(rewards, self.gamma, reset_at_points=self.reset_at_points))
        self.policy.accumulate_gradient(observations, actions, returns, self.grads, scale=1.0 / len(actions))

    def update(self) -> None:
        if self.batch_size != 1:  # the mean of the batch's per-episode gradients
            for g in self.grads.values():
                g *= np.float32(1.0 / self.batch_size)
        self.optimizer.step(self.policy, self.grads)

    def tensors(self) -> dict:
        tensors = {name: np.array(value) for name, value in self.policy.to_model().items()}
        tensors.update({GRAD_PREFIX + name: g.copy() for name, g in self.grads.items()})
        tensors.update({f"{self.optimizer_name}/{key}": np.asarray(value)
                        for key, value in self.optimizer.state().items()})
        return tensors

    def load_tensors(self, tensors: dict) -> None:
        self.load_weights(tensors)
        for name, g in self.grads.items():
            g[...] = tensors[GRAD_PREFIX + name]
        prefix = self.optimizer_name + "/"
        self.optimizer.load_state({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)},
                                  self.policy)

    def weights(self) -> dict:
        return {name: np.array(value) for name, value in self.policy.to_model().items()}

    def load_weights(self, weights: dict) -> None:
        model = {name: weights[name] for name in self.policy.to_model()}
        if hasattr(self.policy, "load_model"):
            self.policy.load_model(model)
        else:
            self.policy = type(self.policy).from_model(model)

    def take_gradient(self) -> dict:
        taken = {name: g.copy() for name, g in self.grads.items()}
        for g in self.grads.values():
            g[...] = 0
        return taken

    def add_gradient(self, gradient: dict) -> None:
        for name, g in self.grads.items():
            g += np.asarray(gradient[name], dtype=g.dtype)


class LabReferenceLearner:
    """The same learner in NumPy float64 on ``fastpong.reference.lab``: one environment or N, the
    same random draws, the same sampling rule, Adam in float64. Its checkpoint tensors have the
    fast learner's names (Adam's state as ``adam/step``, ``adam/m_<name>``, ``adam/v_<name>``)."""

    reset_at_points = False

    def __init__(self, config, lane_sizes: list[int], rng: np.random.Generator, model: dict,
                 observation_size: int):
        if config.optimizer != "adam":
            raise ValueError(f"the lab's reference engine runs Adam (the lab's), got optimizer {config.optimizer!r}")
        self.rng = rng
        self.config = config
        self.model = {k: np.array(v, dtype=np.float64) for k, v in model.items()}
        self.grads = {k: np.zeros_like(v) for k, v in self.model.items()}
        self.m = {k: np.zeros_like(v) for k, v in self.model.items()}
        self.v = {k: np.zeros_like(v) for k, v in self.model.items()}
        self.step = 0
        self.lanes = [StepHistory(n, observation_size) for n in lane_sizes]
        self._observations = [None] * len(lane_sizes)

    def observe(self, lane: int, observations: np.ndarray) -> None:
        self._observations[lane] = np.asarray(observations, dtype=np.float32)

    def act(self, lane: int) -> np.ndarray:
        from ..reference import lab

        x = self._observations[lane]
        _, _, probs, _ = lab.forward(x, self.model)
        actions = lab.sample_actions(probs, self.rng.random(x.shape[0])).astype(np.int32)
        self.lanes[lane].append(x, actions)
        return actions

    def record_rewards(self, lane: int, rewards: np.ndarray) -> None:
        self.lanes[lane].set_last_rewards(rewards)

    def finish_episode(self, lane: int, env: int) -> None:
        from ..reference import lab

        history = self.lanes[lane]
        observations, actions, rewards = history.episode(env)
        history.restart(env)
        returns = lab.normalize(lab.discount_rewards(rewards, self.config.gamma,
                                                     reset_at_points=self.reset_at_points))
        grad = lab.policy_gradient(observations, actions, returns, self.model, scale=1.0 / len(actions))
        for k in self.grads:
            self.grads[k] += grad[k]

    def update(self) -> None:
        from ..reference import lab

        if self.config.batch_size != 1:
            for g in self.grads.values():
                g /= self.config.batch_size
        self.step += 1
        lab.adam_update(self.model, self.grads, self.m, self.v, self.step, self.config.learning_rate)

    def tensors(self) -> dict:
        tensors = dict(self.model)
        tensors.update({GRAD_PREFIX + k: v for k, v in self.grads.items()})
        tensors["adam/step"] = np.int64(self.step)
        if self.step:
            tensors.update({f"adam/m_{k}": v for k, v in self.m.items()})
            tensors.update({f"adam/v_{k}": v for k, v in self.v.items()})
        return tensors

    def load_tensors(self, tensors: dict) -> None:
        self.load_weights(tensors)
        for k in self.grads:
            self.grads[k] = np.array(tensors[GRAD_PREFIX + k], dtype=np.float64)
        self.step = int(tensors["adam/step"])
        for k in self.model:
            if self.step:
                self.m[k] = np.array(tensors[f"adam/m_{k}"], dtype=np.float64)
                self.v[k] = np.array(tensors[f"adam/v_{k}"], dtype=np.float64)

    def weights(self) -> dict:
        return {k: v.copy() for k, v in self.model.items()}

    def load_weights(self, weights: dict) -> None:
        for k in self.model:
            self.model[k] = np.array(weights[k], dtype=np.float64)

    def take_gradient(self) -> dict:
        taken = {k: v.copy() for k, v in self.grads.items()}
        for g in self.grads.values():
            g[...] = 0
        return taken

    def add_gradient(self, gradient: dict) -> None:
        for k in self.grads:
            self.grads[k] += gradient[k]
