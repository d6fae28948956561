"""The exercises of chapter 11 (few steps): each check accepts the reference answer and rejects each plausible wrong
answer with its own hint; the checks' references are right (the Gaussian flow's closed form against an ODE solve,
finite differences against a jvp); the hidden tests pass the right answers and fail the wrong ones with a hint; and
the grader's note on a wrong task is the check's message, word for word.
"""

import math
import re
from pathlib import Path

import pytest
import torch

import fmlearn as fm
from fmlearn.exercises import ExerciseCheckError, student_source
from fmlearn.exercises.checks_fewstep import (GaussianFlow, _affine_defect, _AffineMap, _directional, _flow,
                                              _RandomMap, _target_points, check_average_velocities,
                                              check_few_step_sampler, check_meanflow_target, check_semigroup_defect)
from fmlearn.grading import grade

from test_exercises import _fill

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "ex11_few_steps.py"
D64 = torch.float64


def _rejects(check, answer, match):
    """check(answer) fails with a message matching ``match``, each line short enough that the grader's note keeps
    it whole (it cuts lines at 300 characters)."""
    with pytest.raises(ExerciseCheckError, match=f"(?s){match}") as err:
        check(answer)
    assert max(len(line) for line in str(err.value).splitlines()) <= 300, str(err.value)


# --- the checks' references ------------------------------------------------------------------------------------------

def test_gaussian_flow_map_is_the_ode_solution():
    """X_{s->t}(x) in closed form against RK4 on its own velocity (400 steps from s to t), and u(x, s, s) = v."""
    flow = GaussianFlow(torch.tensor([2.0, -1.0], dtype=D64), 0.5)
    x = torch.randn(50, 2, dtype=D64)
    for s, t in ((0.0, 1.0), (0.2, 0.7)):
        solved = fm.odeint(flow.velocity, x, method="rk4", times=torch.linspace(s, t, 401, dtype=D64).tolist()).x
        assert torch.allclose(flow.map(x, s, t), solved, atol=1e-10)
        assert torch.allclose(flow.average_velocity(x, s, t), (solved - x) / (t - s), atol=1e-9)
    assert torch.allclose(flow.average_velocity(x, 0.3, 0.3), flow.velocity(x, 0.3), atol=0)
    s = torch.rand(50, dtype=D64)
    assert torch.allclose(flow.map(x, s, s), x) and torch.allclose(flow.map(flow.map(x, 0.1, 0.4), 0.4, 0.9),
                                                                      flow.map(x, 0.1, 0.9))
    with pytest.raises(ValueError, match="scale"):
        GaussianFlow(torch.zeros(2), 0.0)


def test_directional_difference_matches_a_jvp():
    """The target check's reference (central differences in float64) agrees with torch.func.jvp to 1e-8."""
    model = _RandomMap(5)
    x, s, t = _target_points(6)
    a, b, c = torch.randn_like(x), torch.rand_like(s), torch.rand_like(t)
    _, exact = torch.func.jvp(model, (x, s, t), (a, b, c))
    assert torch.allclose(_directional(model, x, s, t, a, b, c), exact, atol=1e-8)


# --- the reference answers ---------------------------------------------------------------------------------------------

def _pairs(times, states, pairs):
    i, j = pairs[:, 0], pairs[:, 1]
    s, t = times[i], times[j]
    if bool((t <= s).any()):
        raise ValueError(f"pairs with t_j <= t_i: {pairs[t <= s].tolist()}")
    return states[i], s, t, (states[j] - states[i]) / (t - s)[:, None, None]


def _unchecked(times, states, pairs):
    i, j = pairs[:, 0], pairs[:, 1]
    s, t = times[i], times[j]
    return states[i], s, t, (states[j] - states[i]) / (t - s)[:, None, None]


def _target(model, x, s, t, v, tangents=(1, 1, 0), sign=1.0, factor=True, detach=True):
    a, b, c = tangents
    _, du = torch.func.jvp(model, (x, s, t), (a * v, b * torch.ones_like(s), c * torch.ones_like(t)))
    out = v + sign * ((t - s)[:, None] if factor else 1.0) * du
    return out.detach() if detach else out


