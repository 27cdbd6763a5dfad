"""The environments the agents play, behind one batch interface (``reset``, ``send``/``recv``,
``close``): ``atari`` is ale-py's vector environment checked against ``gymnasium.make`` (Pong),
``classic`` a batch of CartPoles stepped in NumPy. ``fastpong.envs.X`` is the Atari module's
``X``, as when this package was the single module ``envs.py``."""

from .atari import EnvBatch, check_frameskip, default_num_envs, make_env_batch, validate_env_id

__all__ = ["EnvBatch", "check_frameskip", "default_num_envs", "make_env_batch", "validate_env_id"]
