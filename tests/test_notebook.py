"""The tutorial notebook: the committed, executed .ipynb is the one made from the .md source.

``docs/pong-from-pixels.md`` (MyST markdown, paired with jupytext) is the source; the committed
``docs/pong-from-pixels.ipynb`` is it executed, so that readers see the plots and the video
without running anything. These tests check that the two have not drifted apart and that the
committed run finished cleanly. Executing the notebook itself is a step of ``.ci/run`` (about a
minute); both need the ``docs`` extra and are skipped without it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext", reason="the docs extra is not installed")

DOCS = Path(__file__).resolve().parent.parent / "docs"
SOURCE = DOCS / "pong-from-pixels.md"
EXECUTED = DOCS / "pong-from-pixels.ipynb"
REGENERATE = ("jupytext --to ipynb docs/pong-from-pixels.md && "
              "jupyter execute --inplace docs/pong-from-pixels.ipynb")


def _cells(path: Path) -> list[tuple[str, str]]:
    notebook = jupytext.read(path)
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


@pytest.fixture(scope="module")
def executed():
    return jupytext.read(EXECUTED)


def test_committed_notebook_is_made_from_the_markdown():
    source, committed = _cells(SOURCE), _cells(EXECUTED)
    assert len(committed) == len(source), (
        f"{EXECUTED.name} has {len(committed)} cells, {SOURCE.name} {len(source)}: run {REGENERATE}")
    for index, (expected, actual) in enumerate(zip(source, committed)):
        assert actual == expected, f"cell {index} differs from {SOURCE.name}: run {REGENERATE}"


def test_committed_notebook_ran_top_to_bottom_without_errors(executed):
    code_cells = [cell for cell in executed.cells if cell.cell_type == "code"]
    assert code_cells, "the notebook has no code"
    counts = [cell.execution_count for cell in code_cells]
    assert counts == list(range(1, len(code_cells) + 1)), (
        f"code cells were not run once each, in order (execution counts {counts}): run {REGENERATE}")
    errors = [output for cell in code_cells for output in cell.outputs
              if output.output_type == "error"]
    assert not errors, f"the committed notebook holds an error: {errors[0].ename}: {errors[0].evalue}"


def test_committed_notebook_shows_its_plots_and_the_video(executed):
    kinds = [kind for cell in executed.cells if cell.cell_type == "code"
             for output in cell.outputs for kind in output.get("data", {})]
    assert kinds.count("image/png") >= 5, f"expected the frames, returns and curves as PNGs, got {kinds}"
    videos = [output["data"]["text/html"] for cell in executed.cells if cell.cell_type == "code"
              for output in cell.outputs if "<video" in output.get("data", {}).get("text/html", "")]
    assert len(videos) == 1 and "data:video/mp4;base64," in videos[0], "the agent's video is not embedded"
    # The committed file stays small enough to keep in git and for GitHub to render.
    assert EXECUTED.stat().st_size < 1_000_000, f"{EXECUTED.name} is {EXECUTED.stat().st_size:,} bytes"
