"""Exercise machinery: student versions built from the solutions, the checks' verdicts, grading.

Every check must accept the reference solution and reject plausible wrong answers
with a message that says what was expected.
"""

import json
import math
import re
import textwrap
import time
from pathlib import Path

import jupytext
import pytest
import torch

import fmlearn as fm
from fmlearn.exercises import (ExerciseCheckError, ExerciseSourceError, build, check_cfm_loss, check_conditional_path,
                               check_euler_sampler, check_flow_samples, check_gaussian_marginal, check_schedule,
                               expect_close, student_source)
from fmlearn.grading import grade, write_report
from fmlearn.exercises.__main__ import main as cli

from _executed import hand_to_book
from _tracked import committed_text

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("ex*.py"))


# --- building the student versions ---------------------------------------------------------------------------

def test_student_source_blanks_solutions_and_drops_hidden_tests():
    src = ("def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n\n"
           "check(f)\n### BEGIN HIDDEN TESTS\nassert f(1) == 2\n### END HIDDEN TESTS\n"
           "# %% [markdown]\n# Why?\n# ### BEGIN SOLUTION\n# Because.\n# ### END SOLUTION\n")
    want = ("def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n\ncheck(f)\n"
            "# %% [markdown]\n# Why?\n# YOUR ANSWER HERE\n")
    assert student_source(src) == want


@pytest.mark.parametrize("src, match", [
    ("### BEGIN SOLUTION\nx = 1\n", "never closed"),
    ("x = 1\n### END SOLUTION\n", "without a matching"),
    ("### BEGIN SOLUTION\n### BEGIN HIDDEN TESTS\n### END HIDDEN TESTS\n### END SOLUTION\n", "inside the region"),
    ("### BEGIN HIDDEN TESTS\n### END SOLUTION\n", "without a matching '### BEGIN SOLUTION'"),
])
def test_unpaired_markers_name_the_line(src, match):
    with pytest.raises(ExerciseSourceError, match=match):
        student_source(src, name="ex99.py")


def test_there_are_solutions():
    assert SOLUTIONS, "no solutions/ex*.py"


def test_committed_exercises_equal_a_fresh_build(tmp_path):
    """exercises/ is exactly what `python -m fmlearn.exercises build` writes (run it after editing solutions/).

    A learner works in exercises/ and saves answers and outputs there: the file then differs from the build,
    and the rule is checked on git's staged copy instead (tests/_tracked.py), which the learner did not touch."""
    fresh = tmp_path / "exercises"
    build(ROOT / "solutions", fresh)
    for path in sorted(fresh.iterdir()):
        ours = ROOT / "exercises" / path.name
        assert ours.exists(), f"{ours} is missing; run `python -m fmlearn.exercises build`"
        text = ours.read_text()
        if text != path.read_text():
            text = committed_text(ours)
        assert text == path.read_text(), f"{ours} is stale; run `python -m fmlearn.exercises build`"


def test_check_detects_a_stale_exercise(tmp_path, capsys):
    (tmp_path / "solutions").mkdir()
    (tmp_path / "solutions" / "ex01_x.py").write_text("x = 1\n### BEGIN SOLUTION\ny = 2\n### END SOLUTION\n")
    assert cli(["build", "--solutions", str(tmp_path / "solutions"), "--exercises", str(tmp_path / "ex")]) == 0
    assert cli(["check", "--solutions", str(tmp_path / "solutions"), "--exercises", str(tmp_path / "ex")]) == 0
    (tmp_path / "ex" / "ex01_x.py").write_text("x = 1\ny = 2\n")
    assert cli(["check", "--solutions", str(tmp_path / "solutions"), "--exercises", str(tmp_path / "ex")]) == 1
    assert "stale" in capsys.readouterr().out


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.name)
def test_exercise_keeps_nbgrader_metadata_and_hides_answers(solution):
    """Every graded cell of the solution survives with its metadata; no solution or hidden test leaks."""
    ex = ROOT / "exercises" / solution.name
    sol_cells = {c.metadata["nbgrader"]["grade_id"]: c for c in jupytext.read(solution).cells if "nbgrader" in c.metadata}
    ex_cells = {c.metadata["nbgrader"]["grade_id"]: c for c in jupytext.read(ex).cells if "nbgrader" in c.metadata}
    assert sol_cells.keys() == ex_cells.keys()
    assert all(sol_cells[k].metadata["nbgrader"] == ex_cells[k].metadata["nbgrader"] for k in sol_cells)
    text = ex.read_text()
    assert "### BEGIN" not in text and "### END" not in text
    n_tasks = sum(1 for c in sol_cells.values() if c.metadata["nbgrader"]["grade"])
    assert n_tasks >= 3, f"{solution.name} has {n_tasks} graded tasks; the course asks for 3 to 5"


# --- the checks: accept the reference, reject plausible wrong answers -----------------------------------------

def _alpha(t):
    return t


def _beta(t):
    return torch.sqrt(1 - t)


def _d_alpha(t):
    return torch.ones_like(t)


def _d_beta(t):
    return -0.5 / torch.sqrt(1 - t)


def test_check_schedule(capsys):
    assert check_schedule(_alpha, _beta, _d_alpha, _d_beta, name="sqrt")
    assert capsys.readouterr().out.startswith("OK")
    with pytest.raises(ExerciseCheckError, match="(?s)d_beta.*not the derivative.*expected"):
        check_schedule(_alpha, _beta, _d_alpha, lambda t: 0.5 / torch.sqrt(1 - t), name="sqrt")  # sign flip
    with pytest.raises(ExerciseCheckError, match="end values"):
        check_schedule(_alpha, lambda t: torch.sqrt(t), _d_alpha, _d_beta, name="sqrt")  # sqrt(t): ends swapped
    with pytest.raises(ExerciseCheckError, match="beta.t. differs from the sqrt schedule"):
        check_schedule(_alpha, lambda t: 1 - t, _d_alpha, lambda t: -torch.ones_like(t), name="sqrt")  # CondOT's


def _interp(x0, x1, t):
    return t[:, None] * x1 + (1 - t[:, None]) * x0


