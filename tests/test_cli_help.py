"""`fastpong --version` and the groups of `fastpong train --help`."""

from __future__ import annotations

import argparse
from importlib.metadata import version

import pytest

from fastpong.cli import build_parser, main

TRAIN_GROUPS = ["environment and agent", "algorithm", "run length", "run directory and output", "speed",
                "the ppo agent", "the mit-pong agent", "Ray"]


def _train_parser() -> argparse.ArgumentParser:
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices["train"]


def test_version_prints_the_installed_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"fastpong {version('fastpong')}"


def test_train_help_lists_its_options_in_groups(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    positions = [out.index(f"\n{title}:\n") for title in TRAIN_GROUPS]
    assert positions == sorted(positions)  # in the order a reader needs them


def test_every_train_option_sits_in_a_named_group():
    groups = {group.title: [a.dest for a in group._group_actions] for group in _train_parser()._action_groups}
    assert set(TRAIN_GROUPS) <= set(groups)
    ungrouped = [dest for title, dests in groups.items() if title not in TRAIN_GROUPS for dest in dests]
    assert ungrouped == ["help"]
    assert "ray" in groups["Ray"] and "workers" in groups["Ray"]
    assert {"episodes", "steps", "target_return"} == set(groups["run length"])


def test_episodes_and_steps_still_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--episodes", "1", "--steps", "1"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
