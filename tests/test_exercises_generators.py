"""The exercises of chapter 10 (generator matching): each check accepts the reference answers (the solution's and
fmlearn.generators') and rejects each plausible wrong answer with its own hint; the hidden tests fail on a wrong
answer with a hint too; and the grader's note on a wrong task is the check's message, word for word.
"""

import math
import re
from pathlib import Path

import pytest
import torch

from fmlearn import generators as G
from fmlearn.exercises import ExerciseCheckError, student_source
from fmlearn.grading import grade
from fmlearn.exercises.checks_generators import (_rates, _step_variant, _velocity, check_density_rate,
                                                 check_generalized_kl, check_intensity, check_superposed_step)

from test_exercises import _define, _fill

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "ex10_generator_matching.py"
D64 = torch.float64


def _phi(e):
    return torch.exp(-0.5 * e * e) / math.sqrt(2 * math.pi)


def _eps(x, z, t):
    return (x - t * z) / (1 - t)


# --- task 1: d/dt p_t(x | z) ----------------------------------------------------------------------------------------

def _rate(x, z, t):
    e = _eps(x, z, t)
    return _phi(e) / (1 - t) * (1 + e * z - e * e) / (1 - t)


def test_density_rate_check_accepts_the_reference(capsys):
    assert check_density_rate(_rate)
    assert capsys.readouterr().out.startswith("OK")


@pytest.mark.parametrize("wrong, hint", [
    (lambda x, z, t: _rate(x, z, t) * (1 - t), "you left out the factor 1 / \\(1 - t\\)"),
    (lambda x, z, t: _phi(_eps(x, z, t)) / (1 - t) ** 2 * (1 - _eps(x, z, t) * z - _eps(x, z, t) ** 2),
     "the sign of the eps z term is flipped"),
    (lambda x, z, t: _phi(_eps(x, z, t)) / (1 - t) ** 2 * (_eps(x, z, t) * z - _eps(x, z, t) ** 2),
     "the \\+ 1 is missing: it comes from the normalisation"),
    (lambda x, z, t: _rate(x, z, t) / (1 - t), "you divided by \\(1 - t\\) once too often"),
    (lambda x, z, t: -_rate(x, z, t), "the sign is flipped: at the peak"),
    (lambda x, z, t: _phi(_eps(x, z, t)) * (1 + _eps(x, z, t) * z), "differentiate log p_t"),
], ids=["no 1/(1-t)", "sign of eps z", "no +1", "(1-t)^2", "sign", "other"])
def test_density_rate_check_names_the_slip(wrong, hint):
    with pytest.raises(ExerciseCheckError, match=f"(?s)finite difference in t.*expected.*got.*hint: {hint}"):
        check_density_rate(wrong)


def test_density_rate_check_finds_a_missing_factor_that_t_0_hides():
    """Without 1/(1 - t) the answer is right at t = 0: the check starts at t = 0.3, so it is caught there."""
    x, z = torch.randn(4, 2, dtype=D64), torch.randn(4, 2, dtype=D64)
    assert torch.allclose(_rate(x, z, 0.0) * (1 - 0.0), G.condot_density_rate(x, z, 0.0))
    with pytest.raises(ExerciseCheckError, match="at t = 0.3 differs"):
        check_density_rate(lambda x, z, t: _rate(x, z, t) * (1 - t))


def test_unwritten_task_raises_not_implemented():
    def todo(*args):
        raise NotImplementedError()

    for check in (check_density_rate, check_intensity, check_generalized_kl, check_superposed_step):
        with pytest.raises(NotImplementedError, match="not written yet"):
            check(todo)


# --- task 2: the jump intensity ---------------------------------------------------------------------------------------

def _q(x, z, t):
    e = _eps(x, z, t)
    return e * e - e * z - 1


def _lam(x, z, t):
    return _q(x, z, t).clamp_min(0) / (1 - t)


def test_intensity_check_accepts_the_reference(capsys):
    assert check_intensity(_lam)
    assert "forward equation" in capsys.readouterr().out


