"""The tutorial's agent (``--agent karpathy``): Karpathy's "Pong from pixels".

An 80x80 difference of two preprocessed frames goes into a 6400-H-1 network; the output is the
probability of moving up (action 2, else down, action 3); rewards are discounted with a reset at
every point and standardized per episode; RMSProp (or, on request, Adam) updates the weights every
few games. Two engines: ``FastLearner`` on the C++ kernels, ``ReferenceLearner`` the tutorial's
own NumPy code, one environment.

Checkpoint names are the tutorial's: ``W1`` (H, D), ``W2`` (H,), ``grad_W1``/``grad_W2`` (the
batch in progress), ``cache_W1``/``cache_W2`` (RMSProp) or ``adam/<key>`` (Adam's state).
"""

from __future__ import annotations

import numpy as np

from .. import _core
from .. import reference as ref
from ..nn.policy import Policy
from .base import ATARI, PONG_ENV_IDS, Agent, add_gradient_into, make_optimizer, take_gradient_from

UP, DOWN = ref.UP, ref.DOWN
ADAM_PREFIX = "adam/"


def _optimizer_tensors(optimizer) -> dict:
    """RMSProp's cache under the tutorial's names, or Adam's state under adam/."""
    if hasattr(optimizer, "cache"):
        cache = optimizer.cache.to_model()
        return {"cache_W1": cache["W1"], "cache_W2": cache["W2"]}
    return {ADAM_PREFIX + key: np.asarray(value) for key, value in optimizer.state().items()}


def _load_optimizer_tensors(optimizer, tensors: dict, policy) -> None:
    if hasattr(optimizer, "cache"):
        optimizer.cache.load_model({"W1": tensors["cache_W1"], "W2": tensors["cache_W2"]})
    else:
        optimizer.load_state({key[len(ADAM_PREFIX):]: value for key, value in tensors.items()
                              if key.startswith(ADAM_PREFIX)}, policy)


class FastLearner:
    """Environments in lanes on the C++ kernels: a fused frame -> sparse difference kernel, one
    batched sparse forward pass per lane step, episode buffers of nonzero pixels, a sparse
    backward. The lanes share the policy, the gradient buffer, the optimizer and the random
    stream; each has its own frame differencer and episode buffers (see train.py for why)."""

    def __init__(self, config, lane_sizes: list[int], rng: np.random.Generator):
        self.rng = rng
        self.gamma = config.gamma
        self.policy = Policy(hidden=config.hidden, seed=config.seed)
        self.optimizer = make_optimizer(config)
        if hasattr(self.optimizer, "cache"):
            self.optimizer.cache = self.policy.gradient_buffer()
        self.grads = self.policy.gradient_buffer()
        # Gradients added from outside (Ray's driver, one game at a time), summed in the tutorial's
        # layout and folded into the kernel's buffer once per update: folding each game would copy
        # the whole 5 MB buffer out and back per game.
        self._added: dict | None = None
        self.lanes = [_Lane(n, config.hidden, self.policy.input_size) for n in lane_sizes]

    def observe(self, lane: int, frames: np.ndarray) -> None:
        """The frames that follow the lane's last actions (for a finished episode: its next
        first frame)."""
        state = self.lanes[lane]
        state.x = state.differencer.step(frames)

    def act(self, lane: int) -> np.ndarray:
        state = self.lanes[lane]
        p, h = self.policy.forward(state.x)
        up = self.rng.random(p.shape[0]) < p  # sample: up with probability p
        # dlogp = y - p, the gradient of log p(action) w.r.t. the logit
        state.episodes.append(state.x, h, up.astype(np.float32) - p)
        return np.where(up, UP, DOWN).astype(np.int32)  # int32: what the emulator takes

    def record_rewards(self, lane: int, rewards: np.ndarray) -> None:
        self.lanes[lane].episodes.set_last_rewards(rewards)

    def finish_episode(self, lane: int, env: int) -> None:
        """Backward pass of a finished episode into the gradient buffer; frees its buffer."""
        state = self.lanes[lane]
        episode = state.episodes.episode(env)
        returns = _core.standardize(_core.discount_rewards(episode.rewards, self.gamma))
        self.policy.accumulate_gradient(episode, returns, self.grads)
        episode.clear()
        state.differencer.reset(env)

    def update(self) -> None:
        self._fold_added()
        self.optimizer.step(self.policy, self.grads)

    def tensors(self) -> dict:
        self._fold_added()
        model, grads = self.policy.to_model(), self.grads.to_model()
        return {"W1": model["W1"], "W2": model["W2"], **_optimizer_tensors(self.optimizer),
                "grad_W1": grads["W1"], "grad_W2": grads["W2"]}

    def load_tensors(self, tensors: dict) -> None:
        self.policy.load_model({"W1": tensors["W1"], "W2": tensors["W2"]})
        _load_optimizer_tensors(self.optimizer, tensors, self.policy)
        self.grads.load_model({"W1": tensors["grad_W1"], "W2": tensors["grad_W2"]})
        self._added = None

    def weights(self) -> dict:
        return self.policy.to_model()

    def load_weights(self, weights: dict) -> None:
        self.policy.load_model({"W1": weights["W1"], "W2": weights["W2"]})

    def take_gradient(self) -> dict:
        self._fold_added()
        grads = self.grads.to_model()
        self.grads.zero()
        return grads

    def add_gradient(self, gradient: dict) -> None:
        expected = {"W1": (self.policy.hidden, self.policy.input_size), "W2": (self.policy.hidden,)}
        arrays = {k: np.asarray(gradient[k], dtype=np.float32) for k in expected}
        for k, shape in expected.items():
            if arrays[k].shape != shape:
                raise ValueError(f"gradient {k} must have shape {shape}, got {arrays[k].shape}")
        if self._added is None:
            self._added = {k: a.copy() for k, a in arrays.items()}
        else:
            for k, a in arrays.items():
                self._added[k] += a

    def _fold_added(self) -> None:
        if self._added is not None:
            total = self.grads.to_model()
            self.grads.load_model({k: total[k] + self._added[k] for k in total})
            self._added = None


