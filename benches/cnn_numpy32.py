"""The MIT lab's CNN in NumPy float32 as a user would write it: im2col + np.matmul.

A baseline for benches/test_bench_cnn.py, not part of the package: the same network and objective
as ``fastpong.reference.cnn`` (which loops over kernel taps in float64 and is the spec), written the
way the textbooks teach a fast NumPy convolution. Patches are gathered with a strided view and
copied into an im2col matrix; the backward pass scatters the column gradient back tap by tap. Long
batches are processed CHUNK_STEPS steps at a time, which bounds the im2col matrices (conv2d_1's
would be 1.6 GB for 5,000 steps at once).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from fastpong.reference import cnn

CHUNK_STEPS = 500


def params_float32(params: dict) -> dict:
    return {name: np.asarray(value, dtype=np.float32) for name, value in params.items()}


def _im2col(xp: np.ndarray, kernel: int, stride: int, out_h: int, out_w: int) -> np.ndarray:
    n, _, _, c = xp.shape
    sn, sh, sw, sc = xp.strides
    windows = as_strided(xp, (n, out_h, out_w, kernel, kernel, c),
                         (sn, stride * sh, stride * sw, sh, sw, sc))
    return windows.reshape(n * out_h * out_w, kernel * kernel * c)  # the copy


def _pad(x: np.ndarray, kernel: int, stride: int):
    out_h, top, bottom = cnn.same_padding(x.shape[1], kernel, stride)
    out_w, left, right = cnn.same_padding(x.shape[2], kernel, stride)
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0))), out_h, out_w, top, left


def forward(params: dict, x: np.ndarray):
    """x (N, 40, 40) float32 -> (logits (N, 6), cache)."""
    a = x.reshape(x.shape[0], cnn.FRAME_SIDE, cnn.FRAME_SIDE, 1)
    cache = []
    for i, (filters, kernel, stride) in enumerate(cnn.CONV_LAYERS):
        xp, out_h, out_w, top, left = _pad(a, kernel, stride)
        cols = _im2col(xp, kernel, stride, out_h, out_w)
        w = params[f"conv2d_{i}/kernel"].reshape(-1, filters)
        out = np.maximum(cols @ w + params[f"conv2d_{i}/bias"], 0)
        cache.append((a.shape, xp.shape, cols, out, top, left, out_h))
        a = out.reshape(a.shape[0], out_h, out_w, filters)
    flat = a.reshape(a.shape[0], -1)
    hidden = np.maximum(flat @ params["dense_0/kernel"] + params["dense_0/bias"], 0)
    logits = hidden @ params["logits/kernel"] + params["logits/bias"]
    return logits, (cache, flat, hidden)


def _softmax(logits):
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def probabilities(params: dict, x: np.ndarray) -> np.ndarray:
    return _softmax(forward(params, x)[0])


def _chunk_gradient(params, x, actions, advantages, scale, grads):
    logits, cache = forward(params, x)
    d = -_softmax(logits)
    d[np.arange(len(actions)), actions] += 1
    d *= (scale * advantages)[:, None].astype(np.float32)
    backward(params, cache, d, grads)


def backward(params, cache, d_logits, grads, d_hidden=None):
    """grads += the gradient of sum(d_logits * logits) (+ sum(d_hidden * hidden), from heads
    beside the logits, such as an actor-critic's value) through the network of forward's cache."""
    cache, flat, hidden = cache
    d = d_logits
    grads["logits/kernel"] += hidden.T @ d
    grads["logits/bias"] += d.sum(axis=0)
    dh = d @ params["logits/kernel"].T
    if d_hidden is not None:
        dh = dh + d_hidden
    dh = dh * (hidden > 0)
    grads["dense_0/kernel"] += flat.T @ dh
    grads["dense_0/bias"] += dh.sum(axis=0)
    g = (dh @ params["dense_0/kernel"].T).reshape(-1, cnn.CONV_LAYERS[-1][0]) * (cache[-1][3] > 0)
    for i in reversed(range(len(cnn.CONV_LAYERS))):
        filters, kernel, stride = cnn.CONV_LAYERS[i]
        in_shape, padded_shape, cols, _, top, left, out_side = cache[i]
        grads[f"conv2d_{i}/kernel"] += (cols.T @ g).reshape(grads[f"conv2d_{i}/kernel"].shape)
        grads[f"conv2d_{i}/bias"] += g.sum(axis=0)
        if i == 0:
            break
        w = params[f"conv2d_{i}/kernel"].reshape(-1, filters)
        dcols = (g @ w.T).reshape(in_shape[0], out_side, out_side, kernel, kernel, in_shape[3])
        dxp = np.zeros(padded_shape, dtype=np.float32)
        for ky in range(kernel):
            for kx in range(kernel):
                dxp[:, ky:ky + stride * out_side:stride, kx:kx + stride * out_side:stride] += \
                    dcols[:, :, :, ky, kx]
        dx = dxp[:, top:top + in_shape[1], left:left + in_shape[2]]
        g = (dx * (cache[i - 1][3].reshape(dx.shape) > 0)).reshape(-1, in_shape[3])


def objective_gradient(params: dict, x: np.ndarray, actions: np.ndarray,
                       advantages: np.ndarray) -> dict:
    """Gradient of mean_t A_t log pi(a_t | x_t), float32, CHUNK_STEPS steps at a time."""
    grads = {name: np.zeros_like(value) for name, value in params.items()}
    steps = len(actions)
    for t0 in range(0, steps, CHUNK_STEPS):
        t1 = min(steps, t0 + CHUNK_STEPS)
        _chunk_gradient(params, x[t0:t1], actions[t0:t1], advantages[t0:t1], 1.0 / steps, grads)
    return grads
