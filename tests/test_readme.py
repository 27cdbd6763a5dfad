"""The documentation's Python examples run as written and compute what they say they compute.

Every ```python block of the files in EXAMPLE_FILES runs in a fresh namespace (in a temporary
folder: an example may write a run directory). Then what the example claims is checked: by the
example itself where it carries `assert` statements, and by every claim in CLAIMS that recognizes
the example's namespace (the shapes its comments give, and agreement with the NumPy reference on
the same inputs). An example that neither asserts anything nor is recognized by a claim fails:
a new example needs an assert of its own or an entry in CLAIMS.
"""

from __future__ import annotations

import ast
import csv
import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

import fastpong
from fastpong import reference
from fastpong.reference import cnn, lab
from fastpong.train import TrainSummary

ROOT = Path(__file__).resolve().parent.parent
#: Where the examples live, as globs from the repository root (the README, the docs site's pages).
EXAMPLE_FILES = ["README.md", "docs/**/*.md"]


@dataclass(frozen=True)
class Example:
    path: str
    line: int
    code: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


def examples() -> list[Example]:
    found = []
    for pattern in EXAMPLE_FILES:
        for path in sorted(ROOT.glob(pattern)):
            text = path.read_text(encoding="utf-8")
            for match in re.finditer(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE):
                line = text.count("\n", 0, match.start()) + 2  # the example's first line of code
                found.append(Example(str(path.relative_to(ROOT)), line, match.group(1)))
    return found


EXAMPLES = examples()


# --- claims: what an example says it computes, checked on its namespace -------------------------


def _close(actual, expected, what, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(expected, np.float64),
                               rtol=rtol, atol=atol, err_msg=what)


def _tutorial_model(hidden=200, seed=0) -> dict:
    """The tutorial's init as Policy(hidden, seed) holds it: float32 values, float64 arrays."""
    return {k: v.astype(np.float32).astype(np.float64)
            for k, v in reference.init_model(hidden, reference.INPUT_SIZE, seed).items()}


def _rmsprop_reference(model: dict, grads: dict, learning_rate: float) -> dict:
    """One tutorial RMSProp step from an empty cache, on copies."""
    model = {k: v.copy() for k, v in model.items()}
    cache = {k: np.zeros_like(v) for k, v in model.items()}
    reference.rmsprop_update(model, {k: v.copy() for k, v in grads.items()}, cache, learning_rate, 0.99)
    return model


def _adam_reference(model: dict, grads: dict, learning_rate: float) -> dict:
    """One Adam step (the first) from zero moments, on copies."""
    model = {k: v.copy() for k, v in model.items()}
    zeros = lambda: {k: np.zeros_like(v) for k, v in model.items()}  # noqa: E731
    lab.adam_update(model, dict(grads), zeros(), zeros(), 1, learning_rate)
    return model


def is_tutorial_step_by_step(ns) -> bool:
    return isinstance(ns.get("policy"), fastpong.Policy) and isinstance(ns.get("grads"), dict) and "model" in ns


def check_tutorial_step_by_step(ns) -> None:
    """Policy(hidden=200, seed=0) forward, backward and one RMSProp step, against the reference."""
    x, h, p = ns["x"], ns["h"], ns["p"]
    assert isinstance(p, float) and h.shape == (200,)
    model0 = _tutorial_model()
    p_ref, h_ref = reference.policy_forward(np.asarray(x, np.float64), model0)
    _close(p, p_ref, "p")
    _close(h, h_ref, "h")
    assert {k: v.shape for k, v in ns["grads"].items()} == {"W1": (200, 6400), "W2": (200,)}
    grads = reference.policy_backward(h_ref[None], np.asarray(x, np.float64)[None], np.array([[0.5]]), model0)
    expected = _rmsprop_reference(model0, grads, 1e-4)
    assert set(ns["model"]) == {"W1", "W2"}
    for k in ("W1", "W2"):
        _close(ns["model"][k], expected[k], f"model {k} after the RMSProp step", atol=1e-7)


