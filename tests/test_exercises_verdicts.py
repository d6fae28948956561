"""What a check concludes and how it shows (issue 20, items 8 and 12).

NaN passed checks: ``abs(a - b) > tol`` is False for NaN, so an answer that returned NaN where the check compared
numbers was accepted (10/10 for a mean_cov right only at t = 0, 0.5 and 1). Every comparison is now NaN-safe and
finiteness is checked. And a failed check shows in the notebook as its message and the learner's own line, not as
a screenful of the checker's source with other slips' hints.
"""

import ast
import contextlib
import io
import math
import re
from pathlib import Path

import jupytext
import numpy as np
import pytest
import torch

from fmlearn.exercises import (ExerciseCheckError, check_cfm_loss, check_gaussian_marginal, check_observed_order,
                               check_paired_kl, expect_close)
from fmlearn.exercises._base import max_err

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("ex*.py"))
NAN = float("nan")


# --- NaN answers ---------------------------------------------------------------------------------------------------

def test_max_err_of_a_nan_is_infinite():
    assert max_err(torch.tensor([0.0, NAN]), torch.zeros(2)) == math.inf
    assert max_err(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.5])) == 0.5


def test_observed_order_nan_fails():
    with pytest.raises(ExerciseCheckError, match="(?s)observed order for errors ~ n\\^-1 is NaN or inf.*got:      nan"):
        check_observed_order(lambda steps, errors: NAN)


@pytest.mark.parametrize("answer, what", [
    (lambda lp, lq: (NAN, 0.01), "the KL estimate is NaN"),
    (lambda lp, lq: ((lp - lq).mean().item(), NAN), "the standard error is NaN"),
], ids=["kl", "se"])
def test_paired_kl_nan_fails(answer, what):
    with pytest.raises(ExerciseCheckError, match=what):
        check_paired_kl(answer)


def _mean_cov_right_at(t, m0, S0, m1, S1, where=(0.0, 0.5, 1.0)):
    """Right at the given times (the end points the check tests and the hidden test's t = 0.5), NaN elsewhere."""
    if t in where:
        return (1 - t) * m0 + t * m1, (1 - t) ** 2 * S0 + t ** 2 * S1
    return torch.full_like(m0, NAN), torch.full_like(S0, NAN)


def test_gaussian_marginal_nan_away_from_the_tested_times_fails():
    """The answer that scored 10/10: right only at t in {0, 0.5, 1}; the Monte-Carlo comparison at t = 0.3 now sees
    the NaN."""
    with pytest.raises(ExerciseCheckError, match="(?s)mean returned NaN or inf.*hint: the same formula holds at every t"):
        check_gaussian_marginal(_mean_cov_right_at)
    with contextlib.redirect_stdout(io.StringIO()):
        assert check_gaussian_marginal(lambda *args: _mean_cov_right_at(*args, where=(args[0],)))


def test_cfm_loss_nan_fails():
    with pytest.raises(ExerciseCheckError, match="the CFM loss is NaN or inf"):
        check_cfm_loss(lambda model, x0, x1, t: model(x0, t).sum() * NAN)


def test_expect_close_names_a_nan():
    with pytest.raises(ExerciseCheckError, match=r"got:      \[1.0, nan\]: NaN or inf"):
        expect_close("two values", torch.tensor([1.0, NAN]), [1.0, 2.0], "hint")


def _tasks(solution):
    """(grade_id, the functions its answer cell defines, its visible check) for each task of a solution."""
    out, defined = [], []
    for cell in (c for c in jupytext.read(solution).cells if c.cell_type == "code"):
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            defined = [n.name for n in ast.parse(cell.source).body if isinstance(n, ast.FunctionDef)]
        if meta.get("grade"):
            out.append((meta["grade_id"], defined, cell.source.split("### BEGIN HIDDEN TESTS")[0]))
    return out


def _namespace(solution):
    cells = [c for c in jupytext.read(solution).cells if c.cell_type == "code"]
    ns = {}
    for cell in cells[:1] + [c for c in cells if c.metadata.get("nbgrader", {}).get("solution")]:
        exec(cell.source, ns)  # noqa: S102 - the course's own solutions
    return ns


def _with_a_nan(fn):
    """The solution's function with its last output entry NaN (a number: NaN; a pair: both NaN)."""
    def answer(*args, **kwargs):
        out = fn(*args, **kwargs)
        if isinstance(out, torch.Tensor):
            out = out.clone()
            out.view(-1)[-1] = NAN
            return out
        if isinstance(out, tuple):
            return tuple(o * NAN for o in out)
        return NAN

    return answer


_INTEGER_ANSWERS = {"ot_pairing_check", "count_crossings_check", "label_dropout_check", "mask_path_check"}
_CASES = [(s, g, d, v) for s in SOLUTIONS for g, d, v in _tasks(s) if g not in _INTEGER_ANSWERS]


