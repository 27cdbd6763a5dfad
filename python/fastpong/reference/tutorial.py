"""The tutorial's algorithm in plain NumPy, float64: the reference every fast kernel is tested
against and the engine behind ``fastpong train --engine reference``.

Names and semantics follow "Deep reinforcement learning with Pong from pixels" (Karpathy's policy
gradient as the NumPy tutorial teaches it). Two deliberate differences, both about safety rather
than math: ``frame_preprocessing`` works on a copy instead of writing into the caller's frame, and
``standardize_returns`` maps a constant episode (standard deviation 0) to zeros instead of NaN.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BACKGROUND_VALUES", "CROP_ROWS", "DOWN", "INPUT_SIZE", "RMSPROP_EPSILON", "UP",
    "discount_rewards", "frame_preprocessing", "init_model", "policy_backward", "policy_forward",
    "rmsprop_update", "sigmoid", "standardize_returns", "update_input",
]

#: Rows of the frame kept by the crop: the score board is above, the bottom border below.
CROP_ROWS = slice(35, 195)
#: The two shades of Pong's background in the red channel.
BACKGROUND_VALUES = (144, 109)
#: The network's input: an 80x80 image, flattened.
INPUT_SIZE = 80 * 80
#: Actions of the tutorial's agent: 2 moves the paddle up, 3 moves it down.
UP, DOWN = 2, 3
#: RMSProp's epsilon in the tutorial.
RMSPROP_EPSILON = 1e-5


def frame_preprocessing(frame: np.ndarray) -> np.ndarray:
    """(210, 160, 3) uint8 frame -> (80, 80) float64 image in {0, 1}."""
    image = frame[CROP_ROWS][::2, ::2, 0].copy()
    for background in BACKGROUND_VALUES:
        image[image == background] = 0
    image[image != 0] = 1
    return image.astype(float)


def init_model(hidden: int = 200, input_size: int = INPUT_SIZE, rng=None) -> dict:
    """The tutorial's scaled-normal ("Xavier") initialization: W1 (H, D), then W2 (H,)."""
    rng = np.random.default_rng(rng)
    return {
        "W1": rng.standard_normal(size=(hidden, input_size)) / np.sqrt(input_size),
        "W2": rng.standard_normal(size=hidden) / np.sqrt(hidden),
    }


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def policy_forward(x: np.ndarray, model: dict):
    """x (D,) -> (p, h): the probability of moving up and the hidden activations."""
    h = np.dot(model["W1"], x)
    h[h < 0] = 0  # ReLU
    logit = np.dot(model["W2"], h)
    return sigmoid(logit), h


def policy_backward(eph: np.ndarray, epx: np.ndarray, epdlogp: np.ndarray, model: dict) -> dict:
    """Gradients of sum_t epdlogp[t] * logit_t for one episode, in the model's shapes.

    eph (T, H) hidden activations, epx (T, D) inputs, epdlogp (T, 1) or (T,) advantage-weighted
    y - p. (The tutorial reads epx from an enclosing scope; here it is a parameter.)
    """
    epdlogp = np.asarray(epdlogp, dtype=float).reshape(-1, 1)
    dW2 = np.dot(eph.T, epdlogp).ravel()
    dh = np.outer(epdlogp, model["W2"])
    dh[eph <= 0] = 0  # backpropagate through ReLU
    dW1 = np.dot(dh.T, epx)
    return {"W1": dW1, "W2": dW2}


def discount_rewards(r: np.ndarray, gamma: float) -> np.ndarray:
    """Discounted returns, restarting at every nonzero reward (a point ends a rally in Pong)."""
    r = np.asarray(r, dtype=float)
    discounted_r = np.zeros_like(r)
    running_add = 0.0
    for t in reversed(range(r.size)):
        if r.flat[t] != 0:
            running_add = 0.0
        running_add = running_add * gamma + r.flat[t]
        discounted_r.flat[t] = running_add
    return discounted_r


def standardize_returns(returns: np.ndarray) -> np.ndarray:
    """(returns - mean) / std; all zeros if std is 0 (the tutorial would divide by zero).

    A constant (or empty) input is caught by comparing the values, not by std == 0: np.std of equal
    values such as [0.1, 0.1, 0.1] comes out a few ulps above 0 (the mean rounds), and dividing by
    it would blow that rounding noise up to +-1.
    """
    returns = np.asarray(returns, dtype=float)
    if returns.size == 0 or np.all(returns == returns.flat[0]):
        return np.zeros_like(returns)
    centered = returns - np.mean(returns)
    std = np.std(returns)
    return centered / std if std > 0 else np.zeros_like(centered)


def rmsprop_update(model: dict, grad_buffer: dict, rmsprop_cache: dict, learning_rate: float,
                   decay_rate: float) -> None:
    """The tutorial's RMSProp gradient-ascent step, in place; resets grad_buffer to zeros."""
    for k, v in model.items():
        g = grad_buffer[k]
        rmsprop_cache[k] = decay_rate * rmsprop_cache[k] + (1 - decay_rate) * g**2
        model[k] += learning_rate * g / (np.sqrt(rmsprop_cache[k]) + RMSPROP_EPSILON)
        grad_buffer[k] = np.zeros_like(v)


def update_input(prev_x, cur_x, input_size: int = INPUT_SIZE) -> np.ndarray:
    """The network's input: cur_x - prev_x, zeros on an episode's first frame."""
    return cur_x - prev_x if prev_x is not None else np.zeros(input_size)
