"""Grading submitted exercise notebooks: the tests run here, the submission's code runs in a sandbox.

A submission is read as data (:mod:`fmlearn.grading.submissions`) and matched to its exercise by its cells'
nbgrader grade_ids before anything runs. Then, cell by cell, as nbgrader would run it, except that the two
halves run in different processes:

- the submission's own cells (its copies of the test cells removed) run in a sandboxed process of their own
  (:class:`fmlearn.grading.sandbox.Sandbox`);
- each graded test cell, taken from the solutions notebook (hidden tests included), runs here, in the grader,
  with the solution's imports; each name the submission defines (``alpha``, ``euler``...) is a stand-in that
  calls into the sandbox and brings back a plain copy of the result. The comparison happens here, with
  untouched torch and checks: the submission cannot patch them, silence an error, or print its way to points.

A test cell earns its points when it raises nothing. A cell that runs past ``timeout`` seconds, or a process
that dies (``os._exit``, a memory or CPU limit), costs the task at hand; a fresh process then replays the cells
that ran before (the one that killed it left out) and grading goes on, up to ``max_restarts`` times and within
``notebook_timeout`` seconds for the whole submission. A failed task's note is the error the learner would see:
a check's expected / got / hint (hidden tests fail the same way, through ``expect_close``).

    python -m fmlearn.grading SUBMISSION_OR_FOLDER... [--solution solutions/exNN.py] [--out FILE]
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import io
import linecache
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from fmlearn.exercises._forbid import ForbiddenCall
from fmlearn.exercises.forbidden import forbidden_for, task_for

from .sandbox import Limits, Sandbox, SandboxError, SandboxTimeout, StudentFunction, printable
from .submissions import (Cell, Exercise, SubmissionRefused, identify, load_exercise, load_exercises, named_exercise,
                          read_cells)


@dataclass
class TaskScore:
    """One graded test cell: its id, the points earned and possible, and the error that cost them (if any)."""

    grade_id: str
    points: float
    max_points: float
    error: str | None = None


@dataclass
class Result:
    """One submission's grade. reason: why it was refused (then ``tasks`` is empty and it earns 0); incidents:
    what went wrong while it ran (timeouts, a dead process); sandbox: the confinement its process applied."""

    submission: str
    exercise: str | None
    tasks: list[TaskScore]
    max_points: float
    reason: str | None = None
    incidents: list[str] = field(default_factory=list)
    sandbox: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def points(self) -> float:
        return sum(s.points for s in self.tasks)

    @property
    def note(self) -> str:
        """Why points were lost: the refusal, the incidents, then each failed task's first line."""
        failed = [f"{s.grade_id}: {s.error.splitlines()[0]}" for s in self.tasks if s.error]
        return "; ".join([self.reason] if self.reason else self.incidents + failed)


def _clip(message: str) -> str:
    return "\n".join(line if len(line) <= 300 else line[:297] + "..." for line in printable(message, 100_000)
                     .splitlines())


def _note(err: Exception, filename: str, source: str) -> str:
    """The error as the learner would see it: a check's whole message (what, expected, got, hint), each line cut
    at 300 characters; a bare ``assert`` (no message) is named by its line."""
    message = f"{type(err).__name__}: {err}"
    if not str(err):
        tb, line = err.__traceback__, None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == filename:
                line = source.splitlines()[tb.tb_lineno - 1].strip()
            tb = tb.tb_next
        message += f"(no message) at `{line}`" if line else "(no message)"
    return _clip("\n".join([message, *getattr(err, "__notes__", [])]))


