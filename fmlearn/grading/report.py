"""Grades as text, JSON and CSV: one submission's tasks, or one table for a class, in our columns or in those
that Canvas, Moodle and nbgrader import.

Every CSV cell that is text and begins with ``=``, ``+``, ``-``, ``@``, a tab, a carriage return or a line feed
gets a leading ``'`` (OWASP's advice against CSV injection): a file named ``=HYPERLINK(...).ipynb`` stays text
in a spreadsheet. Points are written as numbers (never negative here, so never neutralised).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .grade import Result, TaskScore

FORMATS = ("table", "canvas", "moodle", "nbgrader")
CANVAS_COLUMNS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
MOODLE_ID_COLUMN = "Username"
NBGRADER_COLUMNS = ("assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
                    "raw_score", "late_submission_penalty", "score", "max_score")
_FORMULA = ("=", "+", "-", "@", "\t", "\r", "\n")


@dataclass
class Row:
    """One submission in a gradebook: its grade, who handed it in (``student``: None when its path does not tell),
    the assignment it counts for (nbgrader's assignment folder, else the exercise graded) and nbgrader's
    submission ``timestamp`` (None without one)."""

    result: Result
    student: str | None = None
    assignment: str | None = None
    timestamp: str | None = None

    def to_json(self) -> dict:
        return {"student": self.student, "assignment": self.assignment, "timestamp": self.timestamp,
                **asdict(self.result)}

    @classmethod
    def from_json(cls, data: dict) -> Row:
        tasks = [TaskScore(**t) for t in data["tasks"]]
        result = Result(data["submission"], data["exercise"], tasks, data["max_points"], data["reason"],
                        data["incidents"], data["sandbox"], data["seconds"])
        return cls(result, data["student"], data["assignment"], data["timestamp"])


def cell(value):
    """A value as a CSV cell: a number stays a number (an integral one without ``.0``), text that a spreadsheet
    would read as a formula gets a leading ``'``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value) if float(value).is_integer() else value
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA) else text


def write_report(scores: list[TaskScore], out: str | os.PathLike | None = None, extra: dict | None = None) -> str:
    """A readable table of one submission's scores; with ``out``, also the scores as JSON (``tasks``, ``total``,
    ``max_total``, and the entries of ``extra``)."""
    total, possible = sum(s.points for s in scores), sum(s.max_points for s in scores)
    lines = [f"{'task':<28} {'points':>9}  note"]
    for s in scores:  # a check's message spans lines: indent them under the note column
        note = (s.error or "ok").replace("\n", "\n" + " " * 40)
        lines.append(f"{s.grade_id:<28} {s.points:>4g} / {s.max_points:<3g} {note}")
    lines.append(f"{'total':<28} {total:>4g} / {possible:<3g}")
    if out is not None:
        Path(out).write_text(json.dumps({"tasks": [asdict(s) for s in scores], "total": total,
                                         "max_total": possible, **(extra or {})}, indent=2))
    return "\n".join(lines)


def _row(row: Row) -> dict:
    r = row.result
    return {"file": r.submission, "student": row.student, "exercise": r.exercise, "points": r.points,
            "max_points": r.max_points, "note": r.note, "seconds": round(r.seconds, 1)}


def _by_student(rows: list[Row], fmt: str) -> tuple[list[str], dict[str, dict[str, Row]]]:
    """The assignments (columns) and each student's row per assignment; two submissions of one student for one
    assignment are refused (which one counts is the instructor's call)."""
    table: dict[str, dict[str, Row]] = {}
    for row in rows:
        if row.student is None or row.assignment is None:
            continue
        seen = table.setdefault(row.student, {}).get(row.assignment)
        if seen is not None:
            raise ValueError(f"{fmt} export: student {row.student!r} has two submissions for {row.assignment}: "
                             f"{seen.result.submission} and {row.result.submission}; keep one (then export again "
                             "with `python -m fmlearn.grading merge JOURNAL --format ...`)")
        table[row.student][row.assignment] = row
    return sorted({row.assignment for by in table.values() for row in by.values()}), table


