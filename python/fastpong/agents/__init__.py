"""The agents fastpong trains, by name: one module each, the shared parts in base.py.

A new agent is one more module defining an :class:`~fastpong.agents.base.Agent` record (its
environments, default settings, learners, checkpoint tensors, evaluation policy) and one more line
in ``AGENTS``; the training loop, evaluation and the CLI take it from here.
"""

from __future__ import annotations

from .base import ATARI, CLASSIC, Agent
from .karpathy import AGENT as KARPATHY
from .mit_cartpole import AGENT as MIT_CARTPOLE
from .mit_pong import AGENT as MIT_PONG
from .ppo import AGENT as PPO

AGENTS: dict[str, Agent] = {agent.name: agent for agent in (KARPATHY, MIT_CARTPOLE, MIT_PONG, PPO)}
#: The agent an environment id gets when none is named.
DEFAULT_AGENT = {ATARI: KARPATHY.name, CLASSIC: MIT_CARTPOLE.name}


def env_kind(env_id: str) -> str:
    """CLASSIC for the CartPole ids, ATARI for anything else (validated later as an ALE id)."""
    from ..classic_envs import is_classic_env_id

    return CLASSIC if is_classic_env_id(env_id) else ATARI


def default_agent(env_id: str) -> str:
    return DEFAULT_AGENT[env_kind(env_id)]


def get_agent(name: str) -> Agent:
    try:
        return AGENTS[name]
    except KeyError:
        raise ValueError(f"agent must be one of {', '.join(AGENTS)}, got {name!r}") from None


def check_agent_plays(agent: Agent, env_id: str) -> None:
    """ValueError in one line if the agent cannot play env_id."""
    kind = env_kind(env_id)
    if kind != agent.env_kind or not agent.plays(env_id):
        fitting = [a.name for a in AGENTS.values() if a.env_kind == kind and a.plays(env_id)]
        plays = ", ".join(agent.env_ids) if agent.env_ids else f"{agent.env_kind} environments"
        hint = f" ({env_id} is played by {' or '.join(fitting)})" if fitting else ""
        raise ValueError(f"agent {agent.name!r} plays {plays}, not {env_id!r}{hint}")


__all__ = ["AGENTS", "ATARI", "CLASSIC", "Agent", "check_agent_plays", "default_agent", "env_kind",
           "get_agent"]
