"""Checks for the exercises of chapter 10 (generator matching): d/dt of the CondOT conditional density, the jump
intensity that realises it, the generalized-KL Bregman divergence, one step of the Markov superposition.

Each answer is compared with a reference computed another way where one exists: a finite difference in t of
p_t(x | z) for its rate; the forward equation and mass conservation on a grid for the intensity; the Bregman
definition through autograd for the divergence; for the superposed step, the package's
:func:`fmlearn.generators.superposition` on given numbers, then a run on the conditional processes, whose
marginal must stay N(t z, (1 - t)^2). A wrong answer that matches a known slip gets that slip's hint.
"""

from __future__ import annotations

import math

import torch

from ..generators import (JumpRates, bregman, condot_density, condot_intensity, condot_kernel_sample,
                          generalized_kl, superposition)
from ._base import call, fail, max_err, ok, show, tensor_of, worst_row
from .forbidden import guarded_for

_EXERCISE = "ex10_generator_matching"

_D64 = torch.float64


def _points(seed: int, n: int = 64, d: int = 2):
    """Endpoints z and standardized offsets eps (x = t z + (1 - t) eps), float64."""
    g = torch.Generator().manual_seed(seed)
    return 1.5 * torch.randn(n, d, generator=g, dtype=_D64), 2.0 * torch.randn(n, d, generator=g, dtype=_D64)


def _match(got: torch.Tensor, candidates: dict, scale: float, tol: float = 1e-8) -> str | None:
    """The hint of the first candidate ``(value, hint)`` that ``got`` equals (a known slip), else None."""
    for value, hint in candidates.values():
        if value.shape == got.shape and torch.isfinite(value).all() and max_err(got, value) <= tol * scale:
            return hint
    return None


# --- task 1: d/dt p_t(x | z) -------------------------------------------------------------------------------------

_RATE_HINT = ("differentiate log p_t(x | z) = -eps^2 / 2 - log(1 - t) - log sqrt(2 pi) in t, with "
              "eps = (x - t z) / (1 - t) and d eps / dt = (eps - z) / (1 - t); then multiply by p_t: "
              "d/dt p_t = p_t (1 + eps z - eps^2) / (1 - t)")


def _fd_rate(x, z, t, h=1e-6):
    """d/dt p_t(x | z) by a finite difference in t (central; one-sided second order at t = 0)."""
    if t < h:
        p0, p1, p2 = (condot_density(x, z, t + k * h) for k in range(3))
        return (-3 * p0 + 4 * p1 - p2) / (2 * h)
    return (condot_density(x, z, t + h) - condot_density(x, z, t - h)) / (2 * h)


def _rate_slips(x, z, t):
    e, p = (x - t * z) / (1 - t), condot_density(x, z, t)
    return {
        "no 1/(1-t)": (p * (1 + e * z - e * e), "you left out the factor 1 / (1 - t): d/dt log p_t = "
                       "(1 + eps z - eps^2) / (1 - t) (it comes from d eps / dt = (eps - z) / (1 - t) and from "
                       "d/dt log(1 / (1 - t)) = 1 / (1 - t)); at t = 0 the two agree, at t = 0.3 they do not"),
        "sign of eps z": (p * (1 - e * z - e * e) / (1 - t), "the sign of the eps z term is flipped: "
                          "d eps / dt = (eps - z) / (1 - t), so -eps d eps / dt = (eps z - eps^2) / (1 - t), "
                          "with + eps z"),
        "no +1": (p * (e * z - e * e) / (1 - t), "the + 1 is missing: it comes from the normalisation, "
                  "p_t = phi(eps) / (1 - t) and d/dt log(1 / (1 - t)) = + 1 / (1 - t)"),
        "(1-t)^2": (p * (1 + e * z - e * e) / (1 - t) ** 2, "you divided by (1 - t) once too often: p_t already "
                    "holds the normalisation 1 / (1 - t); d/dt p_t = p_t (1 + eps z - eps^2) / (1 - t)"),
        "flipped": (-p * (1 + e * z - e * e) / (1 - t), "the sign is flipped: at the peak x = t z (eps = 0) the "
                    "density grows as the path narrows, d/dt p_t = + p_t / (1 - t) > 0"),
    }


