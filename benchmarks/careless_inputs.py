"""Issue 21's acceptance probe, counted: every careless or bad input of tests/careless_cases.py, run once.

Prints how many calls end in a clear error, are handled right, are silently wrong, or crash with a raw
torch/Python error (and how many raise a message that names too little), then lists every case of the
last kinds with what happened and the file and function that owns it.

    python benchmarks/careless_inputs.py [--all] [--ids]

--all also lists the cases that behave; --ids prints the failing ids only (to refresh tests' BROKEN list).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("FMLEARN_PROGRESS", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import careless_cases as cc  # noqa: E402
import torch  # noqa: E402

LABELS = {"error": "clear error", "right": "handled right", "silent": "silently wrong",
          "raw": "raw torch/Python error", "vague": "error that names too little"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--all", action="store_true", help="list every case")
    parser.add_argument("--ids", action="store_true", help="print the failing ids only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    results = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for case in cc.CASES:
            outcome, detail = cc.classify(case)
            results.append((case, outcome, detail))
    seconds = time.perf_counter() - t0
    failing = [r for r in results if r[1] not in r[0].ok]
    if args.ids:
        for case, outcome, _ in failing:
            print(f"{case.id}\t{outcome}\t{case.owner}")
        return 0
    counts = Counter(outcome for _, outcome, _ in results)
    print(f"{len(results)} careless or bad inputs ({seconds:.0f} s), fmlearn at {cc.FMLEARN_DIR}")
    for key in ("error", "right", "silent", "raw", "vague"):
        print(f"  {LABELS[key]:30s} {counts.get(key, 0):4d}")
    print(f"  {'not as expected':30s} {len(failing):4d}   (a clear error where a right answer is due counts here)")
    for key in ("silent", "raw", "vague", "error", "right"):
        rows = [r for r in results if r[1] == key and (args.all or r in failing)]
        if rows:
            print(f"\n{LABELS[key]} ({len(rows)}):")
            for case, _, detail in rows:
                print(f"  {case.id:42s} [{case.owner}]\n      {detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