def _sample(model, x0, steps):
    x = x0
    for i in range(steps):
        s, t = i / steps, (i + 1) / steps
        x = x + (t - s) * model(x, s, t)
    return x


def _sample_grid(model, x0, steps, grid=None, h=None, end=None, at=None):
    """A sampler with one of the usual slips: another grid, another step size, another end time, another point."""
    x = x0
    times = grid(steps) if grid else [i / steps for i in range(steps + 1)]
    for a, b in zip(times[:-1], times[1:]):
        x = x + (h(steps) if h else b - a) * model(x0 if at == "x0" else x, a, end if end is not None else b)
    return x


def _step(model, y, a, b):
    return y + (b - a) * model(y, a, b)


def _defect(model, x, s, r, t):
    return (_step(model, _step(model, x, s, r), r, t) - _step(model, x, s, t)).norm(dim=1)


def test_checks_accept_the_reference_answers(capsys):
    assert check_average_velocities(_pairs)
    assert check_meanflow_target(_target)
    assert check_few_step_sampler(_sample)
    assert check_semigroup_defect(_defect)
    assert capsys.readouterr().out.count("OK: ") == 4


def test_the_sampler_may_pass_the_times_as_tensors():
    def sample(model, x0, steps):
        x = x0
        for i in range(steps):
            s, t = torch.full((len(x0),), i / steps), torch.full((len(x0),), (i + 1) / steps)  # float32 times
            x = x + (t - s)[:, None].to(x) * model(x, s, t)
        return x

    assert check_few_step_sampler(sample)


def test_unwritten_tasks_raise_not_implemented():
    def todo(*args):
        raise NotImplementedError()

    for check in (check_average_velocities, check_meanflow_target, check_few_step_sampler, check_semigroup_defect):
        with pytest.raises(NotImplementedError, match="not written yet"):
            check(todo)


# --- task 1 --------------------------------------------------------------------------------------------------------------

def _first_pair_only(times, states, pairs):
    if times[pairs[0, 1]] <= times[pairs[0, 0]]:
        raise ValueError("the first pair runs backwards")
    return _unchecked(times, states, pairs)


def _bare_error(times, states, pairs):
    if bool((times[pairs[:, 1]] <= times[pairs[:, 0]]).any()):
        raise ValueError()
    return _unchecked(times, states, pairs)


def _asserted(times, states, pairs):
    assert bool((times[pairs[:, 1]] > times[pairs[:, 0]]).all())
    return _unchecked(times, states, pairs)


def _replace(k, fn):
    return lambda T, S, P: tuple(fn(T, S, P, *_pairs(T, S, P)) if i == k else o for i, o in enumerate(_pairs(T, S, P)))


@pytest.mark.parametrize("wrong, match", [
    (_unchecked, "accepted the pair \\(5, 2\\).*hint: a pair with t_j <= t_i gives a meaningless target"),
    (_replace(3, lambda T, S, P, x, s, t, u: -u), "differ from the exact.*hint: the sign is flipped"),
    (_replace(0, lambda T, S, P, x, s, t, u: S[P[:, 1]]), "anchor points x are wrong.*anchored at the start"),
    (lambda T, S, P: (lambda x, s, t, u: (x, t, s, u))(*_pairs(T, S, P)), "times \\(s, t\\).*s and t are swapped"),
    (_replace(3, lambda T, S, P, x, s, t, u: S[P[:, 1]] - S[P[:, 0]]), "u is a velocity, not a displacement"),
    (_replace(3, lambda T, S, P, x, s, t, u: (S[P[:, 1]] - S[P[:, 0]]) * (len(T) - 1)
              / (P[:, 1] - P[:, 0]).to(D64)[:, None, None]), "the grid is not uniform"),
    (_replace(3, lambda T, S, P, x, s, t, u: 2 * u), "hint: the average velocity between the states"),
    (_first_pair_only, "accepted the pairs \\(0, 4\\), \\(1, 6\\), \\(6, 2\\)"),
    (_bare_error, "ValueError for the pair \\(5, 2\\).*carries no message"),
    (_asserted, "must refuse the pair \\(5, 2\\).*with a ValueError.*got:      AssertionError"),
], ids=["r > t accepted", "sign", "end anchor", "s t swapped", "no division", "index grid", "other", "first pair only",
        "bare ValueError", "assert"])
