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

from .base import StepHistory, add_gradient_into, make_optimizer, take_gradient_from

GRAD_PREFIX = "grad/"


def checkpoint_shapes(weight_shapes: dict) -> dict:
    """A lab agent's checkpoint tensors but the optimizer's: its weights and ``grad/<name>``."""
    return {**weight_shapes, **{GRAD_PREFIX + name: shape for name, shape in weight_shapes.items()}}


class _LabSteps:
    """What both engines do alike: observations in, actions sampled, steps stored per lane, a
    finished episode handed to ``_learn_episode``, the batch's gradient taken and added."""

    #: Discount with the reset at every nonzero reward (Pong's points) or a plain discounted sum.
    reset_at_points = False

    def __init__(self, config, lane_sizes: list[int], rng: np.random.Generator, observation_size: int):
        self.rng = rng
        self.gamma = config.gamma
        self.batch_size = config.batch_size
        self.lanes = [StepHistory(n, observation_size) for n in lane_sizes]
        self._observations = [None] * len(lane_sizes)
        self.grads: dict = {}

    def preprocess(self, lane: int, observations: np.ndarray) -> np.ndarray:
        """What the policy sees of the environments' observations (float32 (N, D))."""
        return np.asarray(observations, dtype=np.float32)

    def observe(self, lane: int, observations: np.ndarray) -> None:
        self._observations[lane] = self.preprocess(lane, observations)

    def act(self, lane: int) -> np.ndarray:
        x = self._observations[lane]
        actions = self._sample(x, self.rng.random(x.shape[0]))
        self.lanes[lane].append(x, actions)
        return actions

    def record_rewards(self, lane: int, rewards: np.ndarray) -> None:
        self.lanes[lane].set_last_rewards(rewards)

    def finish_episode(self, lane: int, env: int) -> None:
        history = self.lanes[lane]
        observations, actions, rewards = history.episode(env)
        history.restart(env)
        self._learn_episode(observations, actions, rewards)

    def take_gradient(self) -> dict:
        return take_gradient_from(self.grads)

    def add_gradient(self, gradient: dict) -> None:
        add_gradient_into(self.grads, gradient)

    def _mean_over_batch(self) -> None:
        """The mean of the batch's per-episode gradients (the lab's one episode: as it is)."""
        if self.batch_size != 1:
            for g in self.grads.values():
                g *= g.dtype.type(1.0 / self.batch_size)


class LabLearner(_LabSteps):
    def __init__(self, config, lane_sizes: list[int], rng: np.random.Generator, policy, observation_size: int):
        super().__init__(config, lane_sizes, rng, observation_size)
        self.optimizer_name = config.optimizer
        self.policy = policy
        self.optimizer = make_optimizer(config)
        self.grads = policy.gradient_buffer()

    def _sample(self, x: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
        from .. import sample_actions

        return sample_actions(self.policy.forward(x), uniforms)

    def _learn_episode(self, observations, actions, rewards) -> None:
        from .. import _core, discount_rewards

        returns = _core.standardize(discount_rewards(rewards, self.gamma, reset_at_points=self.reset_at_points))
        self.policy.accumulate_gradient(observations, actions, returns, self.grads, scale=1.0 / len(actions))

    def update(self) -> None:
        self._mean_over_batch()
        self.optimizer.step(self.policy, self.grads)

    def tensors(self) -> dict:
        tensors = self.weights()
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
        return self.policy.to_model()

    def load_weights(self, weights: dict) -> None:
        self.policy.load_model({name: weights[name] for name in self.policy.parameters()})


class LabReferenceLearner(_LabSteps):
    """The same learner in NumPy float64 on ``fastpong.reference.lab``: one environment or N, the
    same random draws, the same sampling rule, Adam in float64. Its checkpoint tensors have the
    fast learner's names (Adam's state as ``adam/step``, ``adam/m_<name>``, ``adam/v_<name>``)."""

    def __init__(self, config, lane_sizes: list[int], rng: np.random.Generator, model: dict,
                 observation_size: int):
        if config.optimizer != "adam":
            raise ValueError(f"the lab's reference engine runs Adam (the lab's), got optimizer {config.optimizer!r}")
        super().__init__(config, lane_sizes, rng, observation_size)
        self.learning_rate = config.learning_rate
        self.model = {k: np.array(v, dtype=np.float64) for k, v in model.items()}
        self.grads = {k: np.zeros_like(v) for k, v in self.model.items()}
        self.m = {k: np.zeros_like(v) for k, v in self.model.items()}
        self.v = {k: np.zeros_like(v) for k, v in self.model.items()}
        self.step = 0

    def _sample(self, x: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
        from ..reference import lab

        _, _, probs, _ = lab.forward(x, self.model)
        return lab.sample_actions(probs, uniforms).astype(np.int32)

    def _learn_episode(self, observations, actions, rewards) -> None:
        from ..reference import lab

        returns = lab.normalize(lab.discount_rewards(rewards, self.gamma, reset_at_points=self.reset_at_points))
        grad = lab.policy_gradient(observations, actions, returns, self.model, scale=1.0 / len(actions))
        for k in self.grads:
            self.grads[k] += grad[k]

    def update(self) -> None:
        from ..reference import lab

        self._mean_over_batch()
        self.step += 1
        lab.adam_update(self.model, self.grads, self.m, self.v, self.step, self.learning_rate)

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
