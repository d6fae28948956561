"""Checks for the exercises of chapters 2 (probability paths) and 3 (ODE solvers).

Marginal velocity of a Gaussian target N(m, s^2 I) on the CondOT path from N(0, I):
x_t = t x1 + (1 - t) x0 is N(t m, sd_t^2 I) with sd_t^2 = t^2 s^2 + (1 - t)^2, and

    u_t(x) = m + (d sd_t / dt) / sd_t (x - t m),   (d sd_t / dt) sd_t = t s^2 - (1 - t).

For a mixture the marginal velocity is the posterior-weighted sum of the components' velocities.
The density and the velocity of a path satisfy the continuity equation d p_t / dt + div(p_t u_t) = 0.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..distributions import GaussianMixture
from ..oracle import MixtureOracle
from ..paths import AffineGaussianPath
from ..solvers import odeint
from ._base import brief, call, fail, finite, max_err, ok, tensor_of
from .forbidden import guarded_for


def _mixture():
    means = torch.tensor([[4.0, 0.0], [-2.0, 3.0], [-1.0, -3.0]], dtype=torch.float64)
    return GaussianMixture(means, 0.7, torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64))


def check_gaussian_velocity(velocity, tol: float = 1e-6) -> bool:
    """The learner's ``velocity(x, t, m, s)``: the marginal velocity of the target N(m, s^2 I) on the
    CondOT path (x: (n, d), t: float, m: (d,), s: float), against the oracle of a one-component mixture."""
    velocity = guarded_for(velocity, "ex02_probability_paths", "gaussian_velocity_check")
    m, s = torch.tensor([3.0, -1.0], dtype=torch.float64), 0.5
    oracle = MixtureOracle(GaussianMixture(m[None], s), AffineGaussianPath("condot"))
    g = torch.Generator().manual_seed(0)
    for t in (0.0, 0.3, 0.8, 1.0):
        x = torch.randn(50, 2, generator=g, dtype=torch.float64) * 2
        want = oracle.velocity(x, t)
        got = tensor_of(call(velocity, x, t, m, s, what="velocity"), x.shape, "velocity")
        if not max_err(got, want) <= tol * (1 + float(want.abs().max())):
            hint = "u_t(x) = m + (t s^2 - (1 - t)) / sd_t^2 (x - t m), with sd_t^2 = t^2 s^2 + (1 - t)^2"
            fail(f"the velocity at t = {t:g} differs from the exact one", want[0].tolist(), got[0].tolist(), hint)
    return ok("the marginal velocity of a Gaussian target matches the oracle at t = 0, 0.3, 0.8 and 1")


def check_mixture_velocity(velocity, tol: float = 1e-6) -> bool:
    """The learner's ``velocity(x, t, means, s, weights)`` for the mixture sum_k w_k N(m_k, s^2 I)
    (means: (K, d), weights: (K,)) against :class:`fmlearn.MixtureOracle`."""
    velocity = guarded_for(velocity, "ex02_probability_paths", "mixture_velocity_check")
    mix = _mixture()
    oracle = MixtureOracle(mix, AffineGaussianPath("condot"))
    g = torch.Generator().manual_seed(1)
    for t in (0.2, 0.6, 0.95):
        x = oracle.marginal(t).sample(60, generator=g).double()
        want = oracle.velocity(x, t)
        got = tensor_of(call(velocity, x, t, mix.means, 0.7, mix.weights, what="velocity"), x.shape, "velocity")
        if not max_err(got, want) <= tol * (1 + float(want.abs().max())):
            fail(f"the mixture velocity at t = {t:g} differs from the oracle", want[0].tolist(), got[0].tolist(),
                  "weight component k's velocity by its posterior p(k | x_t = x), proportional to "
                  "w_k N(x; t m_k, sd_t^2 I), normalized over k at each x (not by w_k alone, not equally)")
    return ok("the mixture's marginal velocity matches the oracle")


def _gaussian_path(m: torch.Tensor, s: float):
    """Density and velocity of the CondOT path from N(0, I) to N(m, s^2 I): p_t = N(t m, sd_t^2 I).
    t may be a float or a 0-d tensor (so that autograd can differentiate in t)."""

    def density(x, t):
        var = t ** 2 * s ** 2 + (1 - t) ** 2
        return torch.exp(-((x - t * m) ** 2).sum(1) / (2 * var)) / (2 * math.pi * var) ** (x.shape[1] / 2)

    def velocity(x, t):
        return m + (t * s ** 2 - (1 - t)) / (t ** 2 * s ** 2 + (1 - t) ** 2) * (x - t * m)

    return density, velocity


def _continuity_terms(p, u, x, t):
    """By autograd at points x (n, d): dp/dt, div(p u), p div(u), div(u), and the sum of every entry of the
    Jacobian of p u (the right term and the usual wrong ones)."""
    dp_dt = torch.autograd.functional.jacobian(lambda tt: p(x, tt), torch.tensor(t, dtype=x.dtype))
    xx = x.detach().clone().requires_grad_(True)
    pu = p(xx, t)[:, None] * u(xx, t)
    uu = u(xx, t)

    def diag_div(field):
        return sum(torch.autograd.grad(field[:, i].sum(), xx, retain_graph=True)[0][:, i] for i in range(x.shape[1]))

    div_pu, div_u = diag_div(pu), diag_div(uu)
    jac_sum = torch.autograd.grad(pu.sum(), xx)[0].sum(1)
    return dp_dt.detach(), div_pu.detach(), (p(x, t) * div_u).detach(), div_u.detach(), jac_sum.detach()


def _one_sided(p, u, x, t, h):
    """The forward-difference residual (first order), to recognize it."""
    out = (p(x, t + h) - p(x, t)) / h
    for i in range(x.shape[1]):
        e = torch.zeros_like(x)
        e[:, i] = h
        out = out + (p(x + e, t) * u(x + e, t)[:, i] - p(x, t) * u(x, t)[:, i]) / h
    return out


def check_continuity_residual(residual, tol: float = 1e-6) -> bool:
    """The learner's ``residual(p, u, x, t, h)`` -> (n,): d p_t / dt + div(p_t u_t) at points x (n, d) by central
    differences of step h, for a density ``p(x, t)`` -> (n,) and a velocity ``u(x, t)`` -> (n, d). Checked against
    autograd on a Gaussian path in 2-D and 3-D: the exact value for a wrong velocity, zero (to the differences'
    accuracy) for the path's own; a wrong result is compared with the usual slips to name the one made."""
    residual = guarded_for(residual, "ex02_probability_paths", "continuity_residual_check")
    g = torch.Generator().manual_seed(4)
    h = 1e-4  # central differences err by ~1e-7 of the terms here, one-sided ones by ~1e-4
    for d in (2, 3):
        m = torch.linspace(1.0, -1.0, d, dtype=torch.float64) * 2
        p, u_path = _gaussian_path(m, 0.6)
        # the wrong velocity first: there every slip below gives a different value (for the path's own velocity,
        # where the right residual is 0, some coincide)
        for t, label in ((0.7, "a velocity that is not the path's"), (0.3, "the path's own velocity")):
            u = u_path if t == 0.3 else (lambda x, tt: u_path(x, tt) + 0.5 * torch.tanh(x))
            sd = (t ** 2 * 0.36 + (1 - t) ** 2) ** 0.5
            x = t * m + sd * torch.randn(40, d, generator=g, dtype=torch.float64)
            dp_dt, div_pu, p_div_u, div_u, jac_sum = _continuity_terms(p, u, x, t)
            want = dp_dt + div_pu
            got = tensor_of(call(residual, p, u, x, t, h, what="continuity_residual"), (40,), "continuity_residual")
            scale = float(dp_dt.abs().max() + div_pu.abs().max())
            if max_err(got, want) <= tol * scale:
                continue
            slips = (
                (dp_dt - div_pu, "the flux term enters with a plus sign: d p / dt + div(p u) = 0"),
                (dp_dt + p_div_u, "div(p u) = p div(u) + u . grad(p): difference the product p u_i, both factors "
                 "evaluated at x + h e_i and x - h e_i, not u_i alone"),
                (dp_dt + div_u, "the flux is p u, not u: difference p(x +- h e_i) u_i(x +- h e_i)"),
                (dp_dt + jac_sum, "the divergence differentiates component i of p u along x_i only; you summed the "
                 "derivatives of every component along every axis"),
                (2 * dp_dt + 2 * div_pu, "a central difference divides by 2h, the distance between x + h and x - h"),
                (2 * dp_dt + div_pu, "the time derivative divides by 2h: (p(x, t + h) - p(x, t - h)) / (2h)"),
                (dp_dt + 2 * div_pu, "each space derivative divides by 2h: (f(x + h e_i) - f(x - h e_i)) / (2h)"),
                (_one_sided(p, u, x, t, h), "use central differences, (f(. + h) - f(. - h)) / (2h): one-sided ones "
                 "are only first-order accurate (error ~ h, not ~ h^2)"),
            )
            hint = next((msg for value, msg in slips if max_err(got, value) <= tol * scale),
                        "residual = (p(x, t + h) - p(x, t - h)) / (2h) + sum over i of "
                        "(p u_i at x + h e_i - p u_i at x - h e_i) / (2h), with e_i the i-th unit vector")
            fail(f"the continuity residual for {label} differs from the exact one (d = {d}, t = {t})",
                  brief(want), brief(got), hint)
    return ok("your residual is right for a wrong velocity and vanishes for the path's own, in 2-D and 3-D")