def test_average_velocities_check_names_the_slip(wrong, match):
    _rejects(check_average_velocities, wrong, match)


def test_average_velocities_refusing_valid_pairs_is_named():
    def refuses(times, states, pairs):
        raise ValueError("no")

    with pytest.raises(ExerciseCheckError, match="refused valid pairs"):
        check_average_velocities(refuses)


# --- task 2 --------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, match", [
    ({"sign": -1.0}, "the sign of the \\(t - s\\) term is flipped"),
    ({"sign": -1.0, "tangents": (1, 0, 1)}, "the MeanFlow paper's form"),
    ({"tangents": (1, 1, 1)}, "the end time t is held fixed"),
    ({"tangents": (1, 0, 0)}, "the start time s moves along the trajectory too"),
    ({"tangents": (0, 1, 0)}, "its tangent is v, not 0"),
    ({"factor": False}, "multiplied by \\(t - s\\)"),
    ({"detach": False}, "still attached to the model's graph.*hint: stop the gradient"),
    ({"sign": 2.0}, "hint: d/ds u\\(x_s, s, t\\) along the trajectory is one jvp"),
], ids=["sign", "paper's anchoring", "t tangent 1", "s tangent 0", "x tangent 0", "no (t - s)", "no stop-gradient",
        "other"])
def test_meanflow_target_check_names_the_slip(kw, match):
    _rejects(check_meanflow_target, lambda m, x, s, t, v: _target(m, x, s, t, v, **kw), match)


def test_meanflow_target_check_names_the_models_own_output_and_rejects_an_in_place_update():
    with pytest.raises(ExerciseCheckError, match="returned the model's own output"):
        check_meanflow_target(lambda m, x, s, t, v: m(x, s, t).detach())

    def in_place(m, x, s, t, v):
        _, du = torch.func.jvp(m, (x, s, t), (v, torch.ones_like(s), torch.zeros_like(t)))
        return v.add_((t - s)[:, None] * du).detach()

    with pytest.raises(ExerciseCheckError, match="changed its input in place \\(argument 5"):
        check_meanflow_target(in_place)


def test_the_exact_maps_fixed_point_catches_an_answer_that_special_cases_the_network():
    """An answer right for networks (nn.Module) and wrong for any other callable passes the finite-difference half
    and fails the fixed point of the exact map."""
    def special(m, x, s, t, v):
        return _target(m, x, s, t, v) if isinstance(m, torch.nn.Module) else v

    with pytest.raises(ExerciseCheckError, match="the target must be u itself"):
        check_meanflow_target(special)


def test_the_exact_map_is_the_fixed_point_and_the_tangent_is_not():
    flow = _flow()
    x, s, t = _target_points(3)
    v = flow.velocity(x, s)
    assert torch.allclose(_target(flow, x, s, t, v), flow.average_velocity(x, s, t), atol=1e-10)
    tangent = lambda y, a, b: flow.velocity(y, a)  # noqa: E731
    assert (_target(tangent, x, s, t, v) - tangent(x, s, t)).abs().max() > 0.1


# --- task 3 --------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, match", [
    ({"end": 1.0}, "every call asks for u\\(x, t_i, 1\\)"),
    ({"grid": lambda k: torch.linspace(0, 1, k + 2).tolist()}, "off-by-one in the grid or the loop"),
    ({"grid": lambda k: [i / k for i in range(k)]}, "it was called 0 times|off-by-one"),
    ({"h": lambda k: 1 / (k + 1)}, "1 / steps times the model's output"),
    ({"at": "x0"}, "start from x0, step x = x \\+ h \\* model"),
], ids=["u(x, t_i, 1)", "k + 1 steps", "k - 1 steps", "step size", "x0 every step"])
def test_few_step_sampler_check_names_the_slip(kw, match):
    _rejects(check_few_step_sampler, lambda m, x0, k: _sample_grid(m, x0, k, **kw), match)