def test_intensity_through_the_density_is_refused_where_it_is_nan():
    """[-d/dt p_t]_+ / p_t computed as the task's formula reads is right where p_t does not underflow (within 10
    standard deviations, the grid's points) and 0 / 0 = nan far out, at x = 40: the check tries there and says so."""
    literal = lambda x, z, t: (-_rate(x, z, t)).clamp_min(0) / (_phi(_eps(x, z, t)) / (1 - t))  # noqa: E731
    far = torch.tensor([[40.0]], dtype=D64)
    assert torch.isnan(literal(far, torch.zeros_like(far), 0.5)).all()
    with pytest.raises(ExerciseCheckError, match="(?s)far in the tails.*got:      \\[nan.*p_t underflows to 0"):
        check_intensity(literal)


@pytest.mark.parametrize("wrong, match", [
    (lambda x, z, t: _q(x, z, t) / (1 - t), "(?s)negative at some points.*hint: a rate is never negative"),
    (lambda x, z, t: (-_q(x, z, t)).clamp_min(0) / (1 - t), "(?s)forward equation.*hint: this is the rate of arrival"),
    (lambda x, z, t: _q(x, z, t).clamp_min(0), "(?s)forward equation.*hint: you left out the factor 1 / \\(1 - t\\)"),
    (lambda x, z, t: (_eps(x, z, t) ** 2 + _eps(x, z, t) * z - 1).clamp_min(0) / (1 - t),
     "(?s)forward equation.*hint: the sign of the eps z term is flipped"),
    (lambda x, z, t: _q(x, z, t).abs() / (1 - t), "(?s)forward equation.*hint: \\|.\\| makes particles leave"),
    (lambda x, z, t: 2 * _lam(x, z, t), "(?s)forward equation.*hint: leave where the density falls"),
], ids=["no positive part", "arrival", "no 1/(1-t)", "sign of eps z", "abs", "other"])
def test_intensity_check_names_the_slip(wrong, match):
    with pytest.raises(ExerciseCheckError, match=match):
        check_intensity(wrong)


def test_without_the_positive_part_the_forward_equation_holds_only_formally():
    """Why the check tests the sign first: with lambda = -d/dt p_t / p_t (negative where p_t rises) the forward
    equation's residual is 0 (no mass moves by J), so only the sign tells this answer apart."""
    t, z = 0.5, 1.3
    grid = (t * z + (1 - t) * torch.linspace(-10, 10, 8001, dtype=D64)).reshape(-1, 1)
    zz = torch.full_like(grid, z)
    p, dp = G.condot_density(grid, zz, t), G.condot_density_rate(grid, zz, t)
    lam = _q(grid, zz, t) / (1 - t)
    assert float((-p * lam - dp).abs().max()) < 1e-12 * float(dp.abs().max())
    assert abs(float((p * lam).sum())) < 1e-9 * float(dp.abs().sum())


# --- task 3: the generalized KL ------------------------------------------------------------------------------------

def _gkl(a, b):
    return (torch.xlogy(a, a / b) - a + b).sum(-1)


def test_generalized_kl_check_accepts_the_reference(capsys):
    assert check_generalized_kl(_gkl)
    assert capsys.readouterr().out.startswith("OK")


def _plain_terms(a, b):
    return a * torch.log(a / b)


