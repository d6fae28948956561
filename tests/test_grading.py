"""Grading an instructor can trust (issue 10): the README's commands as written, a folder of ordinary and hostile
submissions graded into one table, a timeout or a crash that costs one task, a sandbox that keeps a submission
in its folder, and the exercise told by the notebook's cells before anything runs.

Each hostile submission is one the issue reported: on the previous grader (a kernel running the notebook with
the tests pasted in) the blank one with silenced tracebacks scored 10/10 and the monkeypatching one 7/7. The
folder of nine is graded once, by one command (timed), and each of its rows is checked by a test of its own.
"""

import csv
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import pytest

from fmlearn.exercises import student_source
from fmlearn.grading import SubmissionRefused, grade, grade_submission
from fmlearn.exercises.__main__ import main as cli
from fmlearn.grading.sandbox import Limits, Sandbox
from fmlearn.grading.submissions import identify, load_exercises, read_cells

from test_exercises import _EULER_IN_PLACE, _fill

ROOT = Path(__file__).resolve().parents[1]
EX01, EX03 = "ex01_gaussian_mixture_cfm", "ex03_sampling_ode_solvers"
FOLDER_SECONDS = 150  # the bound the folder of nine must be graded in (it takes about 40 s on 2 busy cores)


# --- submissions, as learners hand them in -------------------------------------------------------------------

def _solution_text(name: str) -> str:
    return (ROOT / "solutions" / f"{name}.py").read_text()


def _answered(name: str) -> str:
    """The notebook of a learner who solved every task: the solution's answers, no hidden tests."""
    text = re.sub(r"(?ms)^ *### BEGIN HIDDEN TESTS\n.*?^ *### END HIDDEN TESTS\n", "", _solution_text(name))
    return re.sub(r"(?m)^ *### (BEGIN|END) SOLUTION\n", "", text)


def _blank(name: str) -> str:
    return student_source(_solution_text(name))


def _prepend(text: str, grade_id: str, code: str) -> str:
    """``code`` at the top of the cell ``grade_id``."""
    header = re.search(rf'(?m)^# %%.*"grade_id": "{grade_id}".*\n', text)
    return text[:header.end()] + code.rstrip("\n") + "\n" + text[header.end():]


def _cell_after(text: str, grade_id: str, code: str) -> str:
    """A new code cell holding ``code`` right after the cell ``grade_id``."""
    end = text.find("\n# %%", text.index(f'"grade_id": "{grade_id}"'))
    return text[:end] + f"\n\n# %%\n{code.rstrip()}\n" + text[end:]


def _save(text: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(jupytext.writes(jupytext.reads(text, fmt="py:percent"), fmt="ipynb"))
    return path


def _wrong() -> str:
    """ex01 with tasks 1-3 right, the CFM loss averaged over dimensions too and an in-place Euler update: 6/10."""
    text = _blank(EX01)
    text = _fill(text, "schedule", ["return t", "return torch.sqrt(1 - t)", "return torch.ones_like(t)",
                                    "return -0.5 / torch.sqrt(1 - t)"])
    text = _fill(text, "conditional_path", ["t = t[:, None]\nreturn t * x1 + (1 - t) * x0", "return x1 - x0"])
    text = _fill(text, "gaussian_marginal", ["return (1 - t) * m0 + t * m1, (1 - t) ** 2 * S0 + t ** 2 * S1"])
    text = _fill(text, "cfm_loss", ["return (model(interpolate(x0, x1, t), t) - velocity(x0, x1, t)).pow(2).mean()"])
    return _fill(text, "euler_sampler", [_EULER_IN_PLACE])


SILENCE = "get_ipython().showtraceback = lambda *a, **k: None"
PATCHES = '''import torch
torch.allclose = lambda *a, **k: True  # every expect_close of the hidden tests passes
check_step = check_observed_order = lambda *a, **k: True  # the names the test cells call


class Zero(float):  # a number whose difference with anything is 0
    def __sub__(self, other):
        return Zero(0.0)

    __rsub__ = __sub__

    def __abs__(self):
        return Zero(0.0)
'''


def _monkeypatching() -> str:
    """ex03, every answer wrong, torch and the checks patched, a float that equals everything (7/7 before)."""
    text = _prepend(_blank(EX03), "heun_step", PATCHES)
    text = _fill(text, "heun_step", ["return x + h * u(x, t)"])  # an Euler step
    text = _fill(text, "rk4_step", ["return x"])
    return _fill(text, "observed_order", ["return Zero(1.0)"])


def _deleting(victim: Path) -> str:
    """ex01, blank, with cells that try to delete a file outside the submission's folder in three ways."""
    text = _prepend(_blank(EX01), "schedule", f"import os\nos.remove({str(victim)!r})")
    return _cell_after(text, "schedule", f"import os\nfor path in ('../{victim.name}', "
                       f"f'/proc/{{os.getppid()}}/cwd/{victim.name}'):\n    if os.path.exists(path):\n"
                       "        os.remove(path)\nos.remove(f'/proc/{os.getppid()}/cwd/" + victim.name + "')")


def _clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("FMLEARN_")}


