"""No free points (issue 20, item 6): a task may not be answered by calling the fmlearn function that implements it.

Each one-line answer below passed its task's visible check before the table fmlearn.exercises.forbidden existed;
now it fails with ForbiddenCall ("this task asks you to write ... yourself"). Every name in the table, called from
an answer, fails that task's check the same way, through any reference to it; and every solution still passes
every check and hidden test.
"""

import ast
import contextlib
import io
import re
import types
from pathlib import Path

import jupytext
import pytest
import torch

import fmlearn as fm
from fmlearn import discrete as D
from fmlearn import flowmap_objectives as FO
from fmlearn import flowmaps as FM
from fmlearn import generators as G
from fmlearn.exercises import (check_cfg_forward, check_cfm_loss, check_conditional_path, check_divergence,
                               check_euler_sampler, check_gaussian_velocity, check_hutchinson, check_langevin_step,
                               check_mixture_velocity, check_ot_pairing, check_schedule, check_score_from_velocity,
                               check_sinkhorn, check_step)
from fmlearn.exercises._forbid import ForbiddenCall, _resolve, forbidding, guarded
from fmlearn.exercises.checks_discrete import check_discrete_velocity, check_euler_jump
from fmlearn.exercises.checks_fewstep import check_few_step_sampler, check_meanflow_target
from fmlearn.exercises.checks_generators import (check_density_rate, check_generalized_kl, check_intensity,
                                                 check_superposed_step)
from fmlearn.exercises.checks_manifolds import (check_geodesic_velocity, check_sphere_maps, check_tangent_projection,
                                                check_wrapped_difference)
from fmlearn.exercises.forbidden import FORBIDDEN, forbidden_for, task_for
from fmlearn.manifolds import FlatTorus, Sphere
from fmlearn.paths import GeodesicPath

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("ex*.py"))


# --- the mechanism ---------------------------------------------------------------------------------------------

def _make_closure():
    shift = 3.0

    def closure(x):
        return x + shift

    return closure


_closure = _make_closure()


def test_forbidding_reaches_every_reference_and_restores():
    """A saved function, a bound method saved before, a fresh instance, a module attribute: all raise while the
    context is active; nested contexts keep the function forbidden until the outer one exits; then all work again."""
    x, v = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.5, 0.0]])
    saved_exp, saved_odeint = Sphere().exp, fm.odeint
    before = saved_exp(x, v)
    names = ["fmlearn.manifolds.sphere.Sphere.exp", "fmlearn.solvers.odeint"]
    with forbidding(names, "the exp map") as attempts:
        for call in (lambda: saved_exp(x, v), lambda: Sphere().exp(x, v), lambda: saved_odeint(None, x),
                     lambda: fm.odeint(lambda y, t: y, x, steps=1)):
            with pytest.raises(ForbiddenCall, match="this task asks you to write the exp map yourself; "
                                                    "fmlearn.* is the course's answer"):
                call()
        with forbidding(names[:1]) as inner:
            with pytest.raises(ForbiddenCall):
                saved_exp(x, v)
        with pytest.raises(ForbiddenCall):  # the inner context's exit left it forbidden
            saved_exp(x, v)
    assert attempts == [names[0], names[0], names[1], names[1], names[0], names[0]] and inner == [names[0]]
    assert torch.equal(saved_exp(x, v), before) and torch.equal(Sphere().exp(x, v), before)
    assert torch.allclose(fm.odeint(lambda y, t: -y, x, steps=2).x, x / 4)


def test_forbidding_a_function_with_free_variables_and_restoring_after_an_error():
    """A closure's code may only be swapped for one with as many free variables; the context restores it even when
    the body raises."""
    name = f"{__name__}._closure"
    with pytest.raises(RuntimeError, match="boom"):
        with forbidding([name]):
            with pytest.raises(ForbiddenCall):
                _closure(1.0)
            raise RuntimeError("boom")
    assert _closure(1.0) == 4.0


