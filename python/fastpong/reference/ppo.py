"""PPO-clip in plain NumPy, float64: the spec the fast actor-critic agent (``--agent ppo``) is
tested against.

The network is the MIT lab's Pong CNN (``fastpong.reference.cnn``: four convolutions over the 40x40
frame change, Dense 128 ReLU, 6 logits) with one more head beside the logits: a value, Dense 1 on
the same 128 hidden units. The objective is PPO's clipped surrogate (Schulman et al. 2017) with
generalized advantage estimation (Schulman et al. 2016), as CleanRL's ``ppo_atari.py`` computes
them: advantages normalized per minibatch, the value loss clipped around the rollout's values, an
entropy bonus. Everything here is written as loops or textbook formulas, for reading and testing,
not speed.
"""

from __future__ import annotations

import numpy as np

from . import cnn

__all__ = [
    "VALUE_NAMES", "PARAMETER_NAMES", "OBSERVATIONS", "check_observation", "observation",
    "frame_and_change", "gae", "init_params", "forward", "ppo_loss",
    "network_gradient", "loss_gradient",
]

#: The value head's parameters, after the lab's network's (Keras-style names).
VALUE_NAMES = ("value/kernel", "value/bias")
PARAMETER_NAMES = cnn.PARAMETER_NAMES + VALUE_NAMES
#: The policy head's initial weights are scaled by this (CleanRL: an orthogonal init of std 0.01),
#: so the first policy is close to uniform over the six actions and keeps exploring.
POLICY_HEAD_SCALE = 0.01
#: What the network sees of a step (``--observation``): the lab's 40x40 frame change (CHANGE, the
#: default, and what every run saw before the setting existed), or the frame and the change in one
#: channel (FRAME_AND_CHANGE, see frame_and_change).
CHANGE = "change"
FRAME_AND_CHANGE = "frame-and-change"
OBSERVATIONS = (CHANGE, FRAME_AND_CHANGE)


def check_observation(kind) -> str:
    """kind if it is one of OBSERVATIONS, else ValueError naming them."""
    if kind not in OBSERVATIONS:
        raise ValueError(f"observation must be one of {', '.join(OBSERVATIONS)}, got {kind!r}")
    return kind