def check_density_rate(density_rate, tol: float = 1e-6) -> bool:
    """The learner's ``density_rate(x, z, t)`` -> d/dt p_t(x | z) of p_t(x | z) = N(x; t z, (1 - t)^2), per
    coordinate (x, z of shape (n, d), t a float), against a finite difference in t of the density at
    t = 0.3, 0.7, 0.95 and 0 (0 last: missing the 1 / (1 - t) goes unseen there)."""
    density_rate = guarded_for(density_rate, _EXERCISE, "density_rate_check")
    z, e = _points(0)
    for t in (0.3, 0.7, 0.95, 0.0):
        x = t * z + (1 - t) * e
        want = _fd_rate(x, z, t)
        got = tensor_of(call(density_rate, x, z, t, what="density_rate"), x.shape, "density_rate")
        scale = 1 + float(want.abs().max())
        if not max_err(got, want) <= tol * scale:
            hint = _match(got, _rate_slips(x, z, t), scale) or _RATE_HINT
            fail(f"d/dt p_t(x | z) at t = {t:g} differs from a finite difference in t of p_t", *worst_row(want, got),
                  hint)
    return ok("your d/dt p_t(x | z) matches a finite difference in t of the density at t = 0, 0.3, 0.7 and 0.95")


# --- task 2: the jump intensity -------------------------------------------------------------------------------------

_NEGATIVE_HINT = ("a rate is never negative: where the density rises (d/dt p_t > 0) nothing leaves, so the "
                  "intensity is 0 there; take the positive part, (eps^2 - eps z - 1).clamp_min(0) / (1 - t) "
                  "(without it the forward equation holds only on paper, with negative jumps no process can make)")
_INTENSITY_HINT = ("leave where the density falls, at the rate it falls relative to the density: "
                   "lambda = [-d/dt p_t]_+ / p_t, which with task 1 is [eps^2 - eps z - 1]_+ / (1 - t)")


def _intensity_slips(x, z, t):
    e = (x - t * z) / (1 - t)
    q = e * e - e * z - 1
    return {
        "arrival": ((-q).clamp_min(0) / (1 - t), "this is the rate of arrival, [d/dt p_t]_+ / p_t: where the "
                    "density rises is where the kernel lands particles; they leave where it falls: "
                    "lambda = [-d/dt p_t]_+ / p_t = [eps^2 - eps z - 1]_+ / (1 - t)"),
        "no 1/(1-t)": (q.clamp_min(0), "you left out the factor 1 / (1 - t): only (1 - t) times the mass that "
                       "must leave does; lambda = [eps^2 - eps z - 1]_+ / (1 - t)"),
        "sign of eps z": ((e * e + e * z - 1).clamp_min(0) / (1 - t), "the sign of the eps z term is flipped: "
                          "-d/dt p_t / p_t = (eps^2 - eps z - 1) / (1 - t)"),
        "abs": (q.abs() / (1 - t), "|.| makes particles leave where the density rises too, faster than the "
                "kernel can bring them back; the positive part [.]_+ (clamp_min(0)) leaves only where it falls"),
    }


