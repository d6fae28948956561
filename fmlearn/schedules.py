"""Schedules (alpha_t, beta_t) of the affine Gaussian path x_t = alpha_t x1 + beta_t x0.

Time runs from t = 0 (noise, x0) to t = 1 (data, x1), so every schedule must
satisfy alpha_0 = 0, beta_0 = 1, alpha_1 = 1, beta_1 = 0; each checks this when
it is built. The one exception is :class:`VE` (variance exploding: alpha_t = 1,
beta_0 = sigma_max), which checks its own end points and is left out of
``SCHEDULES``. Derivatives are closed form; the tests compare them with finite
differences.

Convex schedules. A mixture path (the discrete paths of chapter 8) moves probability from the source to
the data at the rate of one function, kappa_t, from kappa_0 = 0 to kappa_1 = 1: it is mixed as
(1 - kappa_t) p_0 + kappa_t delta_{x1}, and its generator needs d_kappa_t / (1 - kappa_t).
:class:`KappaSchedule` is that family; the affine Gaussian schedules whose alpha and beta are such a
pair, alpha_t = kappa_t and beta_t = 1 - kappa_t (CondOT: kappa_t = t; Polynomial: kappa_t = t^n), are
members of it rather than copies.

Endpoints. ``d_beta`` of the sqrt schedule, -1 / (2 sqrt(1 - t)), diverges at
t = 1. We evaluate it at min(t, 1 - T_EPS) so that it stays finite (about -500
at t = 1); the product ``beta * d_beta`` = d(beta^2)/dt / 2, which is what the
oracle uses, is finite in closed form (-1/2) at every t.
"""

from __future__ import annotations

import math

import torch

T_EPS = 1e-6


