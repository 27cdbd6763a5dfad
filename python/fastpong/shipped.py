"""The policies shipped inside the package, by the name ``--checkpoint`` takes.

Kept apart from evaluation (``fastpong.watch.evaluate``, which resolves the names to files) so that
the command line can list them in its help without importing NumPy or the kernels.
``experiments/export_pretrained.py`` writes the files.
"""

from __future__ import annotations

#: name -> (file inside the package, what it is)
SHIPPED_POLICIES = {
    "pretrained": ("pretrained/pong.npz", "the tutorial's agent"),
    "pretrained-cnn": ("pretrained/cnn.npz", "the MIT lab's CNN agent, on Pong-v0 with frameskip 5"),
    "pretrained-ppo": ("pretrained/ppo.npz", "the actor-critic (PPO) agent, on ALE/Pong-v5"),
}


def describe_shipped_policies() -> str:
    """One phrase naming every shipped policy, for help texts."""
    return ", ".join(f"'{name}' ({what})" for name, (_, what) in SHIPPED_POLICIES.items())
