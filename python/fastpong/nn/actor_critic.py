"""The actor-critic network of ``--agent ppo``, and PPO's loss gradient at its two heads.

The trunk is the MIT lab's Pong CNN up to its 128 hidden units (four convolutions over the 40x40
frame change on fastpong's C++ kernels, then Dense 128 ReLU); two heads share it: the lab's six
logits (the policy) and one value. The convolutions, forward and backward, run in C++
(``_ConvPolicy.features`` / ``accumulate_feature_gradient``: SIMD, threads, the GIL released); the
three dense layers above them are float32 NumPy matrix products (BLAS), a few percent of the work.
``fastpong.reference.ppo`` is the float64 spec of both the network and the loss.
"""

from __future__ import annotations

import numpy as np

from .. import _core
from ..reference import ppo as _reference
from .conv_policy import checked_model

__all__ = ["ActorCriticCNN", "ppo_loss_gradient", "gae"]

_HIDDEN = 128


class ActorCriticCNN:
    """The lab's CNN with a value head beside its logits: frame changes (N, 40, 40) in, logits
    (N, 6) and values (N,) out, float32. Parameters are named as ``reference.ppo.PARAMETER_NAMES``
    (the lab's Keras names, then ``value/kernel`` (128, 1) and ``value/bias`` (1,)).

    ``seed`` draws ``reference.ppo.init_params(seed)`` (the lab's Keras initialization, the policy
    head scaled by 0.01 so the first policy is nearly uniform), rounded to float32.
    ``observation`` names the input it was built for (``reference.ppo.OBSERVATIONS``: the frame
    change, or frame-and-change in one channel); the network is the same, and whoever plays it
    makes that input (``LabFrameDifferencer(n, net.observation)``).
    """

    PARAMETER_NAMES = _reference.PARAMETER_NAMES
    PARAMETER_SHAPES = {
        **{name: tuple(shape) for name, shape in
           zip(_core._ConvPolicy.tensor_names, _core._ConvPolicy.tensor_shapes)},
        "value/kernel": (_HIDDEN, 1), "value/bias": (1,),
    }
    num_actions = 6
    input_shape = (40, 40)

    def __init__(self, seed=None, observation: str = _reference.CHANGE):
        self.observation = _reference.check_observation(observation)
        self._net = _core._ConvPolicy()
        self._value = {"value/kernel": np.zeros((_HIDDEN, 1), dtype=np.float32),
                       "value/bias": np.zeros(1, dtype=np.float32)}
        self.load_model(_reference.init_params(seed))

    # --- outputs --------------------------------------------------------------------------------

    def logits_and_values(self, obs):
        """(logits (N, 6), values (N,)) for frame changes (N, 40, 40)."""
        logits, values, _ = self._forward(obs)
        return logits, values

    def forward(self, obs) -> np.ndarray:
        """Action probabilities (N, 6): what evaluation and videos play from."""
        logits, _, _ = self._forward(obs)
        return softmax(logits)

    def forward_for_gradient(self, obs):
        """(logits, values, cache) for a gradient step on these frames: pass cache to
        accumulate_gradient with the same frames, and neither the dense layers nor the trunk's
        convolutions run their forward pass again (the trunk keeps its activations until the
        next forward_for_gradient; the result is the same bits either way)."""
        return self._forward(obs, keep=True)

    def _forward(self, obs, keep: bool = False):
        """(logits, values, (features, hidden)): the cache is what accumulate_gradient reuses;
        with keep, the C++ trunk also keeps its activations for the backward pass that follows."""
        p = self._views()
        features = self._net.features(obs, keep)
        hidden = features @ p["dense_0/kernel"]
        hidden += p["dense_0/bias"]
        np.maximum(hidden, 0.0, out=hidden)
        logits = hidden @ p["logits/kernel"] + p["logits/bias"]
        values = (hidden @ p["value/kernel"])[:, 0] + p["value/bias"][0]
        return logits, values, (features, hidden)

    # --- learning -------------------------------------------------------------------------------

    def gradient_buffer(self) -> dict:
        """Zeros shaped like the parameters: {name: float32 array}."""
        return {name: np.zeros(shape, dtype=np.float32) for name, shape in self.PARAMETER_SHAPES.items()}

    def accumulate_gradient(self, obs, grad_logits, grad_values, grads: dict, cache=None) -> None:
        """grads += d/d parameters of sum_i (grad_logits[i] . logits_i + grad_values[i] * value_i):
        the backward pass from any gradient at the heads (a policy-gradient agent's is the
        special case grad_values = 0). ``cache`` (from a forward pass on the same obs with the
        same weights) saves recomputing the trunk's output."""
        p = self._views()
        features, hidden = cache if cache is not None else self._forward(obs)[2]
        grad_logits = np.asarray(grad_logits, dtype=np.float32)
        grad_values = np.asarray(grad_values, dtype=np.float32).reshape(-1, 1)
        grads["logits/kernel"] += hidden.T @ grad_logits
        grads["logits/bias"] += grad_logits.sum(axis=0)
        grads["value/kernel"] += hidden.T @ grad_values
        grads["value/bias"] += grad_values.sum(axis=0)
        grad_hidden = grad_logits @ p["logits/kernel"].T
        grad_hidden += grad_values @ p["value/kernel"].T
        grad_hidden *= hidden > 0
        grads["dense_0/kernel"] += features.T @ grad_hidden
        grads["dense_0/bias"] += grad_hidden.sum(axis=0)
        # The convolutions: C++, from the gradient at their flattened output.
        self._net.accumulate_feature_gradient(obs, grad_hidden @ p["dense_0/kernel"].T, grads)

    def parameters(self) -> dict:
        """{name: writable float32 array} of the live parameters: writing one changes the network."""
        return dict(self._views())

    def _views(self) -> dict:
        # Made once: the C++ tensors never move, and building 14 views costs more than a forward
        # pass of a few frames' dense layers.
        if getattr(self, "_view_cache", None) is None:
            views = self._net.parameters()
            views.update(self._value)
            self._view_cache = views
        return self._view_cache

    # --- weights --------------------------------------------------------------------------------

    def to_model(self) -> dict:
        """{name: float32 copy} of every parameter."""
        return {name: value.copy() for name, value in self.parameters().items()}

    def load_model(self, model) -> None:
        """Overwrites every parameter from a mapping with all of PARAMETER_NAMES (shapes as
        PARAMETER_SHAPES, finite, real); checked in full before anything changes."""
        values = checked_model(model, self.PARAMETER_NAMES, self.PARAMETER_SHAPES)
        views = self.parameters()
        for name, value in values.items():
            views[name][...] = value

    @classmethod
    def from_model(cls, model, observation: str = _reference.CHANGE) -> "ActorCriticCNN":
        """A network holding the given weights (see load_model), for that observation."""
        net = cls.__new__(cls)
        net.observation = _reference.check_observation(observation)
        net._net = _core._ConvPolicy()
        net._value = {"value/kernel": np.zeros((_HIDDEN, 1), dtype=np.float32),
                      "value/bias": np.zeros(1, dtype=np.float32)}
        net.load_model(model)
        return net

    def __repr__(self) -> str:
        count = sum(int(np.prod(s)) for s in self.PARAMETER_SHAPES.values())
        return (f"ActorCriticCNN({count:,} parameters, observation={self.observation!r}, "
                f"kernels={_core.conv_kernel()!r})")


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def gae(rewards, values, dones, last_values, gamma: float, lam: float):
    """Generalized advantage estimation, vectorized over environments: (advantages, returns),
    float32 (T, N). Same arguments and formulas as ``reference.ppo.gae`` (dones[t] ends the
    episode at step t; last_values bootstraps the step after the rollout)."""
    rewards = np.asarray(rewards, dtype=np.float32)
    values = np.asarray(values, dtype=np.float32)
    alive = 1.0 - np.asarray(dones, dtype=np.float32)
    advantages = np.zeros_like(rewards)
    following = np.zeros(rewards.shape[1], dtype=np.float32)
    next_value = np.asarray(last_values, dtype=np.float32)
    gamma, lam = np.float32(gamma), np.float32(lam)
    for t in range(rewards.shape[0] - 1, -1, -1):
        delta = rewards[t] + gamma * next_value * alive[t] - values[t]
        following = delta + gamma * lam * alive[t] * following
        advantages[t] = following
        next_value = values[t]
    return advantages, advantages + values


