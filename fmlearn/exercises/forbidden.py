"""Which fmlearn functions answer which task: while a task's answer runs (in its check, and in the grader's
sandbox), these raise ``ForbiddenCall``.

Keyed by (exercise, grade_id of the task's test cell). Each entry says what the task asks the learner to write
and the dotted names of the functions that implement it: those found by trying (a one-line answer calling one
passed the task's check before it was forbidden: 25 tasks, 67 of the 100 points), the wrappers and inner functions
that reach the same code (``fmlearn.sample`` over ``odeint``, ``stepping._rk4``), and, for six tasks where no
fmlearn call can take the inputs the check gives (the noise ``z`` of ``em_step`` and ``langevin``, the uniforms of
``sample_mask_path`` and ``superposed_step``, the log-probabilities of ``elbo_integrand``, the two velocities of
``guide``), the function that implements the task all the same.
A helper the task is meant to use, or one that does a sub-step that is not the task (``condot_density`` in
``density_rate``, the learner's own ``sphere_log`` or ``Sphere.log`` in ``geodesic_velocity``, scipy's assignment
or fmlearn's :func:`~fmlearn.couplings.optimal_assignment` in ``ot_pairing``), stays allowed. A task with no
entry has nothing in fmlearn that answers it.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

from ._forbid import forbidding, guarded


class Forbidden(NamedTuple):
    what: str  # what the task asks for, as in "this task asks you to write <what> yourself"
    names: tuple[str, ...]


_SOLVERS = ("fmlearn.solvers.odeint", "fmlearn.solvers.sample", "fmlearn.solvers.simulate", "fmlearn.solvers.flow_step",
            "fmlearn.stepping.march", "fmlearn.stepping._euler", "fmlearn.stepping._heun", "fmlearn.stepping._midpoint",
            "fmlearn.stepping._rk4")
_ORACLE = ("fmlearn.oracle.MixtureOracle.velocity", "fmlearn.oracle.MixtureOracle.score",
           "fmlearn.oracle.MixtureOracle.__call__", "fmlearn.guidance.ConditionalMixtureOracle.forward",
           "fmlearn.paths.AffineGaussianPath.velocity_from_score")
_GEODESIC = ("fmlearn.manifolds.paths.geodesic", "fmlearn.manifolds.paths.GeodesicPath.sample",
             "fmlearn.manifolds.paths.GeodesicPath.sample_unchecked",
             "fmlearn.manifolds.paths.GeodesicPath.conditional_velocity")
_DIVERGENCE = ("fmlearn.likelihood.divergence_exact", "fmlearn.likelihood.divergence_hutchinson",
               "fmlearn.likelihood._exact", "fmlearn.likelihood._exact_func", "fmlearn.likelihood._exact_loop",
               "fmlearn.likelihood._vjp_forms")

FORBIDDEN: dict[tuple[str, str], Forbidden] = {
    ("ex01_gaussian_mixture_cfm", "schedule_check"): Forbidden(
        "the sqrt schedule and its derivatives",
        tuple(f"fmlearn.schedules.Sqrt.{m}" for m in ("alpha", "beta", "d_alpha", "d_beta", "beta_d_beta"))),
    ("ex01_gaussian_mixture_cfm", "conditional_path_check"): Forbidden(
        "the straight-line path and its velocity",
        ("fmlearn.paths.AffineGaussianPath.sample", "fmlearn.paths.AffineGaussianPath.sample_unchecked",
         "fmlearn.paths.AffineGaussianPath.conditional_velocity", "fmlearn.schedules.Schedule.interpolate",
         "fmlearn.schedules.Schedule.velocity", "fmlearn.schedules.CondOT.interpolate",
         "fmlearn.schedules.CondOT.velocity") + _GEODESIC),
    ("ex01_gaussian_mixture_cfm", "cfm_loss_check"): Forbidden(
        "the CFM loss",
        ("fmlearn.objectives.cfm_loss", "fmlearn.objectives.regression_loss", "fmlearn.objectives.CFMObjective.loss")),
    ("ex01_gaussian_mixture_cfm", "euler_sampler_check"): Forbidden("the Euler sampler", _SOLVERS),
    ("ex02_probability_paths", "gaussian_velocity_check"): Forbidden(
        "the marginal velocity of a Gaussian target", _ORACLE),
    ("ex02_probability_paths", "mixture_velocity_check"): Forbidden("the marginal velocity of a mixture", _ORACLE),
    ("ex03_sampling_ode_solvers", "heun_step_check"): Forbidden("the Heun step", _SOLVERS),
    ("ex03_sampling_ode_solvers", "rk4_step_check"): Forbidden("the Runge-Kutta step", _SOLVERS),
    ("ex04_likelihood", "divergence_check"): Forbidden("the exact divergence", _DIVERGENCE),
    ("ex04_likelihood", "hutchinson_check"): Forbidden("Hutchinson's estimator", _DIVERGENCE),
    ("ex05_couplings_straight_paths", "ot_pairing_check"): Forbidden(
        "the OT pairing", ("fmlearn.couplings.ot_plan_exact", "fmlearn.couplings.OTCoupling.__call__")),
    ("ex05_couplings_straight_paths", "sinkhorn_check"): Forbidden(
        "Sinkhorn's iterations", ("fmlearn.couplings.sinkhorn_plan", "fmlearn.couplings.SinkhornCoupling.__call__")),
    ("ex06_conditional_generation", "guided_velocity_check"): Forbidden(
        "the guided velocity", ("fmlearn.guidance.GuidedVelocity.forward",)),
    ("ex06_conditional_generation", "cfg_forward_check"): Forbidden(
        "guidance in one forward pass",
        ("fmlearn.guidance.GuidedVelocity.forward", "fmlearn.guidance.guided_velocity")),
    ("ex07_diffusion_special_case", "score_from_velocity_check"): Forbidden(
        "the score from the velocity",
        ("fmlearn.paths.AffineGaussianPath.score_from_velocity", "fmlearn.paths.AffineGaussianPath.x0_from_velocity",
         "fmlearn.paths.AffineGaussianPath.x1_from_velocity")),
    ("ex07_diffusion_special_case", "em_step_check"): Forbidden("the Euler-Maruyama step", ("fmlearn.sde.sde_sample",)),
    ("ex07_diffusion_special_case", "langevin_check"): Forbidden("the Langevin step", ("fmlearn.sde.langevin_step",)),
    ("ex08_discrete_flow_matching", "mask_path_check"): Forbidden(
        "the mask path's sample",
        ("fmlearn.discrete.paths.MixturePath.sample", "fmlearn.discrete.paths.MixturePath.sample_given")),
    ("ex08_discrete_flow_matching", "velocity_check"): Forbidden(
        "the velocity from the posterior",
        ("fmlearn.discrete.paths.MixturePath.velocity", "fmlearn.discrete.paths.MixturePath.conditional_velocity",
         "fmlearn.discrete.sampling.posterior_field")),
    ("ex08_discrete_flow_matching", "euler_jump_check"): Forbidden(
        "the Euler jump law",
        ("fmlearn.discrete.categorical.jump_probabilities", "fmlearn.discrete.categorical.Categorical.step")),
    ("ex08_discrete_flow_matching", "elbo_integrand_check"): Forbidden(
        "the ELBO integrand", ("fmlearn.discrete.objectives.token_losses",)),
    ("ex09_riemannian_flow_matching", "sphere_maps_check"): Forbidden(
        "exp and log on the sphere",
        ("fmlearn.manifolds.sphere.Sphere.exp", "fmlearn.manifolds.sphere.Sphere.log",
         "fmlearn.manifolds.sphere.Sphere.geodesic") + _GEODESIC),
    ("ex09_riemannian_flow_matching", "tangent_projection_check"): Forbidden(
        "the tangent projection",
        ("fmlearn.manifolds.sphere.Sphere.proj", "fmlearn.manifolds.sphere.Sphere.tangent_from_ambient")),
    ("ex09_riemannian_flow_matching", "geodesic_velocity_check"): Forbidden(
        "the geodesic's velocity", ("fmlearn.manifolds.sphere.Sphere.geodesic",) + _GEODESIC),
    ("ex09_riemannian_flow_matching", "wrapped_difference_check"): Forbidden(
        "the wrapped difference",
        ("fmlearn.manifolds.torus.FlatTorus.log", "fmlearn.manifolds.torus.FlatTorus.geodesic") + _GEODESIC),
    ("ex10_generator_matching", "density_rate_check"): Forbidden(
        "d/dt p_t(x | z)", ("fmlearn.generators.jumps.condot_density_rate",)),
    ("ex10_generator_matching", "intensity_check"): Forbidden(
        "the jump intensity",
        ("fmlearn.generators.jumps.condot_intensity", "fmlearn.generators.jumps.ConditionalJumps.__call__")),
    ("ex10_generator_matching", "generalized_kl_check"): Forbidden(
        "the generalized KL", ("fmlearn.generators.bregman.generalized_kl", "fmlearn.generators.bregman.bregman")),
    ("ex10_generator_matching", "superposed_step_check"): Forbidden(
        "the superposed step",
        ("fmlearn.generators.markov.superposition", "fmlearn.generators.markov.superpose",
         "fmlearn.generators.markov.jump_step", "fmlearn.solvers.flow_step")),
    ("ex11_few_steps", "meanflow_target_check"): Forbidden(
        "the MeanFlow target", ("fmlearn.flowmap_objectives.meanflow_target",)),
    ("ex11_few_steps", "sample_flow_map_check"): Forbidden(
        "the few-step sampler", ("fmlearn.flowmaps.sample_flow_map", "fmlearn.flowmaps.flow_map_step") + _SOLVERS),
}


def forbidden_for(exercise: str, grade_id: str) -> tuple[str, ...]:
    """The dotted names of the fmlearn functions that a task's answer may not call (empty: none)."""
    entry = FORBIDDEN.get((exercise, grade_id))
    return entry.names if entry else ()


def task_for(exercise: str, grade_id: str) -> str | None:
    """What the task asks the learner to write ("the Heun step"), for the message; None for a task with no entry."""
    entry = FORBIDDEN.get((exercise, grade_id))
    return entry.what if entry else None


def forbidding_for(exercise: str, grade_id: str):
    """``forbidding`` for one task (its names and its description)."""
    entry = FORBIDDEN.get((exercise, grade_id))
    return forbidding(entry.names, entry.what) if entry else contextlib.nullcontext([])


def guarded_for(fn, exercise: str, grade_id: str):
    """The learner's ``fn`` run under its task's forbidding (see ``guarded``)."""
    entry = FORBIDDEN.get((exercise, grade_id))
    return guarded(fn, entry.names, entry.what) if entry else fn


__all__ = ["FORBIDDEN", "Forbidden", "forbidden_for", "forbidding_for", "guarded_for", "task_for"]