def _linear_field(x, t):
    """dx/dt = A x + t: a linear ODE with a closed-form flow (tests use it for the steppers)."""
    a = torch.tensor([[-1.0, 2.0], [-2.0, -1.0]], dtype=x.dtype)
    return x @ a.T + t


def check_step(step, method: str, tol: float = 1e-10) -> bool:
    """The learner's one-step map ``step(u, x, t, h)`` for ``method`` ("heun" or "rk4") against
    fmlearn's solver taking one step of size h, and its order: the error over [0, 1] in n steps
    must fall by 2^order when n doubles."""
    step = guarded_for(step, "ex03_sampling_ode_solvers", f"{method}_step_check")
    if method not in ("heun", "midpoint", "rk4"):
        raise ValueError(f"method must be 'heun', 'midpoint' or 'rk4', got {method!r}")
    x = torch.tensor([[1.0, 0.5], [-0.3, 2.0]], dtype=torch.float64)
    want = odeint(_linear_field, x, times=[0.2, 0.45], method=method).x
    got = tensor_of(call(step, _linear_field, x, 0.2, 0.25, what="step"), x.shape, "step")
    if not max_err(got, want) <= tol:
        euler = x + 0.25 * _linear_field(x, 0.2)
        hint = ("that is an Euler step: also evaluate u at the predicted end point" if max_err(got, euler) < tol
                else f"write out the {method} formulas; t advances with the stages (t + h/2, t + h)")
        fail(f"one {method} step differs from the reference", want[0].tolist(), got[0].tolist(), hint)

    def run(n):
        y = x
        for i in range(n):
            y = step(_linear_field, y, i / n, 1 / n)
        return y

    fine = odeint(_linear_field, x, steps=512, method="rk4").x
    e1, e2 = max_err(run(8), fine), max_err(run(16), fine)
    order = math.log2(e1 / e2) if 0 < e2 < math.inf else math.nan
    want_order = 4 if method == "rk4" else 2
    if not abs(order - want_order) <= 0.3:
        fail(f"your {method} step has the wrong order", want_order, f"{order:.2f}",
              "the stage weights decide the order; compare them with the formula")
    return ok(f"one {method} step matches, and its global error falls like h^{want_order} (observed {order:.2f})")


