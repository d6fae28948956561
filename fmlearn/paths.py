"""The affine Gaussian conditional probability path.

Given a pair (x0, x1) with x0 ~ N(0, I) (the source) and x1 ~ data, the path
puts x_t = alpha_t x1 + beta_t x0, i.e. p_t(x | x1) = N(alpha_t x1, beta_t^2 I),
and moves along it with the conditional velocity

    u_t(x_t | x0, x1) = d_alpha_t x1 + d_beta_t x0,

the time derivative of x_t. Written in (x0, x1) it has no division by beta_t, so
it is finite at t = 0 and t = 1 (see :mod:`fmlearn.schedules` for the sqrt
schedule's d_beta at t = 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._checks import as_tensor, check_finite, check_time, expand_time
from .schedules import Schedule, get_schedule


@dataclass
class PathSample:
    """One draw from the conditional path: shapes (batch, *data), t is (batch,)."""

    x0: torch.Tensor
    x1: torch.Tensor
    t: torch.Tensor
    xt: torch.Tensor
    dxt: torch.Tensor


class AffineGaussianPath:
    """x_t = alpha_t x1 + beta_t x0 for a :class:`~fmlearn.schedules.Schedule` (or its name)."""

    def __init__(self, schedule: Schedule | str = "condot"):
        self.schedule = get_schedule(schedule)

    def sample(self, x0, x1, t) -> PathSample:
        """x_t and its conditional velocity for batches x0, x1 (same shape) at times t.

        t: a float or a (batch,) tensor in [0, 1].
        """
        x0 = check_finite("x0", as_tensor("x0", x0))
        x1 = check_finite("x1", as_tensor("x1", x1, dtype=x0.dtype, device=x0.device))
        if x0.shape != x1.shape or x0.ndim < 2:
            raise ValueError(f"x0 and x1 must have the same shape (batch, *data), got {tuple(x0.shape)} and {tuple(x1.shape)}")
        return self.sample_unchecked(x0, x1, check_time(t, x0))

    def sample_unchecked(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> PathSample:
        """:meth:`sample` without input checks, for the training loop (no host sync)."""
        te = expand_time(t, x0)
        return PathSample(x0=x0, x1=x1, t=t, xt=self.schedule.interpolate(x0, x1, te),
                          dxt=self.schedule.velocity(x0, x1, te))

    def conditional_velocity(self, x0, x1, t) -> torch.Tensor:
        """u_t(x_t | x0, x1) = d_alpha_t x1 + d_beta_t x0."""
        return self.sample(x0, x1, t).dxt

    def __repr__(self):
        return f"AffineGaussianPath({self.schedule!r})"
