"""The MIT 6.S191 lab's Pong agent (part 2) in plain NumPy, float64: the spec for the fast CNN.

Everything the lab does with OpenCV and Keras, written out: the 40x40 preprocessing and the frame
change ``prev - curr`` (the lab's sign), the convolutional policy with Keras semantics ('same'
padding, NHWC, Glorot-uniform kernels, zero biases), its forward pass, the gradient of the lab's
objective, and the lab's discounting over a batch of games. Arrays are NHWC like Keras; parameters
are a dict keyed by Keras-style names (``"conv2d_0/kernel"``, ``"dense_0/bias"``, ``"logits/kernel"``)
in Keras' layouts: conv kernels (kh, kw, in, out), dense kernels (in, out).

Two deliberate differences from the lab, both about safety: preprocessing works on copies (the
lab's writes into the frame), and a batch whose returns are all equal normalizes to zeros instead
of NaN.
"""

from __future__ import annotations

import numpy as np

from .tutorial import frame_preprocessing

__all__ = [
    "ACTIONS", "CONV_LAYERS", "DENSE_LAYERS", "FRAME_SIDE", "GAMMA", "PARAMETER_NAMES",
    "conv2d_backward", "conv2d_forward", "discount_rewards", "frame_change", "init_params",
    "log_softmax", "objective_gradient", "policy_forward", "preprocess", "same_padding", "softmax",
]

#: Side of the network's input image (80x80 tutorial image, dilated, every second row/column).
FRAME_SIDE = 40
#: Pong's six actions: the lab's network has one logit per action of the full action set.
ACTIONS = 6
#: The lab's discount factor for Pong.
GAMMA = 0.99
#: (filters, kernel size, stride) of the four Conv2D layers, all 'same' padding and ReLU.
CONV_LAYERS = ((32, 5, 2), (48, 5, 2), (64, 3, 2), (64, 3, 2))
#: Units of the dense layers after Flatten: a ReLU layer, then the logits.
DENSE_LAYERS = (128, ACTIONS)
_LAYER_NAMES = tuple(f"conv2d_{i}" for i in range(len(CONV_LAYERS))) + ("dense_0", "logits")
#: Parameter names in the order Keras lists the weights (kernel, then bias, layer by layer).
PARAMETER_NAMES = tuple(f"{layer}/{part}" for layer in _LAYER_NAMES for part in ("kernel", "bias"))


def preprocess(frame: np.ndarray) -> np.ndarray:
    """(210, 160, 3) uint8 frame -> (40, 40) float64 image in {0, 1}.

    The tutorial's 80x80 binary image, then a 3x3 dilation (a pixel is 1 when any pixel of its
    3x3 neighbourhood is; outside the image counts as 0, as cv2.dilate's default border does for
    a dilation), then every second row and column.
    """
    image = frame_preprocessing(frame)
    padded = np.pad(image, 1)
    side = image.shape[0]
    dilated = np.zeros_like(image)
    for dy in range(3):
        for dx in range(3):
            dilated = np.maximum(dilated, padded[dy:dy + side, dx:dx + side])
    return dilated[::2, ::2]


def frame_change(prev_frame: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """The lab's network input: preprocess(prev) - preprocess(curr), (40, 40) in {-1, 0, 1}."""
    return preprocess(prev_frame) - preprocess(frame)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """(output size, padding before, padding after) of a 'same' convolution along one axis.

    TensorFlow's rule (tensorflow/core/framework/kernel_shape_util.cc, GetWindowedOutputSize for
    Padding::SAME): out = ceil(size / stride); the total padding max((out - 1) * stride + kernel -
    size, 0) is split with the smaller half before, so an odd total puts the extra row/column at
    the bottom/right (unlike PyTorch's symmetric padding).
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


def _padded(x: np.ndarray, kernel: int, stride: int) -> tuple[np.ndarray, int, int]:
    """x (N, H, W, C) zero-padded for a 'same' convolution, and the output's height and width."""
    out_h, top, bottom = same_padding(x.shape[1], kernel, stride)
    out_w, left, right = same_padding(x.shape[2], kernel, stride)
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0))), out_h, out_w