def frame_and_change(prev_frame: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """The frame change with the current frame in the same channel: frame_change(prev, curr) -
    preprocess(curr) = preprocess(prev) - 2 preprocess(curr), (40, 40) in {-2, -1, 0, 1}.

    The lab's change (+1 where an object was, -1 where it now is) loses whatever stands still: a
    paddle at rest is 0, as the empty court is. Subtracting the current image keeps the change's
    information and adds the frame's: each pixel's (previous, current) pair gets its own value,
    empty 0, left +1, still there -1, arrived -2. It is one channel, so it runs on the lab's CNN
    and its sparse kernels unchanged (a still object adds nonzero pixels, which they must visit).
    """
    previous, current = cnn.preprocess(prev_frame), cnn.preprocess(frame)
    return previous - 2.0 * current


def observation(kind: str, prev_frame: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """The network's input of one step for an OBSERVATIONS kind (the first step of a game passes
    its own frame as prev_frame, as the lab does)."""
    if check_observation(kind) == CHANGE:
        return cnn.frame_change(prev_frame, frame)
    return frame_and_change(prev_frame, frame)


def init_params(rng=None) -> dict:
    """The lab's Keras initialization (Glorot-uniform kernels, zero biases) for the trunk, the
    logits kernel scaled by POLICY_HEAD_SCALE, and a Glorot-uniform value kernel with zero bias.
    The same seed gives the same trunk as ``cnn.init_params``."""
    rng = np.random.default_rng(rng)
    params = cnn.init_params(rng)
    params["logits/kernel"] = params["logits/kernel"] * POLICY_HEAD_SCALE
    hidden = cnn.DENSE_LAYERS[0]
    limit = np.sqrt(6.0 / (hidden + 1))
    params["value/kernel"] = rng.uniform(-limit, limit, size=(hidden, 1))
    params["value/bias"] = np.zeros(1)
    return params


def gae(rewards, values, dones, last_values, gamma: float, lam: float):
    """Generalized advantage estimation over a rollout of T steps of N environments.

    rewards, values, dones: (T, N); dones[t, i] is true when env i's episode ended at step t (its
    next observation starts a new episode, so nothing flows back across it); last_values (N,): the
    value of each env's observation after the last step (the bootstrap). Returns (advantages,
    returns), both (T, N), returns = advantages + values:

        delta_t = r_t + gamma * V_{t+1} * (1 - done_t) - V_t
        A_t = delta_t + gamma * lam * (1 - done_t) * A_{t+1}
    """
    rewards = np.asarray(rewards, dtype=float)
    values = np.asarray(values, dtype=float)
    dones = np.asarray(dones, dtype=bool)
    steps, envs = rewards.shape
    advantages = np.zeros((steps, envs))
    for i in range(envs):
        following = 0.0  # A_{t+1}
        next_value = float(last_values[i])
        for t in reversed(range(steps)):
            alive = 0.0 if dones[t, i] else 1.0
            delta = rewards[t, i] + gamma * next_value * alive - values[t, i]
            following = delta + gamma * lam * alive * following
            advantages[t, i] = following
            next_value = values[t, i]
    return advantages, advantages + values


def forward(x, params: dict):
    """Frame changes (N, 40, 40) -> (logits (N, 6), values (N,), cache for network_gradient)."""
    logits, cache = cnn.policy_forward(x, params)
    values = (cache["hidden"] @ params["value/kernel"] + params["value/bias"])[:, 0]
    return logits, values, cache


def ppo_loss(logits, values, actions, old_log_probs, advantages, returns, old_values, *,
             clip: float, entropy_coef: float, value_coef: float, normalize_advantages: bool = True,
             clip_value: bool = True):
    """PPO's minibatch loss, written out per sample::

        loss = mean_i max(-A_i r_i, -A_i clip(r_i, 1 - clip, 1 + clip))
               - entropy_coef * mean_i H(pi(.|s_i))
               + value_coef * 0.5 * mean_i max((v_i - R_i)^2, (v_clipped_i - R_i)^2)

    with r_i = pi(a_i|s_i) / pi_old(a_i|s_i), A normalized over the minibatch when asked (mean 0,
    sample std 1, +1e-8), v_clipped = v_old + clip(v - v_old, -clip, clip) (or v itself without
    clip_value). Returns (loss, stats) with stats: policy_loss, value_loss, entropy, approx_kl
    (the mean of ``(r - 1) - log r``) and clip_fraction (the share of ``|r - 1| > clip``).
    """
    logits = np.asarray(logits, dtype=float)
    values = np.asarray(values, dtype=float)
    actions = np.asarray(actions, dtype=np.int64)
    advantages = np.asarray(advantages, dtype=float)
    n = logits.shape[0]
    if normalize_advantages:
        std = advantages.std(ddof=1) if n > 1 else 0.0
        advantages = (advantages - advantages.mean()) / (std + 1e-8)
    policy_terms, entropies, value_terms, kls, clipped = [], [], [], [], []
    for i in range(n):
        log_p = cnn.log_softmax(logits[i])
        p = np.exp(log_p)
        log_ratio = log_p[actions[i]] - old_log_probs[i]
        ratio = np.exp(log_ratio)
        bounded = min(max(ratio, 1 - clip), 1 + clip)
        policy_terms.append(max(-advantages[i] * ratio, -advantages[i] * bounded))
        entropies.append(-np.sum(p * log_p))
        if clip_value:
            v_clipped = old_values[i] + min(max(values[i] - old_values[i], -clip), clip)
            value_terms.append(max((values[i] - returns[i]) ** 2, (v_clipped - returns[i]) ** 2))
        else:
            value_terms.append((values[i] - returns[i]) ** 2)
        kls.append((ratio - 1) - log_ratio)
        clipped.append(abs(ratio - 1) > clip)
    policy_loss = float(np.mean(policy_terms)) if n else 0.0
    value_loss = 0.5 * float(np.mean(value_terms)) if n else 0.0
    entropy = float(np.mean(entropies)) if n else 0.0
    loss = policy_loss - entropy_coef * entropy + value_coef * value_loss
    stats = dict(policy_loss=policy_loss, value_loss=value_loss, entropy=entropy,
                 approx_kl=float(np.mean(kls)) if n else 0.0,
                 clip_fraction=float(np.mean(clipped)) if n else 0.0)
    return loss, stats


def network_gradient(params: dict, x, grad_logits, grad_values) -> dict:
    """Gradient of sum_i (grad_logits[i] . logits_i + grad_values[i] * value_i) with respect to
    every parameter: the chain rule from any gradient at the two heads down through the CNN."""
    grad_logits = np.asarray(grad_logits, dtype=float)
    grad_values = np.asarray(grad_values, dtype=float)
    _, _, cache = forward(x, params)
    hidden = cache["hidden"]
    grads = {
        "logits/kernel": hidden.T @ grad_logits,
        "logits/bias": grad_logits.sum(axis=0),
        "value/kernel": hidden.T @ grad_values[:, None],
        "value/bias": np.array([grad_values.sum()]),
    }
    grad_hidden = grad_logits @ params["logits/kernel"].T + grad_values[:, None] @ params["value/kernel"].T
    grad_hidden = grad_hidden * (hidden > 0)
    grads["dense_0/kernel"] = cache["flat"].T @ grad_hidden
    grads["dense_0/bias"] = grad_hidden.sum(axis=0)
    grad_a = (grad_hidden @ params["dense_0/kernel"].T).reshape(cache["conv_out"].shape)
    grad_a = grad_a * (cache["conv_out"] > 0)
    for i in reversed(range(len(cnn.CONV_LAYERS))):
        stride = cnn.CONV_LAYERS[i][2]
        layer_input = cache["conv_inputs"][i]
        grad_x, grads[f"conv2d_{i}/kernel"], grads[f"conv2d_{i}/bias"] = cnn.conv2d_backward(
            layer_input, params[f"conv2d_{i}/kernel"], stride, grad_a)
        grad_a = grad_x * (layer_input > 0)
    return {name: grads[name] for name in PARAMETER_NAMES}


def loss_gradient(params: dict, x, actions, old_log_probs, advantages, returns, old_values, **loss_settings):
    """(loss, stats, gradient of the loss with respect to every parameter) of ``ppo_loss`` on the
    network's outputs for x. The gradient at the heads is taken from the per-sample formulas:

    - surrogate: d/dz of -A r = -A r (onehot(a) - p) where the unclipped term is the max (always
      inside the clip range; outside it only when it is the larger term), else 0;
    - entropy: dH/dz = -p (log p + H);
    - value: (v - R) where the unclipped square is the larger, else (v_clipped - R) inside the
      clip range and 0 outside it.
    """
    clip = loss_settings["clip"]
    entropy_coef = loss_settings["entropy_coef"]
    value_coef = loss_settings["value_coef"]
    normalize = loss_settings.get("normalize_advantages", True)
    clip_value = loss_settings.get("clip_value", True)
    logits, values, _ = forward(x, params)
    loss, stats = ppo_loss(logits, values, actions, old_log_probs, advantages, returns, old_values,
                           **loss_settings)
    n = logits.shape[0]
    advantages = np.asarray(advantages, dtype=float)
    if normalize:
        std = advantages.std(ddof=1) if n > 1 else 0.0
        advantages = (advantages - advantages.mean()) / (std + 1e-8)
    grad_logits = np.zeros_like(logits)
    grad_values = np.zeros(n)
    for i in range(n):
        log_p = cnn.log_softmax(logits[i])
        p = np.exp(log_p)
        ratio = np.exp(log_p[actions[i]] - old_log_probs[i])
        bounded = min(max(ratio, 1 - clip), 1 + clip)
        if -advantages[i] * ratio >= -advantages[i] * bounded:
            d_ratio = -advantages[i]
            onehot = np.zeros_like(p)
            onehot[actions[i]] = 1.0
            grad_logits[i] += d_ratio * ratio * (onehot - p) / n
        entropy = -np.sum(p * log_p)
        grad_logits[i] += entropy_coef * p * (log_p + entropy) / n
        if clip_value:
            delta = values[i] - old_values[i]
            v_clipped = old_values[i] + min(max(delta, -clip), clip)
            if (values[i] - returns[i]) ** 2 >= (v_clipped - returns[i]) ** 2:
                grad_values[i] = values[i] - returns[i]
            elif abs(delta) < clip:
                grad_values[i] = v_clipped - returns[i]
        else:
            grad_values[i] = values[i] - returns[i]
        grad_values[i] *= value_coef / n
    return loss, stats, network_gradient(params, x, grad_logits, grad_values)
