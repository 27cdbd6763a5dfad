"""The Python API examples run as written: those of the docs' API page (docs/api.md, where they
moved from the README when the README became a page), and any the README itself shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
API_PAGE = ROOT / "docs" / "api.md"


def _api_examples() -> list[str]:
    text = API_PAGE.read_text(encoding="utf-8")
    section = text[text.index("# Python API"):text.index("\n## Reference")]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_the_api_section_has_its_examples():
    assert len(_api_examples()) == 4


@pytest.mark.parametrize("index", range(4))
def test_api_example_runs(index):
    exec(compile(_api_examples()[index], f"docs/api.md Python API example {index + 1}", "exec"), {})


def test_readme_links_name_files_that_exist():
    links = re.findall(r"\]\(([^)#]+)\)", README.read_text(encoding="utf-8"))
    assert links
    missing = [link for link in links if "://" not in link and not (ROOT / link).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_readme_fits_on_a_few_screens():
    assert len(README.read_text(encoding="utf-8").splitlines()) < 250
