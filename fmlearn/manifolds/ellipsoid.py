"""An ellipsoid in R^3, a surface whose geodesics have no closed form, batch first: x of shape (batch, 3).

With semi-axes s = (a, b, c) > 0, the surface is the level set F(x) = 1 of F(x) = |x / s|^2 (elementwise
division), and everything the course needs is written with the *gauge* rho(x) = |x / s| (rho = 1 on the surface)::

    normal(x)    = n = (x / s^2) / |x / s^2|               the unit normal, grad F / |grad F|
    proj(x, v)   = v - <n, v> n                           the tangent part of v at x (any x != 0: the level set
                                                          of F through x)
    step(x, dx)  = retract(x + dx),  retract(y) = y / rho(y)   back onto the surface along the ray from the centre
    to_sphere(x) = x / |x|,  from_sphere(p) = p / rho(p)   the radial map to the unit sphere and its inverse
    area         = 4 pi a b c R_G(a^-2, b^-2, c^-2)       (Carlson's symmetric elliptic integral R_G)
    uniform:     x = s * p, p uniform on S^2, kept with probability min(s) |p / s| (rejection)

The ellipsoid is star-shaped about its centre (every ray from 0 meets it once), so the radial map is a
bijection onto the sphere, and a solver that steps by ``retract`` stays on the surface up to rounding whatever
the field; ``retract`` fixes the points of the surface, so a step whose increment is accurate to O(h^5) (rk4's)
lands within O(h^5) of the exact point and the solver keeps its order, as on the sphere.

There is no exp or log map here (they need the geodesics): a path on the ellipsoid is built from a premetric
(:mod:`fmlearn.manifolds.premetric`), not from :class:`~fmlearn.manifolds.GeodesicPath`, which refuses it.

The uniform draw: x = s * p maps the unit sphere onto the ellipsoid and multiplies area by a b c |p / s|, so
points x = s * p from uniform p have density proportional to 1 / |p / s| per unit area of the ellipsoid; keeping
each with probability |p / s| / max |p / s| = min(s) |p / s| makes them uniform. The same factor gives the area,
4 pi a b c E_p |p / s|, which is Carlson's R_G (its definition is that average).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from scipy.special import elliprg

from .._checks import as_tensor, check_finite, check_real
from .base import CompactManifold

#: How far from the surface a point may be, as | rho(x) - 1 |, and still count as on it.
ON_ELLIPSOID_TOL = 1e-4


class Ellipsoid(CompactManifold):
    """The ellipsoid x^2/a^2 + y^2/b^2 + z^2/c^2 = 1 in R^3, as a space (:mod:`fmlearn.spaces`): points and tangent
    vectors (batch, 3) in ambient coordinates. See the module docstring for the formulas.

    Args:
        axes: the semi-axes (a, b, c), three positive finite numbers; (1, 1, 1) is the unit sphere.
    """

    coordinates = "ambient coordinates"
    point_tol = ON_ELLIPSOID_TOL

    def __init__(self, axes: Sequence[float] = (1.5, 1.0, 0.6)):
        if isinstance(axes, (str, bytes)) or not hasattr(axes, "__len__") or len(axes) != 3:
            raise ValueError(f"axes must be three semi-axes (a, b, c), got {axes!r}")
        self.axes = tuple(check_real(f"axes[{i}]", v, positive=True) for i, v in enumerate(axes))
        self.dim, self.embed_dim = 3, 3
        self.symbol = "the ellipsoid with semi-axes ({:g}, {:g}, {:g})".format(*self.axes)

    def _s(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor(self.axes, dtype=x.dtype, device=x.device)

    def gauge(self, x: torch.Tensor) -> torch.Tensor:
        """rho(x) = |x / s|, shape (batch,): 1 on the surface, and x / rho(x) is the surface point on x's ray."""
        return (x / self._s(x)).norm(dim=-1)

    def _check_values(self, name: str, x: torch.Tensor, tol: float) -> torch.Tensor:
        """Every row finite and within tol of the surface, | rho(x) - 1 | <= tol."""
        check_finite(name, x)
        off = float((self.gauge(x) - 1).abs().max())
        if not off <= tol:
            raise ValueError(f"{name} must lie on {self.symbol} (| rho(x) - 1 | <= {tol:g}, rho(x) = |x / axes|), "
                             f"but a row has | rho(x) - 1 | = {off:.3g}; move it onto the surface along its ray: "
                             f"ellipsoid.retract(x)")
        return x

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """The unit normal n(x) = (x / s^2) / |x / s^2| of the level set of F through x, shape (batch, 3)."""
        g = x / self._s(x) ** 2
        return g / g.norm(dim=-1, keepdim=True)

    def proj(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """P(x) v = v - <n, v> n: the tangent part of v at x (n the unit normal at x)."""
        n = self.normal(x)
        return v - (n * v).sum(-1, keepdim=True) * n

    def retract(self, y: torch.Tensor) -> torch.Tensor:
        """y / rho(y): the point of the surface on the ray from the centre through y (y != 0)."""
        return y / self.gauge(y).unsqueeze(-1)

    def step(self, x: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
        """retract(x + dx): the Euclidean step moved back onto the surface along its ray."""
        return self.retract(x + dx)

    def to_sphere(self, x: torch.Tensor) -> torch.Tensor:
        """pi(x) = x / |x|: the radial map onto the unit sphere, shape (batch, 3)."""
        return x / x.norm(dim=-1, keepdim=True)

    def from_sphere(self, p: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`to_sphere`: the surface point p / rho(p) on the ray through p (a unit vector)."""
        p = as_tensor("p", p)
        if p.ndim != 2 or p.shape[1] != 3:
            raise ValueError(f"p must be points of the unit sphere, shape (batch, 3), got {tuple(p.shape)}")
        return self.retract(p)

    def log_volume(self) -> float:
        """log of the area, log(4 pi a b c R_G(a^-2, b^-2, c^-2)): log(4 pi) for the unit sphere."""
        a, b, c = self.axes
        return math.log(4 * math.pi * a * b * c * float(elliprg(a ** -2, b ** -2, c ** -2)))

    def _draw_uniform(self, n: int, generator: torch.Generator | None, device: torch.device,
                      dtype: torch.dtype | None) -> torch.Tensor:
        """Rejection from x = s * p, p uniform on S^2 (module docstring): rounds of 2 n proposals until n are kept."""
        kept, total = [], 0
        while total < n:
            z = torch.randn(2 * n, 3, generator=generator, device=device, dtype=dtype)
            p = z / z.norm(dim=1, keepdim=True)
            s = self._s(p)
            accept = torch.rand(2 * n, generator=generator, device=device, dtype=p.dtype) < min(self.axes) * \
                (p / s).norm(dim=1)
            kept.append((s * p)[accept])
            total += kept[-1].shape[0]
        return torch.cat(kept)[:n]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """What a network sees of a point: x itself (the surface is already in R^3)."""
        return x

    def tangent_from_ambient(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """A network's ambient output w made a tangent vector at x: proj(x, w)."""
        return self.proj(x, w)

    def geodesic(self, x0: torch.Tensor, x1: torch.Tensor, s: float | torch.Tensor):
        """Refused: an ellipsoid's geodesics have no closed form (and it has no exp or log map here)."""
        raise NotImplementedError(f"{self.symbol} has no closed-form geodesics: build its conditional path from a "
                                  "premetric, fmlearn.manifolds.PremetricPath(RadialPremetric(ellipsoid))")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.axes == self.axes

    def __hash__(self) -> int:
        return hash((type(self), self.axes))

    def __repr__(self) -> str:
        return "Ellipsoid(axes=({:g}, {:g}, {:g}))".format(*self.axes)


class RadialImage:
    """A distribution on the ellipsoid: the image under the radial map of a distribution on the unit sphere,
    x = from_sphere(p), p ~ ``sphere_dist`` (so to_sphere(x) follows ``sphere_dist`` exactly).

    Args:
        space: the :class:`Ellipsoid`.
        sphere_dist: a distribution on S^2 with ``sample(n, generator=..., device=..., dtype=...)``, e.g. a
            :class:`~fmlearn.manifolds.VonMisesFisherMixture`.
    """

    def __init__(self, space: Ellipsoid, sphere_dist):
        if not isinstance(space, Ellipsoid):
            raise TypeError(f"space must be a fmlearn.manifolds.Ellipsoid, got {type(space).__name__}")
        if not callable(getattr(sphere_dist, "sample", None)):
            raise TypeError(f"sphere_dist must be a distribution on the unit sphere with a sample(n, generator, "
                            f"device) method, got {type(sphere_dist).__name__}")
        self.space, self.sphere_dist = space, sphere_dist

    @property
    def dim(self) -> int:
        return 3

    def sample(self, n: int, generator: torch.Generator | None = None, device: torch.device | str | None = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """n points from_sphere(p), p ~ sphere_dist, shape (n, 3)."""
        return self.space.from_sphere(self.sphere_dist.sample(n, generator=generator, device=device, dtype=dtype))

    def __repr__(self) -> str:
        return f"RadialImage({self.space!r}, {type(self.sphere_dist).__name__})"
