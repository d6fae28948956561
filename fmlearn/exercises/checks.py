"""Checks with hints for the exercise notebooks: one call after each task.

Each ``check_*`` function takes the learner's code (a function), runs it on
inputs it chooses, compares with a reference computed another way (fmlearn's
own implementation, a closed form, finite differences) and either prints a
one-line verdict starting with "OK" or raises :class:`ExerciseCheckError`
(an ``AssertionError``, so nbgrader and pytest count it as a failure) whose
message says what was expected, what came back, and a hint.
"""

from __future__ import annotations

import torch

from ..paths import AffineGaussianPath
from ..schedules import get_schedule
from ..solvers import sample as fm_sample
from ..training import cfm_loss as fm_cfm_loss
from ._base import ExerciseCheckError, _call, _fail, _max_err, _ok, _tensor


def check_schedule(alpha, beta, d_alpha, d_beta, name: str = "condot", tol: float = 1e-5) -> bool:
    """The learner's alpha_t, beta_t and their derivatives (functions of a (n,) tensor t) against
    fmlearn's schedule ``name``: end values alpha_0 = 0, alpha_1 = 1, beta_0 = 1, beta_1 = 0,
    values on a grid, and each derivative against a central finite difference of the learner's own function."""
    ref = get_schedule(name)
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    ends = torch.tensor([0.0, 1.0], dtype=torch.float64)
    a_end = _tensor(_call(alpha, ends, what="alpha"), (2,), "alpha")
    b_end = _tensor(_call(beta, ends, what="beta"), (2,), "beta")
    if _max_err(a_end, torch.tensor([0.0, 1.0])) > tol or _max_err(b_end, torch.tensor([1.0, 0.0])) > tol:
        _fail("end values are wrong", "alpha(0), alpha(1) = 0, 1 and beta(0), beta(1) = 1, 0",
              f"alpha = {a_end.tolist()}, beta = {b_end.tolist()}",
              "at t = 0 the path sits on the noise x0 (alpha_0 = 0, beta_0 = 1), at t = 1 on the data")
    for label, fn, want in (("alpha", alpha, ref.alpha(t)), ("beta", beta, ref.beta(t))):
        got = _tensor(_call(fn, t, what=label), t.shape, label)
        if _max_err(got, want) > tol:
            _fail(f"{label}(t) differs from the {name} schedule", want[:4].tolist(), got[:4].tolist(),
                  f"write out the {name} schedule's formula for {label}_t")
    h = 1e-5
    for label, fn, deriv in (("alpha", alpha, d_alpha), ("beta", beta, d_beta)):
        got = _tensor(_call(deriv, t, what=f"d_{label}"), t.shape, f"d_{label}")
        fd = (_call(fn, t + h, what=label).double() - _call(fn, t - h, what=label).double()) / (2 * h)
        if _max_err(got, fd) > 1e-4 * (1 + float(fd.abs().max())):
            _fail(f"d_{label}(t) is not the derivative of {label}(t)", f"{fd[:4].tolist()} (finite differences)",
                  got[:4].tolist(), "differentiate with respect to t; check the sign")
    return _ok(f"the {name} schedule: end values, values and derivatives match")


def check_conditional_path(interpolate, velocity, tol: float = 1e-5) -> bool:
    """The learner's straight-line path x_t = t x1 + (1 - t) x0 and its velocity dx_t/dt, as functions
    (x0, x1, t) with x0, x1 of shape (n, d) and t of shape (n,): end points, values against fmlearn's
    CondOT path, and the velocity against a finite difference of the learner's own interpolation."""
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(64, 2, generator=g, dtype=torch.float64), 3 + torch.randn(64, 2, generator=g,
                                                                                  dtype=torch.float64)
    for t_end, want, name in ((0.0, x0, "x0"), (1.0, x1, "x1")):
        got = _tensor(_call(interpolate, x0, x1, torch.full((64,), t_end, dtype=torch.float64),
                            what="interpolate"), x0.shape, "interpolate")
        if _max_err(got, want) > tol:
            _fail(f"x_t at t = {t_end:g} is not {name}", f"{name} (first row {want[0].tolist()})",
                  f"first row {got[0].tolist()}", "x_0 must be the noise sample and x_1 the data sample")
    t = torch.rand(64, generator=g, dtype=torch.float64) * 0.9 + 0.05
    ref = AffineGaussianPath("condot").sample(x0, x1, t)
    got = _tensor(_call(interpolate, x0, x1, t, what="interpolate"), x0.shape, "interpolate")
    if _max_err(got, ref.xt) > tol:
        _fail("x_t differs from the straight line between x0 and x1", ref.xt[0].tolist(), got[0].tolist(),
              "t has shape (n,): use t[:, None] to broadcast it over the data dimensions")
    v = _tensor(_call(velocity, x0, x1, t, what="velocity"), x0.shape, "velocity")
    h = 1e-6
    fd = (interpolate(x0, x1, t + h).double() - interpolate(x0, x1, t - h).double()) / (2 * h)
    if _max_err(v, fd) > 1e-5 * (1 + float(fd.abs().max())):
        _fail("the velocity is not d x_t / dt", f"{fd[0].tolist()} (finite differences of your x_t)", v[0].tolist(),
              "differentiate t x1 + (1 - t) x0 with respect to t; it does not depend on x_t, and mind the sign")
    return _ok("x_t starts at x0, ends at x1, and the velocity is its time derivative")


