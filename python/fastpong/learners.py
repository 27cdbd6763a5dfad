"""The two engines behind ``fastpong train``: the same algorithm, fast and reference.

A learner turns frames into actions, records what the backward pass needs, turns a finished
episode into gradients and applies RMSProp updates. The training loop (train.py) drives either one
the same way, so ``--engine reference`` runs the tutorial's code path under the same command line.
"""

from __future__ import annotations

import numpy as np

from . import _core
from . import reference as ref
from .optim import RMSProp
from .policy import Policy

UP, DOWN = ref.UP, ref.DOWN


class FastLearner:
    """Environments in lanes on the C++ kernels: a fused frame -> sparse difference kernel, one
    batched sparse forward pass per lane step, episode buffers of nonzero pixels, a sparse
    backward. The lanes share the policy, the gradient buffer, the optimizer and the random
    stream; each has its own frame differencer and episode buffers (see train.py for why)."""

    def __init__(self, config, lane_sizes: list[int], rng: np.random.Generator):
        self.rng = rng
        self.gamma = config.gamma
        self.policy = Policy(hidden=config.hidden, seed=config.seed)
        self.optimizer = RMSProp(config.learning_rate, config.decay_rate)
        self.optimizer.cache = self.policy.gradient_buffer()
        self.grads = self.policy.gradient_buffer()
        # Gradients handed in by add_gradient, summed in the tutorial's layout: folding them into
        # the kernel's transposed buffer once per update costs one transpose, not one per game.
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

    def weights(self) -> dict:
        """Copies of the policy's weights, {'W1': (H, D), 'W2': (H,)} float32."""
        return self.policy.to_model()

    def load_weights(self, weights: dict) -> None:
        self.policy.load_model(weights)

    def take_gradient(self) -> dict:
        """The gradient summed over the episodes finished (and added) since the last update or
        take, {'W1', 'W2'}; the batch's buffer is zeroed."""
        self._fold_added()
        gradient = self.grads.to_model()
        self.grads.zero()
        return gradient

    def add_gradient(self, gradient: dict) -> None:
        """Adds a gradient taken elsewhere (a rollout worker's) into the batch before update()."""
        _check_like(gradient, self.policy)
        if self._added is None:
            self._added = {k: np.array(gradient[k], dtype=np.float32) for k in ("W1", "W2")}
        else:
            for k in ("W1", "W2"):
                self._added[k] += gradient[k]

    def _fold_added(self) -> None:
        if self._added is not None:
            total = self.grads.to_model()
            for k in ("W1", "W2"):
                total[k] += self._added[k]
            self.grads.load_model(total)
            self._added = None

    def tensors(self) -> dict:
        self._fold_added()
        model, cache, grads = self.policy.to_model(), self.optimizer.cache.to_model(), self.grads.to_model()
        return {"W1": model["W1"], "W2": model["W2"], "cache_W1": cache["W1"], "cache_W2": cache["W2"],
                "grad_W1": grads["W1"], "grad_W2": grads["W2"]}

    def load_tensors(self, tensors: dict) -> None:
        self.policy.load_model({"W1": tensors["W1"], "W2": tensors["W2"]})
        self.optimizer.cache.load_model({"W1": tensors["cache_W1"], "W2": tensors["cache_W2"]})
        self.grads.load_model({"W1": tensors["grad_W1"], "W2": tensors["grad_W2"]})
        self._added = None


def _check_like(gradient, policy) -> None:
    """ValueError unless gradient is {'W1': (H, D), 'W2': (H,)} shaped like the policy."""
    expected = {"W1": (policy.hidden, policy.input_size), "W2": (policy.hidden,)}
    try:
        shapes = {k: np.shape(gradient[k]) for k in expected}
    except (KeyError, TypeError, IndexError):
        raise ValueError(f"gradient must be a mapping with 'W1' {expected['W1']} and 'W2' {expected['W2']}, "
                         f"got {type(gradient).__name__}") from None
    if shapes != expected:
        raise ValueError(f"gradient must have W1 {expected['W1']} and W2 {expected['W2']}, "
                         f"got W1 {shapes['W1']} and W2 {shapes['W2']}")


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


LEARNERS = {"fast": FastLearner, "reference": ReferenceLearner}
