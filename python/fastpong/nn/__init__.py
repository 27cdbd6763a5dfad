"""The networks and their optimizers: the tutorial's policy (``Policy``), the MIT lab's dense and
convolutional policies (``CategoricalPolicy``, ``ConvPolicy``), the actor-critic network of the
ppo agent (``ActorCriticCNN``), RMSProp and Adam. Thin Python over
the C++ kernels; no environments, no training loop."""