def check_cfm_loss(loss_fn, tol: float = 1e-4) -> bool:
    """The learner's CFM loss ``loss_fn(model, x0, x1, t)`` (CondOT path) against :func:`fmlearn.cfm_loss`
    on a fixed small model and batch: mean over the batch of the squared error summed over dimensions."""
    from ..models import MLP

    torch.manual_seed(0)
    model = MLP(2, hidden=16, depth=2)
    g = torch.Generator().manual_seed(1)
    x0, x1, t = torch.randn(128, 2, generator=g), 5 + torch.randn(128, 2, generator=g), torch.rand(128, generator=g)
    want = fm_cfm_loss(model, AffineGaussianPath("condot"), x0, x1, t)
    got = _call(loss_fn, model, x0, x1, t, what="cfm_loss")
    if not isinstance(got, torch.Tensor) or got.ndim != 0:
        _fail("the loss must be a scalar tensor", "a 0-dimensional torch.Tensor",
              f"{type(got).__name__} {tuple(getattr(got, 'shape', ()))}", "reduce with .mean() at the end")
    if not got.requires_grad:
        _fail("the loss carries no gradient", "a tensor that depends on the model's parameters", "requires_grad=False",
              "compute it from model(x_t, t) without torch.no_grad() or .detach()")
    got, want = float(got.detach()), float(want.detach())
    if abs(got - want) > tol * max(1.0, abs(want)):
        ratio = got / want
        hint = ("you averaged over the data dimensions too: sum the squared error over dimensions, then average "
                "over the batch" if abs(ratio - 0.5) < 0.05 else
                "regress model(x_t, t) onto x1 - x0, where x_t = t x1 + (1 - t) x0 (not onto x1, and not at x1)")
        _fail("the CFM loss differs from the reference", f"{want:.5f}", f"{got:.5f}", hint)
    return _ok(f"the CFM loss matches the reference ({want:.4f} on the test batch)")


def check_euler_sampler(sampler, tol: float = 1e-4) -> bool:
    """The learner's ``sampler(velocity, x0, steps)`` (Euler from t = 0 to t = 1 on a uniform grid)
    against :func:`fmlearn.sample` with ``method="euler"``, on a field whose Euler steps have a closed form."""

    def velocity(x, t):
        return -x + t[:, None] if isinstance(t, torch.Tensor) and t.ndim else -x + t

    x0 = torch.randn(32, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    want = fm_sample(velocity, x0, steps=7, method="euler").x
    got = _tensor(_call(sampler, velocity, x0, 7, what="sampler"), x0.shape, "sampler")
    if _max_err(got, want) > tol:
        one_less = fm_sample(velocity, x0, steps=6, method="euler").x
        hint = ("you took one step too few: n steps need n + 1 grid points from 0 to 1"
                if _max_err(got, one_less) < tol else
                "x <- x + h u(x, t) with h = 1 / steps and t = i h at step i (the time at the *start* of the step)")
        _fail("Euler samples differ from the reference", want[0].tolist(), got[0].tolist(), hint)
    return _ok("your Euler sampler matches fmlearn.sample(method='euler')")


def check_gaussian_marginal(mean_cov, tol: float = 1e-6) -> bool:
    """The learner's ``mean_cov(t, m0, S0, m1, S1) -> (mean, cov)`` of x_t = (1 - t) x0 + t x1 for independent
    x0 ~ N(m0, S0), x1 ~ N(m1, S1), against the moments of 400,000 simulated x_t (Monte Carlo, 6 standard
    errors) and the end points (t = 0 gives N(m0, S0), t = 1 gives N(m1, S1))."""
    m0, m1 = torch.tensor([0.0, 0.0], dtype=torch.float64), torch.tensor([4.0, -2.0], dtype=torch.float64)
    s0 = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=torch.float64)
    s1 = torch.tensor([[0.2, 0.0], [0.0, 2.0]], dtype=torch.float64)
    for t in (0.0, 1.0):
        mean, cov = _call(mean_cov, t, m0, s0, m1, s1, what="mean_cov")
        want_m, want_s = (m0, s0) if t == 0 else (m1, s1)
        if _max_err(_tensor(mean, (2,), "mean"), want_m) > tol or _max_err(_tensor(cov, (2, 2), "cov"), want_s) > tol:
            _fail(f"at t = {t:g} the marginal must be the {'source' if t == 0 else 'target'}",
                  f"mean {want_m.tolist()}, cov {want_s.tolist()}", f"mean {mean.tolist()}, cov {cov.tolist()}",
                  "x_t = (1 - t) x0 + t x1")
    t, n = 0.3, 400_000
    g = torch.Generator().manual_seed(3)
    x0 = m0 + torch.randn(n, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(s0).T
    x1 = m1 + torch.randn(n, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(s1).T
    xt = (1 - t) * x0 + t * x1
    mc_mean, mc_cov = xt.mean(0), torch.cov(xt.T)
    mean, cov = _call(mean_cov, t, m0, s0, m1, s1, what="mean_cov")
    se_cov = float(mc_cov.diagonal().max()) * (2 / n) ** 0.5
    if _max_err(mean, mc_mean) > 6 * float(mc_cov.diagonal().max() / n) ** 0.5:
        _fail("the mean at t = 0.3 disagrees with simulation", mc_mean.tolist(), mean.tolist(),
              "expectation is linear: E[x_t] = (1 - t) m0 + t m1")
    if _max_err(cov, mc_cov) > 6 * se_cov:
        _fail("the covariance at t = 0.3 disagrees with simulation", mc_cov.tolist(), cov.tolist(),
              "for independent x0, x1: Cov(a x0 + b x1) = a^2 S0 + b^2 S1 (the coefficients are squared)")
    return _ok("the straight-line marginal's mean and covariance match simulation and the end points")


__all__ = ["ExerciseCheckError", "check_schedule", "check_conditional_path", "check_cfm_loss",
           "check_euler_sampler", "check_gaussian_marginal"]