def check_intensity(intensity, tol: float = 1e-3) -> bool:
    """The learner's ``intensity(x, z, t)`` -> lambda_t(x | z), per coordinate: non-negative; on a fine grid, with
    the kernel J proportional to [d/dt p_t]_+ (from a finite difference in t), the mass that leaves equals the
    mass that lands and the forward equation d/dt p_t = -p_t lambda + J int p_t lambda holds; and it equals
    [eps^2 - eps z - 1]_+ / (1 - t) at scattered points."""
    intensity = guarded_for(intensity, _EXERCISE, "intensity_check")
    z, e = _points(1)
    x = 0.4 * z + 0.6 * e
    got = tensor_of(call(intensity, x, z, 0.4, what="intensity"), x.shape, "intensity")
    if not float(got.min()) >= 0:
        fail("your intensity is negative at some points (t = 0.4)", "rates >= 0",
              f"min {float(got.min()):.4g} at {int((got < 0).sum())} of {got.numel()} coordinates", _NEGATIVE_HINT)
    for z0, t in ((1.3, 0.5), (0.0, 0.2), (-2.5, 0.9)):
        s = 1 - t
        grid = (t * z0 + s * torch.linspace(-10, 10, 8001, dtype=_D64)).reshape(-1, 1)
        zz, w = torch.full_like(grid, z0), float(grid[1, 0] - grid[0, 0])
        p, dp = condot_density(grid, zz, t), _fd_rate(grid, zz, t)
        lam = tensor_of(call(intensity, grid, zz, t, what="intensity"), grid.shape, "intensity")
        outflow, inflow = float((p * lam).sum()) * w, float(dp.clamp_min(0).sum()) * w
        residual = float((-p * lam + dp.clamp_min(0) / inflow * outflow - dp).abs().max())
        if not (residual <= tol * float(dp.abs().max()) and abs(outflow - inflow) <= tol * inflow):
            hint = _match(lam, _intensity_slips(grid, zz, t), 1 + float(lam.abs().max())) or _INTENSITY_HINT
            fail(f"with z = {z0:g}, t = {t:g} your jumps do not satisfy the forward equation "
                  "d/dt p_t = -p_t lambda + J int p_t lambda (J proportional to [d/dt p_t]_+)",
                  f"residual 0 (max |d/dt p_t| = {float(dp.abs().max()):.4g}); mass leaving = mass landing = "
                  f"{inflow:.6g}", f"max residual {residual:.4g}; mass leaving {outflow:.6g}", hint)
    for t in (0.0, 0.4, 0.9):
        x = t * z + (1 - t) * e
        want = condot_intensity(x, z, t)
        got = tensor_of(call(intensity, x, z, t, what="intensity"), x.shape, "intensity")
        scale = 1 + float(want.abs().max())
        if not max_err(got, want) <= 1e-8 * scale:
            hint = _match(got, _intensity_slips(x, z, t), scale) or _INTENSITY_HINT
            fail(f"the intensity at t = {t:g} differs from [eps^2 - eps z - 1]_+ / (1 - t)", *worst_row(want, got),
                  hint)
    far, zf = torch.tensor([[40.0, -40.0, 8.0]], dtype=_D64), torch.tensor([[0.0, 1.0, 0.0]], dtype=_D64)
    want = condot_intensity(far, zf, 0.5)  # eps = 80, -82, 16: p_t underflows to 0 at the first two
    got = call(intensity, far, zf, 0.5, what="intensity")
    if not (isinstance(got, torch.Tensor) and got.shape == want.shape and bool(torch.isfinite(got).all())
            and max_err(got, want) <= 1e-8 * float(want.abs().max())):
        fail("the intensity far in the tails (x = 40, -40, 8 with z = 0, 1, 0 at t = 0.5: eps = 80, -82, 16) is "
              "wrong", show(want), show(got) if isinstance(got, torch.Tensor) else type(got).__name__,
              "there p_t underflows to 0, and [-d/dt p_t]_+ / p_t computed as written is 0 / 0 = nan: simplify with "
              "task 1 until p_t cancels, lambda = [eps^2 - eps z - 1]_+ / (1 - t)")
    return ok("your intensity is >= 0, conserves mass and satisfies the forward equation on a grid "
               "(z = 1.3, 0, -2.5 at t = 0.5, 0.2, 0.9), and stays finite far in the tails")


# --- task 3: the generalized-KL Bregman divergence ----------------------------------------------------------------