# --- one folder, nine submissions, one command -----------------------------------------------------------------

@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Grade a folder of nine submissions with one command; return its rows by student, its time and the victim."""
    base = tmp_path_factory.mktemp("course")
    victim = base / "precious.txt"
    victim.write_text("the instructor's file")
    sub = base / "submitted"
    _save(_answered(EX01), sub / f"{EX01}_alice.ipynb")
    _save(_wrong(), sub / f"{EX01}_bob.ipynb")
    _save(_prepend(_blank(EX01), "schedule", SILENCE), sub / f"{EX01}_carol.ipynb")
    _save(_prepend(_blank(EX01), "schedule", "while True:\n    pass"), sub / f"{EX01}_dave.ipynb")
    _save(_prepend(_blank(EX01), "schedule", "import os\nos._exit(0)"), sub / f"{EX01}_erin.ipynb")
    (sub / f"{EX01}_frank.ipynb").write_bytes(b"%PDF-1.4\n\x00\x01 a scan of handwritten answers\n")
    _save(_blank(EX03), sub / f"{EX01}_grace.ipynb")  # ex03's notebook under ex01's name
    _save(_deleting(victim), sub / f"{EX01}_heidi.ipynb")
    _save(_monkeypatching(), sub / f"{EX03}_mallory.ipynb")
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "fmlearn.exercises", "grade", "submitted", "--out", "grades.json",
                          "--timeout", "8", "--notebook-timeout", "90"], cwd=base, env=_clean_env(),
                         capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - started
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    table = json.loads((base / "grades.json").read_text())
    rows = {Path(r["file"]).stem.rsplit("_", 1)[1]: r for r in table["submissions"]}
    print(f"\n{len(rows)} submissions graded in {seconds:.1f} s\n{out.stdout}")
    return {"rows": rows, "seconds": seconds, "victim": victim, "sandbox": table["sandbox"], "stdout": out.stdout}


def test_a_folder_is_graded_into_one_table_in_bounded_time(folder):
    assert sorted(folder["rows"]) == ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "mallory"]
    assert folder["seconds"] < FOLDER_SECONDS, folder["seconds"]
    for name, row in folder["rows"].items():
        assert row["points"] == 0 or name in ("alice", "bob"), (name, row)
        assert row["note"] or name == "alice", name  # every submission that lost points says why


def test_a_correct_submission_gets_full_points(folder):
    alice = folder["rows"]["alice"]
    assert (alice["points"], alice["max_points"], alice["note"]) == (10, 10, "")


def test_a_wrong_submission_gets_the_points_of_its_right_tasks(folder):
    bob = folder["rows"]["bob"]
    assert (bob["points"], bob["max_points"]) == (6, 10)
    errors = {t["grade_id"]: t["error"] for t in bob["tasks"] if t["error"]}
    assert "hint: you averaged over the data dimensions too" in errors.pop("cfm_loss_check")
    assert "changed its input in place" in errors.pop("euler_sampler_check") and not errors


def test_silenced_tracebacks_earn_nothing(folder):
    """`get_ipython().showtraceback = ...` in an answer cell: the tests do not run in that kernel."""
    carol = folder["rows"]["carol"]
    assert carol["points"] == 0 and "NotImplementedError: alpha is not written yet" in carol["note"]


def test_monkeypatching_earns_nothing(folder):
    """torch.allclose patched, the checks replaced, a float subclass equal to everything: none of it reaches the
    grader, whose tests see the wrong answers."""
    mallory = folder["rows"]["mallory"]
    assert (mallory["points"], mallory["max_points"]) == (0, 7)
    errors = {t["grade_id"]: t["error"] for t in mallory["tasks"]}
    assert "hint: that is an Euler step" in errors["heun_step_check"]
    assert "observed order for errors ~ n^-1 is wrong" in errors["observed_order_check"]  # Zero(1.0) came as 1.0


def test_an_infinite_loop_is_stopped(folder):
    dave = folder["rows"]["dave"]
    assert dave["points"] == 0 and "ran past the 8 s limit of one cell" in dave["note"]


def test_a_process_that_exits_is_reported(folder):
    erin = folder["rows"]["erin"]
    assert erin["points"] == 0 and "exited with code 0" in erin["note"]


def test_a_file_that_is_not_a_notebook_gets_0_and_a_reason_naming_it(folder):
    frank = folder["rows"]["frank"]
    assert (frank["points"], frank["max_points"], frank["tasks"]) == (0, 10, [])
    assert frank["note"].startswith(f"{EX01}_frank.ipynb: not a readable notebook")


def test_a_wrong_exercise_is_refused(folder):
    grace = folder["rows"]["grace"]
    assert (grace["points"], grace["tasks"]) == (0, [])
    assert grace["note"] == f"{EX01}_grace.ipynb: its name says {EX01}, but its cells are those of {EX03}"


def test_a_submission_cannot_delete_a_file_outside_its_folder(folder):
    heidi = folder["rows"]["heidi"]
    if not any(line.startswith("landlock ABI") for line in folder["sandbox"]):
        pytest.skip("no Landlock on this system: a process of the grader's user can delete the grader's files")
    assert folder["victim"].read_text() == "the instructor's file"
    refused = heidi["note"].count("PermissionError") + heidi["note"].count("FileNotFoundError")  # in the jail,
    assert heidi["points"] == 0 and refused == 2, heidi["note"]  # the file outside does not exist


# --- the README's commands, as written -----------------------------------------------------------------------

def _readme_commands() -> list[str]:
    section = (ROOT / "README.md").read_text().split("### For instructors")[1].split("\n## ")[0]
    return [line.strip() for block in re.findall(r"(?s)```sh\n(.*?)```", section) for line in block.splitlines()
            if line.strip().startswith(".venv/bin/python -m fmlearn.grading")]


def test_the_readme_grading_commands_run_as_written(tmp_path):
    """A student file named like exNN_topic_alice.ipynb in submitted/; the commands copied from the README."""
    _save(_answered(EX01), tmp_path / "submitted" / f"{EX01}_alice.ipynb")
    _save(_wrong(), tmp_path / "submitted" / f"{EX01}_bob.ipynb")
    commands = _readme_commands()
    assert len(commands) == 2, commands
    for command in commands:
        argv = shlex.split(command)
        out = subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, env=_clean_env(), capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, (command, out.stdout[-2000:], out.stderr[-2000:])
    assert json.loads((tmp_path / "alice.json").read_text())["total"] == 10
    with open(tmp_path / "grades.csv") as f:
        points = {Path(r["file"]).stem.rsplit("_", 1)[1]: float(r["points"]) for r in csv.DictReader(f)}
    assert points == {"alice": 10, "bob": 6}


# --- a timeout or a crash costs one task --------------------------------------------------------------------------

def test_an_infinite_loop_costs_only_its_task(tmp_path):
    text = _answered(EX01).replace("    return (1 - t) * m0 + t * m1, (1 - t) ** 2 * S0 + t ** 2 * S1",
                                   "    while True:\n        pass")
    started = time.monotonic()
    scores = {s.grade_id: s for s in grade(_save(text, tmp_path / f"{EX01}_dave.ipynb"), timeout=5)}
    assert time.monotonic() - started < 60
    assert {k: s.points for k, s in scores.items()} == {"schedule_check": 2, "conditional_path_check": 2,
                                                        "gaussian_marginal_check": 0, "cfm_loss_check": 2,
                                                        "euler_sampler_check": 2}
    assert "ran past the 5 s limit" in scores["gaussian_marginal_check"].error


def test_a_killed_process_keeps_the_credit_of_what_ran(tmp_path):
    """os._exit(0) in a cell after task 2, os._exit(3) inside the CFM loss: the cell is left out and the task
    fails; a fresh process replays the cells that ran and the other tasks keep their points."""
    text = _cell_after(_answered(EX01), "conditional_path_check", "import os\nos._exit(0)")
    text = text.replace("    xt = interpolate(x0, x1, t)\n", "    import os\n    os._exit(3)\n")
    result = grade_submission(_save(text, tmp_path / f"{EX01}_erin.ipynb"), timeout=20)
    assert {s.grade_id: s.points for s in result.tasks} == {"schedule_check": 2, "conditional_path_check": 2,
                                                            "gaussian_marginal_check": 2, "cfm_loss_check": 0,
                                                            "euler_sampler_check": 2}
    assert "exited with code 0" in result.incidents[0] and "left out" in result.incidents[0]
    assert "exited with code 3" in result.tasks[3].error


# --- the sandbox --------------------------------------------------------------------------------------------

PROBE = '''import os, socket, subprocess


def probe(solutions, outside):
    seen = {"env": sorted(os.environ), "cwd": os.getcwd(), "files": sorted(os.listdir("."))}
    for name, attempt in {"read the solutions": lambda: open(solutions).read(),
                          "list the course": lambda: os.listdir(os.path.dirname(solutions)),
                          "write outside": lambda: open(outside, "w").write("x"),
                          "signal the grader": lambda: os.kill(os.getppid(), 0),
                          "read the grader's environment": lambda: open(f"/proc/{os.getppid()}/environ").read(),
                          "connect": lambda: socket.create_connection(("127.0.0.1", 9), timeout=2),
                          "fork": os.fork, "run a program": lambda: subprocess.run(["true"]),
                          "map 8 GiB": lambda: bytearray(8 << 30)}.items():
        try:
            attempt()
            seen[name] = "allowed"
        except Exception as err:
            seen[name] = type(err).__name__
    return seen
'''


def test_the_sandbox_keeps_a_submission_in_its_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("INSTRUCTOR_TOKEN", "do not show")
    monkeypatch.setenv("FMLEARN_DATA", "/somewhere/private")
    sub = _save(_blank(EX01), tmp_path / "submitted" / f"{EX01}_ivan.ipynb")
    deadline = time.monotonic() + 120
    with Sandbox(sub, Limits(), deadline) as box:
        box.exec(0, PROBE, deadline)
        seen = box.call("probe", (str(ROOT / "solutions" / f"{EX01}.py"), str(tmp_path / "outside.txt")), {},
                        deadline)
        confinement = box.confinement
    assert "INSTRUCTOR_TOKEN" not in seen["env"] and "FMLEARN_DATA" not in seen["env"]
    assert "FMLEARN_QUICK" in seen["env"]
    assert seen["cwd"] != str(sub.parent) and sub.name in seen["files"]
    assert not any("solution" in f for f in seen["files"])
    assert any(re.match(r"limits: address space \d+ \+ 4096 MB, cpu 630 s, file size 64 MB", line)
               for line in confinement), confinement
    assert seen["map 8 GiB"] == "MemoryError"
    if not any(line.startswith("landlock ABI") for line in confinement):
        pytest.skip(f"no Landlock here: {confinement}")
    jailed = confinement[0].startswith("jail: bubblewrap")  # in the jail, what lies outside does not exist
    for what in ("read the solutions", "list the course", "write outside", "read the grader's environment"):
        absent = jailed and what != "read the grader's environment"
        assert seen[what] == ("FileNotFoundError" if absent else "PermissionError"), (what, seen[what])
    assert not (tmp_path / "outside.txt").exists()
    landlock = next(line for line in confinement if line.startswith("landlock ABI"))
    if "no signals outside" in landlock:
        assert seen["signal the grader"] == "PermissionError"
    if "no TCP" in landlock:
        assert seen["connect"] == "PermissionError"
    if any(line.startswith("seccomp: no new processes") for line in confinement):
        assert seen["fork"] == seen["run a program"] == "PermissionError"


# --- the exercise, told by the cells, before anything runs ----------------------------------------------------

@pytest.fixture
def no_sandbox(monkeypatch):
    class Refused:
        def __init__(self, *args, **kwargs):
            raise AssertionError("a sandbox was started for a submission that should have been refused")
    monkeypatch.setattr(sys.modules["fmlearn.grading.grade"], "Sandbox", Refused)


def test_the_exercise_is_told_by_the_cells_not_the_file_name(tmp_path):
    exercises = load_exercises(ROOT / "solutions")
    for name in (EX01, EX03):
        path = _save(_blank(name), tmp_path / "homework_final_v2.ipynb")  # a name that says nothing
        assert identify(path, read_cells(path), exercises).name == name


def test_a_wrong_exercise_is_refused_before_anything_runs(tmp_path, no_sandbox, capsys):
    grace = _save(_blank(EX03), tmp_path / f"{EX01}_grace.ipynb")
    with pytest.raises(SubmissionRefused, match=f"its name says {EX01}, but its cells are those of {EX03}"):
        grade(grace)
    with pytest.raises(SubmissionRefused, match=rf"none of its cells carries a grade_id of {EX01} \(they are those "
                       rf"of {EX03}\)"):
        grade(_save(_blank(EX03), tmp_path / "grace.ipynb"), ROOT / "solutions" / f"{EX01}.py")
    assert cli(["grade", str(grace)]) == 2
    assert f"error: {grace.name}: its name says {EX01}" in capsys.readouterr().err


def test_a_notebook_without_grade_ids_or_not_a_notebook_is_refused(tmp_path, no_sandbox):
    nb = json.loads(jupytext.writes(jupytext.reads(_answered(EX01), fmt="py:percent"), fmt="ipynb"))
    for cell in nb["cells"]:
        cell["metadata"] = {}  # copied into a fresh notebook: the nbgrader metadata is gone
    (tmp_path / f"{EX01}_judy.ipynb").write_text(json.dumps(nb))
    with pytest.raises(SubmissionRefused, match=f"none of its cells carries the grade_id of an exercise; its name "
                       f"says {EX01} .*nbgrader metadata"):
        grade(tmp_path / f"{EX01}_judy.ipynb")
    for name, content in (("answers.pdf", b"%PDF-1.4"), (f"{EX01}_ken.ipynb", b'{"cells": 3}'),
                          (f"{EX01}_leo.ipynb", b"\xff\xfe not utf-8")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(SubmissionRefused, match=f"^{re.escape(name)}: not a"):
            grade(tmp_path / name)


# --- every task of every exercise goes through the sandbox ---------------------------------------------------

def _graded_cells(solution: Path) -> int:
    """The graded cells of a solution, read from its nbgrader metadata (not through the grader)."""
    return sum(1 for c in jupytext.read(solution).cells if c.metadata.get("nbgrader", {}).get("grade"))


def test_every_solution_gets_full_points_through_the_sandbox(tmp_path):
    """Every task of every solution (at least the 23 tasks of Part I's 7): every check and hidden test calls
    the submission's functions in the sandbox (models, velocity fields and generators passed in, in-place
    changes and call counts brought back); the grader reports exactly the graded cells of each notebook."""
    solutions = sorted((ROOT / "solutions").glob("ex*.py"))
    results = [grade_submission(p.with_suffix(".ipynb")) for p in solutions]
    lost = [(r.exercise, s.grade_id, s.error) for r in results for s in r.tasks if s.points != s.max_points]
    assert not lost, lost
    assert [len(r.tasks) for r in results] == [_graded_cells(p) for p in solutions]
    assert sum(len(r.tasks) for r in results) >= 23
