"""Beyond the seeds: an actor-critic agent (``--agent ppo``), PPO-clip on the lab's CNN.

Where both seeds stop (policy gradient with the return as its only signal), the next lesson is a
learned value baseline and a clipped, multi-epoch update: PPO (Schulman et al. 2017) with
generalized advantage estimation. The network is :class:`fastpong.nn.actor_critic.ActorCriticCNN`:
the MIT lab's CNN over 40x40 frame changes, with a value head beside its six logits.

Per rollout: ``rollout_steps`` steps of every environment are played with the current policy,
storing each step's observation, action, log-probability and value. Then GAE (gamma,
``gae_lambda``) gives advantages and returns, and ``epochs`` passes over the rollout in
``minibatches`` shuffled minibatches each take one Adam step on PPO's loss (clipped surrogate,
clipped value loss weighted ``value_coef``, entropy bonus ``entropy_coef``), the gradient's global
norm clipped to ``max_grad_norm``. The learning rate falls linearly over ``anneal_steps``
environment steps to the rate of its last update there, and stays at that. With
``final_entropy_coef`` set, the entropy bonus's weight falls with it, from ``entropy_coef`` to
that (off by default, as in CleanRL).

The settings start from CleanRL's ``ppo_atari.py`` (8 envs, 128 steps, 4 epochs of 4 minibatches,
clip 0.1, entropy 0.01, value 0.5, GAE 0.95, gamma 0.99, grad norm 0.5, Adam 2.5e-4 annealed over
10 M steps). Where this agent departs from it:

- the learning rate is 2e-3: at 2.5e-4 this network's policy barely moved (approximate KL per
  update near 1e-4, nothing clipped). With 4 passes, 1e-3 moved it as PPO's usually does (KL about
  0.01 to 0.02) and 3e-3 too far (KL about 0.1, half the ratios clipped); with 2 passes, 1e-3 gave
  a median KL of 0.003 and 2e-3 about 0.009, and 2e-3 beat the built-in player within 10 minutes
  on seeds 1, 2 and 3 (5.6, 9.1 and 4.8 min, where 1e-3 took 7.5, 7.6 and 11.4): see docs/ppo.md;

- 2 passes (epochs) over each rollout, not 4: on two cores the update, not the emulator, was
  most of the wall-clock. After 10 minutes from scratch, seeds 1, 2 and 3 stood at +7.7, +7.5
  and -7.1 with 2 passes against +3.0, -8.6 and -7.4 with 4 (the update's kernels also got about
  20% faster between the two sets of runs; docs/ppo.md);
- the input is the lab's 40x40 frame change (1 channel) and its CNN, not 84x84 grey frames
  stacked 4 deep through the Nature CNN: about 5 M multiply-adds a step instead of 7 M, most of
  them skipped on the sparse frame change. ``observation="frame-and-change"`` adds the current
  frame in the same channel (a still paddle shows); in a 10-minute screen of seeds 1 to 3 it was
  ahead per env step on one seed, even on one and behind on one, so the change is the default
  (docs/ppo.md);
- the environment is ``ALE/Pong-v5`` as gymnasium registers it (sticky actions 0.25, frameskip 4,
  six actions), not ``PongNoFrameskip-v4`` under Atari wrappers; rewards are Pong's points, which
  are already in [-1, 1];
- the trunk keeps the lab's Keras initialization (Glorot-uniform); the policy head is scaled by
  0.01 as CleanRL's is; Adam's epsilon (1e-5) is added as Keras adds it, to sqrt(v);
- an episode cut by the time limit is treated as ended (no bootstrap), as CleanRL does;
- with two lanes of environments (the loop's overlap of emulation and network), the first step of
  each rollout of the first lane is sampled by the policy before the update: its stored
  log-probability is that policy's, so the ratio is still taken against the policy that acted.

Checkpoints hold the weights and Adam's state (``adam/...``); the update count, and with it the
learning-rate schedule, follows from Adam's step count. A rollout in progress is not saved: a
resumed run starts a fresh one (the emulators are not saved either).
"""

from __future__ import annotations

import numpy as np

from ..reference.ppo import CHANGE
from .base import ATARI, PONG_ENV_IDS, Agent, clip_global_norm

FRAME_SIDE = 40


class Rollout:
    """One lane's steps of the rollout in progress: ``rollout_steps`` rows for N environments,
    plus one row for a step taken before the update it waits for (then carried over)."""

    def __init__(self, steps: int, num_envs: int):
        self.steps = steps
        rows = steps + 1
        self.observations = np.zeros((rows, num_envs, FRAME_SIDE, FRAME_SIDE), dtype=np.float32)
        self.actions = np.zeros((rows, num_envs), dtype=np.int64)
        self.log_probs = np.zeros((rows, num_envs), dtype=np.float32)
        self.values = np.zeros((rows, num_envs), dtype=np.float32)
        self.rewards = np.zeros((rows, num_envs), dtype=np.float32)
        self.dones = np.zeros((rows, num_envs), dtype=bool)
        self.length = 0  # rows filled

    @property
    def full(self) -> bool:
        return self.length >= self.steps

    def append(self, observations, actions, log_probs, values) -> None:
        t = self.length
        self.observations[t] = observations
        self.actions[t] = actions
        self.log_probs[t] = log_probs
        self.values[t] = values
        self.rewards[t] = 0
        self.dones[t] = False
        self.length = t + 1

    def restart(self) -> None:
        """After an update: a step taken past the rollout becomes the first of the next."""
        carried = self.length > self.steps
        if carried:
            for array in (self.observations, self.actions, self.log_probs, self.values,
                          self.rewards, self.dones):
                array[0] = array[self.steps]
        self.length = 1 if carried else 0


