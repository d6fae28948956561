"""A hostile class graded by one command (issue 20): every notebook of tests/hostile_set.py scores what its honest
part deserves, harms nothing outside its folder, leaks nothing, and no run hangs; with the bubblewrap jail and
with the in-process fallback.

The folder is graded once per route with ``--jobs 2``; each attack then has a test of its own (its points), and
the victims (files beside the folder, three listeners) are checked once per route.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from hostile_set import HIDDEN_TOKENS, MARKER, SECRET, build_folder

ROUTES = ["bubblewrap", "fallback"]
CLASS_SECONDS = 600  # the folder on one route, two at a time (about 3 min on 2 busy cores)


# The grader's command, then the largest resident set of any process of the run (ru_maxrss of the children).
_MEASURED = ("import resource, subprocess, sys; code = subprocess.call([sys.executable, '-m', 'fmlearn.grading', "
             "*sys.argv[1:]]); print('peak-rss-kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
             "file=sys.stderr); sys.exit(code)")


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("FMLEARN_")}


@pytest.fixture(scope="module", params=ROUTES)
def graded(request, tmp_path_factory):
    route = request.param
    if route == "bubblewrap" and shutil.which("bwrap") is None:
        if os.environ.get("FMLEARN_REQUIRE_JAIL") == "1":
            pytest.fail("bubblewrap (bwrap) is not installed, and FMLEARN_REQUIRE_JAIL=1 asks for it")
        pytest.skip("bubblewrap (bwrap) is not installed: apt-get install bubblewrap")
    base = tmp_path_factory.mktemp(f"class-{route}")
    attacks, victims = build_folder(base)
    started = time.monotonic()
    try:
        out = subprocess.run([sys.executable, "-c", _MEASURED, "submitted", "--out", "grades.json",
                              "--jobs", "2", "--jail", route, "--timeout", "10", "--notebook-timeout", "120"],
                             cwd=base, env=_env(), capture_output=True, text=True, timeout=CLASS_SECONDS)
    finally:
        victims.close()
    seconds = time.monotonic() - started
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    peak_mb = float(out.stderr.rsplit("peak-rss-kb ", 1)[1].split()[0]) / 1024
    table = json.loads((base / "grades.json").read_text())
    rows = {os.path.basename(r["file"]).removesuffix(".ipynb"): r for r in table["submissions"]}
    print(f"\n{route}: {len(rows)} hostile submissions graded in {seconds:.1f} s, peak child RSS {peak_mb:.0f} MB")
    return {"route": route, "attacks": attacks, "victims": victims, "rows": rows, "seconds": seconds,
            "peak_mb": peak_mb, "text": (base / "grades.json").read_text() + out.stdout + out.stderr,
            "sandbox": table.get("sandbox", [])}


def test_the_set_is_large_and_every_attack_is_graded(graded):
    assert len(graded["attacks"]) >= 40
    assert sorted(graded["rows"]) == sorted(f"{a.exercise}_{a.name}" for a in graded["attacks"])
    assert graded["seconds"] < CLASS_SECONDS
    route_line = " ".join(graded["sandbox"])
    assert graded["route"] in route_line, route_line


@pytest.mark.parametrize("index", range(47))
def test_each_attack_scores_what_its_honest_part_deserves(graded, index):
    if index >= len(graded["attacks"]):
        pytest.skip("fewer attacks")
    attack = graded["attacks"][index]
    row = graded["rows"][f"{attack.exercise}_{attack.name}"]
    got = {t["grade_id"]: t["points"] for t in row["tasks"]}
    assert got == attack.expected(), (attack.name, row["note"])


def test_nothing_outside_the_folder_changed_and_no_listener_heard_anything(graded):
    victims = graded["victims"]
    assert victims.state() == victims.before
    assert victims.received == []


def test_no_secret_no_hidden_code_and_no_escape_reaches_the_grades(graded):
    text = graded["text"]
    assert MARKER not in text, [line for line in text.splitlines() if MARKER in line][:5]
    assert SECRET not in text
    assert not any(token in text for token in HIDDEN_TOKENS), [t for t in HIDDEN_TOKENS if t in text]
    assert "root:" not in text  # a line of /etc/shadow


def test_feedback_from_the_submission_is_short(graded):
    row = next(r for name, r in graded["rows"].items() if name.endswith("_long_error"))
    error = next(t["error"] for t in row["tasks"] if t["grade_id"] == "euler_sampler_check")
    assert "AAAA" in error and len(error) <= 400, len(error)


def test_the_grader_stays_small(graded):
    """A log symlinked to a 2 GB file took the grader to 2.4 GB; the largest process of the run (the grader or a
    sandbox) stays under 1.5 GB."""
    assert graded["peak_mb"] < 1536, graded["peak_mb"]