def test_an_attempt_the_answer_catches_still_fails():
    """An answer that tries the forbidden function, catches the error and answers otherwise still fails."""
    def sneaky(x, v):
        try:
            return Sphere().exp(x, v)
        except Exception:  # noqa: BLE001 - what a sneaky answer does
            return x

    answer = guarded(sneaky, ["fmlearn.manifolds.sphere.Sphere.exp"], "exp")
    with pytest.raises(ForbiddenCall, match="fmlearn.manifolds.sphere.Sphere.exp"):
        answer(torch.tensor([[1.0, 0.0, 0.0]]), torch.zeros(1, 3))


def _test_cells(solution):
    """(grade_id, names the task's answer cell defines, the visible check's source) for each task of a solution."""
    cells = [c for c in jupytext.read(solution).cells if c.cell_type == "code"]
    out, defined = [], []
    for cell in cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            defined = [n.name for n in ast.parse(cell.source).body if isinstance(n, ast.FunctionDef)]
        if meta.get("grade"):
            out.append((meta["grade_id"], defined, cell.source.split("### BEGIN HIDDEN TESTS")[0]))
    return out


def test_the_table_names_existing_tasks_and_functions():
    """Every key is a test cell of a solution; every name a Python function defined where it is named (so that
    the message names the right thing); 25 of the 39 tasks, 67 of the 100 points, have an entry."""
    tasks = {(s.stem, g): p for s in SOLUTIONS for c in jupytext.read(s).cells
             if (g := c.metadata.get("nbgrader", {}).get("grade_id")) and (p := c.metadata["nbgrader"].get("points"))}
    assert len(tasks) == 39 and sum(tasks.values()) == 100
    assert set(FORBIDDEN) <= set(tasks), set(FORBIDDEN) - set(tasks)
    for (exercise, grade_id), entry in FORBIDDEN.items():
        assert forbidden_for(exercise, grade_id) == entry.names and task_for(exercise, grade_id) == entry.what
        for name in entry.names:
            fn = _resolve(name)
            assert f"{fn.__module__}.{fn.__qualname__}" == name
    assert forbidden_for("ex02_probability_paths", "continuity_residual_check") == ()
    not_one_line = ("guided_velocity_check", "em_step_check", "langevin_check", "mask_path_check",
                    "elbo_integrand_check", "superposed_step_check")  # no fmlearn call takes the given inputs
    answered = {key for key in FORBIDDEN if key[1] not in not_one_line}
    assert len(answered) == 25 and sum(tasks[k] for k in answered) == 67


# --- one-line answers that passed before -----------------------------------------------------------------------

_PATH = fm.AffineGaussianPath("condot")
_SQRT = fm.Sqrt()


def _oracle(means, s, weights=None):
    return fm.MixtureOracle(fm.GaussianMixture(means, s, weights), _PATH)


def _cost_space(cost):
    return types.SimpleNamespace(cdist=lambda a, b: cost.sqrt())