def ppo_loss_gradient(logits, values, actions, old_log_probs, advantages, returns, old_values, *,
                      clip: float, entropy_coef: float, value_coef: float,
                      normalize_advantages: bool = True, clip_value: bool = True):
    """PPO's minibatch loss (``reference.ppo.ppo_loss``), vectorized in float32: returns (stats,
    grad_logits (B, 6), grad_values (B,)), the gradient of the loss (descent direction) at the
    heads; stats as the reference's (policy_loss, value_loss, entropy, approx_kl,
    clip_fraction) plus loss."""
    logits = np.asarray(logits, dtype=np.float32)
    values = np.asarray(values, dtype=np.float32)
    actions = np.asarray(actions, dtype=np.int64)
    advantages = np.asarray(advantages, dtype=np.float32)
    old_log_probs = np.asarray(old_log_probs, dtype=np.float32)
    returns = np.asarray(returns, dtype=np.float32)
    old_values = np.asarray(old_values, dtype=np.float32)
    n = logits.shape[0]
    if n == 0:
        raise ValueError("a PPO minibatch must hold at least one step, got 0")
    if normalize_advantages:
        std = advantages.std(ddof=1) if n > 1 else np.float32(0)
        advantages = (advantages - advantages.mean()) / (std + np.float32(1e-8))
    log_p = log_softmax(logits)
    p = np.exp(log_p)
    rows = np.arange(n)
    log_ratio = log_p[rows, actions] - old_log_probs
    ratio = np.exp(log_ratio)
    bounded = np.clip(ratio, 1 - clip, 1 + clip)
    unclipped_term, clipped_term = -advantages * ratio, -advantages * bounded
    policy_terms = np.maximum(unclipped_term, clipped_term)
    entropy = -(p * log_p).sum(axis=1)
    # Surrogate: -A r (onehot - p) where the unclipped term is the max, else no gradient.
    weight = advantages * ratio
    d_logits = p * weight[:, None]
    d_logits[rows, actions] -= weight
    d_logits *= (unclipped_term >= clipped_term)[:, None]
    # Entropy bonus: -entropy_coef * H, dH/dz = -p (log p + H).
    d_logits += entropy_coef * p * (log_p + entropy[:, None])
    d_logits /= n
    if clip_value:
        delta = values - old_values
        v_clipped = old_values + np.clip(delta, -clip, clip)
        plain_sq, clipped_sq = (values - returns) ** 2, (v_clipped - returns) ** 2
        value_terms = np.maximum(plain_sq, clipped_sq)
        d_values = np.where(plain_sq >= clipped_sq, values - returns,
                            np.where(np.abs(delta) < clip, v_clipped - returns, 0.0))
    else:
        value_terms = (values - returns) ** 2
        d_values = values - returns
    d_values = (d_values * (value_coef / n)).astype(np.float32)
    stats = dict(policy_loss=float(policy_terms.mean()), value_loss=0.5 * float(value_terms.mean()),
                 entropy=float(entropy.mean()), approx_kl=float(((ratio - 1) - log_ratio).mean()),
                 clip_fraction=float((np.abs(ratio - 1) > clip).mean()))
    stats["loss"] = stats["policy_loss"] - entropy_coef * stats["entropy"] + value_coef * stats["value_loss"]
    return stats, d_logits.astype(np.float32), d_values
