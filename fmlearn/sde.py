"""Stochastic samplers with the flow's marginals: Euler-Maruyama and a Langevin corrector.

For an affine Gaussian path the score is a function of the velocity
(:meth:`~fmlearn.paths.AffineGaussianPath.score_from_velocity`), so one velocity
model gives a whole family of samplers, one per noise scale g_t >= 0:

    dX_t = [u_t(X_t) + (g_t^2 / 2) s_t(X_t)] dt + g_t dW_t,    t from 0 to 1.

All have the marginals p_t of the flow: the Fokker-Planck equation of this SDE is

    d_t p = -div(p u) - (g^2 / 2) div(p grad log p) + (g^2 / 2) lap p = -div(p u),

because p grad log p = grad p: the continuity equation of the ODE (g = 0).
Euler-Maruyama takes, from t to t + h with z ~ N(0, I),

    X <- X + h [u_t(X) + (g_t^2 / 2) s_t(X)] + g_t sqrt(h) z.

Diffusion models are one member: g_t^2 = 2 beta_t D_t / alpha_t with
D_t = d_alpha beta - alpha d_beta (:func:`diffusion_noise`) is the reverse-time SDE of
the forward noising process; its drift simplifies to 2 u - (d_alpha / alpha) x.

The singular ends. s_t = -x0_hat / beta_t needs beta_t > 0: t < 1 for CondOT, cosine and
Polynomial (sqrt, VP and VE have a finite limit at t = 1). Polynomial with n > 1 is also
singular at t = 0, where the path stands still (d_alpha_0 = d_beta_0 = 0): its velocity there
is 0 whatever x is, so it holds no score; start such a sampler at t0 > 0, or give a g_t
that is 0 at t = 0 (a callable). Euler-Maruyama evaluates the
drift at the left end of each step, so t = 1 itself is never used, but the last steps are
stiff: for data of std sigma the score's slope near t = 1 is about -1 / (sigma^2 + beta_t^2),
so a step multiplies the distance to the mode by about 1 - h g_t^2 / (2 (sigma^2 + beta_t^2)),
which must stay in (-1, 1). For the course's mixture (sigma = 1) a constant g <= 1 is safe
at any step count; for narrow data (sigma < g sqrt(h) / 2) it is not, and the samples blow
up. Then use a noise scale that vanishes with beta_t, such as g_t = c sqrt(beta_t) (a
callable) or :func:`diffusion_noise` (g_t^2 ~ 2 beta_t near t = 1 for CondOT; infinite at
t = 0 where alpha_0 = 0, so start such a sampler at t0 > 0 from samples of p_t0), or more
steps. A learned velocity's error reaches the score multiplied by about 1 / beta_t, one
more reason to let g_t fade.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence, Union

import torch

from ._checks import as_tensor, check_finite, check_positive_int, check_real, model_context
from ._random import randn_like
from .paths import LEVEL_MIN, AffineGaussianPath, conversion_levels
from .spaces import Space, check_space
from .stepping import Solution, check_grid, march, time_grid

#: A noise scale (or a Langevin step size): a number, or a function of t (a Python float) returning one.
Scale = Union[float, Callable[[float], float]]


def _scale_at(name: str, value: Scale, t: float, positive: bool = False) -> float:
    """value (a number) or value(t) (a callable), checked finite and >= 0 (> 0 if positive)."""
    got = value(t) if callable(value) else value
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        raise TypeError(f"{name} must be a number or a function of t returning one, got {type(got).__name__}")
    got = float(got)
    if not math.isfinite(got) or got < 0 or (positive and got == 0):
        where = f" at t = {t!r}" if callable(value) else ""
        raise ValueError(f"{name} must be finite and {'> 0' if positive else '>= 0'}, got {got}{where}")
    return got


def langevin_step(score: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, eps: float,
                  generator: torch.Generator | None = None, space: Space | None = None) -> torch.Tensor:
    """One unadjusted Langevin step towards the density whose score is given: x + eps s(x) + sqrt(2 eps) z.

    score: x -> grad log p(x), shape of x; x: (batch, *data); eps > 0; z ~ N(0, I) drawn on the generator's
    device. Like the predictor, it moves through the space: step(step(x, eps s(x)), sqrt(2 eps) z) (default
    Euclidean: the sum above). It leaves p invariant as eps -> 0; for finite eps a Gaussian N(m, sigma^2) is
    mapped to itself only approximately: the chain settles at variance sigma^2 / (1 - eps / (2 sigma^2)), so
    keep eps well below the data's variance.
    """
    eps = check_real("eps", eps, positive=True)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor, got {type(x).__name__}")
    space = check_space(space)
    x = space.step(x, eps * score(x))
    return space.step(x, math.sqrt(2 * eps) * randn_like(x, generator))


def diffusion_noise(path: AffineGaussianPath, scale: float = 1.0) -> Callable[[float], float]:
    """The diffusion model's noise scale g_t = scale * sqrt(2 beta_t D_t / alpha_t), as a function of t.

    D_t = d_alpha beta - alpha d_beta; beta_t D_t is computed as in :func:`~fmlearn.paths.conversion_levels`,
    exact at t = 1. scale = 1 gives the reverse-time SDE of the forward noising process: for VP,
    g_t^2 = rate_min + (rate_max - rate_min)(1 - t) (DDPM's noise rate at s = 1 - t); for VE,
    g_t^2 = -d(sigma_t^2)/dt (NCSN). It vanishes like sqrt(beta_t) at the data end where beta_t D_t -> 0,
    and is infinite where alpha_t = 0 (t = 0 for CondOT): there the returned function raises ValueError.
    """
    if not isinstance(path, AffineGaussianPath):
        raise TypeError(f"path must be an AffineGaussianPath, got {type(path).__name__}")
    scale = check_real("scale", scale)
    if scale < 0:
        raise ValueError(f"scale must be >= 0, got {scale}")
    sch = path.schedule

    def g(t: float) -> float:
        level = conversion_levels(sch, torch.tensor(float(t), dtype=torch.float64))
        a, bd = float(level["alpha_t"]), float(level["beta_t D_t"])
        if not a > LEVEL_MIN:
            raise ValueError(f"t: the diffusion noise scale is infinite at t = {t!r} (alpha_t = {a:.3g}) for "
                             f"{sch!r}; start the sampler at a later time")
        return scale * math.sqrt(max(2 * bd / a, 0.0))

    return g


def _times(steps, times) -> torch.Tensor:
    if (steps is None) == (times is None):
        raise ValueError("give exactly one of steps (equal steps on [0, 1]) or times (an increasing grid in [0, 1])")
    if times is None:
        return time_grid(check_positive_int("steps", steps))
    times = check_grid(times)
    if not (times[1] > times[0] and times[0] >= 0 and times[-1] <= 1):
        raise ValueError(f"times must increase within [0, 1], got {times[0].item()} to {times[-1].item()}")
    return times


def _no_score_message(path: AffineGaussianPath, t: float, gt: float, level: float) -> str:
    """Why the drift cannot be had at t, naming the end of the path that causes it and the ways out."""
    if t < 0.5:
        why = ("the path stands still at t = 0 (d_alpha_0 = d_beta_0 = 0), so the true velocity there is 0 for "
               "every x and tells nothing of the score. Start at a later time (times=... beginning at t0 > 0, from "
               "samples of p_t0), or give a noise scale that is 0 at t = 0, e.g. g=lambda t: c * t")
    else:
        why = ("beta_t^2 has zero slope at t = 1, where the path reaches the data. Euler-Maruyama only evaluates "
               "the drift at the left end of each step: let the last step start earlier, or give a noise scale "
               "that vanishes at t = 1, e.g. g=lambda t: c * (1 - t) ** 0.5")
    return (f"g: with g_t = {gt:g} > 0 at t = {t!r} the drift needs the score, which {path.schedule!r} cannot "
            f"give from the velocity there (beta_t D_t = {level:.3g} <= {LEVEL_MIN:g}): {why}")


def sde_sample(velocity: Callable[..., torch.Tensor], path: AffineGaussianPath, x0: torch.Tensor, *,
               steps: int | None = None, times: Sequence[float] | torch.Tensor | None = None,
               g: Scale = 1.0, generator: torch.Generator | None = None, corrector_steps: int = 0,
               corrector_eps: Scale = 0.01, space: Space | None = None, return_trajectory: bool = False,
               **cond: torch.Tensor) -> Solution:
    """Euler-Maruyama for dX = [u + (g_t^2 / 2) s] dt + g_t dW from times[0] to times[-1].

    - velocity: a model or function called as velocity(x, t, **cond) with t a Python float; a model runs in
      eval mode on its own device (x0 is moved there) and in its parameters' dtype (x is cast for each
      call, the velocity cast back: the state keeps x0's dtype). path: the path it was trained on, whose
      :meth:`~fmlearn.paths.AffineGaussianPath.score_from_velocity` turns u into s.
    - x0: (batch, *data), samples of p at times[0] (N(0, I) for t = 0, sigma_max N(0, I) for VE).
    - steps: equal steps on [0, 1]; or times: an increasing grid in [0, 1] (e.g. starting at t0 > 0).
    - g: noise scale >= 0, a number or a function of t (see :func:`diffusion_noise`); g = 0 is the Euler ODE.
    - generator: seeds the noise. corrector_steps: Langevin steps (:func:`langevin_step`) with the score of
      p_t after each predictor step, size corrector_eps (a number or function of t, > 0); none after a
      step that ends where the score cannot be had from the velocity (beta_t D_t <= LEVEL_MIN: t = 1 for
      CondOT, cosine, Polynomial).
    - space: applies every increment, the drift's, the noise's and the corrector's, one after the other
      (default Euclidean: x + dx).

    Runs on the time loop of every solver (:func:`fmlearn.stepping.march`) and returns its
    :class:`~fmlearn.stepping.Solution` (x of shape and dtype of x0, trajectory (len(times), *x0.shape)
    if asked for; nfe counts predictor and corrector evaluations).

    Raises ValueError (naming g and t) when g_t > 0 at a step that starts where the score cannot be had from
    the velocity: t = 0 for Polynomial with n > 1 (start later, or let g vanish there).
    """
    if not callable(velocity):
        raise TypeError(f"velocity must be a model or a function velocity(x, t), got {type(velocity).__name__}")
    if not isinstance(path, AffineGaussianPath):
        raise TypeError(f"path must be an AffineGaussianPath, got {type(path).__name__}")
    if not isinstance(x0, torch.Tensor):
        raise TypeError(f"x0 must be a tensor of shape (batch, *data), got {type(x0).__name__}")
    if x0.ndim < 2:
        raise ValueError(f"x0 must be a tensor of shape (batch, *data), got {tuple(x0.shape)}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if isinstance(corrector_steps, bool) or not isinstance(corrector_steps, int) or corrector_steps < 0:
        raise ValueError(f"corrector_steps must be an int >= 0, got {corrector_steps!r}")
    for name, value in (("g", g), ("corrector_eps", corrector_eps)):
        if not callable(value):
            _scale_at(name, value, 0.0, positive=name == "corrector_eps")
    space = check_space(space)
    grid = _times(steps, times)
    levels = dict(zip(grid.tolist(), conversion_levels(path.schedule, grid)["beta_t D_t"].tolist()))
    evaluations = [0]

    with model_context(velocity, check_finite("x0", as_tensor("x0", x0))) as (net, x):
        def advance(x, t, t_next):
            h, gt = t_next - t, _scale_at("g", g, t)
            if gt > 0 and not levels[t] > LEVEL_MIN:
                raise ValueError(_no_score_message(path, t, gt, levels[t]))
            u = net(x, t, **cond)
            drift = u if gt == 0 else u + (0.5 * gt**2) * path.score_from_velocity(u, x, t)
            x = space.step(x, h * drift)
            if gt > 0:
                x = space.step(x, (gt * math.sqrt(h)) * randn_like(x, generator))
            evaluations[0] += 1
            if corrector_steps and levels[t_next] > LEVEL_MIN:
                eps = _scale_at("corrector_eps", corrector_eps, t_next, positive=True)

                def score(y):
                    return path.score_from_velocity(net(y, t_next, **cond), y, t_next)

                for _ in range(corrector_steps):
                    x = langevin_step(score, x, eps, generator, space)
                evaluations[0] += corrector_steps
            return x

        x, traj = march(advance, x, grid, return_trajectory=return_trajectory)
    return Solution(x=x, times=grid, nfe=evaluations[0], trajectory=traj, accepted_steps=len(grid) - 1,
                    rejected_steps=0)