class Schedule:
    """Base: subclasses define ``alpha``, ``beta``, ``d_alpha``, ``d_beta`` on tensors."""

    name = "schedule"
    #: alpha_0 may miss 0 by this much (only VP, whose noise end is approximate).
    alpha0_tol = 1e-6

    def __init__(self):
        ends = torch.tensor([0.0, 1.0], dtype=torch.float64)
        a, b = self.alpha(ends), self.beta(ends)
        expected = {"alpha_0": (a[0], 0.0, self.alpha0_tol), "beta_0": (b[0], 1.0, self.alpha0_tol**2 + 1e-9),
                    "alpha_1": (a[1], 1.0, 1e-9), "beta_1": (b[1], 0.0, 1e-9)}
        for key, (got, want, tol) in expected.items():
            if abs(float(got) - want) > tol:
                raise ValueError(f"{type(self).__name__}: {key} must be {want} (within {tol:g}), got {float(got):.6g}")

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def d_alpha(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def d_beta(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def beta_d_beta(self, t: torch.Tensor) -> torch.Tensor:
        """beta_t * d beta_t / dt = (d/dt beta_t^2) / 2, finite at both ends."""
        return self.beta(t) * self.d_beta(t)

    def interpolate(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = alpha_t x1 + beta_t x0 (t broadcastable against x0 and x1)."""
        return self.alpha(t) * x1 + self.beta(t) * x0

    def velocity(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The conditional velocity d_alpha_t x1 + d_beta_t x0 (t broadcastable)."""
        return self.d_alpha(t) * x1 + self.d_beta(t) * x0

    def __repr__(self):
        return f"{type(self).__name__}()"


class KappaSchedule(Schedule):
    """A convex schedule: kappa_t from kappa_0 = 0 to kappa_1 = 1, its derivative d_kappa_t, and the jump rate
    of a mixture path, d_kappa_t / (1 - kappa_t) (:meth:`rate`). As an affine Gaussian schedule it is
    alpha_t = kappa_t, beta_t = 1 - kappa_t. Subclasses define ``kappa`` and ``d_kappa`` on tensors."""

    def kappa(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def d_kappa(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def rate(self, t: torch.Tensor) -> torch.Tensor:
        """d_kappa_t / (1 - kappa_t), evaluated at min(t, 1 - T_EPS): it diverges at t = 1 (all the remaining
        mass must jump), so the guard keeps it finite there (1e6 for CondOT)."""
        s = torch.clamp(t, max=1 - T_EPS)
        return self.d_kappa(s) / (1 - self.kappa(s))

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return self.kappa(t)

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        return 1 - self.kappa(t)

    def d_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return self.d_kappa(t)

    def d_beta(self, t: torch.Tensor) -> torch.Tensor:
        return -self.d_kappa(t)


class CondOT(KappaSchedule):
    """kappa_t = t: alpha_t = t, beta_t = 1 - t, straight lines from x0 to x1 (conditional OT)."""

    name = "CondOT"

    def kappa(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def d_kappa(self, t: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(t)

    # The same formulas in one kernel each (the training loop calls these every step).
    def interpolate(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.lerp(x0, x1, t)

    def velocity(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x1 - x0


class Sqrt(Schedule):
    """alpha_t = t, beta_t = sqrt(1 - t): the seed walkthrough's path."""

    name = "sqrt"

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(torch.clamp(1 - t, min=0))

    def d_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(t)

    def d_beta(self, t: torch.Tensor) -> torch.Tensor:
        return -0.5 / torch.sqrt(torch.clamp(1 - t, min=T_EPS))

    def beta_d_beta(self, t: torch.Tensor) -> torch.Tensor:
        return torch.full_like(t, -0.5)


class Cosine(Schedule):
    """alpha_t = sin(pi t / 2), beta_t = cos(pi t / 2): variance preserving, alpha^2 + beta^2 = 1."""

    name = "cosine"

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sin(0.5 * math.pi * t)

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        return torch.cos(0.5 * math.pi * t)

    def d_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return 0.5 * math.pi * torch.cos(0.5 * math.pi * t)

    def d_beta(self, t: torch.Tensor) -> torch.Tensor:
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * t)


class Polynomial(KappaSchedule):
    """kappa_t = t^n: alpha_t = t^n, beta_t = 1 - t^n (n >= 1): n = 1 is CondOT; larger n lingers near the noise.

    (n < 1 would start with infinite speed, d_alpha_0 = inf, so it is refused.)
    """

    name = "polynomial"

    def __init__(self, n: float = 2.0):
        if isinstance(n, bool) or not isinstance(n, (int, float)) or not n >= 1 or not math.isfinite(n):
            raise ValueError(f"n must be a finite number >= 1, got {n!r}")
        self.n = float(n)
        super().__init__()

    def kappa(self, t: torch.Tensor) -> torch.Tensor:
        return t**self.n

    def d_kappa(self, t: torch.Tensor) -> torch.Tensor:
        return self.n * t ** (self.n - 1)

    def __repr__(self):
        return f"Polynomial(n={self.n:g})"


class VP(Schedule):
    """The variance-preserving (DDPM) schedule in flow-matching time.

    With s = 1 - t, the forward process's noise rate b(s) = rate_min + (rate_max - rate_min) s (DDPM's
    "beta(s)"; here beta_t names the noise std, as in every schedule) and T(s) = int_0^s b =
    rate_min s + (rate_max - rate_min) s^2 / 2: alpha_t = exp(-T(1 - t) / 2), beta_t = sqrt(1 - alpha_t^2).
    Its noise end is approximate: alpha_0 = exp(-T(1) / 2) ~ 6.6e-3 for the
    usual (0.1, 20); the check at t = 0 allows for that.
    """

    name = "VP"
    alpha0_tol = 1e-2

    def __init__(self, rate_min: float = 0.1, rate_max: float = 20.0):
        if not 0 <= rate_min < rate_max:
            raise ValueError(f"rate_min and rate_max must satisfy 0 <= rate_min < rate_max, got {rate_min}, {rate_max}")
        self.rate_min, self.rate_max = float(rate_min), float(rate_max)
        super().__init__()

    def _T(self, s):
        return self.rate_min * s + 0.5 * (self.rate_max - self.rate_min) * s**2

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(-0.5 * self._T(1 - t))

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(torch.clamp(-torch.expm1(-self._T(1 - t)), min=0))

    def d_alpha(self, t: torch.Tensor) -> torch.Tensor:
        s = 1 - t
        return 0.5 * (self.rate_min + (self.rate_max - self.rate_min) * s) * self.alpha(t)

    def d_beta(self, t: torch.Tensor) -> torch.Tensor:
        b = torch.clamp(self.beta(t), min=math.sqrt(T_EPS))
        return -self.alpha(t) * self.d_alpha(t) / b

    def beta_d_beta(self, t: torch.Tensor) -> torch.Tensor:
        return -self.alpha(t) * self.d_alpha(t)

    def __repr__(self):
        return f"VP(rate_min={self.rate_min}, rate_max={self.rate_max})"


class VE(Schedule):
    """The variance-exploding (NCSN / score SDE) schedule in flow-matching time: x_t = x1 + sigma_t x0.

    alpha_t = 1, beta_t = sigma_t = sigma_max^(1 - t) sigma_min^t (geometric),
    d beta_t / dt = -log(sigma_max / sigma_min) sigma_t.

    The documented exception to :class:`Schedule`'s end-point check: the signal is never
    scaled down, so alpha_0 = 1, not 0, and the noise end is N(x1, sigma_max^2 I), which is
    close to N(0, sigma_max^2 I) only when sigma_max is much larger than the data (its
    ``source_std`` is sigma_max: sample x_0 = sigma_max z, z ~ N(0, I)). Its data end has
    beta_1 = sigma_min > 0 (like VP's alpha_0 > 0). So VE checks its own invariants instead
    (alpha = 1 at both ends, beta_0 = sigma_max, beta_1 = sigma_min, 0 < sigma_min < sigma_max),
    and it is not in ``SCHEDULES``: code that assumes a N(0, I) source cannot get it by name.
    The conditional path still draws x0 ~ N(0, I), so training, the oracle and the
    velocity/score conversions of :class:`~fmlearn.paths.AffineGaussianPath` work unchanged.
    """

    name = "VE"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0):
        for key, value in (("sigma_min", sigma_min), ("sigma_max", sigma_max)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{key} must be a finite number > 0, got {value!r}")
        if not sigma_min < sigma_max:
            raise ValueError(f"sigma_min must be smaller than sigma_max, got sigma_min={sigma_min}, "
                             f"sigma_max={sigma_max}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.source_std = self.sigma_max
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)
        ends = torch.tensor([0.0, 1.0], dtype=torch.float64)
        a, b = self.alpha(ends), self.beta(ends)
        if not (torch.equal(a, torch.ones(2, dtype=torch.float64))
                and torch.allclose(b, torch.tensor([self.sigma_max, self.sigma_min], dtype=torch.float64), rtol=1e-12)):
            raise ValueError(f"VE: expected alpha = 1 and beta = ({self.sigma_max}, {self.sigma_min}) at t = (0, 1), "
                             f"got alpha = {a.tolist()}, beta = {b.tolist()}")

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(t)

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma_max * torch.exp(-self._log_ratio * t)

    def d_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(t)

    def d_beta(self, t: torch.Tensor) -> torch.Tensor:
        return -self._log_ratio * self.beta(t)

    def __repr__(self):
        return f"VE(sigma_min={self.sigma_min}, sigma_max={self.sigma_max})"


SCHEDULES = {"condot": CondOT, "sqrt": Sqrt, "cosine": Cosine, "vp": VP, "polynomial": Polynomial}


def get_schedule(name: str | Schedule) -> Schedule:
    """A schedule by name (case-insensitive): one of ``SCHEDULES``."""
    if isinstance(name, Schedule):
        return name
    if not isinstance(name, str) or name.lower() not in SCHEDULES:
        raise ValueError(f"schedule must be one of {sorted(SCHEDULES)} or a Schedule, got {name!r}")
    return SCHEDULES[name.lower()]()
