"""The tutorial agent's two engines, under the names they had before fastpong had several agents.

The learners now live with their agents (``fastpong.agents.karpathy``, ``fastpong.agents.mit_cartpole``);
this module keeps ``from fastpong.learners import FastLearner, ReferenceLearner`` working.
"""

from .agents.karpathy import FastLearner, ReferenceLearner

LEARNERS = {"fast": FastLearner, "reference": ReferenceLearner}

__all__ = ["LEARNERS", "FastLearner", "ReferenceLearner"]