_GKL_HINT = ("D(a, b) = Phi(a) - Phi(b) - <grad Phi(b), a - b> with Phi(a) = sum a log a gives "
             "sum a log(a / b) - a + b, summed over the last axis (one value per row)")
_ZERO_HINT = ("0 log 0 = 0: at a = 0, a * log(a / b) is 0 * (-inf) = nan in floating point; use "
              "torch.xlogy(a, a / b) (which is 0 where a = 0) or torch.where(a > 0, ..., 0)")


def _xlogy_ratio(a, b):
    return torch.xlogy(a, a) - torch.xlogy(a, b)


def _gkl_slips(a, b):
    kl = _xlogy_ratio(a, b)
    return {
        "plain KL": (kl.sum(-1), "this is the plain KL sum a log(a / b), the divergence of two distributions "
                     "that sum to 1; rates need not, and without - a + b the divergence can be negative and is "
                     "not smallest at b = a: sum a log(a / b) - a + b"),
        "swapped": ((_xlogy_ratio(b, a) - b + a).sum(-1), "you computed D(b, a): the divergence is not "
                    "symmetric; the target a comes first: sum a log(a / b) - a + b"),
        "log(b/a)": ((-kl - a + b).sum(-1), "log(a / b), not log(b / a): the log term is a log a - a log b"),
        "+a-b": ((kl + a - b).sum(-1), "the linear terms are - a + b: -<grad Phi(b), a - b> = "
                 "-(log b + 1)(a - b)"),
        "mean": ((kl - a + b).mean(-1), "sum over the last axis, not the mean: a divergence of rate vectors "
                 "adds up their entries"),
        "zeros dropped": (torch.where(a > 0, kl - a + b, torch.zeros_like(a)).sum(-1), "an entry with a = 0 still "
                          "contributes b: 0 log 0 = 0 removes only the log term, and - a + b = b is left"),
    }


def _gkl_result(out, shape, what, zeros: bool):
    if isinstance(out, torch.Tensor) and out.shape != torch.Size(shape) and out.ndim in (0, len(shape) + 1):
        fail(f"{what} returned the wrong shape", tuple(shape), tuple(out.shape),
              "one value per row: sum over the last axis only (.sum(-1)), not over the whole batch"
              if out.ndim == 0 else "sum over the last axis (.sum(-1)): one divergence per row")
    if isinstance(out, torch.Tensor) and out.shape == torch.Size(shape) and not torch.isfinite(out).all():
        fail(f"{what} returned NaN or inf" + (" (some entries of a are 0)" if zeros else " (all a, b > 0)"),
              "finite values", show(out), _ZERO_HINT if zeros else _GKL_HINT)
    return tensor_of(out, shape, what)


def check_generalized_kl(generalized_kl_fn, tol: float = 1e-10) -> bool:
    """The learner's ``generalized_kl(a, b)`` for rates a >= 0, b > 0 of shape (n, k) -> (n,): against the
    Bregman definition Phi(a) - Phi(b) - <grad Phi(b), a - b> with Phi = sum a log a (its gradient by autograd),
    on rates that do not sum to 1; then with some a = 0 (0 log 0 = 0) against fmlearn's generalized_kl."""
    generalized_kl_fn = guarded_for(generalized_kl_fn, _EXERCISE, "generalized_kl_check")
    g = torch.Generator().manual_seed(3)
    a = 3 * torch.rand(8, 5, generator=g, dtype=_D64) + 0.05
    b = 3 * torch.rand(8, 5, generator=g, dtype=_D64) + 0.05
    want = bregman(lambda v: torch.xlogy(v, v), a, b)
    got = _gkl_result(call(generalized_kl_fn, a, b, what="generalized_kl"), (8,), "generalized_kl", False)
    scale = 1 + float(want.abs().max())
    if not max_err(got, want) <= tol * scale:
        fail("D(a, b) differs from the Bregman divergence of Phi(a) = sum a log a", *worst_row(want, got),
              _match(got, _gkl_slips(a, b), scale) or _GKL_HINT)
    a0 = torch.where(torch.rand(8, 5, generator=g, dtype=_D64) < 0.4, torch.zeros_like(a), a)
    want = generalized_kl(a0, b)
    got = _gkl_result(call(generalized_kl_fn, a0, b, what="generalized_kl"), (8,), "generalized_kl", True)
    if not max_err(got, want) <= tol * scale:
        fail("with some a = 0, D(a, b) is wrong", *worst_row(want, got),
              _match(got, _gkl_slips(a0, b), scale) or _ZERO_HINT)
    return ok("your generalized KL equals the Bregman divergence of sum a log a, zeros in a included")