ONE_LINERS = {  # what passed each task's visible check before it was forbidden
    "schedule, Sqrt's methods": lambda: check_schedule(_SQRT.alpha, _SQRT.beta, _SQRT.d_alpha, _SQRT.d_beta,
                                                       name="sqrt"),
    "conditional path, the path's sample": lambda: check_conditional_path(lambda a, b, t: _PATH.sample(a, b, t).xt,
                                                                          lambda a, b, t: _PATH.sample(a, b, t).dxt),
    "conditional path, CondOT's interpolate": lambda: check_conditional_path(
        lambda a, b, t: fm.CondOT().interpolate(a, b, t[:, None]), lambda a, b, t: fm.CondOT().velocity(a, b, t)),
    "cfm loss": lambda: check_cfm_loss(lambda m, a, b, t: fm.cfm_loss(m, _PATH, a, b, t)),
    "cfm loss, regression_loss": lambda: check_cfm_loss(
        lambda m, a, b, t: fm.objectives.regression_loss(m, _PATH.sample(a, b, t))),
    "euler, odeint": lambda: check_euler_sampler(lambda u, x0, n: fm.odeint(u, x0, steps=n, method="euler").x),
    "euler, sample": lambda: check_euler_sampler(lambda u, x0, n: fm.sample(u, x0, steps=n, method="euler").x),
    "euler, simulate": lambda: check_euler_sampler(lambda u, x0, n: fm.simulate(fm.flow_step(u), x0, steps=n).x),
    "gaussian velocity, oracle": lambda: check_gaussian_velocity(lambda x, t, m, s: _oracle(m[None], s).velocity(x, t)),
    "mixture velocity, oracle": lambda: check_mixture_velocity(lambda x, t, M, s, w: _oracle(M, s, w)(x, t)),
    "mixture velocity, conditional oracle": lambda: check_mixture_velocity(
        lambda x, t, M, s, w: fm.ConditionalMixtureOracle(fm.GaussianMixture(M, s, w), _PATH)(x, t)),
    "heun, odeint": lambda: check_step(lambda u, x, t, h: fm.odeint(u, x, times=[t, t + h], method="heun").x, "heun"),
    "heun, flow_step": lambda: check_step(lambda u, x, t, h: fm.flow_step(u, method="heun")(x, t, t + h), "heun"),
    "heun, the stepper": lambda: check_step(lambda u, x, t, h: fm.stepping._heun(u, torch.add, x, t, h), "heun"),
    "rk4, odeint": lambda: check_step(lambda u, x, t, h: fm.odeint(u, x, times=[t, t + h], method="rk4").x, "rk4"),
    "rk4, the stepper": lambda: check_step(lambda u, x, t, h: fm.stepping._rk4(u, torch.add, x, t, h), "rk4"),
    "divergence": lambda: check_divergence(lambda u, x, t: fm.divergence_exact(u, x, t)[1]),
    "hutchinson": lambda: check_hutchinson(lambda u, x, t, e: fm.divergence_hutchinson(u, x, t, len(e), noise=e)[1]),
    "ot pairing": lambda: check_ot_pairing(fm.ot_plan_exact),
    "sinkhorn, through a space whose distances are the cost": lambda: check_sinkhorn(
        lambda c, reg, n: fm.sinkhorn_plan(torch.zeros(c.shape[0], 1, dtype=c.dtype), torch.zeros(c.shape[1], 1,
                                           dtype=c.dtype), reg, iters=n, tol=None, space=_cost_space(c))),
    "cfg, GuidedVelocity": lambda: check_cfg_forward(lambda m, x, t, y, w: fm.GuidedVelocity(m, w)(x, t, y)),
    "score": lambda: check_score_from_velocity(_PATH.score_from_velocity),
    "score, x0_from_velocity": lambda: check_score_from_velocity(lambda u, x, t: -_PATH.x0_from_velocity(u, x, t)
                                                                 / (1 - t)),
    "discrete velocity": lambda: check_discrete_velocity(lambda p, x, t, v: D.MixturePath(v, "mask").velocity(p, x, t)),
    "euler jump": lambda: check_euler_jump(lambda x, r, h: D.jump_probabilities(x, h * r, r.shape[-1])),
    "sphere maps": lambda: check_sphere_maps(Sphere().exp, Sphere().log),
    "sphere log, the geodesic at 0": lambda: check_sphere_maps(Sphere().exp,
                                                               lambda x, y: Sphere().geodesic(x, y, 0)[1]),
    "tangent projection": lambda: check_tangent_projection(Sphere().proj),
    "geodesic velocity": lambda: check_geodesic_velocity(lambda a, b, t: Sphere().geodesic(a, b, t)[1]),
    "geodesic velocity, the path": lambda: check_geodesic_velocity(
        lambda a, b, t: GeodesicPath(Sphere()).sample(a, b, t).dxt),
    "wrapped difference": lambda: check_wrapped_difference(lambda x, y: FlatTorus(x.shape[1]).log(x, y)),
    "density rate": lambda: check_density_rate(G.condot_density_rate),
    "intensity": lambda: check_intensity(G.condot_intensity),
    "intensity, the conditional jumps": lambda: check_intensity(lambda x, z, t: G.ConditionalJumps(z)(x, t).intensity),
    "generalized kl": lambda: check_generalized_kl(G.generalized_kl),
    "generalized kl, bregman": lambda: check_generalized_kl(lambda a, b: G.bregman(lambda v: torch.xlogy(v, v), a, b)),
    "meanflow target": lambda: check_meanflow_target(lambda m, x, s, t, v: FO.meanflow_target(m, x, s, t, v)[1]),
    "few-step sampler, sample_flow_map": lambda: check_few_step_sampler(lambda m, x0, k: FM.sample_flow_map(m, x0, k).x),
    "few-step sampler, flow_map_step": lambda: check_few_step_sampler(
        lambda m, x0, k: fm.simulate(FM.flow_map_step(m), x0, steps=k).x),
    "few-step sampler, odeint": lambda: check_few_step_sampler(
        lambda m, x0, k: fm.odeint(lambda x, t: m(x, t, t + 1 / k), x0, steps=k, method="euler").x),
    "few-step sampler, flow_step": lambda: check_few_step_sampler(
        lambda m, x0, k: fm.simulate(fm.flow_step(lambda x, t: m(x, t, t + 1 / k)), x0, steps=k).x),
}
_NOT_ONE_LINE = {  # these implement their task but cannot take its given noise or uniforms: forbidden all the same
    "langevin": lambda: check_langevin_step(lambda s, x, eps, z: fm.langevin_step(s, x, eps)),
    "superposed step": lambda: check_superposed_step(lambda v, i, x, t, h, a, u, land: G.superposition(
        v, lambda y, s: G.JumpRates(i(y, s), sampler=lambda _: land), a)(x, t, t + h)),
}


