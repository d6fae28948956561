"""A class of 30 mixed ex01/ex03 submissions graded sequentially and with ``--jobs 2``: wall time, peak memory.

The class: for each of ex01 and ex03, 5 correct, 3 wrong (one task answered wrongly), 3 blank, 1 with an
infinite loop in its first answer cell, 1 that calls ``os._exit(0)`` and 2 files that are not notebooks (a PDF
named ``.ipynb``) -- 15 per exercise, 30 in all, named ``<exercise>_<student>.ipynb``. Each setting runs
``python -m fmlearn.grading FOLDER --out grades.csv --timeout T --jobs J`` in a fresh scratch folder (no
journal to resume from); peak memory is the largest sum of the resident memory of the grader's process tree
(grader, workers, sandboxes), sampled every 0.2 s with psutil, beside the largest single process
(``/usr/bin/time -v``'s "Maximum resident set size" reports that one). The settings alternate (1, 2, 1, 2, ... with ``--repeats``) so that a change in what else the machine runs
touches both; the load average before each run is printed (other processes compete for the cores).

    python benchmarks/grade_class.py [--jobs 1 2] [--repeats 1] [--timeout 8] [--keep DIR]
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jupytext
import psutil

from fmlearn.exercises import student_source

ROOT = Path(__file__).resolve().parents[1]
WRONG = {  # one task answered wrongly: the line of the solution, and what replaces it
    "ex01_gaussian_mixture_cfm": ("    return (1 - t) * m0 + t * m1, (1 - t) ** 2 * S0 + t ** 2 * S1",
                                  "    return m0 + t * m1, S0 + t * S1"),
    "ex03_sampling_ode_solvers": ("    return x + 0.5 * h * (k1 + k2)", "    return x + h * k1"),
}


def _answered(text: str) -> str:
    text = re.sub(r"(?ms)^ *### BEGIN HIDDEN TESTS\n.*?^ *### END HIDDEN TESTS\n", "", text)
    return re.sub(r"(?m)^ *### (BEGIN|END) SOLUTION\n", "", text)


def _first_answer(text: str, code: str) -> str:
    """``code`` at the top of the first answer cell (the first cell with nbgrader's ``solution``)."""
    header = re.search(r'(?m)^# %%.*"solution": true.*\n', text)
    return text[:header.end()] + code + "\n" + text[header.end():]


def _save(text: str, path: Path) -> None:
    path.write_text(jupytext.writes(jupytext.reads(text, fmt="py:percent"), fmt="ipynb"))


def build(folder: Path) -> list[Path]:
    """Write the class of 30 into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, (right, wrong) in WRONG.items():
        solution = (ROOT / "solutions" / f"{name}.py").read_text()
        answered, blank = _answered(solution), student_source(solution)
        assert right in answered, (name, right)
        kinds = ([("correct", answered)] * 5 + [("wrong", answered.replace(right, wrong))] * 3
                 + [("blank", blank)] * 3 + [("loop", _first_answer(blank, "while True:\n    pass")),
                                              ("exit", _first_answer(blank, "import os\nos._exit(0)"))])
        for i, (kind, text) in enumerate(kinds):
            _save(text, folder / f"{name}_{kind}{i}.ipynb")
        for i in range(2):
            (folder / f"{name}_scan{i}.ipynb").write_bytes(b"%PDF-1.4\n\x00\x01 a scan of handwritten answers\n")
    return sorted(folder.iterdir())


def _tree_rss(proc: psutil.Process) -> tuple[int, int]:
    """The resident memory of ``proc`` and its descendants: their sum, and the largest one."""
    sizes = []
    for p in [proc, *proc.children(recursive=True)]:
        try:
            sizes.append(p.memory_info().rss)
        except psutil.Error:
            pass
    return sum(sizes), max(sizes, default=0)


def run(folder: Path, jobs: int, timeout: float) -> dict:
    work = Path(tempfile.mkdtemp(prefix="grade-class-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FMLEARN_")}
    command = [sys.executable, "-m", "fmlearn.grading", str(folder), "--out", str(work / "grades.csv"),
               "--timeout", str(timeout), "--jobs", str(jobs)]
    load = os.getloadavg()[0]
    started = time.monotonic()
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watched, peak_sum, peak_one = psutil.Process(proc.pid), 0, 0
    while proc.poll() is None:
        total, largest = _tree_rss(watched)
        peak_sum, peak_one = max(peak_sum, total), max(peak_one, largest)
        time.sleep(0.2)
    seconds = time.monotonic() - started
    out, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{out[-2000:]}\n{err[-2000:]}")
    points = [line.split(",") for line in (work / "grades.csv").read_text().splitlines()[1:]]
    shutil.rmtree(work)
    summary = next(line for line in err.splitlines() if line.startswith("class:"))
    return {"jobs": jobs, "seconds": round(seconds, 1), "load_before": round(load, 2),
            "peak_tree_rss_mb": round(peak_sum / 2**20),
            "peak_process_rss_mb": round(peak_one / 2**20), "rows": len(points), "summary": summary,
            "total_points": sum(float(p[3]) for p in points)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=1, help="run the settings in turn this many times")
    ap.add_argument("--timeout", type=float, default=8.0, help="seconds per cell (the loops cost this much)")
    ap.add_argument("--keep", type=Path, help="build the class here and keep it (default: a scratch folder)")
    args = ap.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="class-")) / "submitted"
    files = build(folder)
    print(f"{len(files)} submissions in {folder}; {psutil.cpu_count()} CPUs", flush=True)
    results = {jobs: [] for jobs in args.jobs}
    for _ in range(args.repeats):
        for jobs in args.jobs:
            results[jobs].append(run(folder, jobs, args.timeout))
            print(json.dumps(results[jobs][-1]), flush=True)
    best = {jobs: min(runs, key=lambda r: r["seconds"]) for jobs, runs in results.items()}
    base = best[args.jobs[0]]
    for jobs in args.jobs[1:]:
        r = best[jobs]
        memory = r["peak_tree_rss_mb"] / base["peak_tree_rss_mb"]
        print(f"--jobs {jobs} vs --jobs {args.jobs[0]} (best of {args.repeats}): wall time {r['seconds']} s vs "
              f"{base['seconds']} s (x{base['seconds'] / r['seconds']:.2f} faster), peak tree memory "
              f"{r['peak_tree_rss_mb']} MB vs {base['peak_tree_rss_mb']} MB (x{memory:.2f})")
    if args.keep is None:
        shutil.rmtree(folder.parent)


if __name__ == "__main__":
    main()
