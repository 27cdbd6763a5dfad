"""The MIT lab's Pong agent (``--agent mit-pong``): a CNN over 40x40 frame changes, six actions.

The lab (MIT 6.S191, "Reinforcement Learning", part 2): each frame becomes the tutorial's 80x80
binary image, 3x3-dilated and halved to 40x40; the network sees ``prev - curr`` of two of them
(zero at an episode's first step); Conv2D 32@5x5, 48@5x5, 64@3x3, 64@3x3 (stride 2, 'same',
ReLU), Dense 128 ReLU, Dense 6 logits; an action is sampled from the softmax over Pong's six
actions. The lab plays 5 games at once per iteration; their steps are concatenated, the returns
discounted with gamma 0.99 and the reset at every point, normalized over the whole batch, and one
Adam step (learning rate 1e-3) follows the gradient of mean_t(return_t * log pi(a_t|s_t)).

Here: ``batch_size`` games (5) make an iteration; finished games wait until the batch is full,
then the batch is discounted and normalized together and its gradient taken in one backward pass
(``ConvPolicy.accumulate_gradient``) before the Adam step. The lab's environment is ``Pong-v0``
(sticky actions 0.25) with a fixed frameskip of 5: ``--agent mit-pong --preset lab`` (or ``--env
Pong-v0 --frameskip 5``); the agent's default environment stays fastpong's ``ALE/Pong-v5``
(frameskip 4), and ``--env Pong-v0`` alone skips 2 to 4 frames at random, as gymnasium registers it.

Checkpoint names are the Keras layout's (``conv2d_0/kernel`` ... ``logits/bias``), ``grad/<name>``
for the gradient of games not yet applied, ``adam/<key>`` (or ``rmsprop/<key>``) for the optimizer.
"""

from __future__ import annotations

import numpy as np

from .base import ATARI, PONG_ENV_IDS, Agent
from .lab_learner import LabLearner, checkpoint_shapes

FRAME_SIDE = 40
OBSERVATION_SIZE = FRAME_SIDE * FRAME_SIDE
#: The lab's dense layer after the convolutions: fixed by the architecture.
HIDDEN = 128


def _check_hidden(config) -> None:
    if config.hidden != HIDDEN:
        raise ValueError(f"the MIT lab's Pong CNN has {HIDDEN} hidden units, got hidden={config.hidden}")


class FastLearner(LabLearner):
    """LabLearner with the lab's Pong input and its batch-wide returns."""

    reset_at_points = True

    def __init__(self, config, lane_sizes: list[int], rng: np.random.Generator):
        from ..nn.conv_policy import ConvPolicy, LabFrameDifferencer

        _check_hidden(config)
        super().__init__(config, lane_sizes, rng, ConvPolicy(seed=config.seed), OBSERVATION_SIZE)
        self._differencers = [LabFrameDifferencer(n) for n in lane_sizes]
        self._pending: list = []  # finished games of the batch in progress

    def preprocess(self, lane: int, frames: np.ndarray) -> np.ndarray:
        """The lab's input, prev - curr of the 40x40 images (zeros on an episode's first frame),
        flattened (N, 1600) for the step history."""
        return self._differencers[lane].step(frames).reshape(len(frames), OBSERVATION_SIZE)

    def _sample(self, x: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
        from .. import sample_actions

        probs = self.policy.forward(x.reshape(-1, FRAME_SIDE, FRAME_SIDE))
        return sample_actions(probs, uniforms)

    def finish_episode(self, lane: int, env: int) -> None:
        super().finish_episode(lane, env)
        self._differencers[lane].reset(env)

    def _learn_episode(self, observations, actions, rewards) -> None:
        self._pending.append((observations, actions, rewards))

    def _apply_pending(self) -> None:
        """The gradient of the games waiting, as the lab takes it: steps concatenated, returns
        discounted (reset at every point) and normalized over all of them, mean over steps."""
        from .. import _core, discount_rewards

        if not self._pending:
            return
        observations = np.concatenate([p[0] for p in self._pending])
        actions = np.concatenate([p[1] for p in self._pending])
        rewards = np.concatenate([p[2] for p in self._pending])
        self._pending = []
        returns = _core.standardize(discount_rewards(rewards, self.gamma, reset_at_points=True))
        self.policy.accumulate_gradient(observations.reshape(-1, FRAME_SIDE, FRAME_SIDE), actions,
                                        returns, self.grads, scale=1.0 / len(actions))

    def update(self) -> None:
        self._apply_pending()
        self.optimizer.step(self.policy, self.grads)

    def take_gradient(self) -> dict:
        self._apply_pending()
        return super().take_gradient()

    def tensors(self) -> dict:
        # Games finished since the last update go into the saved gradient rather than being lost.
        self._apply_pending()
        return super().tensors()


def weight_shapes(config) -> dict:
    from .. import ConvPolicy

    return dict(ConvPolicy.PARAMETER_SHAPES)


def tensor_shapes(config) -> dict:
    return checkpoint_shapes(weight_shapes(config))


def policy_from_weights(weights):
    from .. import ConvPolicy

    return ConvPolicy.from_model(weights)


AGENT = Agent(
    name="mit-pong",
    summary="the MIT lab's Pong agent: a CNN over 40x40 frame changes -> softmax over 6 actions, Adam",
    env_kind=ATARI,
    env_ids=PONG_ENV_IDS,
    # The lab's: 5 games per Adam step (learning rate 1e-3), gamma 0.99, 5 games at once.
    defaults=dict(hidden=HIDDEN, batch_size=5, learning_rate=1e-3, gamma=0.99, optimizer="adam",
                  num_envs=5),
    learners={"fast": FastLearner},
    weight_shapes=weight_shapes,
    tensor_shapes=tensor_shapes,
    policy_from_weights=policy_from_weights,
    frame_input="lab",
)