@pytest.mark.parametrize("solution, grade_id, defined, visible", _CASES,
                         ids=[f"{s.stem[:4]} {g}" for s, g, _, _ in _CASES])
def test_every_check_rejects_an_answer_with_a_nan(solution, grade_id, defined, visible):
    """Every task whose answer is a float: the solution's answer with one NaN entry fails its visible check."""
    ns = _namespace(solution)
    ns.update({name: _with_a_nan(ns[name]) for name in defined})
    with pytest.raises(ExerciseCheckError, match="NaN|nan"):
        with contextlib.redirect_stdout(io.StringIO()):
            exec(visible, ns)  # noqa: S102


# --- how a failed check shows in IPython -----------------------------------------------------------------------------

@pytest.fixture
def shell():
    from IPython.core.interactiveshell import InteractiveShell

    sh = InteractiveShell.instance()
    sh.run_cell("import torch, fmlearn as fm\nfrom fmlearn.exercises import check_cfm_loss, check_step\n")
    yield sh
    InteractiveShell.clear_instance()


def _shown(shell, cell: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        result = shell.run_cell(cell, store_history=True)
    assert result.error_in_exec is not None
    return re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())  # without colours


def _short(text: str) -> None:
    """A few lines; nothing of the checker's source (no file of fmlearn, none of its code, no other slip's hint)."""
    assert len(text.strip().splitlines()) <= 6, text
    for leak in ("Traceback", "checks.py", "_base.py", "File ", "slips", "fail(", "def check_",
                 "you summed over the batch", "averaged over the data dimensions"):
        assert leak not in text, (leak, text)


def test_a_wrong_value_shows_the_message_and_the_learners_line(shell):
    text = _shown(shell, "def cfm_loss(model, x0, x1, t):\n    s = t[:, None]\n    xt = s * x1 + (1 - s) * x0\n"
                         "    return (model(xt, t) - (x1 - x0)).norm(dim=1).mean()\n\ncheck_cfm_loss(cfm_loss)")
    _short(text)
    assert re.search(r"(?s)^ExerciseCheckError: the CFM loss differs from the reference\n  expected: .*\n  got: .*\n"
                     r"  hint: you averaged the norm .*\n  \(in your code: Cell In\[\d+\], line 6: "
                     r"check_cfm_loss\(cfm_loss\)\)", text), text


def test_a_shape_error_shows_the_learners_line_inside_the_function(shell):
    text = _shown(shell, "def cfm_loss(model, x0, x1, t):\n    xt = t * x1 + (1 - t) * x0\n"
                         "    return (model(xt, t) - (x1 - x0)).pow(2).sum(1).mean()\n\ncheck_cfm_loss(cfm_loss)")
    _short(text)
    assert "failed with a shape error" in text and "t[:, None]" in text
    assert re.search(r"in your code: Cell In\[\d+\], line 2, in cfm_loss: xt = t \* x1 \+ \(1 - t\) \* x0", text), text


def test_a_forbidden_call_shows_the_rule_and_the_call(shell):
    text = _shown(shell, "def heun_step(u, x, t, h):\n    return fm.odeint(u, x, times=[t, t + h], method='heun').x\n"
                         "\ncheck_step(heun_step, 'heun')")
    _short(text)
    assert text.startswith("ForbiddenCall: this task asks you to write the Heun step yourself; fmlearn.solvers.odeint "
                           "is the course's answer")
    assert re.search(r"in your code: Cell In\[\d+\], line 2, in heun_step: return fm.odeint", text), text


def test_an_unwritten_task_shows_one_line_and_where(shell):
    text = _shown(shell, "def cfm_loss(model, x0, x1, t):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"
                         "\ncheck_cfm_loss(cfm_loss)")
    _short(text)
    assert text.startswith("NotImplementedError: cfm_loss is not written yet")
    assert re.search(r"in your code: Cell In\[\d+\], line 3, in cfm_loss: raise NotImplementedError\(\)", text), text


def test_an_ordinary_error_keeps_its_full_traceback(shell):
    """Only the checks' own errors are shortened: a bug elsewhere keeps IPython's usual traceback."""
    text = _shown(shell, "def f():\n    return 1 / 0\n\nf()")
    assert "ZeroDivisionError" in text and "Traceback" in text


def test_numpy_orders_are_numbers_too():
    """A 1-element array is a number for check_observed_order (as a float is)."""
    with contextlib.redirect_stdout(io.StringIO()):
        assert check_observed_order(lambda n, e: -np.polyfit(np.log(n), np.log(e), 1)[:1])
        assert check_observed_order(lambda n, e: torch.tensor(-np.polyfit(np.log(n), np.log(e), 1)[0]))
