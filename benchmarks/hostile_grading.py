"""Grade the hostile class of tests/hostile_set.py one submission at a time and say, per attack, what it got.

    python benchmarks/hostile_grading.py [--jail auto|bubblewrap|fallback] [--only NAME...] [--skip NAME...] [--timeout S]

Each submission is graded by its own ``python -m fmlearn.grading`` command under a wall-clock limit (a hang shows
as "HANG"); after each one the victims beside the folder are compared with their state before, the listeners
are read, and the grades are searched for the escape marker, the secret and the hidden tests' code. One line per
attack: its item of issue 20, its points against what its honest part deserves, and what it did that it should
not have. The last lines count the attacks that were held (right points, no harm, no leak, no hang).

Run it as root and as a normal user, with each route, to fill the threat-model table in book/grading_sandbox.md. Pass
``--no-jail-flag`` to grade with a grader that has no ``--jail`` option (an older checkout).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hostile_set import HIDDEN_TOKENS, MARKER, SECRET, build_folder  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jail", default="auto")
    ap.add_argument("--no-jail-flag", action="store_true", help="the grader has no --jail option")
    ap.add_argument("--only", nargs="*", help="attack names to run (default: all)")
    ap.add_argument("--skip", nargs="*", default=[], help="attack names to leave out (e.g. log_link_zero on a grader "
                    "that reads /dev/zero into memory)")
    ap.add_argument("--timeout", type=float, default=150.0, help="seconds before a grading counts as a hang")
    args = ap.parse_args()

    base = Path(tempfile.mkdtemp(prefix="hostile-"))
    os.chmod(base, 0o755)
    attacks, victims = build_folder(base)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FMLEARN_")}
    held, rows = 0, []
    try:
        for attack in attacks:
            if (args.only and attack.name not in args.only) or attack.name in args.skip:
                continue
            path = base / "submitted" / f"{attack.exercise}_{attack.name}.ipynb"
            out_file = base / f"{attack.name}.json"
            cmd = [sys.executable, "-m", "fmlearn.grading", str(path), "--out", str(out_file), "--timeout", "10",
                   "--notebook-timeout", "120"] + ([] if args.no_jail_flag else ["--jail", args.jail])
            heard_before = len(victims.received)
            started = time.monotonic()
            try:
                run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
                text, hang = run.stdout + run.stderr, False
            except subprocess.TimeoutExpired as err:
                text, hang = str(err.stdout or "") + str(err.stderr or ""), True
            seconds = time.monotonic() - started
            text += out_file.read_text() if out_file.exists() else ""
            got = {}
            if out_file.exists():
                got = {t["grade_id"]: t["points"] for t in json.loads(out_file.read_text())["tasks"]}
            harm = []
            if hang:
                harm.append("HANG")
            if victims.state() != victims.before:
                harm.append("changed a file outside")
                victims.before = victims.state()
            if len(victims.received) > heard_before:
                harm.append("reached a listener")
            if MARKER in text:
                harm.append("escaped: " + next(line for line in text.splitlines() if MARKER in line)[-80:])
            if SECRET in text:
                harm.append("leaked the secret")
            if any(token in text for token in HIDDEN_TOKENS):
                harm.append("leaked hidden test code")
            right = got == attack.expected()
            ok = right and not harm
            held += ok
            rows.append((attack.item, attack.name, ok))
            sandbox = next((line for line in text.splitlines() if line.startswith("sandbox:")), "")
            print(f"{attack.item:>5} {attack.name:<24} {'held' if ok else 'BROKEN':<7} "
                  f"{sum(got.values()):>4g}/{sum(attack.expected().values()):<3g} {seconds:6.1f} s  "
                  f"{'; '.join(harm) if harm else ('' if right else 'points: ' + str(got))}", flush=True)
    finally:
        victims.close()
    print(f"user {os.geteuid()}, route {args.jail}: {held} of {len(rows)} attacks held")
    print(sandbox)
    return 0


if __name__ == "__main__":
    sys.exit(main())
