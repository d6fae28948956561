"""What each sandbox route costs at start-up, interleaved so that a shared machine's load falls on both alike.

    python benchmarks/jail_startup.py [REPEATS]

For each route (the bubblewrap jail, the in-process fallback): the probe the grader runs once per process, the
bare cost of the route (``python -I -S -c pass`` started the way a sandbox starts: through the launcher when
the grader is root, in the jail or not), and ``Sandbox()`` until the child's greeting (it imports torch and
confines itself). The first line, "direct", is the interpreter started plainly. Run it as root and as a normal
user; the grader prints which uid the submissions ran as.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fmlearn
from fmlearn.grading import _jail
from fmlearn.grading.sandbox import Limits, Sandbox, _read_roots

ROUTES = ("bubblewrap", "fallback")


def main(repeats: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="fmlearn-jail-bench-"))
    folder.chmod(0o755)
    submission = folder / "ex01_bench.ipynb"
    submission.write_text("{}")
    package, roots = str(Path(fmlearn.__file__).resolve().parent), _read_roots()
    ident = _jail.identity(Limits().user)
    scratch = _jail.make_scratch(ident)
    python = [sys.executable, "-I", "-S", "-c", "pass"]
    commands, probes = {"direct": python}, {}
    for jail in ROUTES:
        start = time.monotonic()
        route, _ = _jail.route(jail, ident, tuple(roots), package)
        probes[jail] = time.monotonic() - start
        inner = _jail.bwrap_command(python, roots, package, scratch, {}) if route == "bubblewrap" else python
        commands[jail] = _jail.command(inner, ident, [*roots, package])
    bare = {name: [] for name in commands}
    full = {jail: [] for jail in ROUTES}
    for _ in range(repeats):
        for name, argv in commands.items():
            start = time.monotonic()
            subprocess.run(argv, check=True, env={})
            bare[name].append(time.monotonic() - start)
        for jail in ROUTES:
            start = time.monotonic()
            box = Sandbox(submission, Limits(jail=jail), time.monotonic() + 120)
            full[jail].append(time.monotonic() - start)
            box.close()
    _jail.remove_tree(scratch)
    _jail.remove_tree(str(folder))
    who = f"uid {ident[0]}" if ident else "the grader's uid"
    print(f"grader uid {os.getuid()}, submissions as {who}; {repeats} repeats; load {os.getloadavg()[0]:.1f}")
    for name in commands:
        line = f"  {name:10s} python -c pass: median {statistics.median(bare[name]) * 1000:4.0f} ms"
        if name in full:
            line += (f"; probe {probes[name] * 1000:4.0f} ms; Sandbox() to greeting: median "
                     f"{statistics.median(full[name]):.2f} s (min {min(full[name]):.2f} s)")
        print(line)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 6)