def test_check_conditional_path():
    assert check_conditional_path(_interp, lambda x0, x1, t: x1 - x0)
    with pytest.raises(ExerciseCheckError, match="(?s)not d x_t / dt.*expected"):
        check_conditional_path(_interp, lambda x0, x1, t: x0 - x1)  # sign flip
    with pytest.raises(ExerciseCheckError, match="not d x_t / dt"):
        check_conditional_path(_interp, lambda x0, x1, t: x1)  # x1 where x1 - x0 belongs
    with pytest.raises(ExerciseCheckError, match="at t = 0 is not x0"):
        check_conditional_path(lambda x0, x1, t: t[:, None] * x0 + (1 - t[:, None]) * x1,
                               lambda x0, x1, t: x0 - x1)  # ends swapped
    with pytest.raises(ExerciseCheckError, match="wrong shape"):
        check_conditional_path(lambda x0, x1, t: (t * x1.T + (1 - t) * x0.T).mean(0), lambda x0, x1, t: x1 - x0)


def test_check_conditional_path_turns_a_missing_t_axis_into_a_hint():
    """t * x1 with t of shape (n,) and x1 of shape (n, d) raises torch's broadcasting error; the check catches it."""
    with pytest.raises(ExerciseCheckError, match=r"(?s)shape error.*\(64, 2\), \(64, 2\), \(64,\).*"
                       r"hint: t has shape \(n,\) and x0, x1 have shape \(n, d\).*t\[:, None\]") as err:
        check_conditional_path(lambda x0, x1, t: t * x1 + (1 - t) * x0, lambda x0, x1, t: x1 - x0)
    assert isinstance(err.value.__cause__, RuntimeError)  # the learner's own traceback stays visible
    with pytest.raises(ExerciseCheckError, match=r"shapes \(64, 3\)"):  # works in 2-D only: caught in 3-D
        check_conditional_path(lambda x0, x1, t: t[:, None].expand(-1, 2) * x1 + (1 - t[:, None]) * x0,
                               lambda x0, x1, t: x1 - x0)


def test_check_gaussian_marginal():
    assert check_gaussian_marginal(lambda t, m0, s0, m1, s1: ((1 - t) * m0 + t * m1, (1 - t) ** 2 * s0 + t ** 2 * s1))
    with pytest.raises(ExerciseCheckError, match="(?s)covariance.*squared"):
        check_gaussian_marginal(lambda t, m0, s0, m1, s1: ((1 - t) * m0 + t * m1, (1 - t) * s0 + t * s1))
    with pytest.raises(ExerciseCheckError, match="at t = 0 the marginal must be the source"):
        check_gaussian_marginal(lambda t, m0, s0, m1, s1: (t * m0 + (1 - t) * m1, t ** 2 * s0 + (1 - t) ** 2 * s1))


def _cfm(model, x0, x1, t):
    xt = _interp(x0, x1, t)
    return (model(xt, t) - (x1 - x0)).pow(2).sum(1).mean()


def test_check_cfm_loss():
    assert check_cfm_loss(_cfm)
    with pytest.raises(ExerciseCheckError, match="averaged over the data dimensions"):
        check_cfm_loss(lambda m, x0, x1, t: (m(_interp(x0, x1, t), t) - (x1 - x0)).pow(2).mean())
    with pytest.raises(ExerciseCheckError, match="not onto x1"):
        check_cfm_loss(lambda m, x0, x1, t: (m(_interp(x0, x1, t), t) - x1).pow(2).sum(1).mean())
    with pytest.raises(ExerciseCheckError, match="not onto x1"):  # x1 passed where x_t belongs
        check_cfm_loss(lambda m, x0, x1, t: (m(x1, t) - (x1 - x0)).pow(2).sum(1).mean())
    with pytest.raises(ExerciseCheckError, match="no gradient"):
        check_cfm_loss(lambda m, x0, x1, t: _cfm(m, x0, x1, t).detach())


@pytest.mark.parametrize("reduce, hint", [
    (lambda e: e.norm(dim=1).mean(), "averaged the norm .*, not its square"),
    (lambda e: e.norm(), "norm of the whole batch's error, unsquared"),
    (lambda e: e.pow(2).sum(), "summed over the batch"),
], ids=["unsquared norm per sample", "unsquared norm of the batch", "sum over the batch"])
def test_check_cfm_loss_names_the_reduction_slip(reduce, hint):
    with pytest.raises(ExerciseCheckError, match=f"(?s)expected.*got.*hint: .*{hint}"):
        check_cfm_loss(lambda m, x0, x1, t: reduce(m(_interp(x0, x1, t), t) - (x1 - x0)))


def _euler(u, x0, steps):
    x, h = x0, 1.0 / steps
    for i in range(steps):
        x = x + h * u(x, i * h)
    return x


def test_check_euler_sampler():
    assert check_euler_sampler(_euler)
    with pytest.raises(ExerciseCheckError, match="one step too few"):
        check_euler_sampler(lambda u, x0, steps: _euler(u, x0, steps - 1))
    with pytest.raises(ExerciseCheckError, match="time at the \\*start\\*"):  # t at the end of each step
        check_euler_sampler(lambda u, x0, n: _euler(lambda x, t: u(x, t + 1.0 / n), x0, n))


def _euler_loop(u, x0, h, times):
    x = x0
    for t in times:
        x = x + h * u(x, t)
    return x


@pytest.mark.parametrize("sampler, hint", [
    (lambda u, x0, n: _euler_loop(u, x0, 1 / n, [i / n for i in range(n - 1)]), "stopped at t = 1 - h"),
    (lambda u, x0, n: _euler_loop(u, x0, 1 / n, [i / n for i in range(1, n)]), "first step starts at t = 0"),
    (lambda u, x0, n: _euler_loop(u, x0, 1 / (n - 1), torch.linspace(0, 1, n)[:-1].tolist()), "n \\+ 1 grid points"),
    (lambda u, x0, n: _euler_loop(u, x0, 1 / n, [i / n for i in range(n + 1)]), "one step too many"),
    (lambda u, x0, n: _euler_loop(u, x0, 1 / n, [i / n for i in range(1, n + 1)]), "end of each step"),
], ids=["range(steps - 1)", "range(1, steps)", "linspace(0, 1, steps)", "range(steps + 1)", "u at the step's end"])
def test_check_euler_sampler_names_the_off_by_one(sampler, hint):
    with pytest.raises(ExerciseCheckError, match=f"(?s)expected.*got.*hint: .*{hint}"):
        check_euler_sampler(sampler)


