"""python -m fmlearn.exercises {build,check,grade}: the instructor's commands.

    build   write exercises/ from solutions/ (student versions, .py and .ipynb)
    check   exit 1 when exercises/ differs from a fresh build
    grade   grade one submission (its points per task) or a folder of them (one table), the hidden tests
            included, each submission's code in a sandbox
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .build import build
from .grade import Result, default_solutions, grade_submission, submission_files
from .report import write_report, write_table
from .submissions import load_exercises


def _grade(args) -> int:
    limits = dict(timeout=args.timeout, notebook_timeout=args.notebook_timeout, memory_mb=args.memory,
                  quick=not args.full)
    folder = args.solutions or default_solutions()
    exercises = load_exercises(folder) if folder.is_dir() else []
    if not exercises and args.solution is None:
        raise SystemExit(f"no solutions notebooks in {folder}; pass --solutions or --solution")
    if len(args.submissions) == 1 and args.submissions[0].is_file():
        result = grade_submission(args.submissions[0], args.solution, exercises=exercises, **limits)
        if result.reason is not None:
            print(f"error: {result.reason}", file=sys.stderr)
            return 2
        extra = {"submission": result.submission, "exercise": result.exercise, "incidents": result.incidents,
                 "sandbox": result.sandbox}
        print(f"{result.submission}: {result.exercise}")
        print(write_report(result.tasks, args.out, extra))
        for line in result.incidents:
            print(f"incident: {line}")
        results = [result]
    else:
        files = [f for path in args.submissions for f in (submission_files(path) if path.is_dir() else [path])]
        results = []
        for f in files:
            try:
                results.append(grade_submission(f, args.solution, exercises=exercises, **limits))
            except Exception as err:  # noqa: BLE001 - a fault of the grader on one file: the others are graded
                results.append(Result(str(f), None, [], 0.0, f"the grader failed on it ({type(err).__name__}: {err})"))
            print(f"graded {f} ({results[-1].seconds:.1f} s)", file=sys.stderr)
        print(write_table(results, args.out))
    sandbox = next((r.sandbox for r in results if r.sandbox), [])
    print("sandbox: " + ("; ".join(sandbox) if sandbox else "none started"), file=sys.stderr)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fmlearn.exercises", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    for name in ("build", "check"):
        p = sub.add_parser(name)
        p.add_argument("--solutions", default="solutions")
        p.add_argument("--exercises", default="exercises")
    g = sub.add_parser("grade", help="grade submissions (files or folders)")
    g.add_argument("submissions", type=Path, nargs="+", help="notebooks, or folders of them (searched recursively)")
    g.add_argument("--solution", type=Path, help="grade against this solutions notebook (default: the exercise "
                   "whose grade_ids the submission's cells carry)")
    g.add_argument("--solutions", type=Path, help="the folder of solutions notebooks (default: ./solutions, else "
                   "the course's)")
    g.add_argument("--out", type=Path, help="write the grades here: JSON, or CSV when the name ends in .csv")
    g.add_argument("--full", action="store_true", help="run at the default budget, not in quick mode")
    g.add_argument("--timeout", type=float, default=60.0, help="seconds per cell (default 60)")
    g.add_argument("--notebook-timeout", type=float, default=600.0, help="seconds per submission (default 600)")
    g.add_argument("--memory", type=int, default=4096, help="MB of address space a submission may add to what "
                   "Python and torch map (default 4096)")
    args = ap.parse_args(argv)

    if args.command == "grade":
        return _grade(args)
    files = build(args.solutions, args.exercises, check=args.command == "check")
    if args.command == "check":
        if files:
            print("exercises are stale; run `python -m fmlearn.exercises build`:\n  " +
                  "\n  ".join(map(str, files)))
            return 1
        print("exercises are up to date")
    else:
        print(f"wrote {len(files)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
