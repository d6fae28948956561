"""The geodesic conditional path of Riemannian flow matching, on any :class:`~fmlearn.spaces.Manifold`.

On a space with exp and log maps the path follows the geodesic from x0 to x1 at the pace kappa_t:

    x_t = exp_{x0}(kappa_t log_{x0}(x1)),   u_t(x_t | x0, x1) = d/dt x_t = d_kappa_t / (1 - kappa_t) log_{x_t}(x1),

which in R^d is the CondOT path for kappa_t = t. Its default source is the space's (uniform on the sphere and
the torus, N(0, I) in R^d), so ``CFMObjective(GeodesicPath(Sphere()), target)`` trains from uniform points.
It follows the path interface of :mod:`fmlearn.paths` (``space``, ``sample_source``, ``sample``).
"""

from __future__ import annotations

import torch

from .._checks import check_time, expand_time
from ..paths import FlowPathSample, check_pair
from ..schedules import KappaSchedule, get_schedule
from ..spaces import Manifold, check_manifold


def geodesic(space: Manifold, x0: torch.Tensor, x1: torch.Tensor,
             s: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The point x_s = exp_{x0}(s log_{x0}(x1)) of the geodesic from x0 (s = 0) to x1 (s = 1), and its velocity
    d x_s / ds, shapes (batch, *data); s a float or a tensor broadcasting against x0: the space's own closed
    form ``space.geodesic(x0, x1, s)`` (the sphere's slerp, the torus's wrapped line, R^d's straight line)."""
    return check_manifold(space).geodesic(x0, x1, s)


class GeodesicPath:
    """The geodesic conditional path of Riemannian flow matching on ``space``, at the pace of a convex schedule:

        x_t = exp_{x0}(kappa_t log_{x0}(x1)),   dx_t = d_kappa_t * (d x_s / ds at s = kappa_t)   (see :func:`geodesic`),

    so x_0 = x0 and x_1 = x1, and the speed is d_kappa_t dist(x0, x1) along the whole path. For the loss of
    :class:`~fmlearn.objectives.CFMObjective`, ||u_theta(x_t, t) - dx_t||^2, the Euclidean norm of the ambient
    coordinates is the Riemannian one for tangent vectors of the sphere and for angles of the flat torus.

    Args:
        space: a :class:`~fmlearn.spaces.Manifold`: e.g. :class:`~fmlearn.manifolds.Sphere`,
            :class:`~fmlearn.manifolds.FlatTorus`, or :class:`~fmlearn.spaces.Euclidean`, where the path is
            the affine CondOT path for kappa_t = t.
        schedule: a :class:`~fmlearn.schedules.KappaSchedule` or its name (default ``"condot"``, kappa_t = t).
    """

    def __init__(self, space: Manifold, schedule: KappaSchedule | str = "condot"):
        self.space, self.schedule = check_manifold(space), get_schedule(schedule)
        if not isinstance(self.schedule, KappaSchedule):
            raise TypeError(f"schedule must be a convex schedule kappa_t (a KappaSchedule such as 'condot'), got "
                            f"{self.schedule!r}")

    def sample_source(self, shape: tuple[int, ...], generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> torch.Tensor:
        """x0 from the space's default source (uniform on the sphere and the torus), of the given shape."""
        return self.space.sample_source(shape, generator, device)

    def sample(self, x0: torch.Tensor, x1: torch.Tensor, t: float | torch.Tensor, *,
               check: bool = True) -> FlowPathSample:
        """x_t and its conditional velocity for batches x0, x1 of points of the space at times t in [0, 1]
        (a float or a (batch,) tensor); points off the space are refused (its ``check_points``).
        ``check=False`` skips the checks (no host sync, for the training loop)."""
        if check:
            x0, x1 = check_pair(self.space, x0, x1)
            t = check_time(t, x0)
        te = expand_time(t, x0)
        xt, velocity = self.space.geodesic(x0, x1, self.schedule.kappa(te))
        return FlowPathSample(x0=x0, x1=x1, t=t, xt=xt, dxt=self.schedule.d_kappa(te) * velocity)

    def sample_unchecked(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> FlowPathSample:
        """``sample(x0, x1, t, check=False)`` (the name of earlier versions)."""
        return self.sample(x0, x1, t, check=False)

    def conditional_velocity(self, x0: torch.Tensor, x1: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """u_t(x_t | x0, x1) = d_kappa_t times the geodesic's velocity at s = kappa_t."""
        return self.sample(x0, x1, t).dxt

    def __repr__(self) -> str:
        return f"GeodesicPath({self.space!r}, {self.schedule!r})"