_EULER_IN_PLACE = "x, h = x0, 1.0 / steps\nfor i in range(steps):\n    x += h * u(x, i * h)\nreturn x"


def _define(signature: str, body: str):
    """The function ``def signature: body`` (a learner's answer), defined here as the notebook defines it."""
    namespace = {"torch": torch}
    exec(f"def {signature}:\n{textwrap.indent(body, '    ')}\n", namespace)
    return namespace[signature.split("(")[0]]


def test_check_euler_sampler_rejects_an_in_place_update():
    """`x = x0; x += ...` overwrites the caller's x0: rejected, with a hint that says so."""
    x0 = torch.zeros(3, 2)
    _define("euler(u, x0, steps)", _EULER_IN_PLACE)(lambda x, t: torch.ones_like(x), x0, 1)
    assert torch.equal(x0, torch.ones(3, 2))  # the pitfall itself: the caller's x0 was overwritten
    with pytest.raises(ExerciseCheckError, match="(?s)changed its input in place.*argument 2.*hint: .*x = x0.*no copy"):
        check_euler_sampler(_define("euler(u, x0, steps)", _EULER_IN_PLACE))


def _ring(n, generator):
    """Angle uniform, radius 10 + N(0, 1): a ring through the 11 modes, with no modes at all."""
    angle = 2 * math.pi * torch.rand(n, generator=generator)
    radius = 10 + torch.randn(n, generator=generator)
    return torch.stack([radius * angle.cos(), radius * angle.sin()], 1)


def test_check_flow_samples_rejects_a_ring_and_accepts_true_samples(capsys):
    """A ring has 99.9% of its points within 4 std of a mode (the old test passed it); true samples pass."""
    target = fm.GaussianMixture.symmetric_2d()
    g = torch.Generator().manual_seed(0)
    ring = _ring(2000, g)
    assert fm.fraction_near_modes(target, ring) > 0.99  # what the old check (near > 0.5 within 4 std) saw
    with pytest.raises(ExerciseCheckError, match="(?s)within 2.5 standard deviations.*expected: at least 84%.*hint"):
        check_flow_samples(target, ring)
    with pytest.raises(ExerciseCheckError, match="(?s)wrong shape.*x the floor"):  # the second line of defence
        check_flow_samples(target, ring, near_min=0.0)
    for seed in range(3):
        assert check_flow_samples(target, target.sample(2000, generator=torch.Generator().manual_seed(seed)))
    assert capsys.readouterr().out.startswith("OK")


def test_check_flow_samples_rejects_a_missing_mode_and_mass_between_modes():
    """A dropped mode fails; so does a quarter of the mass stranded at the midpoints between neighbouring modes
    (the limits are loose enough for a short training run, whose blur leaves 11-13% beyond 2.5 std, so a tenth
    of the mass between modes still passes)."""
    target = fm.GaussianMixture.symmetric_2d()
    g = torch.Generator().manual_seed(1)
    x = target.sample(2000, generator=g)
    dropped = x[target.component_log_probs(x).argmax(1) != 0]
    with pytest.raises(ExerciseCheckError, match="mode 0 holds too few samples"):
        check_flow_samples(target, dropped)
    means = target.means
    midpoints = (means + means.roll(1, 0)) / 2
    between = midpoints[torch.randint(0, 11, (500,), generator=g)] + 0.3 * torch.randn(500, 2, generator=g)
    with pytest.raises(ExerciseCheckError, match="within 2.5 standard deviations"):
        check_flow_samples(target, torch.cat([x[:1500], between]))


def test_unwritten_task_raises_not_implemented():
    def todo(*args):
        raise NotImplementedError()

    with pytest.raises(NotImplementedError, match="not written yet"):
        check_cfm_loss(todo)


# --- running the notebooks: exercises stop at their first task; grading gives the right points ----------------

KERNEL = "python3"


def _execute(nb, path):
    from nbclient import NotebookClient
    NotebookClient(nb, timeout=300, allow_errors=True, kernel_name=KERNEL,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def _exercise(solution: Path) -> Path:
    return ROOT / "exercises" / solution.with_suffix(".ipynb").name


@pytest.mark.parametrize("solution", [pytest.param(s, marks=pytest.mark.book_execution(_exercise(s)))
                                      for s in SOLUTIONS], ids=lambda p: p.name)
def test_exercise_as_given_stops_at_its_first_task(solution, monkeypatch):
    """Run as is, the first error is a NotImplementedError in the first task's check; no cell before it fails.

    It runs as the quick book executes the exercise (FMLEARN_QUICK=1, FMLEARN_PROGRESS=0, errors allowed, in its
    folder), and the book shows this execution (tests/_executed.py: hand_to_book) instead of running it again."""
    monkeypatch.setenv("FMLEARN_QUICK", "1")
    monkeypatch.setenv("FMLEARN_PROGRESS", "0")
    ex = _exercise(solution)  # run as built (a learner may have filled it in: then the book runs theirs)
    start = time.monotonic()
    nb = _execute(jupytext.reads(student_source(solution.read_text()), fmt="py:percent"), ex)
    hand_to_book(ex, nb, kernel_name=KERNEL, seconds=time.monotonic() - start)
    errors = [(i, o) for i, c in enumerate(nb.cells) if c.cell_type == "code"
              for o in c.outputs if o.output_type == "error"]
    assert errors, "the exercise ran without any error: a task is not blanked"
    first_cell, first = errors[0]
    assert first.ename == "NotImplementedError", (first.ename, first.evalue)
    shown = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(first.traceback))  # what the notebook shows: two lines
    assert re.fullmatch(r"NotImplementedError: \w+ is not written yet: .*\n  \(in your code: Cell In\[\d+\], line \d+, "
                        r"in \w+: raise NotImplementedError\(\)\)", shown), shown
    first_graded = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade"))
    assert first_cell == first_graded, f"first error in cell {first_cell}, expected the first check (cell {first_graded})"