def _lms_rows(rows: list[Row], fmt: str) -> tuple[list[str], list[dict]]:
    if fmt == "nbgrader":
        records = [{"assignment": r.assignment, "duedate": "", "timestamp": r.timestamp, "student_id": r.student,
                    "last_name": "", "first_name": "", "email": "", "raw_score": r.result.points,
                    "late_submission_penalty": 0, "score": r.result.points, "max_score": r.result.max_points}
                   for r in rows if r.student is not None and r.assignment is not None]
        _by_student(rows, fmt)  # the same refusal of duplicates
        return list(NBGRADER_COLUMNS), sorted(records, key=lambda d: (d["assignment"], d["student_id"]))
    assignments, table = _by_student(rows, fmt)
    records = []
    for student in sorted(table):
        ids = ({"Student": student, "ID": "", "SIS User ID": "", "SIS Login ID": student, "Section": ""}
               if fmt == "canvas" else {MOODLE_ID_COLUMN: student})
        records.append({**ids, **{a: table[student][a].result.points for a in assignments if a in table[student]}})
    return [*(CANVAS_COLUMNS if fmt == "canvas" else [MOODLE_ID_COLUMN]), *assignments], records


def unplaced(rows: list[Row]) -> list[Row]:
    """The rows an LMS export leaves out: no student id in the file's path, or no assignment (a file that is no
    exercise's)."""
    return [r for r in rows if r.student is None or r.assignment is None]


def write_table(rows: list[Row | Result], out: str | os.PathLike | None = None, fmt: str = "table") -> str:
    """One line per submission (file, student, exercise, points, note); with ``out``, the table in ``fmt``:

    - ``table``: ``.csv`` a row per submission, a column per task; ``.json`` every task's points and error;
    - ``canvas``: Canvas's gradebook import (Student, ID, SIS User ID, SIS Login ID, Section, then a column per
      assignment; the student id in Student and SIS Login ID), a row per student;
    - ``moodle``: Moodle's grade import from CSV (Username, then a column per grade item), a row per student;
    - ``nbgrader``: the columns of ``nbgrader export``'s grades.csv, a row per student and assignment.

    Raises:
        ValueError: an unknown ``fmt``, an LMS format to a file that is not ``.csv``, or a student with two
            submissions for one assignment.
    """
    rows = [r if isinstance(r, Row) else Row(r) for r in rows]
    if fmt not in FORMATS:
        raise ValueError(f"fmt: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    out = None if out is None else Path(out)
    if fmt != "table" and (out is None or out.suffix != ".csv"):
        raise ValueError(f"out: the {fmt} format is a .csv file, got {str(out)!r}")
    width = max([len(r.result.submission) for r in rows] + [4])
    lines = [f"{'file':<{width}}  {'student':<12} {'exercise':<30} {'points':>9}  note"]
    for row in rows:
        r = row.result
        note = r.note if len(r.note) <= 100 else r.note[:97] + "..."
        lines.append(f"{r.submission:<{width}}  {row.student or '?':<12} {r.exercise or '?':<30} "
                     f"{r.points:>4g} / {r.max_points:<3g} {note}")
    if out is None:
        return "\n".join(lines)
    if fmt == "table" and out.suffix != ".csv":
        text = json.dumps({"submissions": [{**_row(r), "assignment": r.assignment, "timestamp": r.timestamp,
                                            "reason": r.result.reason, "incidents": r.result.incidents,
                                            "tasks": [asdict(s) for s in r.result.tasks]} for r in rows],
                           "sandbox": next((r.result.sandbox for r in rows if r.result.sandbox), [])}, indent=2)
        _replace(out, lambda f: f.write(text))
        return "\n".join(lines)
    if fmt == "table":
        tasks = list(dict.fromkeys(s.grade_id for r in rows for s in r.result.tasks))
        columns = [*_row(Row(Result("", None, [], 0.0))), *tasks]
        records = [{**_row(r), **{s.grade_id: s.points for s in r.result.tasks}} for r in rows]
    else:
        columns, records = _lms_rows(rows, fmt)

    def write(f):
        writer = csv.writer(f)
        writer.writerow([cell(c) for c in columns])
        for record in records:
            writer.writerow([cell(record.get(c)) for c in columns])

    _replace(out, write)
    return "\n".join(lines)


def _replace(out: Path, write) -> None:
    """Write ``out`` whole or not at all (a temporary file beside it, then renamed)."""
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        write(f)
    os.replace(tmp, out)
