"""What a submission is, read without running anything: its cells, and the exercise they belong to.

An exercise is told by its cells' nbgrader ``grade_id`` values (each solutions notebook has its own), not by the
file name: the file name only breaks a tie, and a file whose name says one exercise while its cells are another's
is refused. So is a file that is not a notebook, or whose cells carry no ``grade_id`` of any exercise.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

MAX_BYTES = 100 << 20


class SubmissionRefused(ValueError):
    """A submission the grader will not run; the message names the file and says why."""


@dataclass(frozen=True)
class Cell:
    """One cell of a notebook: its position, type (``code``, ``markdown``, ``raw``), source, and its nbgrader
    metadata (``{}`` when it has none) with the grade_id it holds."""

    index: int
    kind: str
    source: str
    grade_id: str | None
    nbgrader: dict


@dataclass(frozen=True)
class Exercise:
    """A solutions notebook, as the grader uses it.

    preamble: the sources of its code cells before the first task (the imports), run by the grader itself to
    give the test cells their tools; tests: ``grade_id -> (source, points)`` of every graded test cell (hidden
    tests included), in order; grade_ids: every cell's grade_id; task_names: the names its answer cells
    define (the functions a test calls: they come from the submission)."""

    name: str
    path: Path
    preamble: tuple[str, ...]
    tests: dict
    grade_ids: frozenset
    task_names: frozenset

    @property
    def max_points(self) -> float:
        return sum(points for _, points in self.tests.values())


def _defined(source: str) -> set[str]:
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return names


def load_exercise(path: str | Path) -> Exercise:
    """The exercise of one solutions notebook (``.py`` percent format or ``.ipynb``)."""
    path = Path(path)
    cells = read_cells(path)
    meta = [c for c in cells if c.grade_id]
    if not meta:
        raise ValueError(f"solution {path} has no cells with nbgrader metadata")
    tests = {c.grade_id: (c.source, float(c.nbgrader.get("points", 0))) for c in meta
             if c.nbgrader.get("grade") and not c.nbgrader.get("solution")}
    if not tests:
        raise ValueError(f"solution {path} has no graded test cells (nbgrader grade: true, solution: false)")
    answers = [c for c in meta if c.nbgrader.get("solution") and c.kind == "code"]
    preamble = tuple(c.source for c in cells if c.kind == "code" and c.index < meta[0].index)
    return Exercise(path.stem, path, preamble, tests, frozenset(c.grade_id for c in meta),
                    frozenset().union(*(_defined(c.source) for c in answers)))


def load_exercises(folder: str | Path) -> list[Exercise]:
    folder = Path(folder)
    sources = sorted(folder.glob("ex*.py"))
    if not sources:
        raise FileNotFoundError(f"no solutions notebooks (ex*.py) in {folder.resolve()}")
    return [load_exercise(p) for p in sources]


def _text(source) -> str:
    if isinstance(source, str):
        return source
    if isinstance(source, list) and all(isinstance(s, str) for s in source):
        return "".join(source)
    raise ValueError("a cell source that is neither text nor a list of lines")


def read_cells(path: str | Path) -> list[Cell]:
    """The cells of a notebook file (``.ipynb``, or ``.py`` in jupytext's percent format).

    Raises:
        SubmissionRefused: naming the file, when it is not a readable notebook.
    """
    path = Path(path)
    if not path.is_file():
        raise SubmissionRefused(f"{path.name}: not a file")
    if path.suffix not in (".ipynb", ".py"):
        raise SubmissionRefused(f"{path.name}: not a notebook (expected a .ipynb file, or a .py in percent format)")
    if path.stat().st_size > MAX_BYTES:
        raise SubmissionRefused(f"{path.name}: {path.stat().st_size} bytes, over the {MAX_BYTES >> 20} MB limit")
    try:
        text = path.read_bytes().decode("utf-8")
        if path.suffix == ".py":
            import jupytext

            text = jupytext.writes(jupytext.reads(text, fmt="py:percent"), fmt="ipynb")
        nb = json.loads(text)
        if type(nb) is not dict or type(nb.get("cells")) is not list:
            raise ValueError("no list of cells (an nbformat 4 notebook has one)")
        raw = nb["cells"]
        cells = []
        for i, cell in enumerate(raw):
            if type(cell) is not dict or type(cell.get("cell_type")) is not str:
                raise ValueError(f"cell {i} is not a notebook cell")
            meta = cell.get("metadata", {})
            nbgrader = meta.get("nbgrader", {}) if type(meta) is dict else {}
            nbgrader = nbgrader if type(nbgrader) is dict else {}
            grade_id = nbgrader.get("grade_id")
            cells.append(Cell(i, cell["cell_type"], _text(cell.get("source", "")),
                              grade_id if type(grade_id) is str and grade_id else None, nbgrader))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise SubmissionRefused(f"{path.name}: not a readable notebook ({type(err).__name__}: {err})"[:400]) from None
    return cells


def named_exercise(path: Path, exercises: list[Exercise]) -> Exercise | None:
    """The exercise whose name starts the file name (``ex01_topic_alice.ipynb`` -> ``ex01_topic``), if any."""
    hits = [ex for ex in exercises if path.stem == ex.name or path.stem.startswith((ex.name + "_", ex.name + "-"))]
    return max(hits, key=lambda ex: len(ex.name), default=None)


def identify(path: Path, cells: list[Cell], exercises: list[Exercise], chosen: Exercise | None = None) -> Exercise:
    """The exercise the cells belong to (``chosen`` when given: then it must be theirs).

    Raises:
        SubmissionRefused: when the cells carry no grade_id of any exercise, or those of another exercise than
            the one chosen or the one the file name says, or match two exercises equally.
    """
    ids = {c.grade_id for c in cells if c.grade_id}
    pool = exercises + ([chosen] if chosen is not None and chosen not in exercises else [])
    overlap = {ex.path: len(ids & ex.grade_ids) for ex in pool}
    best = max(overlap.values(), default=0)
    top = [ex for ex in pool if best and overlap[ex.path] == best]
    named = named_exercise(path, exercises)
    lost = "(was the work copied into a new notebook, which drops the cells' nbgrader metadata?)"
    if chosen is not None:
        if not overlap[chosen.path]:
            raise SubmissionRefused(f"{path.name}: none of its cells carries a grade_id of {chosen.name} " +
                                    (f"(they are those of {top[0].name})" if top else lost))
        if chosen not in top:
            raise SubmissionRefused(f"{path.name}: its cells are those of {top[0].name}, not of {chosen.name}")
        return chosen
    if not top:
        said = f"; its name says {named.name}" if named else ""
        raise SubmissionRefused(f"{path.name}: none of its cells carries the grade_id of an exercise{said} {lost}")
    if len(top) > 1:
        if named in top:
            return named
        raise SubmissionRefused(f"{path.name}: its cells match {' and '.join(ex.name for ex in top)} equally")
    if named is not None and named is not top[0]:
        raise SubmissionRefused(f"{path.name}: its name says {named.name}, but its cells are those of {top[0].name}")
    return top[0]
