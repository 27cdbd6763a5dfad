"""The README's Python API examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _api_examples() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Python API"):]
    section = section[:section.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_the_api_section_has_its_examples():
    assert len(_api_examples()) == 4


@pytest.mark.parametrize("index", range(4))
def test_api_example_runs(index):
    exec(compile(_api_examples()[index], f"README.md Python API example {index + 1}", "exec"), {})
