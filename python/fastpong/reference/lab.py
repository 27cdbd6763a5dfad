"""The MIT 6.S191 lab's policy-gradient algorithm in plain NumPy, float64: the reference the fast
dense policy, sampler and Adam are tested against.

The lab (TensorFlow) builds its CartPole agent from Keras layers: Dense(32, relu) then
Dense(n_actions) logits, Glorot-uniform kernels and zero biases; it samples actions from the
softmax of the logits, discounts each episode's rewards (gamma 0.95 for CartPole, without the
per-point reset its Pong agent uses), normalizes them, and minimizes
``mean_t -log pi(a_t|s_t) * R_t`` with Adam. Here the same math is written as an ascent on
``J = mean_t R_t log pi(a_t|s_t)`` (the gradient of J is minus the gradient of the lab's loss),
the sign convention of the tutorial and of ``fastpong.RMSProp``.

Parameters are a dict in Keras' layout and names: ``"dense_0/kernel"`` (D, H0), ``"dense_0/bias"``
(H0,), ..., ``"logits/kernel"`` (H_last, A), ``"logits/bias"`` (A,).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ADAM_EPSILON", "adam_update", "discount_rewards", "forward", "init_model", "input_gradient",
    "layer_names", "log_softmax", "normalize", "policy_gradient", "sample_actions",
]

#: Keras' default epsilon for Adam.
ADAM_EPSILON = 1e-7


def layer_names(num_hidden: int) -> list[str]:
    """Keras-style layer names: "dense_0", "dense_1", ..., then "logits"."""
    return [f"dense_{i}" for i in range(num_hidden)] + ["logits"]


def init_model(input_size: int = 4, hidden=(32,), num_actions: int = 2, rng=None) -> dict:
    """Keras' default initialization: Glorot-uniform kernels, U(-l, l) with
    l = sqrt(6 / (fan_in + fan_out)), and zero biases; drawn layer by layer, kernel by kernel."""
    rng = np.random.default_rng(rng)
    widths = [input_size, *hidden, num_actions]
    model = {}
    for name, fan_in, fan_out in zip(layer_names(len(hidden)), widths[:-1], widths[1:]):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        model[f"{name}/kernel"] = rng.uniform(-limit, limit, size=(fan_in, fan_out))
        model[f"{name}/bias"] = np.zeros(fan_out)
    return model


def _layers(model: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    num_hidden = sum(1 for k in model if k.startswith("dense_") and k.endswith("/kernel"))
    return [(model[f"{n}/kernel"], model[f"{n}/bias"]) for n in layer_names(num_hidden)]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log of softmax along the last axis, with the maximum taken out first so that no exp
    overflows (logits of 1e4 are fine) and the largest logit's log-probability stays exact."""
    logits = np.asarray(logits, dtype=float)
    shifted = logits - np.max(logits, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def forward(obs: np.ndarray, model: dict):
    """obs (N, D) or (D,) -> (logits, log_probs, probs, activations), each (N, A) or (A,);
    activations is the list of every hidden layer's ReLU outputs (the backward pass needs them)."""
    x = np.asarray(obs, dtype=float)
    activations = []
    layers = _layers(model)
    for kernel, bias in layers[:-1]:
        x = np.maximum(x @ kernel + bias, 0.0)
        activations.append(x)
    kernel, bias = layers[-1]
    logits = x @ kernel + bias
    log_probs = log_softmax(logits)
    return logits, log_probs, np.exp(log_probs), activations


def policy_gradient(obs: np.ndarray, actions: np.ndarray, advantages: np.ndarray, model: dict,
                    scale: float | None = None) -> dict:
    """Gradient of J = scale * sum_t advantages[t] * log pi(actions[t] | obs[t]) for every
    parameter (scale defaults to 1 / T, making J the mean; minus the lab's loss gradient).

    d log pi(a|s) / d logits = onehot(a) - pi(.|s); the rest is the chain rule through the dense
    layers and their ReLUs.
    """
    return _backward(obs, actions, advantages, model, scale)[0]


def input_gradient(obs: np.ndarray, actions: np.ndarray, advantages: np.ndarray, model: dict,
                   scale: float | None = None) -> np.ndarray:
    """d J / d obs, (T, D): the same J, differentiated with respect to the observations (what a
    network feeding this one, such as the lab's CNN, backpropagates from)."""
    return _backward(obs, actions, advantages, model, scale)[1]


def _backward(obs, actions, advantages, model, scale):
    obs = np.asarray(obs, dtype=float).reshape(-1, _layers(model)[0][0].shape[0])
    actions = np.asarray(actions).reshape(-1)
    advantages = np.asarray(advantages, dtype=float).reshape(-1)
    steps = obs.shape[0]
    if scale is None:
        scale = 1.0 / steps if steps else 0.0
    _, _, probs, activations = forward(obs, model)
    delta = -probs
    delta[np.arange(steps), actions] += 1.0
    delta *= (scale * advantages)[:, None]
    layers = _layers(model)
    names = layer_names(len(layers) - 1)
    inputs = [obs, *activations]
    grads = {}
    for index in reversed(range(len(layers))):
        grads[f"{names[index]}/kernel"] = inputs[index].T @ delta
        grads[f"{names[index]}/bias"] = delta.sum(axis=0)
        delta = delta @ layers[index][0].T
        if index > 0:
            delta = delta * (inputs[index] > 0)
    return {k: grads[k] for k in model}, delta


def sample_actions(probs: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling: per row, the first action whose cumulative probability exceeds the
    uniform (the last action of nonzero probability if rounding leaves the total below it)."""
    probs = np.asarray(probs, dtype=float)
    cdf = np.cumsum(probs, axis=-1)
    actions = np.argmax(np.asarray(uniforms, dtype=float)[:, None] < cdf, axis=-1)
    beyond = ~np.any(np.asarray(uniforms)[:, None] < cdf, axis=-1)
    if np.any(beyond):
        last_possible = probs.shape[-1] - 1 - np.argmax((probs > 0)[:, ::-1], axis=-1)
        actions[beyond] = last_possible[beyond]
    return actions


def discount_rewards(rewards: np.ndarray, gamma: float, reset_at_points: bool = True) -> np.ndarray:
    """R_t = r_t + gamma R_{t+1}. With ``reset_at_points`` the sum restarts at every nonzero
    reward (the lab's Pong: a point ends a rally); without it, the plain discounted sum (the
    lab's CartPole)."""
    rewards = np.asarray(rewards, dtype=float).reshape(-1)
    returns = np.zeros_like(rewards)
    running = 0.0
    for t in reversed(range(rewards.size)):
        if reset_at_points and rewards[t] != 0:
            running = 0.0
        running = running * gamma + rewards[t]
        returns[t] = running
    return returns


def normalize(values: np.ndarray) -> np.ndarray:
    """(values - mean) / std over the episode; a constant (or empty) episode gives zeros, where
    the lab would divide by zero (see reference.tutorial.standardize_returns)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0 or np.all(values == values.flat[0]):
        return np.zeros_like(values)
    return (values - np.mean(values)) / np.std(values)


def adam_update(model: dict, grads: dict, m: dict, v: dict, step: int, learning_rate: float = 1e-3,
                beta_1: float = 0.9, beta_2: float = 0.999,
                epsilon: float = ADAM_EPSILON) -> None:
    """One Adam step as Keras 3 applies it, turned into ascent (grads point uphill), in place;
    ``step`` is t, counted from 1. grads are zeroed afterwards, as the tutorial's RMSProp does.

    m += (1 - beta_1)(g - m); v += (1 - beta_2)(g^2 - v);
    w += lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon).
    """
    alpha = learning_rate * np.sqrt(1.0 - beta_2**step) / (1.0 - beta_1**step)
    for name in model:
        g = grads[name]
        m[name] += (1.0 - beta_1) * (g - m[name])
        v[name] += (1.0 - beta_2) * (g * g - v[name])
        model[name] += alpha * m[name] / (np.sqrt(v[name]) + epsilon)
        grads[name] = np.zeros_like(g)
