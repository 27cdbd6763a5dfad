"""The MIT lab's CartPole agent (``--agent mit-cartpole``, picked by ``--env CartPole-v1``).

The lab (MIT 6.S191, "Reinforcement Learning", part 1): the 4 numbers of CartPole's state go into
Dense(32, relu) -> Dense(2) logits (Keras' init: Glorot-uniform kernels, zero biases); an action
is sampled from the softmax; after every episode the returns are discounted with gamma 0.95 (no
reset: CartPole has no points), standardized over the episode, and Adam (learning rate 1e-3)
steps along the gradient of mean_t(return_t * log pi(a_t|s_t)). fastpong's defaults keep that
algorithm and change three numbers (see AGENT below); ``--preset lab`` restores the lab's.

Checkpoint names are the Keras layout's: ``dense_0/kernel`` (4, H), ``dense_0/bias`` (H,),
``logits/kernel`` (H, 2), ``logits/bias`` (2,); ``grad/<name>`` for the batch in progress;
``adam/<key>`` (or ``rmsprop/<key>``) for the optimizer state.
"""

from __future__ import annotations

import numpy as np

from ..envs.classic import CLASSIC_ENV_IDS
from .base import CLASSIC, Agent
from .lab_learner import LabLearner, LabReferenceLearner, checkpoint_shapes

OBSERVATION_SIZE = 4
NUM_ACTIONS = 2


def make_policy(config):
    from .. import CategoricalPolicy

    return CategoricalPolicy(input_size=OBSERVATION_SIZE, hidden=(config.hidden,), num_actions=NUM_ACTIONS,
                             seed=config.seed)


class FastLearner(LabLearner):
    def __init__(self, config, lane_sizes: list[int], rng: np.random.Generator):
        super().__init__(config, lane_sizes, rng, make_policy(config), OBSERVATION_SIZE)


class ReferenceLearner(LabReferenceLearner):
    def __init__(self, config, lane_sizes: list[int], rng: np.random.Generator):
        from ..reference import lab

        # Keras' init from the seed: the fast learner's weights, in float64
        model = lab.init_model(OBSERVATION_SIZE, (config.hidden,), NUM_ACTIONS, config.seed)
        super().__init__(config, lane_sizes, rng, model, OBSERVATION_SIZE)


def weight_shapes(config) -> dict:
    h = config.hidden
    return {"dense_0/kernel": (OBSERVATION_SIZE, h), "dense_0/bias": (h,),
            "logits/kernel": (h, NUM_ACTIONS), "logits/bias": (NUM_ACTIONS,)}


def tensor_shapes(config) -> dict:
    return checkpoint_shapes(weight_shapes(config))


def policy_from_weights(weights, config=None):
    from .. import CategoricalPolicy

    return CategoricalPolicy.from_model(weights)


AGENT = Agent(
    name="mit-cartpole",
    summary="the MIT lab's CartPole agent: Dense(32, relu) -> softmax over 2 actions, Adam",
    env_kind=CLASSIC,
    # The lab's network, sampling, returns, loss and optimizer, one episode per update; gamma 0.99
    # instead of 0.95 (CartPole-v1 lasts 500 steps, not v0's 200), learning rate 1e-2 instead of
    # 1e-3, and 8 poles at once: what solved CartPole-v1 for 5 of 5 seeds in seconds
    # (experiments/cartpole_seeds.py). `--preset lab` gives the lab's own numbers.
    defaults=dict(hidden=32, batch_size=1, learning_rate=1e-2, gamma=0.99, optimizer="adam", num_envs=8),
    learners={"fast": FastLearner, "reference": ReferenceLearner},
    weight_shapes=weight_shapes,
    tensor_shapes=tensor_shapes,
    policy_from_weights=policy_from_weights,
    env_ids=tuple(CLASSIC_ENV_IDS),
    reference_optimizers=("adam",),
)
