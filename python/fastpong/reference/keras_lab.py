"""The MIT lab's Pong model as the lab writes it, in tf.keras, and weights to and from fastpong.

For comparisons only (tests/test_keras_lab.py, benches/test_bench_cnn.py): it needs TensorFlow,
which ``pip install ".[keras]"`` installs, and imports it only when called, so that ``import
fastpong`` never does. The lab's ``create_pong_model``: Conv2D 32@5x5/2, 48@5x5/2, 64@3x3/2,
64@3x3/2 ('same', ReLU), Flatten, Dense 128 ReLU, Dense 6; its ``compute_loss``:
``reduce_mean(sparse_softmax_cross_entropy_with_logits(logits, actions) * returns)``.
fastpong's parameter names (``reference.cnn.PARAMETER_NAMES``) are that model's
``get_weights()`` in order, with the same shapes.
"""

from __future__ import annotations

import functools

import numpy as np

from .cnn import ACTIONS, FRAME_SIDE, PARAMETER_NAMES


def create_pong_model(n_actions: int = ACTIONS):
    """The lab's Keras Sequential model, built (its weights drawn by Keras' own initializers)."""
    import tensorflow as tf

    conv2d = functools.partial(tf.keras.layers.Conv2D, padding="same", activation="relu")
    model = tf.keras.models.Sequential([
        conv2d(filters=32, kernel_size=5, strides=2),
        conv2d(filters=48, kernel_size=5, strides=2),
        conv2d(filters=64, kernel_size=3, strides=2),
        conv2d(filters=64, kernel_size=3, strides=2),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(units=128, activation="relu"),
        tf.keras.layers.Dense(units=n_actions, activation=None),
    ])
    model(np.zeros((1, FRAME_SIDE, FRAME_SIDE, 1), np.float32))  # builds the weights
    return model


def compute_loss(logits, actions, returns):
    """The lab's loss: the mean over steps of -log pi(a_t|s_t) * return_t."""
    import tensorflow as tf

    neg_logprob = tf.nn.sparse_softmax_cross_entropy_with_logits(logits=logits, labels=actions)
    return tf.reduce_mean(neg_logprob * returns)


def weights_from(model) -> dict:
    """{fastpong name: float32 array} of a Keras model's weights (``ConvPolicy.from_model``)."""
    weights = model.get_weights()
    if len(weights) != len(PARAMETER_NAMES):
        raise ValueError(f"the lab's Pong model has {len(PARAMETER_NAMES)} weight arrays, got {len(weights)}")
    return {name: np.asarray(w, dtype=np.float32) for name, w in zip(PARAMETER_NAMES, weights)}


def set_weights(model, weights: dict) -> None:
    """Loads fastpong's weights ({name: array}, e.g. ``ConvPolicy.to_model()``) into the model."""
    model.set_weights([np.asarray(weights[name], dtype=np.float32) for name in PARAMETER_NAMES])