class _Run:
    """One submission's grading: its cells in a sandbox, the solution's test cells here."""

    def __init__(self, path: Path, cells: list[Cell], exercise: Exercise, limits: Limits):
        self.path, self.cells, self.exercise, self.limits = path, cells, exercise, limits
        self.deadline = time.monotonic() + limits.notebook_timeout
        self.sandbox: Sandbox | None = None
        self.ran: list[Cell] = []  # the submission's cells that ran (and did not kill their process)
        self.broken: set[int] = set()
        self.restarts = -1
        self.incidents: list[str] = []
        self.confinement: list[str] = []
        self.failure: str | None = None
        self.cell_deadline = self.deadline
        self.ns = {"__name__": "__fmlearn_grading__", "__builtins__": builtins}
        with contextlib.redirect_stdout(io.StringIO()):
            for source in exercise.preamble:  # the solution's imports: trusted code
                exec(compile(source, f"<{exercise.name} preamble>", "exec"), self.ns)  # noqa: S102

    def _why(self, err: SandboxError, deadline: float) -> str:
        if not isinstance(err, SandboxTimeout):
            return str(err)
        if deadline >= self.deadline:
            return f"timed out: the submission's time limit ({self.limits.notebook_timeout:g} s) ran out"
        return f"timed out: ran past the {self.limits.timeout:g} s limit of one cell (a loop that never ends?)"

    def _exec(self, cell: Cell, replay: bool = False) -> bool:
        """Run one of the submission's cells; False when it killed the process (then it is left out)."""
        deadline = min(self.deadline, time.monotonic() + self.limits.timeout)
        try:
            error = self.sandbox.exec(cell.index, cell.source, deadline)
        except SandboxError as err:
            self.sandbox = None
            self.broken.add(cell.index)
            self.incidents.append(f"cell {cell.index}: {self._why(err, deadline)}; it is left out from now on")
            return False
        if error and not replay:  # costs nothing by itself; said, because a test may fail for it
            self.incidents.append(f"cell {cell.index} raised {error}")
        return True

    def _start(self) -> None:
        """Make sure a sandbox runs, with the cells that ran so far replayed (a restart after a crash)."""
        while self.sandbox is None:
            if self.restarts >= self.limits.max_restarts:
                raise SandboxError(f"the submission's process was restarted {self.restarts} times")
            if time.monotonic() >= self.deadline:
                raise SandboxError(f"the submission's time limit ({self.limits.notebook_timeout:g} s) ran out")
            self.restarts += 1
            try:
                self.sandbox = Sandbox(self.path, self.limits, self.deadline)
            except SandboxError as err:
                self.incidents.append(f"could not start: {err}")
                continue
            self.confinement = self.sandbox.confinement
            for cell in [c for c in self.ran if c.index not in self.broken]:
                if not self._exec(cell, replay=True):
                    break

    def call(self, name: str, args: tuple, kwargs: dict):
        """Called by a :class:`StudentFunction` during a test cell, with the fmlearn functions that answer the
        test's task forbidden; an attempt at one is remembered (it fails the test even if the test catches it)."""
        if self.sandbox is None:
            raise SandboxError(self.failure or "the submission's process is not running")
        try:
            return self.sandbox.call(name, args, kwargs, self.cell_deadline, self.forbid, self.what)
        except SandboxError as err:
            self.sandbox, self.failure = None, self._why(err, self.cell_deadline)
            raise SandboxError(self.failure) from None
        except ForbiddenCall as err:
            self.forbidden = self.forbidden or err
            raise

    def _bind(self, source: str) -> None:
        """Give the test cell the submission's names it uses: a stand-in for a function, a copy of a value."""
        used = sorted({n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name)} & self.exercise.task_names)
        try:
            info = self.sandbox.request("names", self.cell_deadline, names=used).get("names")
        except SandboxError as err:
            self.sandbox, self.failure = None, self._why(err, self.cell_deadline)
            raise SandboxError(self.failure) from None
        for name in used:
            entry = info.get(name) if type(info) is dict else None
            kind = entry.get("kind") if type(entry) is dict else None
            if kind == "callable":
                self.ns[name] = StudentFunction(self, name)
            elif kind == "value":
                self.ns[name] = entry.get("value")
            elif kind == "unsupported":
                kind = printable(str(entry.get("type")), 100)
                raise TypeError(f"the submission's {name} is {kind}, which the grader cannot take back")
            else:
                self.ns.pop(name, None)  # not defined: the test fails with a NameError, as in the notebook

    def _test(self, grade_id: str) -> TaskScore:
        source, points = self.exercise.tests[grade_id]
        try:
            self._start()
        except SandboxError as err:
            return TaskScore(grade_id, 0.0, points, f"not run: {err}")
        filename = f"<test {grade_id}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        self.cell_deadline = min(self.deadline, time.monotonic() + self.limits.timeout)
        self.failure, error = None, None
        self.forbid, self.what = forbidden_for(self.exercise.name, grade_id), task_for(self.exercise.name, grade_id)
        self.forbidden: ForbiddenCall | None = None
        try:
            self._bind(source)
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                exec(compile(source, filename, "exec"), self.ns)  # noqa: S102 - the solution's test cell
        except SandboxError as err:
            error = str(err)
        except Exception as err:  # noqa: BLE001 - any failure of the test cell costs its points
            error = _note(err, filename, source)
        if self.failure is not None:  # a sandbox failure the test caught still fails it
            error = self.failure
            self.incidents.append(f"{grade_id}: {self.failure}")
        elif self.forbidden is not None:  # so does a forbidden call
            error = f"ForbiddenCall: {self.forbidden}"
            name = self.forbidden.name.removeprefix("fmlearn.")
            self.incidents.append(f"{grade_id}: called fmlearn's {name}, which the task asks you to write yourself")
        return TaskScore(grade_id, 0.0 if error else points, points, error)

    def run(self) -> list[TaskScore]:
        tests, scores, pending = self.exercise.tests, {}, []
        for cell in self.cells:
            if cell.grade_id in tests:
                if cell.grade_id not in scores:  # a duplicated test cell runs once
                    for own in pending:
                        with contextlib.suppress(SandboxError):
                            self._start()
                            if self._exec(own):
                                self.ran.append(own)
                    pending = []
                    scores[cell.grade_id] = self._test(cell.grade_id)
            elif cell.kind == "code":
                pending.append(cell)
        return [scores.get(g) or TaskScore(g, 0.0, p, "test cell missing from the submission")
                for g, (_, p) in tests.items()]

    def close(self) -> None:
        if self.sandbox is not None:
            self.sandbox.close()
            self.sandbox = None