# --- task 4: one step of the superposed sampler --------------------------------------------------------------------

def _velocity(x, t):
    """The flow of the check's deterministic part: towards 2, at a speed that depends on x and t."""
    return (2 - x) / (1 - t)


def _rates(x, t):
    """The jump intensity of the check's deterministic part: positive everywhere and varying with x."""
    return 1.5 + x * x


def _step_variant(x, t, h, a, uniforms, landing, *, wv, wr, prob=lambda r: -torch.expm1(-r),
                  jumps_first=False, rates_at_start=False, above=False):
    """One step of a flow (velocity x wv) and jumps (rates x wr), with the given uniforms and landing points."""
    if jumps_first:
        y = torch.where(uniforms < prob(h * wr * _rates(x, t)), landing, x)
        return y + h * wv * _velocity(y, t)
    y = x + h * wv * _velocity(x, t)
    p = prob(h * wr * _rates(x if rates_at_start else y, t))
    return torch.where(uniforms > p if above else uniforms < p, landing, y)


def _superposition_slips(x, t, h, a, uniforms, landing):
    args, right = (x, t, h, a, uniforms, landing), {"wv": a, "wr": 1 - a}
    slips = {
        "h lambda": (dict(right, prob=lambda r: r), "a coordinate jumps with probability 1 - exp(-h lambda), the "
                     "chance that a Poisson clock of rate lambda rings at least once in h; h lambda is only its "
                     "first-order approximation (and exceeds 1 for large rates); here lambda is (1 - a) times "
                     "the intensity"),
        "exp(-h lambda)": (dict(right, prob=lambda r: torch.exp(-r)), "exp(-h lambda) is the probability of no "
                           "jump; a coordinate jumps with probability 1 - exp(-h (1 - a) lambda)"),
        "uniforms above": (dict(right, above=True), "jump where uniforms < p, so that a coordinate jumps with "
                           "probability p (a uniform is below p with probability p)"),
        "velocity unscaled": ({"wv": 1.0, "wr": 1 - a}, "scale the velocity by a: the superposition's generator "
                              "is a L_flow + (1 - a) L_jump, so the flow moves x by h a u(x, t)"),
        "rates unscaled": ({"wv": a, "wr": 1.0}, "scale the jump rates by 1 - a: the superposition's generator "
                           "is a L_flow + (1 - a) L_jump, so jump with probability 1 - exp(-h (1 - a) lambda)"),
        "both unscaled": ({"wv": 1.0, "wr": 1.0}, "scale both parts: the velocity by a and the jump rates by "
                          "1 - a (a L_flow + (1 - a) L_jump); unscaled, each part alone already makes the whole "
                          "change of the path, and together they overshoot"),
        "weights swapped": ({"wv": 1 - a, "wr": a}, "the weights are swapped: the velocity is scaled by a and the "
                            "jump rates by 1 - a (a = 1 is the flow alone)"),
        "jumps first": (dict(right, jumps_first=True), "take the flow step first, then the jumps (as fmlearn's "
                        "superposition does): a coordinate that jumps lands exactly on its landing point"),
        "rates at the start": (dict(right, rates_at_start=True), "evaluate the intensity at the point the flow step "
                               "moved x to (still at time t), as the task says, not at the x you started from"),
    }
    return {name: (_step_variant(*args, **kw), hint) for name, (kw, hint) in slips.items()}


