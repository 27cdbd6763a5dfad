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

Beyond the lab (each off unless set): an entropy bonus
(``entropy_coef``, A3C's beta: the lab's policy collapses onto one action without it), a clip of
the gradient's global norm before each Adam step (``max_grad_norm``), and the logits layer's
initial kernel scaled (``head_init_scale``, CleanRL's 0.01: a near-uniform first policy). Each
game's mean policy entropy goes into metrics.csv (``entropy``), so a collapse shows as it happens.

Checkpoint names are the Keras layout's (``conv2d_0/kernel`` ... ``logits/bias``), ``grad/<name>``
for the gradient of games not yet applied, ``adam/<key>`` (or ``rmsprop/<key>``) for the optimizer.
"""

from __future__ import annotations

import numpy as np

from .base import ATARI, PONG_ENV_IDS, Agent, clip_global_norm
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
        policy = ConvPolicy(seed=config.seed)
        if config.head_init_scale is not None:
            policy.parameters()["logits/kernel"][...] *= np.float32(config.head_init_scale)
        super().__init__(config, lane_sizes, rng, policy, OBSERVATION_SIZE)
        self.entropy_coef = config.entropy_coef or 0.0
        self.max_grad_norm = config.max_grad_norm
        self._differencers = [LabFrameDifferencer(n) for n in lane_sizes]
        self._pending: list = []  # finished games of the batch in progress
        self._games_added = False  # whether the batch's gradient came from Ray workers' games
        # Per environment of each lane: the policy's entropy summed over the game so far, and steps.
        self._entropy_sums = [np.zeros(n) for n in lane_sizes]
        self._entropy_steps = [np.zeros(n, dtype=np.int64) for n in lane_sizes]

    def preprocess(self, lane: int, frames: np.ndarray) -> np.ndarray:
        """The lab's input, prev - curr of the 40x40 images (zeros on an episode's first frame),
        flattened (N, 1600) for the step history."""
        return self._differencers[lane].step(frames).reshape(len(frames), OBSERVATION_SIZE)

    def act(self, lane: int) -> np.ndarray:
        self._lane = lane  # whose entropy _sample adds to
        return super().act(lane)

    def _sample(self, x: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
        from .. import sample_actions

        probs = self.policy.forward(x.reshape(-1, FRAME_SIDE, FRAME_SIDE))
        self._entropy_sums[self._lane] += entropy(probs)
        self._entropy_steps[self._lane] += 1
        return sample_actions(probs, uniforms)

    def finish_episode(self, lane: int, env: int) -> dict:
        """Learns from the game (when its batch is full) and returns its statistics for
        metrics.csv: the policy's mean entropy over its steps (log 6 = 1.79 is uniform, 0 one
        action always)."""
        super().finish_episode(lane, env)
        self._differencers[lane].reset(env)
        steps = self._entropy_steps[lane][env]
        mean_entropy = float(self._entropy_sums[lane][env] / steps) if steps else float("nan")
        self._entropy_sums[lane][env] = 0.0
        self._entropy_steps[lane][env] = 0
        return {"entropy": mean_entropy}

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
                                        returns, self.grads, scale=1.0 / len(actions),
                                        entropy_coef=self.entropy_coef)

    def add_gradient(self, gradient: dict) -> None:
        super().add_gradient(gradient)
        self._games_added = True

    def update(self) -> None:
        self._apply_pending()
        if self._games_added:
            # Games played on Ray workers come one gradient each (the mean over that game's steps):
            # the batch's is their mean, as for the lab's other agents, so that --max-grad-norm
            # bounds the same quantity on Ray as here.
            self._games_added = False
            for g in self.grads.values():
                g *= np.float32(1.0 / self.batch_size)
        if self.max_grad_norm is not None:
            clip_global_norm(self.grads, self.max_grad_norm)
        self.optimizer.step(self.policy, self.grads)

    def take_gradient(self) -> dict:
        self._apply_pending()
        return super().take_gradient()

    def tensors(self) -> dict:
        # Games finished since the last update go into the saved gradient rather than being lost.
        self._apply_pending()
        return super().tensors()


def entropy(probs: np.ndarray) -> np.ndarray:
    """H(p) = -sum_j p_j log p_j of each row of probabilities (N, A), in nats, float64."""
    p = probs.astype(np.float64)
    return -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=1)


def weight_shapes(config) -> dict:
    from .. import ConvPolicy

    return dict(ConvPolicy.PARAMETER_SHAPES)


def tensor_shapes(config) -> dict:
    return checkpoint_shapes(weight_shapes(config))


def policy_from_weights(weights, config=None):
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
    settings=("entropy_coef", "max_grad_norm", "head_init_scale"),
    episode_columns=("entropy",),
)