def _window(xp: np.ndarray, ky: int, kx: int, stride: int, out_h: int, out_w: int) -> np.ndarray:
    """The input values tap (ky, kx) of the kernel meets at every output position: (N, oh, ow, C)."""
    return xp[:, ky:ky + stride * (out_h - 1) + 1:stride, kx:kx + stride * (out_w - 1) + 1:stride]


def conv2d_forward(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, stride: int) -> np.ndarray:
    """Keras Conv2D with padding='same', before the activation: x (N, H, W, Cin), kernel
    (kh, kw, Cin, Cout), bias (Cout,) -> (N, ceil(H / s), ceil(W / s), Cout)."""
    kh, kw = kernel.shape[:2]
    assert kh == kw, "square kernels only"
    xp, out_h, out_w = _padded(x, kh, stride)
    out = np.broadcast_to(bias, (x.shape[0], out_h, out_w, kernel.shape[3])).astype(float)
    for ky in range(kh):
        for kx in range(kw):
            # out[n, i, j] += x_padded[n, s*i + ky, s*j + kx] @ kernel[ky, kx]
            out += _window(xp, ky, kx, stride, out_h, out_w) @ kernel[ky, kx]
    return out


def conv2d_backward(x: np.ndarray, kernel: np.ndarray, stride: int, grad_out: np.ndarray):
    """Gradients of sum(grad_out * conv2d_forward(x, kernel, bias, stride)) with respect to x,
    kernel and bias: (grad_x, grad_kernel, grad_bias)."""
    kh, kw = kernel.shape[:2]
    xp, out_h, out_w = _padded(x, kh, stride)
    _, top, _ = same_padding(x.shape[1], kh, stride)
    _, left, _ = same_padding(x.shape[2], kw, stride)
    grad_xp = np.zeros_like(xp, dtype=float)
    grad_kernel = np.zeros(kernel.shape)
    flat_grad = grad_out.reshape(-1, grad_out.shape[3])
    for ky in range(kh):
        for kx in range(kw):
            window = _window(xp, ky, kx, stride, out_h, out_w)
            grad_kernel[ky, kx] = window.reshape(-1, window.shape[3]).T @ flat_grad
            _window(grad_xp, ky, kx, stride, out_h, out_w)[...] += grad_out @ kernel[ky, kx].T
    grad_x = grad_xp[:, top:top + x.shape[1], left:left + x.shape[2]]
    return grad_x, grad_kernel, flat_grad.sum(axis=0)


def _glorot_uniform(rng, shape, fan_in: int, fan_out: int) -> np.ndarray:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)


def init_params(rng=None, in_channels: int = 1) -> dict:
    """Glorot-uniform kernels and zero biases, Keras' initializers (a conv kernel's fans are its
    receptive field times the input and output channels). Drawn layer by layer, kernels only."""
    rng = np.random.default_rng(rng)
    params = {}
    channels, side = in_channels, FRAME_SIDE
    for i, (filters, size, stride) in enumerate(CONV_LAYERS):
        params[f"conv2d_{i}/kernel"] = _glorot_uniform(
            rng, (size, size, channels, filters), size * size * channels, size * size * filters)
        params[f"conv2d_{i}/bias"] = np.zeros(filters)
        channels, side = filters, same_padding(side, size, stride)[0]
    width = side * side * channels
    for name, units in zip(("dense_0", "logits"), DENSE_LAYERS):
        params[f"{name}/kernel"] = _glorot_uniform(rng, (width, units), width, units)
        params[f"{name}/bias"] = np.zeros(units)
        width = units
    return params


def _as_images(x: np.ndarray) -> np.ndarray:
    """(N, 40, 40) or (N, 40, 40, 1) -> (N, 40, 40, 1) float64."""
    x = np.asarray(x, dtype=float)
    return x[..., None] if x.ndim == 3 else x