def test_few_step_sampler_check_names_euler_and_the_network_half():
    with pytest.raises(ExerciseCheckError, match="called with s = t, its instantaneous velocity: that is Euler's step"):
        check_few_step_sampler(_euler)

    def exact_only(model, x0, steps):  # right for callables, wrong for networks: the network half catches it
        x = _sample(model, x0, steps)
        return x + 0.01 if isinstance(model, torch.nn.Module) else x

    with pytest.raises(ExerciseCheckError, match="(?s)with a random network map differ.*use the state of the previous"):
        check_few_step_sampler(exact_only)


def _euler(model, x0, steps):
    x = x0
    for i in range(steps):
        x = x + (1 / steps) * model(x, i / steps, i / steps)
    return x


def test_few_step_sampler_check_rejects_an_in_place_update():
    def in_place(model, x0, steps):
        for i in range(steps):
            x0 += (1 / steps) * model(x0, i / steps, (i + 1) / steps)
        return x0

    with pytest.raises(ExerciseCheckError, match="changed its input in place"):
        check_few_step_sampler(in_place)


# --- task 4 --------------------------------------------------------------------------------------------------------------

def test_the_affine_defect_from_matrices_is_the_direct_composition():
    x = torch.randn(7, 2, dtype=D64)
    for s, r, t in ((0.0, 0.5, 1.0), (0.1, 0.7, 0.8)):
        assert torch.allclose(_affine_defect(x, s, r, t), _defect(_AffineMap(), x, s, r, t), atol=1e-12)
    assert float(_affine_defect(x, 0.0, 0.5, 1.0).min()) > 0.01  # the affine model is no exact map


@pytest.mark.parametrize("wrong, match", [
    (lambda m, x, s, r, t: (_step(m, _step(m, x, r, t), s, r) - _step(m, x, s, t)).norm(dim=1), "wrong order"),
    (lambda m, x, s, r, t: (x + (r - s) * m(x, s, r) + (t - r) * m(x, r, t) - _step(m, x, s, t)).norm(dim=1),
     "the second step starts from x"),
    (lambda m, x, s, r, t: _defect(m, x, s, r, t) ** 2, "that is the squared norm"),
    (lambda m, x, s, r, t: _defect(m, x, s, r, t).mean(), "returned the wrong shape"),
    (lambda m, x, s, r, t: (_step(m, _step(m, x, s, r), r, t) - _step(m, x, s, t)).abs().sum(1),
     "hint: X_\\{a->b\\}\\(y\\) = y \\+ \\(b - a\\) u"),
], ids=["order", "second step from x", "squared", "mean", "other"])
def test_semigroup_defect_check_names_the_slip(wrong, match):
    _rejects(check_semigroup_defect, wrong, match)


def test_semigroup_defect_check_rejects_an_answer_right_only_for_affine_models():
    def affine_only(m, x, s, r, t):
        return _defect(m, x, s, r, t) if isinstance(m, _AffineMap) else _defect(m, x, s, r, t) + 0.01

    _rejects(check_semigroup_defect, affine_only, "exact map of a Gaussian flow must have no semigroup defect")


# --- hidden tests and grading ---------------------------------------------------------------------------------------

def _hidden(grade_id: str) -> str:
    text = SOLUTION.read_text()
    cell = text[text.index(f'"grade_id": "{grade_id}_check"'):]
    return re.search(r"(?s)### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", cell).group(1)


def _run_hidden(grade_id: str, **functions):
    exec(compile(_hidden(grade_id), f"<hidden tests of {grade_id}>", "exec"), {"math": math, "torch": torch,
                                                                               **functions})


_RIGHT = {"average_velocities": _pairs, "meanflow_target": _target, "sample_flow_map": _sample,
          "semigroup_defect": _defect}
