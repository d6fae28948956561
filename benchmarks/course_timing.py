"""The whole course, end to end: every chapter executed as a learner's JupyterLab would run it, one after the
other, with each chapter's wall time and the first line its header prints (the device it ran on), then the total.

    python benchmarks/course_timing.py [--quick] [--device cuda] [--chapters 01 04] [--timeout 900] [--json FILE]

Each chapter runs in a fresh kernel (``jupyter nbconvert --execute``, the command of book/measured.md's rows),
from the chapters/ folder, with ``FMLEARN_PROGRESS=0``; ``--quick`` sets ``FMLEARN_QUICK=1``; ``--device`` sets
``FMLEARN_DEVICE`` (default: the course's own choice, CUDA when torch sees a GPU). The executed notebooks go to a
temporary folder and are removed; the chapters' own assertions are the check: a chapter that fails is reported
with the last lines of its error and the script exits 1 after the others have run.

On a lent GPU this is the "course on one GPU" figure (issue 25, item 3: every chapter at its default budget, the
goal under 10 minutes on one H100/H200): ``python benchmarks/course_timing.py --device cuda``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"


def chapters(selected: list[str] | None) -> list[Path]:
    """The chapters' notebooks in course order; ``selected``: their numbers ("01", "4") or names."""
    every = sorted(CHAPTERS.glob("[0-9][0-9]_*.ipynb"))
    if not selected:
        return every
    picked = []
    for key in selected:
        match = [p for p in every if p.stem == key or p.stem.split("_")[0] == key.zfill(2)]
        if not match:
            names = ", ".join(p.stem for p in every)
            raise SystemExit(f"--chapters: no chapter {key!r}; expected a number (01..{len(every):02d}) or one of "
                             f"{names}")
        picked += match
    return picked


def header(notebook: Path) -> str:
    """The first line the executed chapter printed that starts with 'fmlearn:' (its mode and device)."""
    cells = json.loads(notebook.read_text())["cells"]
    for cell in cells:
        for out in cell.get("outputs", []):
            for line in "".join(out.get("text", "")).splitlines():
                if line.startswith("fmlearn:"):
                    return line
    return "(no header printed)"


def why(stderr: str) -> list[str]:
    """The lines of nbconvert's report that say what failed: from the last exception line (nbclient's
    ``CellExecutionError`` / ``CellTimeoutError``, or the chapter's own error at the end of its traceback) on."""
    lines = stderr.strip().splitlines()
    marks = [i for i, line in enumerate(lines) if re.match(r"^[\w.]*(Error|Exception)\b.*:", line)]
    return lines[marks[-1]:][:8] if marks else lines[-6:]


def run(notebook: Path, env: dict, timeout: float, folder: Path) -> dict:
    out = folder / notebook.name
    cmd = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", notebook.name,
           f"--ExecutePreprocessor.timeout={int(timeout)}", "--output", str(out)]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=CHAPTERS, env=env, capture_output=True, text=True, timeout=timeout + 60)
        ok, tail = proc.returncode == 0, why(proc.stderr)
    except subprocess.TimeoutExpired:
        ok, tail = False, [f"stopped after {timeout + 60:.0f} s"]
    seconds = time.monotonic() - start
    return {"chapter": notebook.stem, "seconds": round(seconds, 1), "ok": ok,
            "header": header(out) if ok and out.exists() else "", "error": "" if ok else "\n".join(tail)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="quick mode (FMLEARN_QUICK=1), as the tests run")
    parser.add_argument("--device", help="FMLEARN_DEVICE for every chapter, e.g. cuda or cpu (default: the course's "
                                         "choice)")
    parser.add_argument("--chapters", nargs="+", metavar="NN", help="only these chapters (numbers or names)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per cell (default 900)")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error(f"--timeout: expected a positive number of seconds, got {args.timeout:g}")
    env = {k: v for k, v in os.environ.items() if k not in ("FMLEARN_QUICK", "FMLEARN_DEVICE")}
    env.update(FMLEARN_PROGRESS="0", OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    if args.quick:
        env["FMLEARN_QUICK"] = "1"
    if args.device:
        env["FMLEARN_DEVICE"] = args.device
    rows = []
    with tempfile.TemporaryDirectory(prefix="fmlearn-course-") as tmp:
        for notebook in chapters(args.chapters):
            row = run(notebook, env, args.timeout, Path(tmp))
            rows.append(row)
            status = "ok" if row["ok"] else "FAILED"
            print(f"{row['chapter']:<36} {row['seconds']:7.1f} s  {status}  {row['header']}", flush=True)
            if not row["ok"]:
                print("    " + row["error"].replace("\n", "\n    "), flush=True)
    total = sum(r["seconds"] for r in rows)
    mode = "quick mode" if args.quick else "default budget"
    print(f"{len(rows)} chapters ({mode}) in {total:.0f} s ({total / 60:.1f} min); "
          f"{sum(not r['ok'] for r in rows)} failed")
    if args.json:
        args.json.write_text(json.dumps({"mode": mode, "device": args.device, "total_seconds": round(total, 1),
                                         "chapters": rows}, indent=1))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
