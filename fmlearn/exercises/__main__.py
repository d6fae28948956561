"""python -m fmlearn.exercises {build,check,grade}: the instructor's commands.

    build   write exercises/ from solutions/ (student versions, .py and .ipynb)
    check   exit 1 when exercises/ differs from a fresh build
    grade   the same as ``python -m fmlearn.grading`` (grading lives in :mod:`fmlearn.grading`)
"""

from __future__ import annotations

import argparse
import sys

from .build import build


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["grade"]:
        from fmlearn.grading.__main__ import main as grade_main

        return grade_main(argv[1:], prog="python -m fmlearn.exercises grade")
    ap = argparse.ArgumentParser(prog="python -m fmlearn.exercises", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    for name in ("build", "check"):
        p = sub.add_parser(name)
        p.add_argument("--solutions", default="solutions")
        p.add_argument("--exercises", default="exercises")
    sub.add_parser("grade", help="grade submissions: see python -m fmlearn.grading --help")
    args = ap.parse_args(argv)
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
