"""Grades as text, JSON and CSV: one submission's tasks, or one table for a folder of submissions."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict
from pathlib import Path

from .grade import Result, TaskScore


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


def _row(result: Result) -> dict:
    return {"file": result.submission, "exercise": result.exercise, "points": result.points,
            "max_points": result.max_points, "note": result.note, "seconds": round(result.seconds, 1)}


def write_table(results: list[Result], out: str | os.PathLike | None = None) -> str:
    """One line per submission (file, exercise, points, note); with ``out``, the table as CSV (``.csv``: one
    column per task too) or JSON (``.json``: every task's points and error)."""
    width = max([len(r.submission) for r in results] + [4])
    lines = [f"{'file':<{width}}  {'exercise':<30} {'points':>9}  note"]
    for r in results:
        note = r.note if len(r.note) <= 100 else r.note[:97] + "..."
        lines.append(f"{r.submission:<{width}}  {r.exercise or '?':<30} {r.points:>4g} / {r.max_points:<3g} {note}")
    if out is not None:
        out = Path(out)
        if out.suffix == ".csv":
            tasks = list(dict.fromkeys(s.grade_id for r in results for s in r.tasks))
            with open(out, "w", newline="") as f:
                writer = csv.DictWriter(f, [*_row(results[0]), *tasks] if results else ["file"])
                writer.writeheader()
                for r in results:
                    writer.writerow({**_row(r), **{s.grade_id: s.points for s in r.tasks}})
        else:
            out.write_text(json.dumps({"submissions": [{**_row(r), "reason": r.reason, "incidents": r.incidents,
                                                        "tasks": [asdict(s) for s in r.tasks]} for r in results],
                                       "sandbox": next((r.sandbox for r in results if r.sandbox), [])}, indent=2))
    return "\n".join(lines)
