"""Notebook pipeline invariants: every notebook is a .py/.ipynb pair in sync, with no stored outputs.

(The notebooks themselves are executed by nbval: `pytest` collects chapters/*.ipynb.)
"""

from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("chapters", "exercises", "solutions")
PY_SOURCES = sorted(p for f in FOLDERS for p in (ROOT / f).glob("*.py"))
NOTEBOOKS = sorted(p for f in FOLDERS for p in (ROOT / f).glob("*.ipynb"))


def _cells(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def test_there_are_chapters():
    """The course has at least its first chapter, so the checks below are not vacuous."""
    assert (ROOT / "chapters" / "01_gaussian_mixture_cfm.py").is_file()


@pytest.mark.parametrize("folder", FOLDERS)
def test_every_notebook_is_a_pair(folder):
    """Each name exists as both .py and .ipynb (compared as sets of stems)."""
    d = ROOT / folder
    py = {p.stem for p in d.glob("*.py")}
    nb = {p.stem for p in d.glob("*.ipynb")}
    assert py == nb, f"{folder}: unpaired {sorted(py ^ nb)}; run `make notebooks`"


@pytest.mark.parametrize("py", PY_SOURCES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_pair_in_sync(py):
    """The .ipynb holds exactly the cells of its reviewed .py source (read independently by jupytext and nbformat)."""
    from_py = jupytext.read(py)
    from_nb = nbformat.read(py.with_suffix(".ipynb"), as_version=4)
    assert _cells(from_py) == _cells(from_nb), f"{py.name} and its .ipynb differ; run `make notebooks`"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_has_no_outputs(nb_path):
    """Committed notebooks carry no outputs or execution counts, and are valid nbformat."""
    nb = nbformat.read(nb_path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.outputs, f"{nb_path.name} cell {i} holds outputs"
            assert cell.execution_count is None, f"{nb_path.name} cell {i} has an execution count"


def test_drift_is_detected(tmp_path):
    """The sync check itself fails when a pair drifts (a one-character edit to the .py)."""
    py = ROOT / "chapters" / "01_gaussian_mixture_cfm.py"
    edited = tmp_path / py.name
    edited.write_text(py.read_text().replace("SEED = 0", "SEED = 1", 1))
    assert _cells(jupytext.read(edited)) != _cells(nbformat.read(py.with_suffix(".ipynb"), as_version=4))
