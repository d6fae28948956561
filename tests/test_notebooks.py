"""Notebook pipeline invariants: every notebook is a .py/.ipynb pair in sync, with no stored outputs.

Pairs are checked in the working tree (JupyterLab's jupytext keeps both halves in sync when a learner
saves); "no stored outputs" is a rule about what is committed, so it is checked on git's staged copy
(see tests/_tracked.py): a learner's own outputs never fail the test command.
(The notebooks themselves are executed by nbval: `pytest` collects chapters/*.ipynb.)
"""

from pathlib import Path

import jupytext
from jupytext.config import load_jupytext_config
import nbformat
import pytest

from _tracked import committed_text

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


def _stored_outputs(nb) -> list[str]:
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            if cell.outputs:
                problems.append(f"cell {i} holds outputs")
            if cell.execution_count is not None:
                problems.append(f"cell {i} has an execution count")
    return problems


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_has_no_outputs(nb_path):
    """Committed notebooks (git's staged copy) carry no outputs or execution counts, and are valid nbformat."""
    nb = nbformat.reads(committed_text(nb_path), as_version=4)
    nbformat.validate(nb)
    assert not _stored_outputs(nb), f"{nb_path.name}: {_stored_outputs(nb)} (commit notebooks without outputs)"


@pytest.mark.parametrize("py", PY_SOURCES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_py_is_what_jupytext_writes(py):
    """The .py is byte for byte what jupytext writes from its .ipynb, so JupyterLab opens either half whatever
    their file times (jupytext refuses a newer .ipynb whose text differs) and saving leaves the .py unchanged."""
    config = load_jupytext_config(str(py.parent))
    nb = nbformat.read(py.with_suffix(".ipynb"), as_version=4)
    stored = nb.metadata.get("jupytext", {})  # a filter stored in the notebook wins over jupytext.toml in JupyterLab
    for key in ("notebook_metadata_filter", "cell_metadata_filter"):
        assert stored.get(key, getattr(config, key)) == getattr(config, key), \
            f"{py.name}'s .ipynb stores its own {key}; run `make notebooks`"
    written = jupytext.writes(nb, fmt="py:percent", config=config)
    assert written == py.read_text(), f"{py.name}: jupytext would rewrite it; run `make notebooks`"


def test_outputs_rule_rejects_a_notebook_with_outputs():
    """The rule itself fails on a notebook with one stored output and execution count."""
    nb = nbformat.reads(committed_text(NOTEBOOKS[0]), as_version=4)
    i, code = next((i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code")
    code.outputs = [nbformat.v4.new_output("stream", text="hello")]
    code.execution_count = 1
    assert _stored_outputs(nb) == [f"cell {i} holds outputs", f"cell {i} has an execution count"]


def test_drift_is_detected(tmp_path):
    """The sync check itself fails when a pair drifts (a one-character edit to the .py)."""
    py = ROOT / "chapters" / "01_gaussian_mixture_cfm.py"
    edited = tmp_path / py.name
    edited.write_text(py.read_text().replace("SEED = 0", "SEED = 1", 1))
    assert _cells(jupytext.read(edited)) != _cells(nbformat.read(py.with_suffix(".ipynb"), as_version=4))