def test_an_exercise_handed_to_the_book_is_what_the_book_would_execute(tmp_path, monkeypatch):
    """The book shows the execution above (tests/_executed.py: hand_to_book) instead of running the exercise again.
    Reference: the book's own executor (jupyter-cache's, as myst-nb runs it: errors allowed, in the notebook's
    folder) on the same notebook in a scratch course; the outputs, their numbers and the kernel's language_info the
    book merges into the page are the same. Control: a learner's filled-in copy (other code) is not handed over:
    a marker instead (the book executes it), and the book's cache has no match for it."""
    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.executors import load_executor

    import _executed

    course = tmp_path / "course"
    (course / "exercises").mkdir(parents=True)
    for name, value in (("ROOT", course), ("EXECUTED", course / "executed"), ("_OUTER_ENV", {})):
        monkeypatch.setattr(_executed, name, value)
    text = ("# %%\nimport os\nprint('runs in', os.path.basename(os.getcwd()))\n\n"
            "# %%\ndef task():\n    raise NotImplementedError()\n\n\ntask()\n\n# %%\n6 * 7\n")
    ex = course / "exercises" / "ex01_x.ipynb"
    as_read = jupytext.reads(text, fmt="py:percent")
    as_read.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": KERNEL}
    nbformat.write(as_read, str(ex))
    assert hand_to_book(ex, _execute(jupytext.reads(text, fmt="py:percent"), ex), kernel_name=KERNEL)
    ours = get_cache(str(tmp_path / "ours"))
    assert _executed.store_in_book_cache(None, cache_path=tmp_path / "ours", executed=course / "executed",
                                         root=course) == ["exercises/ex01_x.ipynb"]
    book = get_cache(str(tmp_path / "book"))
    book.add_nb_to_project(str(ex))
    load_executor("local-serial", book).run_and_cache(allow_errors=True, timeout=300)
    (_, mine), (_, theirs) = (c.merge_match_into_notebook(nbformat.read(str(ex), as_version=4)) for c in (ours, book))

    def shown(nb):
        return [(c.execution_count, c.outputs) for c in nb.cells if c.cell_type == "code"]
    assert shown(mine) == shown(theirs)
    assert mine.metadata["language_info"] == theirs.metadata["language_info"]
    assert shown(mine)[0][1][0]["text"] == "runs in exercises\n" and shown(mine)[1][1][0]["ename"] == "NotImplementedError"
    assert shown(mine)[2] == (3, [nbformat.v4.new_output("execute_result", {"text/plain": "42"}, execution_count=3)])

    filled = jupytext.reads(text.replace("raise NotImplementedError()", "return 1"), fmt="py:percent")
    filled.metadata["kernelspec"] = as_read.metadata["kernelspec"]
    assert not hand_to_book(ex, _execute(filled, ex), kernel_name=KERNEL)
    assert _executed.finished(_executed.executed_path(ex)) and not _executed.executed_path(ex).exists()
    with pytest.raises(KeyError):
        ours.match_cache_notebook(filled)


def _fill(text: str, grade_id: str, bodies: list[str]) -> str:
    """Replace the blanked regions of the cell ``grade_id`` in an exercise's .py text by ``bodies``, in order."""
    start = text.index(f'"grade_id": "{grade_id}"')
    end = text.find("\n# %%", start)
    cell = text[start:end]
    for body in bodies:
        m = re.search(r"(?m)^( *)# YOUR CODE HERE\n *raise NotImplementedError\(\)\n", cell)
        cell = cell[:m.start()] + "".join(m.group(1) + line + "\n" for line in body.splitlines()) + cell[m.end():]
    return text[:start] + cell + text[end:]


def test_grading_a_submission_with_one_right_and_one_wrong_task(tmp_path):
    """Task 2 right, task 4 wrong (mean over dimensions too), the rest untouched: 2 points of 10, and the hidden
    tests run (the student's copy of a test cell is replaced by the solution's)."""
    solution = ROOT / "solutions" / "ex01_gaussian_mixture_cfm.py"
    text = student_source(solution.read_text())  # the exercise as built
    text = _fill(text, "conditional_path", ["t = t[:, None]\nreturn t * x1 + (1 - t) * x0", "return x1 - x0"])
    text = _fill(text, "cfm_loss", ["return (model(interpolate(x0, x1, t), t) - velocity(x0, x1, t)).pow(2).mean()"])
    text = text.replace("check_euler_sampler(euler)", "pass  # a learner deleting a check gains nothing")
    sub = tmp_path / "ex01_gaussian_mixture_cfm_alice.py"
    sub.write_text(text)
    scores = {s.grade_id: s for s in grade(sub, solution)}
    assert {k: s.points for k, s in scores.items()} == {"schedule_check": 0, "conditional_path_check": 2,
                                                        "gaussian_marginal_check": 0, "cfm_loss_check": 0,
                                                        "euler_sampler_check": 0}
    assert "NotImplementedError" in scores["schedule_check"].error
    assert re.search("(?s)ExerciseCheckError: .*expected.*got.*hint: you averaged over the data dimensions",
                     scores["cfm_loss_check"].error)
    out = tmp_path / "points.json"
    report = write_report(list(scores.values()), out)
    assert "total" in report and json.loads(out.read_text())["total"] == 2