class _Lane:
    """What a lane of environments keeps between steps."""

    def __init__(self, num_envs: int, hidden: int, input_size: int):
        self.differencer = _core.FrameDifferencer(num_envs)
        self.episodes = _core.EpisodeBatch(num_envs, hidden, input_size)
        self.x = None


class ReferenceLearner:
    """The tutorial's loop in NumPy float64, one environment: dense inputs stacked per episode."""

    def __init__(self, config, lane_sizes: list[int], rng: np.random.Generator):
        if list(lane_sizes) != [1]:
            raise ValueError(f"the reference engine runs one environment, got lanes of {lane_sizes}")
        if config.optimizer != "rmsprop":
            raise ValueError(f"the karpathy agent's reference engine runs RMSProp (the tutorial's), "
                             f"got optimizer {config.optimizer!r}")
        self.rng = rng
        self.config = config
        self.model = ref.init_model(config.hidden, ref.INPUT_SIZE, config.seed)
        self.grad_buffer = {k: np.zeros_like(v) for k, v in self.model.items()}
        self.rmsprop_cache = {k: np.zeros_like(v) for k, v in self.model.items()}
        self.prev_x = None
        self._x = None
        self.xs, self.hs, self.dlogps, self.drs = [], [], [], []

    def observe(self, lane: int, frames: np.ndarray) -> None:
        cur_x = ref.frame_preprocessing(frames[0]).ravel()
        self._x = ref.update_input(self.prev_x, cur_x)
        self.prev_x = cur_x

    def act(self, lane: int) -> np.ndarray:
        aprob, h = ref.policy_forward(self._x, self.model)
        action = UP if self.rng.random() < aprob else DOWN
        self.xs.append(self._x)
        self.hs.append(h)
        self.dlogps.append((1.0 if action == UP else 0.0) - aprob)
        return np.array([action])

    def record_rewards(self, lane: int, rewards: np.ndarray) -> None:
        self.drs.append(float(rewards[0]))

    def finish_episode(self, lane: int, env: int) -> None:
        epx, eph = np.vstack(self.xs), np.vstack(self.hs)
        epdlogp, epr = np.vstack(self.dlogps), np.vstack(self.drs)
        self.xs, self.hs, self.dlogps, self.drs = [], [], [], []
        discounted_epr = ref.standardize_returns(ref.discount_rewards(epr, self.config.gamma))
        grad = ref.policy_backward(eph, epx, epdlogp * discounted_epr, self.model)
        for k in self.model:
            self.grad_buffer[k] += grad[k]
        self.prev_x = None

    def update(self) -> None:
        ref.rmsprop_update(self.model, self.grad_buffer, self.rmsprop_cache,
                           self.config.learning_rate, self.config.decay_rate)

    def tensors(self) -> dict:
        return {"W1": self.model["W1"], "W2": self.model["W2"],
                "cache_W1": self.rmsprop_cache["W1"], "cache_W2": self.rmsprop_cache["W2"],
                "grad_W1": self.grad_buffer["W1"], "grad_W2": self.grad_buffer["W2"]}

    def load_tensors(self, tensors: dict) -> None:
        for name, target in (("", self.model), ("cache_", self.rmsprop_cache), ("grad_", self.grad_buffer)):
            for k in ("W1", "W2"):
                target[k] = np.array(tensors[name + k], dtype=np.float64)

    def weights(self) -> dict:
        return {k: v.copy() for k, v in self.model.items()}

    def load_weights(self, weights: dict) -> None:
        for k in ("W1", "W2"):
            self.model[k] = np.array(weights[k], dtype=np.float64)

    def take_gradient(self) -> dict:
        return take_gradient_from(self.grad_buffer)

    def add_gradient(self, gradient: dict) -> None:
        add_gradient_into(self.grad_buffer, gradient)


def weight_shapes(config) -> dict:
    return {"W1": (config.hidden, ref.INPUT_SIZE), "W2": (config.hidden,)}


def tensor_shapes(config) -> dict:
    """Every tensor of a checkpoint but the optimizer state Adam validates itself."""
    shapes = weight_shapes(config)
    shapes.update({"grad_" + k: s for k, s in weight_shapes(config).items()})
    if config.optimizer == "rmsprop":
        shapes.update({"cache_" + k: s for k, s in weight_shapes(config).items()})
    return shapes


AGENT = Agent(
    name="karpathy",
    summary="the NumPy tutorial's Pong agent: 6400-H-1 sigmoid policy on frame differences",
    env_kind=ATARI,
    env_ids=PONG_ENV_IDS,
    defaults=dict(hidden=200, batch_size=10, learning_rate=1e-4, gamma=0.99, optimizer="rmsprop",
                  decay_rate=0.99),
    learners={"fast": FastLearner, "reference": ReferenceLearner},
    weight_shapes=weight_shapes,
    tensor_shapes=tensor_shapes,
    policy_from_weights=lambda weights, config=None: Policy.from_model(weights),
    reference_many_envs=False,
    reference_optimizers=("rmsprop",),
)
