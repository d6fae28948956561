"""Conditional probability paths: the one interface every path follows, and the affine Gaussian path.

**The path interface** (:class:`ConditionalPath`). Every conditional path of the course, the affine Gaussian
path here, the geodesic path of a manifold (:class:`fmlearn.manifolds.GeodesicPath`) and the token mixture
path (:class:`fmlearn.discrete.MixturePath`), offers

    space                                  the space its states live in (:mod:`fmlearn.spaces`)
    sample_source(shape, generator, device) a draw of its default source, the x0 a path given none starts from
    sample(x0, x1, t, *, check=True)       one draw x_t from p_t(. | x0, x1), as a :class:`PathSample`

``sample`` is the one sampling method: with ``check=True`` (the default) it refuses bad inputs (shapes,
NaN, t outside [0, 1], points off the space) with a message naming them; ``check=False`` skips the checks
(no host sync: the training loop's use, after it has checked its first batch). What it returns is one family:
a :class:`PathSample` holds (x0, x1, t, xt); a flow's :class:`FlowPathSample` adds dxt, the conditional
velocity, the regression target of :class:`~fmlearn.objectives.CFMObjective` (a :class:`FlowPath`).

**The affine Gaussian path.** Given a pair (x0, x1) with x0 ~ N(0, I) (the source) and x1 ~ data, the path
puts x_t = alpha_t x1 + beta_t x0, i.e. p_t(x | x1) = N(alpha_t x1, beta_t^2 I),
and moves along it with the conditional velocity

    u_t(x_t | x0, x1) = d_alpha_t x1 + d_beta_t x0,

the time derivative of x_t. Written in (x0, x1) it has no division by beta_t, so
it is finite at t = 0 and t = 1 (see :mod:`fmlearn.schedules` for the sqrt
schedule's d_beta at t = 1).

The path also converts between the four things a network can predict at (x, t):
the marginal velocity, the score, the noise x0_hat and the data x1_hat (the
formulas are above :meth:`AffineGaussianPath.x0_from_velocity`). Each conversion
refuses the end point where it would divide by zero, with a ValueError naming t.

(``fmlearn.paths.GeodesicPath`` and ``fmlearn.paths.geodesic`` still name the geodesic path and its
helper, which live in :mod:`fmlearn.manifolds.paths`.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from ._checks import as_tensor, check_finite, check_time, expand_time
from .schedules import Schedule, get_schedule
from .spaces import EUCLIDEAN, Euclidean


@dataclass
class PathSample:
    """One draw from a conditional path, the family every path's ``sample`` returns: x0 and x1 (batch, *data),
    t (batch,), xt ~ p_t(. | x0, x1) of x0's shape (tokens for a discrete path)."""

    x0: torch.Tensor
    x1: torch.Tensor
    t: torch.Tensor
    xt: torch.Tensor


@dataclass
class FlowPathSample(PathSample):
    """A draw from a flow's conditional path: also dxt = u_t(x_t | x0, x1), the conditional velocity (xt's shape)."""

    dxt: torch.Tensor


