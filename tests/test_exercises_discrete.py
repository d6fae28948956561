"""The checks of exercise 8 (discrete flow matching): each accepts the reference solution and rejects the plausible
wrong answers with a hint that names the slip; the solution grades to full points."""

import math
from pathlib import Path

import pytest
import torch

from fmlearn.exercises import ExerciseCheckError
from fmlearn.grading import grade
from fmlearn.exercises.checks_discrete import (check_discrete_velocity, check_euler_jump, check_mask_elbo_integrand,
                                               check_mask_path_sample)

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "ex08_discrete_flow_matching.py"


def _full(x1, mask):
    return torch.full_like(x1, mask)


@pytest.mark.parametrize("answer, hint", [
    (lambda x1, t, mask, u: torch.where(u < t[:, None], _full(x1, mask), x1), "roles are swapped"),
    (lambda x1, t, mask, u: torch.where(u > t[:, None], x1, _full(x1, mask)), "roles are swapped"),
    (lambda x1, t, mask, u: torch.where(u[:, :1] < t[:, None], x1, _full(x1, mask)), "each token on its own"),
    (lambda x1, t, mask, u: torch.where(u < t[:, None], x1, _full(x1, mask)).float(), "integer dtype"),
    (lambda x1, t, mask, u: torch.where(u < t[:, None] ** 2, x1, _full(x1, mask)), r"u < t\[:, None\]"),
], ids=["swapped", "u > t", "one draw per row", "float", "t squared"])
def test_mask_path_check_rejects(answer, hint):
    with pytest.raises(ExerciseCheckError, match=f"(?s)expected.*got.*{hint}"):
        check_mask_path_sample(answer)


def test_mask_path_check_accepts_the_solution(capsys):
    assert check_mask_path_sample(lambda x1, t, mask, u: torch.where(u < t[:, None], x1, _full(x1, mask)))
    assert capsys.readouterr().out.startswith("OK")


def _velocity(probs, x, t, mask, scale=None, minus=True):
    padded = torch.nn.functional.pad(probs, (0, 1))
    onehot = torch.nn.functional.one_hot(x, mask + 1).to(probs.dtype)
    diff = padded - onehot if minus else padded
    return diff * (1 / (1 - t) if scale is None else scale(t))[:, None, None]


@pytest.mark.parametrize("answer, hint", [
    (lambda p, x, t, m: _velocity(p, x, t, m, scale=torch.ones_like), "left out the rate 1 / \\(1 - t\\)"),
    (lambda p, x, t, m: _velocity(p, x, t, m, scale=lambda t: 1 / t.clamp_min(1e-6)), "not 1 / t"),
    (lambda p, x, t, m: _velocity(p, x, t, m, minus=False), "subtract delta"),
    (lambda p, x, t, m: -_velocity(p, x, t, m), "sign is flipped"),
], ids=["no 1/(1-t)", "1/t", "no delta", "sign"])
def test_velocity_check_rejects(answer, hint):
    with pytest.raises(ExerciseCheckError, match=f"(?s)expected.*got.*{hint}"):
        check_discrete_velocity(answer)


def test_velocity_check_accepts_the_solution():
    assert check_discrete_velocity(_velocity)


def _jump(x, rates, h, kind="exp"):
    onehot = torch.nn.functional.one_hot(x, rates.shape[-1]).to(rates.dtype)
    off = rates * (1 - onehot)
    lam = off.sum(-1, keepdim=True)
    if kind == "linear":
        return onehot + h * rates
    if kind == "diagonal":
        return onehot * torch.exp(-h * lam) + (1 - torch.exp(-h * lam)) * rates / lam
    if kind == "unshared":
        return onehot * torch.exp(-h * lam) + h * off
    if kind == "unguarded":  # the formula as written: 0 / 0 where lambda = 0
        return onehot * torch.exp(-h * lam) + (1 - torch.exp(-h * lam)) * off / lam
    if kind == "clamp 1e-300":  # a guard that float32 rounds to 0
        return onehot * torch.exp(-h * lam) + (1 - torch.exp(-h * lam)) * off / lam.clamp_min(1e-300)
    return onehot * torch.exp(-h * lam) + torch.where(lam > 0, (1 - torch.exp(-h * lam)) / lam, 0) * off


