"""python -m fmlearn.grading SUBMISSION_OR_FOLDER...: grade one submission (its points per task) or a folder of
them (one table), the hidden tests included, each submission's code in a sandbox."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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


def parser(prog: str = "python -m fmlearn.grading") -> argparse.ArgumentParser:
    g = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
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
    return g


def main(argv=None, prog: str = "python -m fmlearn.grading") -> int:
    return _grade(parser(prog).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