def policy_forward(x: np.ndarray, params: dict):
    """Frame changes (N, 40, 40[, 1]) -> (logits (N, 6), cache for objective_gradient).

    cache holds each layer's input (post-ReLU activations, NHWC; the flattened (N, 576) for the
    dense layers) and the dense hidden activations.
    """
    a = _as_images(x)
    layer_inputs = []
    for i, (_, _, stride) in enumerate(CONV_LAYERS):
        layer_inputs.append(a)
        a = np.maximum(conv2d_forward(a, params[f"conv2d_{i}/kernel"],
                                      params[f"conv2d_{i}/bias"], stride), 0.0)
    flat = a.reshape(a.shape[0], -1)  # Keras' Flatten of NHWC: (h, w, c) order
    hidden = np.maximum(flat @ params["dense_0/kernel"] + params["dense_0/bias"], 0.0)
    logits = hidden @ params["logits/kernel"] + params["logits/bias"]
    return logits, {"conv_inputs": layer_inputs, "conv_out": a, "flat": flat, "hidden": hidden}


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(logits))


def objective_gradient(params: dict, x: np.ndarray, actions: np.ndarray,
                       advantages: np.ndarray, entropy_coef: float = 0.0) -> dict:
    """Gradient of J = mean_t advantages[t] * log pi(actions[t] | x[t]) with respect to every
    parameter: the ascent direction, minus the gradient of the lab's loss
    reduce_mean(sparse_softmax_cross_entropy(logits, actions) * returns). With entropy_coef
    beta, J also has the entropy bonus beta * mean_t H(pi(. | x[t]))."""
    actions = np.asarray(actions, dtype=np.int64)
    advantages = np.asarray(advantages, dtype=float)
    steps = actions.shape[0]
    logits, cache = policy_forward(x, params)
    log_p = log_softmax(logits)
    p = np.exp(log_p)
    # d log softmax(z)[a] / dz = onehot(a) - softmax(z)
    grad_logits = -p
    grad_logits[np.arange(steps), actions] += 1.0
    grad_logits *= advantages[:, None]
    # H = -sum_j p_j log p_j; dH/dz_j = -p_j (log p_j + H)
    entropy = -(p * log_p).sum(axis=1, keepdims=True)
    grad_logits -= entropy_coef * p * (log_p + entropy)
    grad_logits /= steps
    grads = {
        "logits/kernel": cache["hidden"].T @ grad_logits,
        "logits/bias": grad_logits.sum(axis=0),
    }
    grad_hidden = (grad_logits @ params["logits/kernel"].T) * (cache["hidden"] > 0)
    grads["dense_0/kernel"] = cache["flat"].T @ grad_hidden
    grads["dense_0/bias"] = grad_hidden.sum(axis=0)
    grad_a = (grad_hidden @ params["dense_0/kernel"].T).reshape(cache["conv_out"].shape)
    grad_a = grad_a * (cache["conv_out"] > 0)
    for i in reversed(range(len(CONV_LAYERS))):
        stride = CONV_LAYERS[i][2]
        layer_input = cache["conv_inputs"][i]
        grad_x, grads[f"conv2d_{i}/kernel"], grads[f"conv2d_{i}/bias"] = conv2d_backward(
            layer_input, params[f"conv2d_{i}/kernel"], stride, grad_a)
        grad_a = grad_x * (layer_input > 0)  # back through the ReLU that made this input
    return {name: grads[name] for name in PARAMETER_NAMES}


def discount_rewards(rewards: np.ndarray, gamma: float = GAMMA) -> np.ndarray:
    """The lab's returns for a batch of Pong games whose steps are concatenated: discounted with
    the sum restarting at every nonzero reward (a point ends a rally), then normalized by the
    mean and standard deviation of the whole batch. A constant batch gives zeros."""
    rewards = np.asarray(rewards, dtype=float)
    returns = np.zeros_like(rewards)
    running = 0.0
    for t in reversed(range(rewards.shape[0])):
        if rewards[t] != 0:
            running = 0.0
        running = running * gamma + rewards[t]
        returns[t] = running
    returns -= returns.mean() if returns.size else 0.0
    std = returns.std() if returns.size else 0.0
    return returns / std if std > 0 else np.zeros_like(returns)