def is_fast_path_episode(ns) -> bool:
    return isinstance(ns.get("episode"), fastpong.EpisodeBuffer) and isinstance(ns.get("policy"), fastpong.Policy)


def check_fast_path_episode(ns) -> None:
    """The sparse path's episode, returns, gradient and RMSProp step, against the reference on the
    episode's own stored steps (the inputs are the differencer's, the hidden states the forward
    pass's, each dlogp y - p)."""
    episode, policy = ns["episode"], ns["policy"]
    assert ns["p"].shape == (1,) and ns["h"].shape == (1, 200) and len(ns["x"]) == 1
    steps = len(episode)
    assert steps > 0 and episode.rewards.shape == (steps,)
    model0 = _tutorial_model()
    epx = episode.inputs.to_dense(reference.INPUT_SIZE).astype(np.float64)
    p_ref, h_ref = reference.policy_forward(epx.T, model0)
    _close(episode.hidden_states, h_ref.T, "the hidden states the forward pass gave")
    dlogp = episode.dlogps.astype(np.float64)
    # y - p with y = 0 or 1: either -p or 1 - p, whichever action was sampled
    _close(np.where(dlogp < 0, -dlogp, 1 - dlogp), p_ref, "p behind each dlogp")
    advantages = reference.standardize_returns(reference.discount_rewards(episode.rewards.astype(np.float64), 0.99))
    _close(ns["advantages"], advantages, "advantages", atol=1e-5)
    grads = reference.policy_backward(h_ref.T, epx, (dlogp * advantages)[:, None], model0)
    expected = _rmsprop_reference(model0, grads, 1e-4)
    for k, value in policy.to_model().items():
        _close(value, expected[k], f"{k} after the RMSProp step", atol=1e-7)
    assert not ns["grads"].to_model()["W1"].any()  # the step zeroed the buffer


def is_categorical_adam(ns) -> bool:
    return isinstance(ns.get("policy"), fastpong.CategoricalPolicy)


def check_categorical_adam(ns) -> None:
    """CategoricalPolicy's forward pass, sampling, returns, gradient and Adam step, against
    fastpong.reference.lab from the same seed-0 weights."""
    obs = np.asarray(ns["obs"], np.float64)
    steps = len(obs)
    model0 = {k: v.astype(np.float64) for k, v in fastpong.CategoricalPolicy(
        input_size=obs.shape[1], hidden=(32,), num_actions=2, seed=0).to_model().items()}
    probs = ns["probs"]
    assert probs.dtype == np.float32 and probs.shape == (steps, 2)
    _close(probs, lab.forward(obs, model0)[2], "probs")
    uniforms = np.random.default_rng(0).random(steps, dtype=np.float32)
    actions = ns["actions"]
    assert actions.dtype == np.int32 and actions.shape == (steps,)
    np.testing.assert_array_equal(actions, lab.sample_actions(probs, uniforms))
    np.testing.assert_array_equal(ns["greedy"], probs.argmax(-1))
    returns = lab.discount_rewards(np.ones(steps), 0.95, reset_at_points=False)
    _close(ns["returns"], returns, "returns")
    _close(ns["advantages"], lab.normalize(returns), "advantages")
    assert {k: v.shape for k, v in ns["grads"].items()} == {k: v.shape for k, v in model0.items()}
    grads = lab.policy_gradient(obs, actions, ns["advantages"], model0)
    expected = _adam_reference(model0, grads, 1e-3)
    for k, value in ns["policy"].to_model().items():
        _close(value, expected[k], f"{k} after the Adam step", atol=1e-6)
    assert set(ns["state"]) == {"step"} | {f"{m}_{k}" for m in "mv" for k in model0}


def is_conv_policy(ns) -> bool:
    return isinstance(ns.get("policy"), fastpong.ConvPolicy)