@runtime_checkable
class ConditionalPath(Protocol):
    """What every conditional path offers (see the module docstring)."""

    space: Any

    def sample_source(self, shape: tuple[int, ...], generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> torch.Tensor: ...

    def sample(self, x0: torch.Tensor, x1: torch.Tensor, t: float | torch.Tensor, *,
               check: bool = True) -> PathSample: ...


@runtime_checkable
class FlowPath(ConditionalPath, Protocol):
    """A conditional path of a flow: ``sample`` returns a :class:`FlowPathSample` (with the velocity dxt), and
    ``space`` is a :class:`~fmlearn.spaces.Manifold` (R^d, the sphere, the torus)."""

    def sample(self, x0: torch.Tensor, x1: torch.Tensor, t: float | torch.Tensor, *,
               check: bool = True) -> FlowPathSample: ...


def check_pair(space: Any, x0: Any, x1: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0, x1) as floating tensors of one shape (batch, *data) and dtype, finite, points of ``space``."""
    x0 = check_finite("x0", as_tensor("x0", x0))
    x1 = check_finite("x1", as_tensor("x1", x1, dtype=x0.dtype, device=x0.device))
    if x0.shape != x1.shape or x0.ndim < 2:
        raise ValueError(f"x0 and x1 must have the same shape (batch, *data), got {tuple(x0.shape)} and {tuple(x1.shape)}")
    return space.check_points("x0", x0), space.check_points("x1", x1)


class AffineGaussianPath:
    """x_t = alpha_t x1 + beta_t x0 for a :class:`~fmlearn.schedules.Schedule` (or its name), on R^d
    (``space`` is :class:`~fmlearn.spaces.Euclidean`), from the default source N(0, I)."""

    space: Euclidean = EUCLIDEAN

    def __init__(self, schedule: Schedule | str = "condot"):
        self.schedule = get_schedule(schedule)

    def sample_source(self, shape: tuple[int, ...], generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> torch.Tensor:
        """x0 ~ N(0, I) of the given shape (batch, *data)."""
        return self.space.sample_source(shape, generator, device)

    def sample(self, x0: torch.Tensor, x1: torch.Tensor, t: float | torch.Tensor, *,
               check: bool = True) -> FlowPathSample:
        """x_t and its conditional velocity for batches x0, x1 (same shape) at times t.

        t: a float or a (batch,) tensor in [0, 1]. ``check=False`` skips the input checks (tensors of one
        shape and a (batch,) time tensor are then assumed): no host sync, for the training loop.
        """
        if check:
            x0, x1 = check_pair(self.space, x0, x1)
            t = check_time(t, x0)
        te = expand_time(t, x0)
        return FlowPathSample(x0=x0, x1=x1, t=t, xt=self.schedule.interpolate(x0, x1, te),
                              dxt=self.schedule.velocity(x0, x1, te))

    def sample_unchecked(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> FlowPathSample:
        """``sample(x0, x1, t, check=False)`` (the name of earlier versions)."""
        return self.sample(x0, x1, t, check=False)

    def conditional_velocity(self, x0: torch.Tensor, x1: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """u_t(x_t | x0, x1) = d_alpha_t x1 + d_beta_t x0."""
        return self.sample(x0, x1, t).dxt

    # Conversions between what a network can predict at (x, t). With x0 ~ N(0, I) independent of
    # x1, each is an affine function of the posterior means x0_hat = E[x0 | x_t = x] (noise) and
    # x1_hat = E[x1 | x_t = x] (data); taking E[. | x_t = x] of x_t and of u_t gives
    #     x = alpha x1_hat + beta x0_hat,     u = d_alpha x1_hat + d_beta x0_hat,
    # and Tweedie's formula gives the score, grad log p_t(x) = E[-(x - alpha x1) / beta^2 | x] = -x0_hat / beta.
    # Solving the 2 x 2 system, with D_t = d_alpha beta - alpha d_beta (> 0 where the path moves):
    #     x1_hat = (beta u - d_beta x) / D,   x0_hat = (d_alpha x - alpha u) / D,
    #     score  = (alpha u - d_alpha x) / (beta D),   u = (d_alpha / alpha)(x + beta^2 score) - d_beta beta score.
    # beta D = beta^2 d_alpha - alpha (beta d_beta) is computed with the closed-form beta d_beta, so it stays
    # exact where d_beta alone diverges (sqrt and VP at t = 1, where beta D = 1/2 and d_alpha_1 are positive).

    def x0_from_velocity(self, u: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """Noise prediction x0_hat = (d_alpha x - alpha u) / D_t from a velocity u at (x, t), shape of x.

        Valid where D_t = d_alpha beta - alpha d_beta > LEVEL_MIN: all of [0, 1] for CondOT, sqrt, cosine, VP
        and VE; t > 0 for Polynomial (n > 1), which stands still at t = 0.
        x, u: (batch, *data); t: a float or a (batch,) tensor.
        """
        u, x, (a, b, da, db, bdb) = self._inputs("u", u, x, t, ("D_t",), "x0_from_velocity")
        return (da * x - a * u) / (da * b - a * db)

    def x1_from_velocity(self, u: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """Data prediction x1_hat = (beta u - d_beta x) / D_t from a velocity u at (x, t), shape of x.

        Same valid range as :meth:`x0_from_velocity`.
        """
        u, x, (a, b, da, db, bdb) = self._inputs("u", u, x, t, ("D_t",), "x1_from_velocity")
        return (b * u - db * x) / (da * b - a * db)

    def velocity_from_x0(self, x0_hat: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """The velocity from a noise prediction: u = d_alpha x1_hat + d_beta x0_hat, x1_hat = (x - beta x0_hat) / alpha.

        Needs alpha_t > LEVEL_MIN: t > 0 for paths that start at pure noise.
        """
        x0_hat, x, (a, b, da, db, bdb) = self._inputs("x0_hat", x0_hat, x, t, ("alpha_t",), "velocity_from_x0")
        return da * (x - b * x0_hat) / a + db * x0_hat

    def velocity_from_x1(self, x1_hat: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """The velocity from a data prediction: u = d_alpha x1_hat + d_beta x0_hat, x0_hat = (x - alpha x1_hat) / beta.

        Needs beta_t > LEVEL_MIN: t < 1 for paths that end at the data.
        """
        x1_hat, x, (a, b, da, db, bdb) = self._inputs("x1_hat", x1_hat, x, t, ("beta_t",), "velocity_from_x1")
        return da * x1_hat + db * (x - a * x1_hat) / b

    def score_from_velocity(self, u: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """The marginal score from the marginal velocity: s = -x0_hat / beta = (alpha u - d_alpha x) / (beta D_t).

        x, u: (batch, *data); t: a float or (batch,) tensor. Needs beta_t D_t > LEVEL_MIN: t < 1 for CondOT,
        cosine and Polynomial (beta D = 1 - t for CondOT), and t > 0 for Polynomial with n > 1, which stands
        still at t = 0; all of [0, 1] for sqrt, VP and VE, whose beta^2 has a nonzero slope at t = 1.
        Near t = 1 an error in u is amplified by alpha / (beta D), 1 / (1 - t) for CondOT.
        """
        u, x, (a, b, da, db, bdb) = self._inputs("u", u, x, t, ("beta_t D_t",), "score_from_velocity")
        return (a * u - da * x) / (b**2 * da - a * bdb)

    def velocity_from_score(self, score: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """The marginal velocity from the marginal score: u = (d_alpha / alpha)(x + beta^2 s) - (beta d_beta) s.

        Needs alpha_t > LEVEL_MIN: t > 0 for the schedules that start at pure noise (at t = 0 the
        score of N(0, I) says nothing about the data); all of [0, 1] for VP (alpha_0 ~ 6.6e-3) and VE.
        """
        score, x, (a, b, da, db, bdb) = self._inputs("score", score, x, t, ("alpha_t",), "velocity_from_score")
        return da * (x + b**2 * score) / a - bdb * score

    def _inputs(self, name, value, x, t, needs, what):
        """Check (value, x, t); return value, x and (alpha, beta, d_alpha, d_beta, beta d_beta) shaped to
        broadcast against x, after refusing times where a divisor named in ``needs`` is <= LEVEL_MIN."""
        x = check_finite("x", as_tensor("x", x))
        value = check_finite(name, as_tensor(name, value, dtype=x.dtype, device=x.device))
        if x.ndim < 2 or value.shape != x.shape:
            raise ValueError(f"{name} and x must have the same shape (batch, *data), got {tuple(value.shape)} "
                             f"and {tuple(x.shape)}")
        t = check_time(t, x)
        s, t64 = self.schedule, t.detach().cpu().double()
        level = conversion_levels(s, t64)
        for key in needs:
            bad = ~(level[key] > LEVEL_MIN)
            if bool(bad.any()):
                i = int(bad.nonzero()[0])
                ti = float(t64[i])
                hint = (_RANGE_NEAR_0 if ti < 0.5 else {}).get(key, _RANGE[key])
                raise ValueError(f"t: {what} divides by {key}, which is {float(level[key][i]):.3g} at t = "
                                 f"{ti!r} for {s!r}; it needs {key} > {LEVEL_MIN:g} ({hint})")
        te = expand_time(t, x)
        return value, x, (s.alpha(te), s.beta(te), s.d_alpha(te), s.d_beta(te), s.beta_d_beta(te))

    def __repr__(self):
        return f"AffineGaussianPath({self.schedule!r})"


#: The conversions refuse times where their divisor (alpha_t, beta_t, D_t or beta_t D_t) is at most this.
LEVEL_MIN = 1e-6
_RANGE = {"alpha_t": "alpha_0 = 0 for paths that start at pure noise: use t > 0",
          "beta_t": "beta_1 = 0 for paths that end at the data: use t < 1",
          "beta_t D_t": "it vanishes at t = 1 where beta^2 has zero slope (CondOT, cosine, Polynomial): use t < 1",
          "D_t": "D_t = d_alpha beta - alpha d_beta vanishes where the path stands still, e.g. Polynomial at t = 0"}
#: beta_t D_t vanishes at both ends for Polynomial (n > 1): the hint for the t = 0 end.
_RANGE_NEAR_0 = {"beta_t D_t": "it vanishes at t = 0 where the path stands still (Polynomial with n > 1): use t > 0"}


def conversion_levels(schedule: Schedule, t: torch.Tensor) -> dict[str, torch.Tensor]:
    """The divisors of the conversions at times t (any shape): alpha_t, beta_t, D_t = d_alpha beta - alpha d_beta
    and beta_t D_t = beta^2 d_alpha - alpha (beta d_beta), the last with the schedule's closed-form beta d_beta."""
    a, b, da = schedule.alpha(t), schedule.beta(t), schedule.d_alpha(t)
    return {"alpha_t": a, "beta_t": b, "D_t": da * b - a * schedule.d_beta(t),
            "beta_t D_t": b**2 * da - a * schedule.beta_d_beta(t)}


def __getattr__(name: str) -> Any:
    """``fmlearn.paths.GeodesicPath`` and ``fmlearn.paths.geodesic``: the geodesic path moved to
    :mod:`fmlearn.manifolds.paths`, beside its spaces; these names still reach it."""
    if name in ("GeodesicPath", "geodesic"):
        from .manifolds import paths as manifold_paths
        return getattr(manifold_paths, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