class PPOLearner:
    """The loop's side (observe, act, record_rewards, finish_episode, update_due, update) and the
    checkpoint's (tensors, weights) of a PPO agent."""

    def __init__(self, config, lane_sizes: list[int], rng: np.random.Generator):
        from .. import Adam, LabFrameDifferencer
        from ..nn.actor_critic import ActorCriticCNN

        self.config = config
        self.rng = rng
        self.net = ActorCriticCNN(seed=config.seed, observation=config.observation)
        self.optimizer = Adam(learning_rate=config.learning_rate, epsilon=ADAM_EPSILON)
        self.grads = self.net.gradient_buffer()
        self.differencers = [LabFrameDifferencer(n, config.observation) for n in lane_sizes]
        self.rollouts = [Rollout(config.rollout_steps, n) for n in lane_sizes]
        self._observations = [None] * len(lane_sizes)
        self.num_envs = sum(lane_sizes)
        #: The last update's losses and diagnostics (empty before the first update).
        self.update_stats: dict = {}

    # --- the loop's side ----------------------------------------------------------------------

    def observe(self, lane: int, frames: np.ndarray) -> None:
        self._observations[lane] = self.differencers[lane].step(frames)

    def act(self, lane: int) -> np.ndarray:
        from .. import sample_actions
        from ..nn.actor_critic import log_softmax

        x = self._observations[lane]
        logits, values = self.net.logits_and_values(x)
        log_p = log_softmax(logits)
        # float32 uniforms, the kernel's own precision: a float64 draw rounded to float32 can
        # become 1.0, outside [0, 1).
        actions = sample_actions(np.exp(log_p), self.rng.random(len(x), dtype=np.float32))
        rows = np.arange(len(x))
        self.rollouts[lane].append(x, actions, log_p[rows, actions], values)
        return actions

    def record_rewards(self, lane: int, rewards: np.ndarray) -> None:
        rollout = self.rollouts[lane]
        rollout.rewards[rollout.length - 1] = rewards

    def finish_episode(self, lane: int, env: int) -> None:
        rollout = self.rollouts[lane]
        rollout.dones[rollout.length - 1, env] = True
        self.differencers[lane].reset(env)

    def update_due(self) -> bool:
        """True once every lane has played its rollout_steps steps (checked by the loop after a
        lane observes, before it acts)."""
        return all(rollout.full for rollout in self.rollouts)

    def update(self) -> None:
        c = self.config
        batch = self._rollout_batch()
        size = len(batch["actions"])
        self.optimizer.learning_rate = self.learning_rate_now()
        minibatch = -(-size // c.minibatches)
        sums: dict = {}
        count = 0
        for _ in range(c.epochs):
            order = self.rng.permutation(size)
            for start in range(0, size, minibatch):
                stats = self._minibatch_step({k: v[order[start:start + minibatch]] for k, v in batch.items()})
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
        self.update_stats = {k: v / count for k, v in sums.items()}
        self.update_stats["explained_variance"] = explained_variance(batch["values"], batch["returns"])
        self.update_stats["learning_rate"] = self.optimizer.learning_rate
        for rollout in self.rollouts:
            rollout.restart()

    def learning_rate_now(self) -> float:
        """The configured rate, falling linearly over anneal_steps environment steps (counted as
        the updates done times the steps of a rollout) down to the rate of the last update before
        anneal_steps (CleanRL's last, learning_rate x rollout / anneal_steps), where it stays: a
        run longer than the schedule goes on learning, slowly, instead of stepping Adam at 0."""
        return self.config.learning_rate * self._schedule_left()

    def entropy_coef_now(self) -> float:
        """entropy_coef, or with final_entropy_coef set, the weight on the learning rate's schedule:
        from entropy_coef at the start to final_entropy_coef at anneal_steps."""
        c = self.config
        if c.final_entropy_coef is None:
            return c.entropy_coef
        return c.final_entropy_coef + (c.entropy_coef - c.final_entropy_coef) * self._schedule_left()

    def _schedule_left(self) -> float:
        """The share of the annealing schedule still ahead, from 1 at the start down to the share
        of one update (rollout steps / anneal_steps) at its end and after."""
        c = self.config
        per_update = c.rollout_steps * self.num_envs
        steps_done = self.updates_done() * per_update
        return max(1.0 - steps_done / c.anneal_steps, per_update / c.anneal_steps)

    def updates_done(self) -> int:
        return self.optimizer.iterations // (self.config.epochs * self.config.minibatches)

    def _rollout_batch(self) -> dict:
        """Every lane's rollout, flattened to one batch, with GAE's advantages and returns."""
        from ..nn.actor_critic import gae

        c = self.config
        parts = []
        for lane, rollout in enumerate(self.rollouts):
            t = rollout.steps
            if rollout.length > t:  # the lane already acted on its next observation
                last_values = rollout.values[t]
            else:
                last_values = self.net.logits_and_values(self._observations[lane])[1]
            advantages, returns = gae(rollout.rewards[:t], rollout.values[:t], rollout.dones[:t],
                                      last_values, c.gamma, c.gae_lambda)
            parts.append(dict(observations=rollout.observations[:t].reshape(-1, FRAME_SIDE, FRAME_SIDE),
                              actions=rollout.actions[:t].reshape(-1),
                              log_probs=rollout.log_probs[:t].reshape(-1),
                              values=rollout.values[:t].reshape(-1),
                              advantages=advantages.reshape(-1), returns=returns.reshape(-1)))
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _minibatch_step(self, mb: dict) -> dict:
        from ..nn.actor_critic import ppo_loss_gradient

        c = self.config
        logits, values, cache = self.net.forward_for_gradient(mb["observations"])
        stats, grad_logits, grad_values = ppo_loss_gradient(
            logits, values, mb["actions"], mb["log_probs"], mb["advantages"], mb["returns"],
            mb["values"], clip=c.clip_coef, entropy_coef=self.entropy_coef_now(), value_coef=c.value_coef)
        # The optimizer ascends: hand it minus the loss's gradient.
        self.net.accumulate_gradient(mb["observations"], -grad_logits, -grad_values, self.grads, cache)
        stats["grad_norm"] = clip_global_norm(self.grads, c.max_grad_norm)
        self.optimizer.step(self.net, self.grads)
        return stats

    # --- checkpoints ---------------------------------------------------------------------------

    def tensors(self) -> dict:
        tensors = self.weights()
        tensors.update({f"adam/{k}": np.asarray(v) for k, v in self.optimizer.state().items()})
        return tensors

    def load_tensors(self, tensors: dict) -> None:
        self.load_weights(tensors)
        self.optimizer.load_state({k[len("adam/"):]: v for k, v in tensors.items() if k.startswith("adam/")},
                                  self.net)

    def weights(self) -> dict:
        return self.net.to_model()

    def load_weights(self, weights: dict) -> None:
        self.net.load_model({name: weights[name] for name in self.net.PARAMETER_NAMES})


#: The diagnostics of each update that metrics.csv records (CleanRL's, plus the learning rate).
UPDATE_COLUMNS = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction",
                  "explained_variance", "learning_rate")

