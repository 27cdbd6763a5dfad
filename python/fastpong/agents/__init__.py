"""The agents fastpong trains, by name: one module each, the shared parts in base.py.

A new agent is one more module defining an :class:`~fastpong.agents.base.Agent` record (its
environments, default settings, learners, checkpoint tensors, evaluation policy) and one more line
in ``AGENTS``; the training loop, evaluation and the CLI take it from here.
"""

from __future__ import annotations

from .base import ATARI, CLASSIC, PONG_ENV_IDS, Agent
from .karpathy import AGENT as KARPATHY
from .mit_cartpole import AGENT as MIT_CARTPOLE
from .mit_pong import AGENT as MIT_PONG
from .ppo import AGENT as PPO

AGENTS: dict[str, Agent] = {agent.name: agent for agent in (KARPATHY, MIT_CARTPOLE, MIT_PONG, PPO)}
#: The agent an environment id gets when none is named.
DEFAULT_AGENT = {ATARI: KARPATHY.name, CLASSIC: MIT_CARTPOLE.name}


def env_kind(env_id: str) -> str:
    """CLASSIC for the CartPole ids, ATARI for anything else (validated later as an ALE id)."""
    from ..envs.classic import is_classic_env_id

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
    if agent.plays(env_id):
        return
    fitting = [a.name for a in AGENTS.values() if a.plays(env_id)]
    if fitting:
        hint = f"{env_id} is played by {' or '.join(fitting)}"
    else:
        _check_known(env_id)  # a typo or a non-Atari id: say that first, with gymnasium's hint
        hint = f"no fastpong agent plays {env_id}: they are built for Pong and CartPole"
    raise ValueError(f"agent {agent.name!r} plays {', '.join(agent.env_ids)}, not {env_id!r} ({hint})")


def _check_known(env_id) -> None:
    """ValueError in one line unless env_id is a registered ALE id (CartPole's are played)."""
    from ..envs.classic import CLASSIC_ENV_IDS
    from ..envs import validate_env_id

    try:
        validate_env_id(env_id)
    except ValueError as exc:  # say that there is more than Atari
        raise ValueError(f"{exc} (fastpong also trains {' and '.join(CLASSIC_ENV_IDS)})") from None


__all__ = ["AGENTS", "ATARI", "CLASSIC", "PONG_ENV_IDS", "Agent", "check_agent_plays", "default_agent", "env_kind",
           "get_agent"]
