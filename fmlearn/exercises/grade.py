"""Grading a submitted exercise notebook, without nbgrader's database.

What nbgrader's autograde does, in a few lines: every graded test cell of the
submission (nbgrader metadata ``grade: true``, ``solution: false``) gets back the
source of the same cell (same ``grade_id``) in the solutions notebook, hidden
tests included, so a learner can neither see nor edit them; then the notebook
runs top to bottom, errors allowed, and each test cell earns its points when it
raises nothing. Points come from the solutions notebook's metadata. A failed
task's note is the error the learner would see: a check's expected / got / hint
(hidden tests fail the same way, through ``expect_close``).

    python -m fmlearn.exercises grade SUBMISSION.ipynb [--solution solutions/exNN.py] [--out points.json]
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class TaskScore:
    """One graded test cell: its id, the points earned and possible, and the error that cost them (if any)."""

    grade_id: str
    points: float
    max_points: float
    error: str | None = None


def _read(path: Path):
    import jupytext

    return jupytext.read(path)  # .ipynb or .py:percent alike


def _graded_tests(nb) -> dict:
    cells = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            cells[meta["grade_id"]] = cell
    return cells


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _error_of(cell) -> str | None:
    """The cell's error as the learner saw it: a check's whole message (what, expected, got, hint), each line cut
    at 300 characters; a bare ``assert`` (no message) is named by its line, taken from the traceback."""
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            message = f"{out.get('ename')}: {out.get('evalue')}"
            if not out.get("evalue"):
                lines = re.findall(r"^-+> *\d+ (.*)$", _ANSI.sub("", "\n".join(out.get("traceback", []))), re.M)
                message += f"(no message) at `{lines[-1].strip()}`" if lines else "(no message)"
            return "\n".join(line if len(line) <= 300 else line[:297] + "..." for line in message.splitlines())
    return None


def grade(submission: str | os.PathLike, solution: str | os.PathLike, timeout: int = 600,
          quick: bool = True) -> list[TaskScore]:
    """Execute ``submission`` with the solution's test cells and return the points of every graded test.

    Args:
        submission: the learner's notebook (``.ipynb`` or ``.py``).
        solution: the solutions notebook it was generated from.
        timeout: seconds allowed per cell.
        quick: run in the course's quick mode (``FMLEARN_QUICK=1``), as CI does.

    Raises:
        ValueError: when the submission lacks a graded test cell of the solution (a deleted cell scores
            nothing, but silently dropping it would hide that), or the two have no graded tests.
    """
    from nbclient import NotebookClient

    submission, solution = Path(submission), Path(solution)
    nb, ref = _read(submission), _read(solution)
    tests = _graded_tests(ref)
    if not tests:
        raise ValueError(f"solution {solution} has no graded test cells (nbgrader grade: true, solution: false)")
    seen = _graded_tests(nb)
    missing = sorted(set(tests) - set(seen))
    for grade_id, cell in seen.items():
        if grade_id in tests:
            cell.source = tests[grade_id].source
            cell.metadata["nbgrader"] = dict(tests[grade_id].metadata["nbgrader"])
    env_quick = os.environ.get("FMLEARN_QUICK")
    if quick:
        os.environ["FMLEARN_QUICK"] = "1"
    try:
        NotebookClient(nb, timeout=timeout, allow_errors=True, kernel_name="python3",
                       resources={"metadata": {"path": str(submission.parent.resolve())}}).execute()
    finally:
        if env_quick is None:
            os.environ.pop("FMLEARN_QUICK", None)
        else:
            os.environ["FMLEARN_QUICK"] = env_quick
    scores = []
    for grade_id, ref_cell in tests.items():
        max_points = float(ref_cell.metadata["nbgrader"].get("points", 0))
        if grade_id in missing:
            scores.append(TaskScore(grade_id, 0.0, max_points, "test cell missing from the submission"))
            continue
        error = _error_of(seen[grade_id])
        scores.append(TaskScore(grade_id, 0.0 if error else max_points, max_points, error))
    return scores


def write_report(scores: list[TaskScore], out: str | os.PathLike | None = None) -> str:
    """A readable table of the scores; with ``out``, also the scores as JSON."""
    total, possible = sum(s.points for s in scores), sum(s.max_points for s in scores)
    lines = [f"{'task':<28} {'points':>9}  note"]
    for s in scores:  # a check's message spans lines: indent them under the note column
        note = (s.error or "ok").replace("\n", "\n" + " " * 40)
        lines.append(f"{s.grade_id:<28} {s.points:>4g} / {s.max_points:<3g} {note}")
    lines.append(f"{'total':<28} {total:>4g} / {possible:<3g}")
    if out is not None:
        Path(out).write_text(json.dumps({"tasks": [asdict(s) for s in scores], "total": total,
                                         "max_total": possible}, indent=2))
    return "\n".join(lines)
