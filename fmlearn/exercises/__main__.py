"""python -m fmlearn.exercises {build,check,grade}: the instructor's commands.

    build   write exercises/ from solutions/ (student versions, .py and .ipynb)
    check   exit 1 when exercises/ differs from a fresh build
    grade   run a submission with the hidden tests and print (and save) its points
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from .build import build
from .grade import grade, write_report


def _solution_for(submission: Path, solutions: Path) -> Path:
    m = re.match(r"(ex\d+[A-Za-z0-9_]*)", submission.stem)
    if m is None:
        raise SystemExit(f"cannot tell the exercise from the file name {submission.name!r}; pass --solution")
    path = solutions / f"{m[1]}.py"
    if not path.exists():
        raise SystemExit(f"no solutions notebook {path}; pass --solution")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fmlearn.exercises", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    for name in ("build", "check"):
        p = sub.add_parser(name)
        p.add_argument("--solutions", default="solutions")
        p.add_argument("--exercises", default="exercises")
    g = sub.add_parser("grade")
    g.add_argument("submission", type=Path)
    g.add_argument("--solution", type=Path, help="default: solutions/<exNN_topic>.py after the file name")
    g.add_argument("--solutions", type=Path, default=Path("solutions"))
    g.add_argument("--out", type=Path, help="write the points as JSON here")
    g.add_argument("--full", action="store_true", help="run at the default budget, not in quick mode")
    args = ap.parse_args(argv)

    if args.command in ("build", "check"):
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
    solution = args.solution or _solution_for(args.submission, args.solutions)
    scores = grade(args.submission, solution, quick=not args.full)
    print(write_report(scores, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