@pytest.mark.parametrize("wrong, match", [
    (lambda a, b: torch.xlogy(a, a / b).sum(-1), "(?s)Bregman.*expected.*got.*hint: this is the plain KL"),
    (lambda a, b: (torch.xlogy(b, b / a) - b + a).sum(-1), "hint: you computed D\\(b, a\\)"),
    (lambda a, b: (torch.xlogy(a, b / a) - a + b).sum(-1), "hint: log\\(a / b\\), not log\\(b / a\\)"),
    (lambda a, b: (torch.xlogy(a, a / b) + a - b).sum(-1), "hint: the linear terms are - a \\+ b"),
    (lambda a, b: (torch.xlogy(a, a / b) - a + b).mean(-1), "hint: sum over the last axis, not the mean"),
    (lambda a, b: (_plain_terms(a, b) - a + b).sum(-1), "(?s)NaN or inf.*hint: 0 log 0 = 0"),
    (lambda a, b: torch.where(a > 0, torch.xlogy(a, a / b) - a + b, torch.zeros_like(a)).sum(-1),
     "(?s)some a = 0.*hint: an entry with a = 0 still contributes b"),
    (lambda a, b: torch.xlogy(a, a / b) - a + b, "(?s)wrong shape.*hint: sum over the last axis \\(.sum\\(-1\\)\\)"),
    (lambda a, b: (torch.xlogy(a, a / b) - a + b).sum(), "(?s)wrong shape.*hint: one value per row"),
    (lambda a, b: (torch.xlogy(a, a / b) - a + b).sum(-1) ** 2, "hint: D\\(a, b\\) = Phi\\(a\\) - Phi\\(b\\)"),
], ids=["plain KL", "swapped", "log(b/a)", "+a-b", "mean", "0 log 0 = nan", "zeros dropped", "not summed",
        "summed over the batch", "other"])
def test_generalized_kl_check_names_the_slip(wrong, match):
    with pytest.raises(ExerciseCheckError, match=match):
        check_generalized_kl(wrong)


def test_plain_kl_is_right_only_for_normalised_inputs():
    """Why the check uses rates that do not sum to 1: on distributions the plain KL and the generalized KL agree."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(4, 6, generator=g, dtype=D64), torch.rand(4, 6, generator=g, dtype=D64)
    a, b = a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)
    assert torch.allclose(torch.xlogy(a, a / b).sum(-1), G.generalized_kl(a, b), atol=1e-14)


# --- task 4: one superposed step ------------------------------------------------------------------------------------

def _step(velocity, intensity, x, t, h, a, uniforms, landing):
    y = x + h * a * velocity(x, t)
    return torch.where(uniforms < 1 - torch.exp(-h * (1 - a) * intensity(y, t)), landing, y)


def _variant(**kw):
    """A learner's superposed step with one slip (the check's own formula, with its fields passed in)."""
    def step(velocity, intensity, x, t, h, a, uniforms, landing):
        assert velocity is _velocity and intensity is _rates
        args = dict(wv=a, wr=1 - a)
        args.update({k: (v(a) if k in ("wv", "wr") else v) for k, v in kw.items()})
        return _step_variant(x, t, h, a, uniforms, landing, **args)
    return step


def test_superposed_step_check_accepts_the_reference(capsys):
    assert check_superposed_step(_step)
    assert "N(t z, (1 - t)^2)" in capsys.readouterr().out


def test_the_checks_reference_is_the_direct_formula():
    """fmlearn's superposition (which draws its own uniforms from the generator) equals the step written out with
    the same uniforms: the check's reference and the task's wording agree."""
    g = torch.Generator().manual_seed(7)
    x, landing = torch.randn(50, 3, generator=g, dtype=D64), torch.randn(50, 3, generator=g, dtype=D64)
    for a in (0.0, 0.3, 1.0):
        uniforms = torch.rand(x.shape, generator=torch.Generator().manual_seed(8), dtype=D64)
        step = G.superposition(_velocity, lambda y, s: G.JumpRates(_rates(y, s), sampler=lambda _: landing), a,
                               generator=torch.Generator().manual_seed(8))
        want = _step(_velocity, _rates, x, 0.2, 0.3, a, uniforms, landing)
        assert torch.allclose(step(x, 0.2, 0.5), want, atol=1e-12)


@pytest.mark.parametrize("kw, hint", [
    ({"prob": lambda r: r}, "a coordinate jumps with probability 1 - exp\\(-h lambda\\), the chance"),
    ({"prob": lambda r: torch.exp(-r)}, "exp\\(-h lambda\\) is the probability of no jump"),
    ({"above": True}, "jump where uniforms < p"),
    ({"wv": lambda a: 1.0}, "scale the velocity by a"),
    ({"wr": lambda a: 1.0}, "scale the jump rates by 1 - a"),
    ({"wv": lambda a: 1.0, "wr": lambda a: 1.0}, "scale both parts"),
    ({"wv": lambda a: 1 - a, "wr": lambda a: a}, "the weights are swapped"),
    ({"jumps_first": True}, "take the flow step first, then the jumps"),
    ({"rates_at_start": True}, "evaluate the intensity at the point the flow step moved x to"),
], ids=["h lambda", "exp(-h lambda)", "uniforms above", "velocity unscaled", "rates unscaled", "both unscaled",
        "weights swapped", "jumps first", "rates at the start"])
def test_superposed_step_check_names_the_slip(kw, hint):
    with pytest.raises(ExerciseCheckError, match=f"(?s)differs from fmlearn's superposition.*expected.*got.*"
                                                 f"hint: {hint}"):
        check_superposed_step(_variant(**kw))


def test_superposed_step_check_general_hint():
    def jumps_to_zero(velocity, intensity, x, t, h, a, uniforms, landing):  # lands at 0, not at the landing point
        y = x + h * a * velocity(x, t)
        return torch.where(uniforms < 1 - torch.exp(-h * (1 - a) * intensity(y, t)), torch.zeros_like(y), y)
    with pytest.raises(ExerciseCheckError, match="hint: first the flow, x' = x \\+ h a velocity"):
        check_superposed_step(jumps_to_zero)


def test_superposed_step_check_rejects_an_in_place_update():
    body = "x += h * a * velocity(x, t)\njump = uniforms < 1 - torch.exp(-h * (1 - a) * intensity(x, t))\n" \
           "return torch.where(jump, landing, x)"
    with pytest.raises(ExerciseCheckError, match="(?s)changed its input in place.*argument 3"):
        check_superposed_step(_define("superposed_step(velocity, intensity, x, t, h, a, uniforms, landing)", body))


def test_superposed_step_statistical_half_rejects_a_step_that_only_fakes_the_given_numbers():
    """Right on the check's given numbers, then with unscaled jump rates: the marginal at t = 0.9 is off."""
    calls = []

    def sneaky(velocity, intensity, x, t, h, a, uniforms, landing):
        calls.append(1)
        return (_step if len(calls) == 1 else _unscaled_rates)(velocity, intensity, x, t, h, a, uniforms, landing)
    with pytest.raises(ExerciseCheckError, match="(?s)leaves the path.*expected: mean 1.3500, std 0.1000"):
        check_superposed_step(sneaky)


