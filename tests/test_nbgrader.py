"""The solutions notebooks through nbgrader itself (optional extra: pip install -e ".[grading]").

generate_assignment must produce the same cells as our own build of exercises/, and
autograde must give a sample submission (one task right, one wrong, the rest untouched)
exactly the points our grading route gives. Skipped when nbgrader is not installed.
"""

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

pytest.importorskip("nbgrader")

ROOT = Path(__file__).resolve().parents[1]
NAME = "ex01_gaussian_mixture_cfm"


def _nbgrader(course: Path, *args):
    env = {**os.environ, "FMLEARN_QUICK": "1",  # nbgrader runs `alembic` from the environment's bin folder
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    out = subprocess.run([sys.executable, "-m", "nbgrader", *args, "--CourseDirectory.root=" + str(course)],
                         cwd=course, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def _sources(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def test_generate_assignment_and_autograde(tmp_path):
    from test_exercises import _fill  # the same sample submission as the pytest grading route's test

    course = tmp_path / "course"
    (course / "source" / "ps1").mkdir(parents=True)
    (course / "nbgrader_config.py").write_text('c = get_config()\nc.CourseDirectory.course_id = "fmlearn"\n'
                                               'c.Exchange.root = "' + str(tmp_path / "exchange") + '"\n')
    shutil.copy(ROOT / "solutions" / f"{NAME}.ipynb", course / "source" / "ps1" / f"{NAME}.ipynb")
    _nbgrader(course, "db", "student", "add", "alice")
    _nbgrader(course, "db", "assignment", "add", "ps1")
    _nbgrader(course, "generate_assignment", "ps1", "--force")
    released = nbformat.read(course / "release" / "ps1" / f"{NAME}.ipynb", as_version=4)
    ours = jupytext.read(ROOT / "exercises" / f"{NAME}.py")
    assert _sources(released) == _sources(ours), "nbgrader's student version differs from exercises/"

    text = (ROOT / "exercises" / f"{NAME}.py").read_text()
    text = _fill(text, "conditional_path", ["t = t[:, None]\nreturn t * x1 + (1 - t) * x0", "return x1 - x0"])
    text = _fill(text, "cfm_loss", ["return (model(interpolate(x0, x1, t), t) - velocity(x0, x1, t)).pow(2).mean()"])
    submitted = jupytext.reads(text, fmt="py:percent")
    # a submission keeps the released notebook's cell ids and metadata: copy our sources into it
    for cell, new in zip(released.cells, submitted.cells):
        cell.source = new.source
    dest = course / "submitted" / "alice" / "ps1"
    dest.mkdir(parents=True)
    nbformat.write(released, dest / f"{NAME}.ipynb")
    _nbgrader(course, "autograde", "ps1", "--force")
    _nbgrader(course, "export", "--to", str(tmp_path / "grades.csv"))
    with open(tmp_path / "grades.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["student_id"] == "alice"
    assert float(rows[0]["raw_score"]) == 2.0 and float(rows[0]["max_score"]) == 10.0
