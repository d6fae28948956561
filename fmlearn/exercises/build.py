"""Student versions of the exercise notebooks, generated from the solutions.

The solutions notebook ``solutions/exNN_topic.py`` (py:percent, paired with its
``.ipynb``) is the single source. In it, with the markers nbgrader uses,

    ### BEGIN SOLUTION ... ### END SOLUTION          (code the learner writes)
    ### BEGIN HIDDEN TESTS ... ### END HIDDEN TESTS  (instructor-only tests)

:func:`student_source` replaces each solution region by ``# YOUR CODE HERE`` and
``raise NotImplementedError()`` at the marker's indentation (in a markdown cell, by
``YOUR ANSWER HERE``) and deletes each hidden-test region, markers included.
Everything else, the nbgrader cell metadata included, is kept, so the exercise
stays a valid nbgrader release. :func:`build` writes ``exercises/exNN_topic.py``
and its ``.ipynb`` for every solution; ``python -m fmlearn.exercises build``
runs it, ``... check`` only reports drift.
"""

from __future__ import annotations

import re
from pathlib import Path

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"

_MARKER = re.compile(r"^(?P<indent>\s*)(?P<md># )?(?P<marker>### (BEGIN|END) (SOLUTION|HIDDEN TESTS))\s*$")


class ExerciseSourceError(ValueError):
    """A solutions file whose markers do not pair up."""


def student_source(text: str, name: str = "<solution>") -> str:
    """The student version of one solutions file's text (py:percent).

    Raises:
        ExerciseSourceError: naming the file and line of an unpaired or nested marker.
    """
    out: list[str] = []
    open_marker: tuple[str, int] | None = None
    for lineno, line in enumerate(text.splitlines(keepends=True), start=1):
        m = _MARKER.match(line.rstrip("\n"))
        if m is None:
            if open_marker is None:
                out.append(line)
            continue
        marker, indent, markdown = m["marker"], m["indent"], m["md"] is not None
        if marker in (BEGIN_SOLUTION, BEGIN_HIDDEN):
            if open_marker is not None:
                raise ExerciseSourceError(f"{name}:{lineno}: {marker!r} inside the region opened by "
                                          f"{open_marker[0]!r} at line {open_marker[1]}")
            open_marker = (marker, lineno)
            if marker == BEGIN_SOLUTION:
                if markdown:
                    out.append(f"{indent}# YOUR ANSWER HERE\n")
                else:
                    out.append(f"{indent}# YOUR CODE HERE\n{indent}raise NotImplementedError()\n")
            continue
        want = BEGIN_SOLUTION if marker == END_SOLUTION else BEGIN_HIDDEN
        if open_marker is None or open_marker[0] != want:
            raise ExerciseSourceError(f"{name}:{lineno}: {marker!r} without a matching {want!r}")
        open_marker = None
    if open_marker is not None:
        raise ExerciseSourceError(f"{name}:{open_marker[1]}: {open_marker[0]!r} is never closed")
    return "".join(out)


def _ipynb_text(py_text: str) -> str:
    import jupytext

    notebook = jupytext.reads(py_text, fmt="py:percent")
    for i, cell in enumerate(notebook.cells):  # deterministic ids, so a rebuild is byte-identical
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        cell.id = grade_id or f"cell-{i:03d}"
    return jupytext.writes(notebook, fmt="ipynb")


def build(solutions: str | Path = "solutions", exercises: str | Path = "exercises", check: bool = False) -> list[Path]:
    """Write the student version (``.py`` and ``.ipynb``) of every ``solutions/ex*.py``.

    Args:
        solutions, exercises: the two folders.
        check: write nothing; return the exercise files that are missing or differ from a fresh build.

    Returns:
        the files written (or, with ``check``, the stale ones: empty when all are up to date).
    """
    solutions, exercises = Path(solutions), Path(exercises)
    sources = sorted(solutions.glob("ex*.py"))
    if not sources:
        raise FileNotFoundError(f"no solutions notebooks (ex*.py) in {solutions.resolve()}")
    touched: list[Path] = []
    for src in sources:
        py = student_source(src.read_text(), name=str(src))
        for dest, text in ((exercises / src.name, py), (exercises / src.with_suffix(".ipynb").name, _ipynb_text(py))):
            if check:
                if not dest.exists() or dest.read_text() != text:
                    touched.append(dest)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_text(text)
                touched.append(dest)
    return touched