@pytest.mark.parametrize("answer", list(ONE_LINERS.values()) + list(_NOT_ONE_LINE.values()),
                         ids=list(ONE_LINERS) + list(_NOT_ONE_LINE))
def test_a_one_line_answer_fails_its_check_with_the_message(answer):
    with contextlib.redirect_stdout(io.StringIO()):
        with pytest.raises(ForbiddenCall, match=r"^this task asks you to write .+ yourself; fmlearn\.[\w.]+ is the "
                                                r"course's answer: use it afterwards to check yours$"):
            answer()


def test_fmlearns_own_assignment_stays_allowed_for_the_ot_pairing():
    """The task says: build the cost matrix, solve with scipy's assignment; fmlearn's optimal_assignment is that
    helper (the cost matrix is still the learner's), so it stays allowed."""
    with contextlib.redirect_stdout(io.StringIO()):
        assert check_ot_pairing(lambda a, b: fm.optimal_assignment(torch.cdist(b, a) ** 2))


# --- every name of the table, every solution -------------------------------------------------------------------

def _namespace(solution):
    """The solution's imports and answers, run here."""
    cells = [c for c in jupytext.read(solution).cells if c.cell_type == "code"]
    ns = {}
    for cell in cells[:1] + [c for c in cells if c.metadata.get("nbgrader", {}).get("solution")]:
        exec(cell.source, ns)  # noqa: S102 - the course's own solutions
    return ns


_CASES = [(s, grade_id, defined, visible, name) for s in SOLUTIONS for grade_id, defined, visible in _test_cells(s)
          for name in forbidden_for(s.stem, grade_id)]


@pytest.mark.parametrize("solution, grade_id, defined, visible, name", _CASES,
                         ids=[f"{s.stem[:4]} {g}: {n.split('.', 1)[1]}" for s, g, _, _, n in _CASES])
def test_each_forbidden_name_called_by_an_answer_fails_the_tasks_check(solution, grade_id, defined, visible, name):
    """The task's functions replaced by one that calls the forbidden function: the visible check, as the notebook
    runs it, fails with ForbiddenCall naming it (and the task)."""
    ns = _namespace(solution)
    target = _resolve(name)
    ns.update({fn: lambda *args, **kwargs: target(*args, **kwargs) for fn in defined})
    message = f"write {task_for(solution.stem, grade_id)} yourself; {name} is the course's answer"
    with pytest.raises(ForbiddenCall, match=re.escape(message)):
        with contextlib.redirect_stdout(io.StringIO()):
            exec(visible, ns)  # noqa: S102


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.stem)
def test_every_solution_passes_its_checks_and_hidden_tests(solution):
    """The solutions use no forbidden name (a helper for a sub-step, such as condot_density, is not forbidden)."""
    ns = _namespace(solution)
    for cell in jupytext.read(solution).cells:
        if cell.metadata.get("nbgrader", {}).get("grade"):
            with contextlib.redirect_stdout(io.StringIO()):
                exec(cell.source, ns)  # noqa: S102
