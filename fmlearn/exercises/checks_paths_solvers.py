"""Checks for the exercises of chapters 2 (probability paths) and 3 (ODE solvers).

Marginal velocity of a Gaussian target N(m, s^2 I) on the CondOT path from N(0, I):
x_t = t x1 + (1 - t) x0 is N(t m, sd_t^2 I) with sd_t^2 = t^2 s^2 + (1 - t)^2, and

    u_t(x) = m + (d sd_t / dt) / sd_t (x - t m),   (d sd_t / dt) sd_t = t s^2 - (1 - t).

For a mixture the marginal velocity is the posterior-weighted sum of the components' velocities.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..distributions import GaussianMixture
from ..oracle import MixtureOracle
from ..paths import AffineGaussianPath
from ..solvers import odeint
from ._base import _call, _fail, _max_err, _ok, _tensor


def _mixture():
    means = torch.tensor([[4.0, 0.0], [-2.0, 3.0], [-1.0, -3.0]], dtype=torch.float64)
    return GaussianMixture(means, 0.7, torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64))


def check_gaussian_velocity(velocity, tol: float = 1e-6) -> bool:
    """The learner's ``velocity(x, t, m, s)``: the marginal velocity of the target N(m, s^2 I) on the
    CondOT path (x: (n, d), t: float, m: (d,), s: float), against the oracle of a one-component mixture."""
    m, s = torch.tensor([3.0, -1.0], dtype=torch.float64), 0.5
    oracle = MixtureOracle(GaussianMixture(m[None], s), AffineGaussianPath("condot"))
    g = torch.Generator().manual_seed(0)
    for t in (0.0, 0.3, 0.8, 1.0):
        x = torch.randn(50, 2, generator=g, dtype=torch.float64) * 2
        want = oracle.velocity(x, t)
        got = _tensor(_call(velocity, x, t, m, s, what="velocity"), x.shape, "velocity")
        if _max_err(got, want) > tol * (1 + float(want.abs().max())):
            hint = "u_t(x) = m + (t s^2 - (1 - t)) / sd_t^2 (x - t m), with sd_t^2 = t^2 s^2 + (1 - t)^2"
            _fail(f"the velocity at t = {t:g} differs from the exact one", want[0].tolist(), got[0].tolist(), hint)
    return _ok("the marginal velocity of a Gaussian target matches the oracle at t = 0, 0.3, 0.8 and 1")


def check_mixture_velocity(velocity, tol: float = 1e-6) -> bool:
    """The learner's ``velocity(x, t, means, s, weights)`` for the mixture sum_k w_k N(m_k, s^2 I)
    (means: (K, d), weights: (K,)) against :class:`fmlearn.MixtureOracle`."""
    mix = _mixture()
    oracle = MixtureOracle(mix, AffineGaussianPath("condot"))
    g = torch.Generator().manual_seed(1)
    for t in (0.2, 0.6, 0.95):
        x = oracle.marginal(t).sample(60, generator=g).double()
        want = oracle.velocity(x, t)
        got = _tensor(_call(velocity, x, t, mix.means, 0.7, mix.weights, what="velocity"), x.shape, "velocity")
        if _max_err(got, want) > tol * (1 + float(want.abs().max())):
            _fail(f"the mixture velocity at t = {t:g} differs from the oracle", want[0].tolist(), got[0].tolist(),
                  "weight component k's velocity by its posterior p(k | x_t = x), proportional to "
                  "w_k N(x; t m_k, sd_t^2 I), normalized over k at each x (not by w_k alone, not equally)")
    return _ok("the mixture's marginal velocity matches the oracle")


def _linear_field(x, t):
    """dx/dt = A x + t: a linear ODE with a closed-form flow (tests use it for the steppers)."""
    a = torch.tensor([[-1.0, 2.0], [-2.0, -1.0]], dtype=x.dtype)
    return x @ a.T + t


def check_step(step, method: str, tol: float = 1e-10) -> bool:
    """The learner's one-step map ``step(u, x, t, h)`` for ``method`` ("heun" or "rk4") against
    fmlearn's solver taking one step of size h, and its order: the error over [0, 1] in n steps
    must fall by 2^order when n doubles."""
    if method not in ("heun", "midpoint", "rk4"):
        raise ValueError(f"method must be 'heun', 'midpoint' or 'rk4', got {method!r}")
    x = torch.tensor([[1.0, 0.5], [-0.3, 2.0]], dtype=torch.float64)
    want = odeint(_linear_field, x, times=[0.2, 0.45], method=method).x
    got = _tensor(_call(step, _linear_field, x, 0.2, 0.25, what="step"), x.shape, "step")
    if _max_err(got, want) > tol:
        euler = x + 0.25 * _linear_field(x, 0.2)
        hint = ("that is an Euler step: also evaluate u at the predicted end point" if _max_err(got, euler) < tol
                else f"write out the {method} formulas; t advances with the stages (t + h/2, t + h)")
        _fail(f"one {method} step differs from the reference", want[0].tolist(), got[0].tolist(), hint)

    def run(n):
        y = x
        for i in range(n):
            y = step(_linear_field, y, i / n, 1 / n)
        return y

    fine = odeint(_linear_field, x, steps=512, method="rk4").x
    e1, e2 = _max_err(run(8), fine), _max_err(run(16), fine)
    order = math.log2(e1 / e2)
    want_order = 4 if method == "rk4" else 2
    if abs(order - want_order) > 0.3:
        _fail(f"your {method} step has the wrong order", want_order, f"{order:.2f}",
              "the stage weights decide the order; compare them with the formula")
    return _ok(f"one {method} step matches, and its global error falls like h^{want_order} (observed {order:.2f})")


def check_observed_order(order_fn, tol: float = 1e-8) -> bool:
    """The learner's ``order_fn(steps, errors)``: the observed order p from errors e_n ~ C n^-p at step
    counts n, as the least-squares slope of -log e against log n; checked on synthetic errors against numpy."""
    steps = np.array([4, 8, 16, 32, 64])
    rng = np.random.default_rng(0)
    for p in (1.0, 2.0, 4.0):
        errors = 3.0 * steps ** -p * np.exp(0.05 * rng.standard_normal(len(steps)))
        want = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
        got = _call(order_fn, steps, errors, what="order_fn")
        if not np.isscalar(got) and not (isinstance(got, (np.ndarray, torch.Tensor)) and got.size in (1, ())):
            _fail("order_fn must return a number", "a float", type(got).__name__, "return the slope only")
        got = float(got)
        if abs(got - want) > tol * (1 + abs(want)):
            hint = ("the sign is flipped: errors fall as n grows, so the order is minus the slope of log e vs log n"
                    if abs(got + want) < 1e-6 else
                    "fit a line to (log n, log e) over all points (least squares) and return minus its slope")
            _fail(f"observed order for errors ~ n^-{p:g} is wrong", f"{want:.4f}", f"{got:.4f}", hint)
    return _ok("your observed orders match a least-squares fit for p = 1, 2 and 4")