def check_conv_policy(ns) -> None:
    """The lab's frame change, the CNN's forward pass, gradient and Adam step, against
    fastpong.reference.cnn from the same seed-0 weights."""
    frames, prev_frames, x = ns["frames"], ns["prev_frames"], ns["x"]
    assert x.dtype == np.float32 and x.shape == (len(frames), 40, 40)
    np.testing.assert_array_equal(x, np.stack([cnn.frame_change(a, b) for a, b in zip(prev_frames, frames)]))
    params0 = {k: v.astype(np.float64) for k, v in fastpong.ConvPolicy(seed=0).to_model().items()}
    logits, _ = cnn.policy_forward(x, params0)
    probs = ns["probs"]
    assert probs.shape == (len(frames), 6)
    _close(probs, cnn.softmax(logits), "probs")
    assert ns["grads"]["conv2d_0/kernel"].shape == (5, 5, 1, 32)
    grads = cnn.objective_gradient(params0, x, ns["actions"], np.ones(len(frames)))
    expected = _adam_reference(params0, grads, 1e-3)
    for k, value in ns["model"].items():
        _close(value, expected[k], f"{k} after the Adam step", atol=1e-6)


def is_cartpole_run(ns) -> bool:
    return isinstance(ns.get("summary"), TrainSummary) and "result" in ns


def check_cartpole_run(ns) -> None:
    """Training stopped once its last 100 returns averaged the target (495), and evaluate()
    played 100 games of the run's own environment (CartPole-v1: returns up to 500, where v0 stops
    at 200)."""
    summary, result = ns["summary"], ns["result"].summary()
    with open(Path(summary.run_dir) / "metrics.csv", newline="") as f:
        returns = [float(row["reward"]) for row in csv.DictReader(f)]
    assert len(returns) == summary.episodes >= 100 and np.mean(returns[-100:]) >= 495
    assert result["episodes"] == 100
    assert 200 < result["max_return"] <= 500
    _close(result["mean_return"], np.mean(ns["result"].rewards), "mean_return")


@dataclass(frozen=True)
class Claim:
    name: str
    applies: Callable[[dict], bool]
    check: Callable[[dict], None]


CLAIMS = [
    Claim("the tutorial's agent step by step", is_tutorial_step_by_step, check_tutorial_step_by_step),
    Claim("the fast path's episode", is_fast_path_episode, check_fast_path_episode),
    Claim("CategoricalPolicy and Adam", is_categorical_adam, check_categorical_adam),
    Claim("ConvPolicy and Adam", is_conv_policy, check_conv_policy),
    Claim("CartPole trained to its target, then evaluated", is_cartpole_run, check_cartpole_run),
]


def _asserts(code: str) -> bool:
    return any(isinstance(node, ast.Assert) for node in ast.walk(ast.parse(code)))


# --- the tests ------------------------------------------------------------------------------------


def test_the_examples_are_found():
    """The examples are found wherever they live, README or docs pages (5 when this was written):
    a change of fence or folder must not drop them silently."""
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("example", EXAMPLES, ids=str)
def test_example_computes_what_it_says(example, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # `from fastpong.train import ...` (here, and in other tests of this process) leaves the
    # submodules fastpong.train and fastpong.evaluate where the lazy functions of those names
    # belong; the examples get the package as a fresh `import fastpong` has it.
    for name in ("train", "evaluate"):
        monkeypatch.setattr(fastpong, name, getattr(importlib.import_module(f"fastpong.{name}"), name))
    namespace: dict = {}
    exec(compile(example.code, str(example), "exec"), namespace)
    claims = [claim for claim in CLAIMS if claim.applies(namespace)]
    assert claims or _asserts(example.code), (
        f"{example} checks nothing: give it an assert, or add a claim to CLAIMS in {__file__}")
    for claim in claims:
        claim.check(namespace)


README = ROOT / "README.md"


def test_readme_links_name_files_that_exist():
    links = re.findall(r"\]\(([^)#]+)\)", README.read_text(encoding="utf-8"))
    assert links
    missing = [link for link in links if "://" not in link and not (ROOT / link).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_readme_fits_on_a_few_screens():
    assert len(README.read_text(encoding="utf-8").splitlines()) < 250