#: Adam's epsilon: CleanRL's 1e-5 (PyTorch adds it to sqrt(v_hat); fastpong's Adam, as Keras, to
#: sqrt(v)).
ADAM_EPSILON = 1e-5


def explained_variance(values: np.ndarray, returns: np.ndarray) -> float:
    """1 - Var(returns - values) / Var(returns): how much of the returns the value head explains
    (1 perfect, 0 no better than a constant, NaN when the returns do not vary)."""
    var = float(np.var(returns))
    return float("nan") if var == 0 else 1.0 - float(np.var(returns - values)) / var


def weight_shapes(config) -> dict:
    from ..nn.actor_critic import ActorCriticCNN

    return dict(ActorCriticCNN.PARAMETER_SHAPES)


def policy_from_weights(weights, config=None):
    from ..nn.actor_critic import ActorCriticCNN

    return ActorCriticCNN.from_model(weights, config.observation if config is not None else CHANGE)


AGENT = Agent(
    name="ppo",
    summary="beyond the seeds: PPO (actor-critic, GAE, clipped updates) on the lab's CNN, Adam",
    env_kind=ATARI,
    defaults=dict(hidden=128, batch_size=1, learning_rate=2e-3, gamma=0.99, optimizer="adam",
                  num_envs=8, rollout_steps=128, epochs=2, minibatches=4, clip_coef=0.1,
                  entropy_coef=0.01, value_coef=0.5, gae_lambda=0.95, max_grad_norm=0.5,
                  anneal_steps=10_000_000, observation=CHANGE),
    learners={"fast": PPOLearner},
    weight_shapes=weight_shapes,
    tensor_shapes=weight_shapes,
    policy_from_weights=policy_from_weights,
    env_ids=PONG_ENV_IDS,
    optimizers=("adam",),
    ray=False,
    frame_input="lab",
    update_columns=UPDATE_COLUMNS,
    old_config_settings={"observation": CHANGE},  # runs before --observation saw the change
    settings=("rollout_steps", "epochs", "minibatches", "clip_coef", "entropy_coef", "value_coef",
              "gae_lambda", "max_grad_norm", "anneal_steps", "final_entropy_coef", "observation"),
)
