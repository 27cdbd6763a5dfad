"""The API page shows every public name of fastpong, and each of them has a docstring to show.

The site itself is built by CI (`sphinx-build -n -W`, see .ci/run); this checks, without Sphinx,
what the build cannot notice: a name added to ``fastpong.__all__`` but not to docs/api.md.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import fastpong

API_PAGE = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def _documented_names() -> set[str]:
    text = API_PAGE.read_text(encoding="utf-8")
    return set(re.findall(r"^\.\. auto(?:function|class|module):: fastpong\.(\w+)\s*$", text, flags=re.M))


@pytest.mark.parametrize("name", fastpong.__all__)
def test_public_name_has_a_docstring(name):
    doc = inspect.getdoc(getattr(fastpong, name)) or ""
    # pybind11 puts the signature first: a docstring that is only the signature says nothing.
    prose = [line for line in doc.splitlines() if line.strip() and not line.startswith(f"{name}(")]
    assert prose, f"fastpong.{name} has no docstring"


def test_api_page_shows_every_public_name():
    missing = set(fastpong.__all__) - _documented_names()
    assert not missing, f"docs/api.md has no autodoc directive for {sorted(missing)}"