def default_solutions() -> Path:
    """``solutions/`` in the current folder, else the course's own (next to the fmlearn package)."""
    import fmlearn

    here = Path("solutions")
    return here if here.is_dir() else Path(fmlearn.__file__).resolve().parents[1] / "solutions"


def grade_submission(submission: str | os.PathLike, solution: str | os.PathLike | None = None, *,
                     solutions: str | os.PathLike | None = None, exercises: list[Exercise] | None = None,
                     **limits) -> Result:
    """Grade one file; never raises for a bad submission (a refused one gets 0 and the reason).

    Args:
        submission: the learner's notebook (``.ipynb``, or ``.py`` in percent format).
        solution: the solutions notebook to grade against (default: the one whose grade_ids the cells carry).
        solutions: the folder of solutions notebooks (default: :func:`default_solutions`).
        exercises: the exercises already loaded from that folder (a folder run loads them once).
        **limits: fields of :class:`fmlearn.grading.sandbox.Limits` (timeout, notebook_timeout, memory_mb,
            file_mb, quick, start_timeout, max_restarts).
    """
    started, path = time.monotonic(), Path(submission)
    if exercises is None:
        folder = Path(solutions) if solutions is not None else default_solutions()
        exercises = load_exercises(folder) if folder.is_dir() else []
    chosen = load_exercise(solution) if solution is not None else None
    try:
        cells = read_cells(path)
        exercise = identify(path, cells, exercises, chosen)
    except SubmissionRefused as err:
        guess = chosen or named_exercise(path, exercises)
        return Result(str(path), guess.name if guess else None, [], guess.max_points if guess else 0.0, str(err),
                      seconds=time.monotonic() - started)
    run = _Run(path, cells, exercise, Limits(**limits))
    quick = os.environ.get("FMLEARN_QUICK")
    if run.limits.quick:  # the test cells run here: the same mode as the submission
        os.environ["FMLEARN_QUICK"] = "1"
    try:
        tasks = run.run()
    finally:
        run.close()
        if quick is None:
            os.environ.pop("FMLEARN_QUICK", None)
        else:
            os.environ["FMLEARN_QUICK"] = quick
    return Result(str(path), exercise.name, tasks, exercise.max_points, None, run.incidents, run.confinement,
                  time.monotonic() - started)


def grade(submission: str | os.PathLike, solution: str | os.PathLike | None = None, **options) -> list[TaskScore]:
    """The points of every graded test of one submission (see :func:`grade_submission` for the options).

    Raises:
        SubmissionRefused: a ValueError naming the file, when it is not a notebook or not the exercise's (the
            check runs before anything is executed).
    """
    result = grade_submission(submission, solution, **options)
    if result.reason is not None:
        raise SubmissionRefused(result.reason)
    return result.tasks


def submission_files(folder: str | os.PathLike) -> list[Path]:
    """Every entry under ``folder`` that is not a folder (sub-folders searched, hidden files and checkpoints left
    out), sorted. Symbolic links are listed, not followed: the class's grader refuses them (one could point at the
    solutions), and so are FIFOs and devices (reading one could block)."""
    folder, found = Path(folder), []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        here = Path(root)
        found += [here / name for name in files if not name.startswith(".")]
        found += [here / d for d in dirs if (here / d).is_symlink()]
    return sorted(found)