def _unscaled_rates(velocity, intensity, x, t, h, a, uniforms, landing):
    y = x + h * a * velocity(x, t)
    return torch.where(uniforms < 1 - torch.exp(-h * intensity(y, t)), landing, y)


def _unscaled_velocity(velocity, intensity, x, t, h, a, uniforms, landing):
    y = x + h * velocity(x, t)
    return torch.where(uniforms < 1 - torch.exp(-h * (1 - a) * intensity(y, t)), landing, y)


# --- hidden tests and grading ---------------------------------------------------------------------------------------

def _hidden(grade_id: str) -> str:
    text = SOLUTION.read_text()
    cell = text[text.index(f'"grade_id": "{grade_id}_check"'):]
    return re.search(r"(?s)### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", cell).group(1)


def _run_hidden(grade_id: str, **functions):
    exec(compile(_hidden(grade_id), f"<hidden tests of {grade_id}>", "exec"), {"math": math, "torch": torch,
                                                                               **functions})


_RIGHT = {"density_rate": _rate, "intensity": _lam, "generalized_kl": _gkl, "superposed_step": _step}
_WRONG = [
    ("density_rate", "no 1/(1-t)", lambda x, z, t: _rate(x, z, t) * (1 - t)),
    ("density_rate", "sign of eps z",
     lambda x, z, t: _phi(_eps(x, z, t)) / (1 - t) ** 2 * (1 - _eps(x, z, t) * z - _eps(x, z, t) ** 2)),
    ("intensity", "no positive part", lambda x, z, t: _q(x, z, t) / (1 - t)),
    ("intensity", "arrival", lambda x, z, t: (-_q(x, z, t)).clamp_min(0) / (1 - t)),
    ("generalized_kl", "plain KL", lambda a, b: torch.xlogy(a, a / b).sum(-1)),
    ("generalized_kl", "swapped", lambda a, b: (torch.xlogy(b, b / a) - b + a).sum(-1)),
    ("superposed_step", "rates unscaled", _unscaled_rates),
    ("superposed_step", "velocity unscaled", _unscaled_velocity),
    ("superposed_step", "h lambda",
     lambda v, lam, x, t, h, a, u, y: torch.where(u < h * (1 - a) * lam(x + h * a * v(x, t), t), y,
                                                  x + h * a * v(x, t))),
]