def check_observed_order(order_fn, tol: float = 1e-8) -> bool:
    """The learner's ``order_fn(steps, errors)``: the observed order p from errors e_n ~ C n^-p at step
    counts n, as the least-squares slope of -log e against log n; checked on synthetic errors against numpy."""
    order_fn = guarded_for(order_fn, "ex03_sampling_ode_solvers", "observed_order_check")
    steps = np.array([4, 8, 16, 32, 64])
    rng = np.random.default_rng(0)
    for p in (1.0, 2.0, 4.0):
        errors = 3.0 * steps ** -p * np.exp(0.05 * rng.standard_normal(len(steps)))
        want = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
        got = call(order_fn, steps, errors, what="order_fn")
        if not (np.isscalar(got) or isinstance(got, np.ndarray) and got.size == 1
                or isinstance(got, torch.Tensor) and got.numel() == 1):
            fail("order_fn must return a number", "a float", type(got).__name__, "return the slope only")
        got = finite(got, f"the observed order for errors ~ n^-{p:g}", "return minus the slope of the least-squares "
                      "line through (log n, log e): -np.polyfit(np.log(steps), np.log(errors), 1)[0]")
        if not abs(got - want) <= tol * (1 + abs(want)):
            hint = ("the sign is flipped: errors fall as n grows, so the order is minus the slope of log e vs log n"
                    if abs(got + want) < 1e-6 else
                    "fit a line to (log n, log e) over all points (least squares) and return minus its slope")
            fail(f"observed order for errors ~ n^-{p:g} is wrong", f"{want:.4f}", f"{got:.4f}", hint)
    return ok("your observed orders match a least-squares fit for p = 1, 2 and 4")
