"""The algorithms in plain NumPy (float64): the specs that the fast kernels are tested against.

``fastpong.reference`` itself is the NumPy tutorial's agent (``reference.tutorial``, re-exported
here so that ``reference.policy_forward`` and friends keep their names). The MIT lab's agents get
modules of their own beside it: ``reference.cnn`` is the lab's CNN Pong agent, ``reference.ppo``
the actor-critic (PPO) agent on the same network.
"""

from . import lab  # noqa: F401  (reference.lab: the MIT lab's agents; names not re-exported)
from . import cnn  # noqa: F401  (the MIT lab's CNN agent: reference.cnn.<name>)
from . import ppo  # noqa: F401  (PPO on the lab's CNN with a value head: reference.ppo.<name>)
from .tutorial import *  # noqa: F401,F403
from .tutorial import __all__ as _tutorial_names

__all__ = list(_tutorial_names)
