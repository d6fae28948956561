"""Checks for the exercises of chapter 7 (diffusion as a special case): score from velocity,
an Euler-Maruyama step with the flow's marginals, a Langevin step."""

from __future__ import annotations

import torch

from ..distributions import GaussianMixture
from ..oracle import MixtureOracle
from ..paths import AffineGaussianPath
from ._base import call, fail, max_err, ok, tensor_of
from .forbidden import guarded_for

_EXERCISE = "ex07_diffusion_special_case"

_TARGET = GaussianMixture(torch.tensor([[3.0, -2.0]]), 0.5)  # one Gaussian: every quantity has a closed form


def check_score_from_velocity(score_fn, tol: float = 1e-8) -> bool:
    """The learner's ``score_fn(u, x, t)`` for the CondOT path (u = the marginal velocity at x), applied to the
    oracle's velocity, against the oracle's score (computed from the mixture's Gaussian marginals directly)."""
    score_fn = guarded_for(score_fn, _EXERCISE, "score_from_velocity_check")
    oracle = MixtureOracle(GaussianMixture.symmetric_2d(), AffineGaussianPath("condot"))
    g = torch.Generator().manual_seed(0)
    for t in (0.1, 0.5, 0.9):
        x = oracle.marginal(t).sample(40, generator=g).double()
        want = oracle.score(x, t)
        got = tensor_of(call(score_fn, oracle.velocity(x, t), x, t, what="score_fn"), x.shape, "score_fn")
        if not max_err(got, want) <= tol * (1 + float(want.abs().max())):
            hint = ("the sign is flipped: the score points towards higher density"
                    if max_err(got, -want) < tol * (1 + float(want.abs().max())) else
                    "from x = t x1 + (1 - t) x0 and u = x1 - x0, solve for x0; the score of the Gaussian path is "
                    "-E[x0 | x] / beta_t = -x0_hat / (1 - t)")
            fail(f"the score at t = {t:g} differs from the exact one", want[0].tolist(), got[0].tolist(), hint)
    return ok("score from velocity matches the exact score at t = 0.1, 0.5 and 0.9")


def _oracle():
    return MixtureOracle(_TARGET, AffineGaussianPath("condot"))


def check_em_step(em_step, tol: float = 1e-10) -> bool:
    """The learner's ``em_step(u, s, x, t, h, g, z)``: one Euler-Maruyama step of
    dX = [u + g^2/2 s] dt + g dW with the given standard normal noise z, checked on given numbers, then
    run from t = 0 to 0.98 with the exact fields of a Gaussian target: the samples' mean and variance
    must match the exact marginal p_0.98 for g = 0.5 and 1 (the same marginals as the ODE)."""
    em_step = guarded_for(em_step, _EXERCISE, "em_step_check")
    oracle = _oracle()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(8, 2, generator=gen, dtype=torch.float64)
    z = torch.randn(8, 2, generator=gen, dtype=torch.float64)
    u, s = oracle.velocity(x, 0.3), oracle.score(x, 0.3)
    want = x + 0.1 * (u + 0.5 * 0.8 ** 2 * s) + 0.8 * 0.1 ** 0.5 * z
    got = tensor_of(call(em_step, oracle.velocity, oracle.score, x, 0.3, 0.1, 0.8, z, what="em_step"), x.shape,
                  "em_step")
    if not max_err(got, want) <= tol:
        no_sqrt = x + 0.1 * (u + 0.5 * 0.8 ** 2 * s) + 0.8 * 0.1 * z
        hint = ("the noise term is g sqrt(h) z: Brownian increments over a step h have variance h"
                if max_err(got, no_sqrt) < tol else
                "x + h (u(x, t) + g^2 / 2 s(x, t)) + g sqrt(h) z; the score term has g squared and halved")
        fail("one Euler-Maruyama step differs", want[0].tolist(), got[0].tolist(), hint)
    n, steps, t_end = 20000, 98, 0.98
    marginal = oracle.marginal(t_end)
    mean, var = marginal.means[0].double(), float(marginal.stds[0, 0]) ** 2
    for g in (0.5, 1.0):
        x = torch.randn(n, 2, generator=gen, dtype=torch.float64)
        for i in range(steps):
            x = em_step(oracle.velocity, oracle.score, x, i / 100, 0.01, g, torch.randn(n, 2, generator=gen,
                                                                                        dtype=torch.float64))
        if not (max_err(x.mean(0), mean) <= 0.05 and abs(float(x.var(0).mean()) - var) <= 0.08 * var):
            fail(f"with g = {g:g} the samples at t = {t_end} do not have the flow's marginal",
                  f"mean {mean.tolist()}, variance {var:.4f}",
                  f"mean {x.mean(0).tolist()}, variance {float(x.var(0).mean()):.4f}",
                  "the drift must be u + (g^2 / 2) s: the score term exactly undoes the spreading by the noise")
    return ok("your Euler-Maruyama step is right and keeps the flow's marginals for g = 0.5 and 1")


def check_langevin_step(langevin, tol: float = 1e-10) -> bool:
    """The learner's ``langevin(s, x, eps, z)`` = x + eps s(x) + sqrt(2 eps) z on given numbers, and 400 steps
    on N(m, v I) (whose score is (m - x) / v) starting far away: they must end near mean m and variance
    v / (1 - eps / (2 v)), the exact stationary variance of the discretized chain."""
    langevin = guarded_for(langevin, _EXERCISE, "langevin_check")
    m, v, eps = torch.tensor([1.0, -1.0], dtype=torch.float64), 0.5, 0.05

    def score(x):
        return (m - x) / v

    gen = torch.Generator().manual_seed(2)
    x = torch.randn(6, 2, generator=gen, dtype=torch.float64)
    z = torch.randn(6, 2, generator=gen, dtype=torch.float64)
    want = x + eps * score(x) + (2 * eps) ** 0.5 * z
    got = tensor_of(call(langevin, score, x, eps, z, what="langevin"), x.shape, "langevin")
    if not max_err(got, want) <= tol:
        hint = ("the noise is sqrt(2 eps) z, not sqrt(eps) z: with less noise the chain settles on a narrower "
                "distribution than the target" if max_err(got, x + eps * score(x) + eps ** 0.5 * z) < tol else
                "x + eps s(x) + sqrt(2 eps) z")
        fail("one Langevin step differs", want[0].tolist(), got[0].tolist(), hint)
    x = torch.full((20000, 2), 6.0, dtype=torch.float64)
    for _ in range(400):
        x = langevin(score, x, eps, torch.randn(x.shape, generator=gen, dtype=torch.float64))
    stationary = v / (1 - eps / (2 * v))
    if not (max_err(x.mean(0), m) <= 0.03 and abs(float(x.var(0).mean()) - stationary) <= 0.05 * stationary):
        fail("Langevin steps do not settle on the target", f"mean {m.tolist()}, variance {stationary:.4f}",
              f"mean {x.mean(0).tolist()}, variance {float(x.var(0).mean()):.4f}", "x + eps s(x) + sqrt(2 eps) z")
    return ok("your Langevin step is right and its chain settles on the target")