def test_check_and_grader_agree_on_the_same_wrong_answers(tmp_path):
    """An in-place Euler update, a missing t[:, None] and an unsquared norm: the grader scores each task 0 and its
    note is exactly the message (with the hint) that the check gives the learner in the notebook."""
    answers = {  # grade_id: (function signature, learner's body)
        "conditional_path": [("interpolate(x0, x1, t)", "return t * x1 + (1 - t) * x0"),
                             ("velocity(x0, x1, t)", "return x1 - x0")],
        "cfm_loss": [("cfm_loss(model, x0, x1, t)", "s = t[:, None]\nxt = s * x1 + (1 - s) * x0\n"
                      "return (model(xt, t) - (x1 - x0)).norm(dim=1).mean()")],
        "euler_sampler": [("euler(u, x0, steps)", _EULER_IN_PLACE)],
    }
    solution = ROOT / "solutions" / "ex01_gaussian_mixture_cfm.py"
    text = student_source(solution.read_text())  # the exercise as built
    for grade_id, functions in answers.items():
        text = _fill(text, grade_id, [body for _, body in functions])
    sub = tmp_path / "ex01_gaussian_mixture_cfm_bob.py"
    sub.write_text(text)
    scores = {s.grade_id: s for s in grade(sub, solution)}
    learner = {sig.split("(")[0]: _define(sig, body) for functions in answers.values() for sig, body in functions}
    seen = {}
    for grade_id, run_check in (
            ("conditional_path", lambda: check_conditional_path(learner["interpolate"], learner["velocity"])),
            ("cfm_loss", lambda: check_cfm_loss(learner["cfm_loss"])),
            ("euler_sampler", lambda: check_euler_sampler(learner["euler"]))):
        with pytest.raises(ExerciseCheckError) as err:
            run_check()
        seen[grade_id] = str(err.value)
    assert "t[:, None]" in seen["conditional_path"] and "not its square" in seen["cfm_loss"]
    assert "in place" in seen["euler_sampler"]
    for grade_id, message in seen.items():
        score = scores[f"{grade_id}_check"]
        assert score.points == 0 and score.error == f"ExerciseCheckError: {message}", (grade_id, score.error)


def test_grading_the_solution_gives_full_points(tmp_path):
    solution = ROOT / "solutions" / "ex01_gaussian_mixture_cfm.py"
    scores = grade(solution.with_suffix(".ipynb"), solution)
    assert all(s.points == s.max_points > 0 for s in scores), [(s.grade_id, s.error) for s in scores]


def test_grading_notes_keep_the_hint_and_name_a_bare_assert():
    """A long check message keeps its hint line (each line is cut, not the message); a bare ``assert`` in a hidden
    test is named by its line from the traceback."""
    from fmlearn.grading.grade import _note
    long = ExerciseCheckError("values differ\n  expected: 1\n  got:      " + "9" * 2000 + "\n  hint: the hint")
    note = _note(long, "<test long>", "")
    assert note.endswith("\n  hint: the hint") and max(map(len, note.splitlines())) <= 300
    source = "x = 1\n\nassert x + 1 == 3\n"
    with pytest.raises(AssertionError) as bare:
        exec(compile(source, "<test bare>", "exec"), {})
    assert _note(bare.value, "<test bare>", source) == "AssertionError: (no message) at `assert x + 1 == 3`"


def test_expect_close_fails_like_a_check():
    expect_close("a value", torch.tensor([1.0, 2.0]), [1.0, 2.0], "never shown")
    with pytest.raises(ExerciseCheckError, match=r"(?s)one step of u = 1\n  expected: \[2.0\]\n  got:      \[1.0\]\n"
                       r"  hint: take the step"):
        expect_close("one step of u = 1", torch.tensor([1.0]), torch.tensor([2.0]), "take the step")
    with pytest.raises(ExerciseCheckError, match=r"expected: shape \(3, 2\)"):  # no silent broadcasting
        expect_close("x", torch.zeros(3, 1), torch.zeros(3, 2), "keep the shape")
    with pytest.raises(ExerciseCheckError, match="got:      str"):
        expect_close("x", "1.0", 1.0, "return a number")


_BARE_ASSERTS_LEFT: set[str] = set()


@pytest.mark.parametrize("solution", [s for s in SOLUTIONS if s.name not in _BARE_ASSERTS_LEFT], ids=lambda p: p.name)
def test_hidden_tests_fail_with_a_hint(solution):
    """Hidden tests assert through expect_close (expected / got / hint), never with a bare assert, so that a task
    the grader fails carries a hint as the visible check does."""
    hidden = re.findall(r"(?s)### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", solution.read_text())
    assert hidden and not any(re.search(r"(?m)^\s*assert\b", block) for block in hidden)


# --- checks of chapters 2-4 -------------------------------------------------------------------------------------

def _gauss_u(x, t, m, s):
    var = t ** 2 * s ** 2 + (1 - t) ** 2
    return m + (t * s ** 2 - (1 - t)) / var * (x - t * m)


def _mix_u(x, t, means, s, weights, posterior=True):
    var = t ** 2 * s ** 2 + (1 - t) ** 2
    logw = torch.log(weights)[None] - ((x[:, None] - t * means[None]) ** 2).sum(-1) / (2 * var)
    r = torch.softmax(logw, 1) if posterior else weights[None].expand(x.shape[0], -1)
    comp = means[None] + (t * s ** 2 - (1 - t)) / var * (x[:, None] - t * means[None])
    return (r[..., None] * comp).sum(1)


def _residual(p, u, x, t, h):
    out = (p(x, t + h) - p(x, t - h)) / (2 * h)
    for i in range(x.shape[1]):
        e = torch.zeros_like(x)
        e[:, i] = h
        out = out + (p(x + e, t) * u(x + e, t)[:, i] - p(x - e, t) * u(x - e, t)[:, i]) / (2 * h)
    return out


def _unit(x, i, h):
    e = torch.zeros_like(x)
    e[:, i] = h
    return e


def _fd_div(f, x, h, one_sided=False):
    """Central (or forward) differences of sum_i d f_i / d x_i for a field f(x) -> (n, d) (here: u or p u)."""
    if one_sided:
        return sum((f(x + _unit(x, i, h))[:, i] - f(x)[:, i]) / h for i in range(x.shape[1]))
    return sum((f(x + _unit(x, i, h))[:, i] - f(x - _unit(x, i, h))[:, i]) / (2 * h) for i in range(x.shape[1]))


def _fd_dt(p, x, t, h):
    return (p(x, t + h) - p(x, t - h)) / (2 * h)