_WRONG = [
    ("average_velocities", "r > t accepted", _unchecked),
    ("average_velocities", "first pair only", _first_pair_only),
    ("average_velocities", "sign", _replace(3, lambda T, S, P, x, s, t, u: -u)),
    ("average_velocities", "end anchor", _replace(0, lambda T, S, P, x, s, t, u: S[P[:, 1]])),
    ("meanflow_target", "sign", lambda m, x, s, t, v: _target(m, x, s, t, v, sign=-1.0)),
    ("meanflow_target", "no stop-gradient", lambda m, x, s, t, v: _target(m, x, s, t, v, detach=False)),
    ("meanflow_target", "s tangent 0", lambda m, x, s, t, v: _target(m, x, s, t, v, tangents=(1, 0, 0))),
    ("sample_flow_map", "u(x, t_i, 1)", lambda m, x0, k: _sample_grid(m, x0, k, end=1.0)),
    ("sample_flow_map", "k + 1 steps", lambda m, x0, k: _sample_grid(m, x0, k, grid=lambda n: torch.linspace(
        0, 1, n + 2).tolist())),
    ("semigroup_defect", "squared", lambda m, x, s, r, t: _defect(m, x, s, r, t) ** 2),
    ("semigroup_defect", "second step from x",
     lambda m, x, s, r, t: (x + (r - s) * m(x, s, r) + (t - r) * m(x, r, t) - _step(m, x, s, t)).norm(dim=1)),
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
        "average_velocities": ("average_velocities(times, states, pairs)",
                               "i, j = pairs[:, 0], pairs[:, 1]\ns, t = times[i], times[j]\n"
                               "return states[i], s, t, (states[j] - states[i]) / (t - s)[:, None, None]"),
        "meanflow_target": ("meanflow_target(model, x, s, t, v)",
                            "_, du = torch.func.jvp(model, (x, s, t), (v, torch.ones_like(s), torch.zeros_like(t)))\n"
                            "return v + (t - s)[:, None] * du"),
        "sample_flow_map": ("sample_flow_map(model, x0, steps)",
                            "x = x0\nfor i in range(steps):\n    x = x + model(x, i / steps, 1.0) / steps\nreturn x"),
        "semigroup_defect": ("semigroup_defect(model, x, s, r, t)",
                             "y = x + (r - s) * model(x, s, r)\ntwo = y + (t - r) * model(y, r, t)\n"
                             "return (two - x - (t - s) * model(x, s, t)).pow(2).sum(1)"),
    }
    text = student_source(SOLUTION.read_text())  # the exercise as built
    for grade_id, (_, body) in answers.items():
        text = _fill(text, grade_id, [body])
    sub = tmp_path / "ex11_few_steps_carol.py"
    sub.write_text(text)
    scores = {s.grade_id: s for s in grade(sub, SOLUTION)}
    namespace = {"torch": torch}
    learner = {}
    for grade_id, (sig, body) in answers.items():
        exec(f"def {sig}:\n" + "".join(f"    {line}\n" for line in body.splitlines()), namespace)
        learner[grade_id] = namespace[grade_id]
    checks = {"average_velocities": check_average_velocities, "meanflow_target": check_meanflow_target,
              "sample_flow_map": check_few_step_sampler, "semigroup_defect": check_semigroup_defect}
    hints = {"average_velocities": "gives a meaningless target", "meanflow_target": "stop the gradient",
             "sample_flow_map": "every call asks for u(x, t_i, 1)", "semigroup_defect": "that is the squared norm"}
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


def test_the_checks_guard_the_notebooks_tasks():
    """Each check forbids the functions of its own task: the grade_id it names is a test cell of the solution."""
    source = (ROOT / "fmlearn" / "exercises" / "checks_fewstep.py").read_text()
    named = set(re.findall(r'guarded_for\(\w+, _EXERCISE, "(\w+)"\)', source))
    cells = set(re.findall(r'"grade_id": "(\w+_check)"', SOLUTION.read_text()))
    assert named == cells and len(cells) == 4, (named, cells)
