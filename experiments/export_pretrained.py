"""Export a run's policy as one of the package's shipped policies (python/fastpong/pretrained/).

    python experiments/export_pretrained.py RUN_DIR [--episodes 20] [--seed 0]

The tutorial's agent (karpathy) -> pretrained/pong.npz (``--checkpoint pretrained``): only W1
(200, 6400) and W2 (200,), in the tutorial's layout and names, stored as float16 (half the size) --
but only if float16 plays as well as float32: both are evaluated on the same games (same seed) and
the script refuses if float16's mean reward is lower by more than one standard error.

The actor-critic (ppo) -> pretrained/ppo.npz (``--checkpoint pretrained-ppo``), and the MIT lab's
CNN agent (mit-pong) -> pretrained/cnn.npz (``--checkpoint pretrained-cnn``): the network's
weights in float32 (0.7 MB) with the run's config, which is how a loader knows the agent and the
environment it was trained on (the lab's Pong-v0 with frameskip 5 for mit-pong); the optimizer's
state and counters stay behind. The file is read back and played against the checkpoint on the
same games: the two must score the same.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from fastpong import Policy, evaluate
from fastpong.checkpoint import load_policy_weights, write_atomically
from fastpong.training.checkpoint import FORMAT_VERSION, load_agent_weights

PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "python" / "fastpong" / "pretrained"
#: Where each agent's shipped policy goes (fastpong.watch.evaluate.PRETRAINED_FILES names them).
TARGETS = {"karpathy": PRETRAINED_DIR / "pong.npz", "ppo": PRETRAINED_DIR / "ppo.npz",
           "mit-pong": PRETRAINED_DIR / "cnn.npz"}


def _report(name: str, summary: dict, episodes: int) -> None:
    print(f"{name}: mean reward {summary['mean_reward']:+.2f} ± {summary['std_reward']:.2f}, "
          f"points won {100 * summary['point_win_rate']:.1f}%, games won {summary['episodes_won']}/{episodes}")


def export_tutorial(checkpoint: Path, episodes: int, seed: int) -> None:
    weights = load_policy_weights(checkpoint)
    half = {k: v.astype(np.float16) for k, v in weights.items()}
    results = {}
    for name, model in (("float32", weights), ("float16", half)):
        results[name] = evaluate(Policy.from_model(model), episodes=episodes, seed=seed).summary()
        _report(name, results[name], episodes)
    standard_error = results["float32"]["std_reward"] / np.sqrt(episodes)
    if results["float16"]["mean_reward"] < results["float32"]["mean_reward"] - standard_error:
        raise SystemExit("float16 plays worse than float32: not exported")
    target = TARGETS["karpathy"]
    write_atomically(target, lambda f: np.savez(f, W1=half["W1"], W2=half["W2"]))
    print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB)")


def export_with_config(checkpoint: Path, agent_name: str, config, weights: dict, episodes: int, seed: int) -> None:
    target = TARGETS[agent_name]
    arrays = {name: np.asarray(value, dtype=np.float32) for name, value in weights.items()}
    arrays["config"] = np.array(json.dumps(config.to_dict(), sort_keys=True))
    arrays["format_version"] = np.int64(FORMAT_VERSION)
    # Checked before it replaces a shipped file: a file that plays otherwise never lands there.
    candidate = target.with_name(target.stem + ".candidate.npz")
    write_atomically(candidate, lambda f: np.savez_compressed(f, **arrays))
    try:
        played = {}
        for name, source in (("checkpoint", checkpoint), ("exported", candidate)):
            played[name] = evaluate(source, episodes=episodes, seed=seed).summary()
            _report(name, played[name], episodes)
        if played["checkpoint"]["mean_reward"] != played["exported"]["mean_reward"]:
            raise SystemExit("the exported file plays differently from the checkpoint: not exported")
        os.replace(candidate, target)
    finally:
        candidate.unlink(missing_ok=True)
    print(f"wrote {target} ({target.stat().st_size / 1e6:.2f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    checkpoint = Path(args.run_dir) / "checkpoint.npz"
    agent, config, weights = load_agent_weights(checkpoint)
    if agent.name == "karpathy":
        export_tutorial(checkpoint, args.episodes, args.seed)
    elif agent.name in TARGETS:
        export_with_config(checkpoint, agent.name, config, weights, args.episodes, args.seed)
    else:
        raise SystemExit(f"no shipped policy for agent {agent.name!r} (ships: {', '.join(TARGETS)})")


if __name__ == "__main__":
    main()