@pytest.mark.parametrize("residual, hint", [
    (lambda p, u, x, t, h: _fd_dt(p, x, t, h) - _fd_div(lambda y: p(y, t)[:, None] * u(y, t), x, h), "plus sign"),
    (lambda p, u, x, t, h: _fd_dt(p, x, t, h) + p(x, t) * _fd_div(lambda y: u(y, t), x, h), r"p div\(u\) \+ u \. grad"),
    (lambda p, u, x, t, h: _fd_dt(p, x, t, h) + _fd_div(lambda y: u(y, t), x, h), "the flux is p u, not u"),
    (lambda p, u, x, t, h: _fd_dt(p, x, t, h) + sum(
        ((p(x + _unit(x, i, h), t)[:, None] * u(x + _unit(x, i, h), t)
          - p(x - _unit(x, i, h), t)[:, None] * u(x - _unit(x, i, h), t)) / (2 * h)).sum(1)
        for i in range(x.shape[1])), "every component along every axis"),
    (lambda p, u, x, t, h: 2 * _residual(p, u, x, t, h), "divides by 2h, the distance"),
    (lambda p, u, x, t, h: _residual(p, u, x, t, h) + _fd_dt(p, x, t, h), "time derivative divides by 2h"),
    (lambda p, u, x, t, h: (p(x, t + h) - p(x, t)) / h + _fd_div(lambda y: p(y, t)[:, None] * u(y, t), x, h, True),
     "one-sided ones"),
    (lambda p, u, x, t, h: _fd_dt(p, x, t, h), "residual = "),  # the flux term left out: the formula as the hint
], ids=["sign", "p div u", "div u", "whole Jacobian", "h for 2h", "h for 2h in time", "forward differences",
        "no flux"])
def test_check_continuity_residual(residual, hint):
    from fmlearn.exercises import check_continuity_residual
    with pytest.raises(ExerciseCheckError, match=f"(?s)expected.*got.*hint: .*{hint}"):
        check_continuity_residual(residual)


def test_check_continuity_residual_accepts_central_differences_and_autograd():
    from fmlearn.exercises import check_continuity_residual
    assert check_continuity_residual(_residual)

    def by_autograd(p, u, x, t, h):  # exact derivatives instead of differences: also right
        dp_dt = torch.autograd.functional.jacobian(lambda s: p(x, s), torch.tensor(t, dtype=x.dtype))
        y = x.detach().clone().requires_grad_(True)
        flux = p(y, t)[:, None] * u(y, t)
        return dp_dt + sum(torch.autograd.grad(flux[:, i].sum(), y, retain_graph=True)[0][:, i]
                           for i in range(x.shape[1]))
    assert check_continuity_residual(by_autograd)


def test_check_gaussian_and_mixture_velocity():
    from fmlearn.exercises import check_gaussian_velocity, check_mixture_velocity
    assert check_gaussian_velocity(_gauss_u)
    with pytest.raises(ExerciseCheckError, match="differs from the exact one"):  # sd_t where sd_t^2 belongs
        check_gaussian_velocity(lambda x, t, m, s: m + (t * s ** 2 - (1 - t)) / (t ** 2 * s ** 2 + (1 - t) ** 2) ** 0.5
                                * (x - t * m))
    with pytest.raises(ExerciseCheckError, match="differs from the exact one"):  # forgot the t in (x - t m)
        check_gaussian_velocity(lambda x, t, m, s: m + (t * s ** 2 - (1 - t)) / (t ** 2 * s ** 2 + (1 - t) ** 2) * (x - m))
    assert check_mixture_velocity(_mix_u)
    with pytest.raises(ExerciseCheckError, match="posterior"):  # prior weights instead of posterior
        check_mixture_velocity(lambda *a: _mix_u(*a, posterior=False))


def _heun(u, x, t, h):
    k1 = u(x, t)
    return x + h / 2 * (k1 + u(x + h * k1, t + h))


def _rk4(u, x, t, h):
    k1 = u(x, t)
    k2 = u(x + h / 2 * k1, t + h / 2)
    k3 = u(x + h / 2 * k2, t + h / 2)
    k4 = u(x + h * k3, t + h)
    return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


def test_check_step():
    from fmlearn.exercises import check_step
    assert check_step(_heun, "heun") and check_step(_rk4, "rk4")
    with pytest.raises(ExerciseCheckError, match="Euler step"):
        check_step(lambda u, x, t, h: x + h * u(x, t), "heun")
    with pytest.raises(ExerciseCheckError, match="differs"):  # the end-point stage evaluated at time t
        check_step(lambda u, x, t, h: x + h / 2 * (u(x, t) + u(x + h * u(x, t), t)), "heun")

    def rk4_equal_weights(u, x, t, h):
        k1 = u(x, t)
        k2 = u(x + h / 2 * k1, t + h / 2)
        k3 = u(x + h / 2 * k2, t + h / 2)
        return x + h / 4 * (k1 + k2 + k3 + u(x + h * k3, t + h))
    with pytest.raises(ExerciseCheckError, match="differs"):
        check_step(rk4_equal_weights, "rk4")
    with pytest.raises(ValueError, match="method must be"):
        check_step(_rk4, "euler")


def test_check_observed_order():
    import numpy as np

    from fmlearn.exercises import check_observed_order
    assert check_observed_order(lambda n, e: -np.polyfit(np.log(n), np.log(e), 1)[0])
    with pytest.raises(ExerciseCheckError, match="sign is flipped"):
        check_observed_order(lambda n, e: np.polyfit(np.log(n), np.log(e), 1)[0])
    with pytest.raises(ExerciseCheckError, match="least squares"):  # only the last two points
        check_observed_order(lambda n, e: float(np.log2(e[-2] / e[-1])))