@pytest.mark.parametrize("grade_id", sorted(_RIGHT))
def test_hidden_tests_pass_on_the_right_answer(grade_id):
    _run_hidden(grade_id, **{grade_id: _RIGHT[grade_id]})


@pytest.mark.parametrize("grade_id, slip, wrong", _WRONG, ids=[f"{g}: {s}" for g, s, _ in _WRONG])
def test_hidden_tests_fail_on_a_wrong_answer_with_a_hint(grade_id, slip, wrong):
    with pytest.raises(ExerciseCheckError, match="(?s)expected.*got.*hint: "):
        _run_hidden(grade_id, **{grade_id: wrong})


def test_check_and_grader_agree_on_the_same_wrong_answers(tmp_path):
    """A submission with every task answered wrongly in a typical way: each task scores 0 and its note is the
    message (with its hint) that the check gives in the notebook; then the solution itself scores full points."""
    answers = {  # grade_id: (signature, learner's body)
        "density_rate": ("density_rate(x, z, t)", "eps = (x - t * z) / (1 - t)\n"
                         "return condot_density(x, z, t) * (1 + eps * z - eps ** 2)"),
        "intensity": ("intensity(x, z, t)", "eps = (x - t * z) / (1 - t)\nreturn (eps ** 2 - eps * z - 1) / (1 - t)"),
        "generalized_kl": ("generalized_kl(a, b)", "return (a * torch.log(a / b)).sum(-1)"),
        "superposed_step": ("superposed_step(velocity, intensity, x, t, h, a, uniforms, landing)",
                            "x = x + h * a * velocity(x, t)\n"
                            "return torch.where(uniforms < h * (1 - a) * intensity(x, t), landing, x)"),
    }
    text = student_source(SOLUTION.read_text())  # the exercise as built
    for grade_id, (_, body) in answers.items():
        text = _fill(text, grade_id, [body])
    sub = tmp_path / "ex10_generator_matching_carol.py"
    sub.write_text(text)
    scores = {s.grade_id: s for s in grade(sub, SOLUTION)}
    namespace = {"torch": torch, "condot_density": G.condot_density}
    learner = {}
    for grade_id, (sig, body) in answers.items():
        exec(f"def {sig}:\n" + "".join(f"    {line}\n" for line in body.splitlines()), namespace)
        learner[grade_id] = namespace[grade_id]
    checks = {"density_rate": check_density_rate, "intensity": check_intensity,
              "generalized_kl": check_generalized_kl, "superposed_step": check_superposed_step}
    hints = {"density_rate": "left out the factor 1 / (1 - t)", "intensity": "a rate is never negative",
             "generalized_kl": "this is the plain KL", "superposed_step": "1 - exp(-h lambda), the chance"}
    for grade_id, check in checks.items():
        with pytest.raises(ExerciseCheckError) as err:
            check(learner[grade_id])
        message = str(err.value)
        assert hints[grade_id] in message
        score = scores[f"{grade_id}_check"]
        assert score.points == 0 and score.error == f"ExerciseCheckError: {message}", (grade_id, score.error)
    full = grade(SOLUTION.with_suffix(".ipynb"), SOLUTION)
    assert all(s.points == s.max_points > 0 for s in full), [(s.grade_id, s.error) for s in full]
    assert sum(s.max_points for s in full) == 12