@pytest.mark.parametrize("kind, hint", [
    ("linear", r"1 - exp\(-h lambda\), not h lambda"),
    ("diagonal", "exclude the diagonal"),
    ("unshared", "in proportion to their rates"),
])
def test_euler_jump_check_rejects(kind, hint):
    with pytest.raises(ExerciseCheckError, match=f"(?s)expected.*got.*{hint}"):
        check_euler_jump(lambda x, r, h: _jump(x, r, h, kind))


def test_euler_jump_check_accepts_the_solution():
    assert check_euler_jump(_jump)


@pytest.mark.parametrize("kind, dtype, why", [("unguarded", "float64", "0 / 0 = NaN: such a token stays"),
                                              ("clamp 1e-300", "float32", "clamp_min\\(1e-300\\) rounds to 0")])
def test_euler_jump_check_rejects_a_law_that_is_nan_where_no_rate_leaves(kind, dtype, why):
    """A token whose rates are all 0 (every revealed token in the sampler) makes the formula as written 0 / 0: the
    check has such a row, in float64 and float32 (where clamp_min(1e-300) guards nothing), and shows that row."""
    with pytest.raises(ExerciseCheckError, match=f"(?s)\\({dtype}\\) has NaN.*expected: \\[0.0, 0.0, 1.0, 0.0\\] "
                       f"\\(row 5.*got:      \\[nan.*hint: row 5 has no rate to leave.*{why}"):
        check_euler_jump(lambda x, r, h: _jump(x, r, h, kind))


def test_euler_jump_check_tells_the_truth_about_the_first_order_step():
    """At h = 0.05 delta_x + h u is still a probability (smallest entry +0.0007): the hint says what is wrong with it
    there (h lambda for 1 - exp(-h lambda)), not that it is no probability; at h = 2 it has negative entries."""
    with pytest.raises(ExerciseCheckError, match=r"(?s)at h = 0.05 .*expected: .* \(row 1 of a \(5, 4\) tensor.*"
                       r"stays with probability 1 - h lambda instead of exp\(-h lambda\)") as err:
        check_euler_jump(lambda x, r, h: _jump(x, r, h, "linear"))
    assert "not even a probability" not in str(err.value)
    with pytest.raises(ExerciseCheckError, match=r"at h = 2.0 it is not even a probability \(entries down to -"):
        check_euler_jump(lambda x, r, h: _jump(x, r, h, "linear") if h > 1 else _jump(x, r, h))


@pytest.mark.parametrize("answer, hint", [
    (lambda lp, m, t: -(lp * m).sum(1), "weight by kappa'_t"),
    (lambda lp, m, t: -lp.sum(1) / (1 - t), "masked tokens only"),
    (lambda lp, m, t: -(lp * m).sum(1) / t.clamp_min(1e-9), "not 1 / t"),
    (lambda lp, m, t: -(lp * m).mean(1) / (1 - t), "do not average"),
    (lambda lp, m, t: (lp * m).sum(1) / (1 - t), "positive"),
], ids=["no weight", "all tokens", "1/t", "mean", "sign"])
def test_elbo_integrand_check_rejects(answer, hint):
    with pytest.raises(ExerciseCheckError, match=f"(?s)expected.*got.*{hint}"):
        check_mask_elbo_integrand(answer)


def test_elbo_integrand_check_accepts_the_solution():
    assert check_mask_elbo_integrand(lambda lp, m, t: -(lp * m).sum(1) / (1 - t))


def test_unwritten_task_raises_not_implemented():
    def todo(*args):
        raise NotImplementedError()

    with pytest.raises(NotImplementedError, match="not written yet"):
        check_euler_jump(todo)


def test_grading_the_solution_gives_full_points():
    scores = grade(SOLUTION.with_suffix(".ipynb"), SOLUTION)
    assert len(scores) == 4 and sum(s.max_points for s in scores) == 10
    assert all(s.points == s.max_points > 0 for s in scores), [(s.grade_id, s.error) for s in scores]


def test_the_solution_quotes_the_right_formulas():
    """The hidden tests' hand-computed numbers: exp(-2) for the jump, 2 log 2 for the integrand."""
    assert math.isclose(1 - math.exp(-2), 0.8646647167633873)
    text = SOLUTION.read_text()
    assert "### BEGIN HIDDEN TESTS" in text and text.count("expect_close(") >= 5