_STEP_HINT = ("first the flow, x' = x + h a velocity(x, t); then at x' the intensity lam = intensity(x', t), and "
              "each coordinate jumps to its landing point where uniforms < 1 - exp(-h (1 - a) lam), else stays at x'")


def check_superposed_step(superposed_step, tol: float = 1e-10) -> bool:
    """The learner's ``superposed_step(velocity, intensity, x, t, h, a, uniforms, landing)``: one step of the
    Markov superposition a L_flow + (1 - a) L_jump (an Euler flow step with the velocity scaled by a, then each
    coordinate jumps with probability 1 - exp(-h (1 - a) lambda) to its landing point), against
    fmlearn.generators.superposition on given numbers; then run with the conditional flow and jumps of the CondOT
    path towards z from N(0, 1) to t = 0.9, where its samples must have the path's marginal N(t z, (1 - t)^2)."""
    superposed_step = guarded_for(superposed_step, _EXERCISE, "superposed_step_check")
    g = torch.Generator().manual_seed(4)
    x = 1.5 * torch.randn(200, 2, generator=g, dtype=_D64)
    landing = 1 + 2 * torch.randn(200, 2, generator=g, dtype=_D64)
    t, h, a = 0.3, 0.2, 0.3
    uniforms = torch.rand(x.shape, generator=torch.Generator().manual_seed(5), dtype=_D64)
    step = superposition(_velocity, lambda y, s: JumpRates(_rates(y, s), sampler=lambda _: landing), a,
                         generator=torch.Generator().manual_seed(5))  # draws the same uniforms
    want = step(x, t, t + h)
    got = tensor_of(call(superposed_step, _velocity, _rates, x, t, h, a, uniforms, landing, what="superposed_step"),
                  x.shape, "superposed_step")
    if not max_err(got, want) <= tol * (1 + float(want.abs().max())):
        hint = _match(got, _superposition_slips(x, t, h, a, uniforms, landing), 1 + float(want.abs().max()))
        fail(f"one superposed step (a = {a:g}, h = {h:g}) differs from fmlearn's superposition",
              *worst_row(want, got), hint or _STEP_HINT)
    n, z0, a, t_end, steps = 20_000, 1.5, 0.5, 0.9, 100
    z = torch.full((n, 1), z0, dtype=_D64)
    times = (1 - torch.exp(torch.linspace(0, math.log(1 - t_end), steps + 1, dtype=_D64))).tolist()
    x = torch.randn(n, 1, generator=g, dtype=_D64)
    x = (x - x.mean()) / x.std()  # the source's own sampling error out of the way
    for t0, t1 in zip(times[:-1], times[1:]):
        x = superposed_step(lambda y, s: (z - y) / (1 - s), lambda y, s: condot_intensity(y, z, s), x, t0,
                            t1 - t0, a, torch.rand(x.shape, generator=g, dtype=_D64),
                            condot_kernel_sample(z, t0, g))
    mean, std = t_end * z0, 1 - t_end
    got_mean, got_std = float(x.mean()), float(x.std())
    if not (abs(got_mean - mean) < 0.08 * std and abs(got_std - std) < 0.05 * std):  # the right step: 0.04, 0.02
        fail(f"the superposition (a = {a:g}) of the conditional flow and jumps towards z = {z0:g} leaves the path: "
              f"at t = {t_end:g} its samples should be N(t z, (1 - t)^2)", f"mean {mean:.4f}, std {std:.4f}",
              f"mean {got_mean:.4f}, std {got_std:.4f}", _STEP_HINT)
    return ok(f"your superposed step agrees with fmlearn's, and from N(0, 1) to t = {t_end:g} (a = {a:g}) it keeps "
               f"the path's marginal N(t z, (1 - t)^2): mean {got_mean:.3f} (exact {mean:.3f}), std {got_std:.4f} "
               f"(exact {std:.3f})")