def _div(u, x, t):
    x = x.detach().requires_grad_(True)
    v = u(x, t)
    return torch.stack([torch.autograd.grad(v[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(x.shape[1])],
                       1).sum(1)


def _hutch(u, x, t, eps):
    x = x.detach().requires_grad_(True)
    v = u(x, t)
    return torch.stack([(torch.autograd.grad(v, x, e, retain_graph=True)[0] * e).sum(1) for e in eps]).mean(0)


def test_check_divergence_and_hutchinson():
    from fmlearn.exercises import check_divergence, check_hutchinson
    assert check_divergence(_div)

    def all_entries(u, x, t):
        x = x.detach().requires_grad_(True)
        return torch.autograd.grad(u(x, t).sum(), x)[0].sum(1)
    with pytest.raises(ExerciseCheckError, match="every entry of the Jacobian"):
        check_divergence(all_entries)
    assert check_hutchinson(_hutch)
    with pytest.raises(ExerciseCheckError, match="average over the k probes"):
        check_hutchinson(lambda u, x, t, eps: _hutch(u, x, t, eps) * eps.shape[0])

    def no_second_eps(u, x, t, eps):
        x = x.detach().requires_grad_(True)
        v = u(x, t)
        return torch.stack([torch.autograd.grad(v, x, e, retain_graph=True)[0].sum(1) for e in eps]).mean(0)
    with pytest.raises(ExerciseCheckError, match="multiply by eps again"):
        check_hutchinson(no_second_eps)


def test_check_paired_kl():
    import math

    from fmlearn.exercises import check_paired_kl
    assert check_paired_kl(lambda lp, lq: ((lp - lq).mean(), (lp - lq).std() / math.sqrt(len(lp))))
    with pytest.raises(ExerciseCheckError, match="sign flipped"):
        check_paired_kl(lambda lp, lq: ((lq - lp).mean(), (lp - lq).std() / math.sqrt(len(lp))))
    with pytest.raises(ExerciseCheckError, match="sqrt.n."):
        check_paired_kl(lambda lp, lq: ((lp - lq).mean(), (lp - lq).std()))


def _em(u, s, x, t, h, g, z):
    return x + h * (u(x, t) + 0.5 * g ** 2 * s(x, t)) + g * h ** 0.5 * z


def test_check_diffusion_pieces():
    from fmlearn.exercises import check_em_step, check_langevin_step, check_score_from_velocity
    assert check_score_from_velocity(lambda u, x, t: (t * u - x) / (1 - t))
    with pytest.raises(ExerciseCheckError, match="sign is flipped"):
        check_score_from_velocity(lambda u, x, t: (x - t * u) / (1 - t))
    with pytest.raises(ExerciseCheckError, match="solve for x0"):  # x0_hat without dividing by beta
        check_score_from_velocity(lambda u, x, t: t * u - x)
    assert check_em_step(_em)
    with pytest.raises(ExerciseCheckError, match="variance h"):
        check_em_step(lambda u, s, x, t, h, g, z: x + h * (u(x, t) + 0.5 * g ** 2 * s(x, t)) + g * h * z)
    with pytest.raises(ExerciseCheckError, match="squared and halved"):
        check_em_step(lambda u, s, x, t, h, g, z: x + h * (u(x, t) + g * s(x, t)) + g * h ** 0.5 * z)
    assert check_langevin_step(lambda s, x, eps, z: x + eps * s(x) + (2 * eps) ** 0.5 * z)
    with pytest.raises(ExerciseCheckError, match="narrower"):
        check_langevin_step(lambda s, x, eps, z: x + eps * s(x) + eps ** 0.5 * z)


def test_em_check_statistical_half_rejects_a_step_that_only_fakes_the_given_numbers():
    """A step right on the check's first input but without the score term afterwards fails the marginal test."""
    from fmlearn.exercises import check_em_step
    calls = []

    def sneaky(u, s, x, t, h, g, z):
        calls.append(1)
        return _em(u, s, x, t, h, g, z) if len(calls) == 1 else x + h * u(x, t) + g * h ** 0.5 * z
    with pytest.raises(ExerciseCheckError, match="flow's marginal"):
        check_em_step(sneaky)


# --- chapter 5 checks -------------------------------------------------------------------------------------------

def _pairing(x0, x1):
    from scipy.optimize import linear_sum_assignment
    _, cols = linear_sum_assignment(torch.cdist(x1, x0).pow(2).numpy())
    return torch.as_tensor(cols)


def _crossings(x0, x1):
    def side(p, q, r):  # sign of the cross product (q - p) x (r - p)
        return torch.sign((q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0]))
    n = len(x0)
    return sum(int(side(x0[i], x1[i], x0[j]) * side(x0[i], x1[i], x1[j]) < 0
                   and side(x0[j], x1[j], x0[i]) * side(x0[j], x1[j], x1[i]) < 0)
               for i in range(n) for j in range(i + 1, n))


def _sinkhorn(cost, reg, iters):
    n, m = cost.shape
    f, g = torch.zeros(n, dtype=cost.dtype), torch.zeros(m, dtype=cost.dtype)
    for _ in range(iters):
        f = -reg * torch.logsumexp((g[None] - cost) / reg, 1) - reg * torch.log(torch.tensor(float(n)))
        g = -reg * torch.logsumexp((f[:, None] - cost) / reg, 0) - reg * torch.log(torch.tensor(float(m)))
    return torch.exp((f[:, None] + g[None] - cost) / reg)


def test_check_ot_pairing():
    from fmlearn.exercises import check_ot_pairing
    assert check_ot_pairing(_pairing)
    with pytest.raises(ExerciseCheckError, match="nothing was re-paired"):
        check_ot_pairing(lambda x0, x1: torch.arange(len(x0)))
    with pytest.raises(ExerciseCheckError, match="not optimal"):  # rows and columns swapped
        check_ot_pairing(lambda x0, x1: torch.as_tensor(__import__("scipy.optimize", fromlist=["x"])
                                                        .linear_sum_assignment(torch.cdist(x0, x1).pow(2).numpy())[1]))
    with pytest.raises(ExerciseCheckError, match="not optimal"):  # sort both by the first coordinate
        check_ot_pairing(lambda x0, x1: x0[:, 0].argsort()[x1[:, 0].argsort().argsort()])
    with pytest.raises(ExerciseCheckError, match="permutation"):
        check_ot_pairing(lambda x0, x1: torch.cdist(x1, x0).argmin(1))  # nearest neighbour: repeats
    with pytest.raises(ExerciseCheckError, match=r"(?s)expected.*got.*hint: .*not the squared distance.*pow\(2\)"):
        check_ot_pairing(lambda x0, x1: torch.as_tensor(__import__("scipy.optimize", fromlist=["x"])
                                                        .linear_sum_assignment(torch.cdist(x1, x0).numpy())[1]))


def test_check_count_crossings():
    from fmlearn.exercises import check_count_crossings
    assert check_count_crossings(_crossings)
    with pytest.raises(ExerciseCheckError, match="twice"):
        check_count_crossings(lambda x0, x1: 2 * _crossings(x0, x1))
    with pytest.raises(ExerciseCheckError, match="opposite sides"):  # only one of the two side tests
        check_count_crossings(lambda x0, x1: sum(
            int((torch.sign(torch.linalg.det(torch.stack([x1[i] - x0[i], x0[j] - x0[i]]))) *
                 torch.sign(torch.linalg.det(torch.stack([x1[i] - x0[i], x1[j] - x0[i]])))) < 0)
            for i in range(len(x0)) for j in range(i + 1, len(x0))))


def test_check_sinkhorn():
    from fmlearn.exercises import check_sinkhorn
    assert check_sinkhorn(_sinkhorn)

    def rows_only(cost, reg, iters):
        return torch.softmax(-cost / reg, 1) / cost.shape[0]
    with pytest.raises(ExerciseCheckError, match="differs"):
        check_sinkhorn(rows_only)

    def scaling(cost, reg, iters):  # correct at moderate reg, underflows at small reg
        k = torch.exp(-cost / reg)
        u, v = torch.ones(cost.shape[0], dtype=cost.dtype), torch.ones(cost.shape[1], dtype=cost.dtype)
        for _ in range(iters):
            u = (1 / cost.shape[0]) / (k @ v)
            v = (1 / cost.shape[1]) / (k.T @ u)
        return u[:, None] * k * v[None]
    with pytest.raises(ExerciseCheckError, match="log domain"):
        check_sinkhorn(scaling)


def test_check_sinkhorn_names_the_update_order():
    """After 3 iterations the two orders differ by ~0.04 (after 200 they agree to rounding): updating g before f
    fails with the order hint, f before g (as the task asks) passes, and another slip gets the general hint."""
    from fmlearn.exercises import check_sinkhorn

    def g_first(cost, reg, iters):
        n, m = cost.shape
        f, g = torch.zeros(n, dtype=cost.dtype), torch.zeros(m, dtype=cost.dtype)
        for _ in range(iters):
            g = -reg * torch.logsumexp((f[:, None] - cost) / reg, 0) - reg * math.log(m)
            f = -reg * torch.logsumexp((g[None] - cost) / reg, 1) - reg * math.log(n)
        return torch.exp((f[:, None] + g[None] - cost) / reg)
    g = torch.Generator().manual_seed(3)
    x0, x1 = torch.randn(6, 2, generator=g, dtype=torch.float64), torch.randn(9, 2, generator=g, dtype=torch.float64)
    cost = torch.cdist(x0, x1).pow(2)
    assert torch.allclose(g_first(cost, 0.5, 200), _sinkhorn(cost, 0.5, 200), atol=1e-12)  # converged: no tell
    assert torch.allclose(g_first(cost, 0.5, 3).sum(1), torch.full((6,), 1 / 6, dtype=torch.float64))
    assert not torch.allclose(g_first(cost, 0.5, 3).sum(0), torch.full((9,), 1 / 9, dtype=torch.float64), atol=1e-3)
    with pytest.raises(ExerciseCheckError, match=r"(?s)with g updated before f.*expected: column sums exactly 1/12"
                       r".*hint: update f \(the row sums\) first, then g \(the column sums\), in every iteration; "
                       r"the returned plan's column sums are then exact"):
        check_sinkhorn(g_first)
    assert check_sinkhorn(_sinkhorn)
    with pytest.raises(ExerciseCheckError, match=r"(?s)after 3 iterations.*differs.*hint: start from f = g = 0"):
        check_sinkhorn(lambda cost, reg, iters: _sinkhorn(cost, reg, iters + 1))  # one iteration too many


# --- chapter 6 checks -------------------------------------------------------------------------------------------

def _drop(y, p, null, generator):
    return torch.where(torch.rand(y.shape, generator=generator) < p, torch.full_like(y, null), y)


def _cfg(model, x, t, y, w):
    t2 = torch.cat([t, t]) if torch.is_tensor(t) and t.ndim else t
    out = model(torch.cat([x, x]), t2, torch.cat([y, torch.full_like(y, model.num_classes)]))
    cond, uncond = out.chunk(2)
    return (1 + w) * cond - w * uncond


def test_check_guidance_pieces():
    from fmlearn.exercises import check_cfg_forward, check_guided_velocity, check_label_dropout
    assert check_label_dropout(_drop)
    with pytest.raises(ExerciseCheckError, match="1 - p"):
        check_label_dropout(lambda y, p, null, g: _drop(y, 1 - p, null, g))
    with pytest.raises(ExerciseCheckError, match="not random labels"):
        check_label_dropout(lambda y, p, null, g: torch.where(torch.rand(y.shape, generator=g) < p,
                                                              torch.randint(0, null, y.shape, generator=g), y))
    assert check_guided_velocity(lambda uc, uu, w: (1 + w) * uc - w * uu)
    with pytest.raises(ExerciseCheckError, match="other convention"):
        check_guided_velocity(lambda uc, uu, w: uu + w * (uc - uu))
    assert check_cfg_forward(_cfg)
    def forgot_null(m, x, t, y, w):  # the label y in both halves
        t2 = torch.cat([t, t]) if torch.is_tensor(t) and t.ndim else t
        cond, uncond = m(torch.cat([x, x]), t2, torch.cat([y, y])).chunk(2)
        return (1 + w) * cond - w * uncond
    with pytest.raises(ExerciseCheckError, match="null label"):
        check_cfg_forward(forgot_null)
    with pytest.raises(ExerciseCheckError, match="one forward pass"):
        check_cfg_forward(lambda m, x, t, y, w: (1 + w) * m(x, t, y) - w * m(x, t, torch.full_like(y, m.num_classes)))
