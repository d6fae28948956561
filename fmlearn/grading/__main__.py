"""python -m fmlearn.grading SUBMISSION_OR_FOLDER...: grade one submission (its points per task) or a class (one
table, or a gradebook Canvas, Moodle or nbgrader imports), the hidden tests included, each submission's code in a
sandbox. python -m fmlearn.grading merge JOURNAL...: join the slices of a class graded with --shard."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._jail import JailUnavailable, identity
from .grade import default_solutions, grade_submission
from .gradebook import class_entries, grade_class, merge, parse_shard, student_pattern
from .report import FORMATS, unplaced, write_report, write_table
from .sandbox import Limits
from .submissions import load_exercises


def _limits(args) -> dict:
    """The sandbox's limits from the options, checked before anything is graded (a user that does not exist
    would otherwise fail every submission)."""
    limits = dict(timeout=args.timeout, notebook_timeout=args.notebook_timeout, memory_mb=args.memory,
                  quick=not args.full)
    if args.jail is not None:
        limits["jail"] = args.jail
    if args.user is not None:
        limits["user"] = int(args.user) if args.user.isdigit() else args.user
    try:
        identity(Limits(**limits).user)
    except ValueError as err:
        raise SystemExit(f"error: --sandbox-user: {err}") from None
    return limits


def _export(rows, out, fmt) -> str:
    if fmt != "table":
        for row in unplaced(rows):
            what = "no student id in its path" if row.student is None else "no exercise"
            print(f"not in the {fmt} gradebook: {row.result.submission} ({what})", file=sys.stderr)
    try:
        return write_table(rows, out, fmt)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None


def _check(args) -> None:
    if args.format != "table" and (args.out is None or args.out.suffix != ".csv"):
        raise SystemExit(f"--format {args.format}: pass --out FILE.csv")


def _grade(args) -> int:
    _check(args)
    limits = _limits(args)
    try:
        shard_of = parse_shard(args.shard) if args.shard is not None else None
        pattern = student_pattern(args.student_pattern) if args.student_pattern is not None else None
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    folder = args.solutions or default_solutions()
    exercises = load_exercises(folder) if folder.is_dir() else []
    if not exercises and args.solution is None:
        raise SystemExit(f"no solutions notebooks in {folder}; pass --solutions or --solution")
    if len(args.submissions) == 1 and args.submissions[0].is_file() and shard_of is None and args.format == "table":
        try:
            result = grade_submission(args.submissions[0], args.solution, exercises=exercises, **limits)
        except JailUnavailable as err:
            raise SystemExit(f"error: {err}") from None
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
        entries = class_entries(args.submissions, exercises, pattern)
        try:
            rows = grade_class(entries, args.out, shard_of=shard_of or (1, 1), jobs=args.jobs, regrade=args.regrade,
                               solution=args.solution, exercises=exercises, limits=limits)
        except (ValueError, RuntimeError) as err:
            raise SystemExit(f"error: {err}") from None
        except KeyboardInterrupt:
            kept = (f"the rows graded so far are in {args.out}.jsonl, the same command resumes from them"
                    if args.out is not None else "nothing was kept (no --out)")
            print(f"interrupted: {kept}", file=sys.stderr)
            return 130
        print(_export(rows, args.out, args.format))
        results = [row.result for row in rows]
    sandbox = next((r.sandbox for r in results if r.sandbox), [])
    print("sandbox: " + ("; ".join(sandbox) if sandbox else "none started"), file=sys.stderr)
    return 0


def _merge(args) -> int:
    _check(args)
    try:
        rows = merge(args.journals)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    print(_export(rows, args.out, args.format))
    print(f"merged {len(rows)} submissions from {len(args.journals)} journal{'s' * (len(args.journals) > 1)}",
          file=sys.stderr)
    return 0


def _jobs(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return int(text)


def _output(g: argparse.ArgumentParser) -> None:
    g.add_argument("--out", type=Path, help="write the grades here: JSON, or CSV when the name ends in .csv; for a "
                   "class, the journal OUT.jsonl keeps each row as it is graded (a rerun resumes from it)")
    g.add_argument("--format", choices=FORMATS, default="table", help="table: our columns (a row per submission, a "
                   "column per task); canvas: Canvas's gradebook import (Student, ID, SIS User ID, SIS Login ID, "
                   "Section, a column per assignment); moodle: Moodle's CSV grade import (Username, a column per "
                   "grade item); nbgrader: the columns of nbgrader export's grades.csv (default: table)")


def parser(prog: str = "python -m fmlearn.grading") -> argparse.ArgumentParser:
    g = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0].replace("\n", " "),
                                epilog=f"{prog} merge --help: join the journals of a class graded in slices")
    g.add_argument("submissions", type=Path, nargs="+", help="notebooks, or folders of them (searched recursively; "
                   "nbgrader's submitted/<student>/<assignment>/ layout is recognised)")
    g.add_argument("--solution", type=Path, help="grade against this solutions notebook (default: the exercise "
                   "whose grade_ids the submission's cells carry)")
    g.add_argument("--solutions", type=Path, help="the folder of solutions notebooks (default: ./solutions, else "
                   "the course's)")
    _output(g)
    g.add_argument("--jobs", type=_jobs, default=1, help="grade this many submissions at once, each in a worker "
                   "process with its own sandbox (default 1)")
    g.add_argument("--shard", metavar="K/N", help="grade only the K-th of N slices of the sorted list of files "
                   "(1 <= K <= N; for a Slurm job array or a Kubernetes indexed Job); join them with merge")
    g.add_argument("--regrade", action="store_true", help="start the journal afresh: grade every submission again")
    g.add_argument("--student-pattern", metavar="REGEX", help="a regular expression with a group named student, "
                   "searched in each file name (default: the name is <exercise>_<student>.ipynb, e.g. "
                   "ex01_gaussian_mixture_cfm_alice.ipynb -> alice; in submitted/<student>/<assignment>/ the folder "
                   "says)")
    g.add_argument("--full", action="store_true", help="run at the default budget, not in quick mode")
    g.add_argument("--timeout", type=float, default=60.0, help="seconds per cell (default 60)")
    g.add_argument("--notebook-timeout", type=float, default=600.0, help="seconds per submission (default 600)")
    g.add_argument("--memory", type=int, default=4096, help="MB of address space a submission may add to what "
                   "Python and torch map (default 4096)")
    g.add_argument("--jail", choices=("auto", "bubblewrap", "fallback"), help="how the sandbox confines a "
                   "submission: bubblewrap, the in-process fallback (Landlock + seccomp), or auto (bubblewrap when "
                   "installed; the sandbox's default)")
    g.add_argument("--sandbox-user", dest="user", metavar="UID_OR_NAME", help="the user a submission runs as "
                   "(the sandbox's default when not given)")
    return g


def merge_parser(prog: str = "python -m fmlearn.grading") -> argparse.ArgumentParser:
    g = argparse.ArgumentParser(prog=f"{prog} merge", description="Join the rows of a class graded in slices "
                                "(--shard K/N, one journal each) into one gradebook; slices that overlap, are "
                                "missing or incomplete are refused. One journal (a whole class) re-exports it.")
    g.add_argument("journals", type=Path, nargs="+", help="the slices' journals (OUT.jsonl), or their --out files")
    _output(g)
    return g


def main(argv=None, prog: str = "python -m fmlearn.grading") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["merge"]:
        return _merge(merge_parser(prog).parse_args(argv[1:]))
    return _grade(parser(prog).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
