"""The flat torus T^d = R^d / (2 pi Z)^d in angle coordinates, batch first: x of shape (batch, d), x in [0, 2 pi).

    wrap(x)      = x mod 2 pi, in [0, 2 pi)
    proj(x, v)   = v                                   every vector of R^d is tangent (the torus is flat)
    exp(x, v)    = wrap(x + v)
    log(x, y)    = wrap(y - x + pi) - pi               the wrapped difference, each entry in [-pi, pi)
    dist(x, y)   = |log(x, y)|                         the shortest way round, at most pi sqrt(d)
    geodesic(x0, x1, s) = (wrap(x0 + s v), v),         v = log(x0, x1): constant speed, straight in the angles
    step(x, dx)  = wrap(x + dx)
    uniform:     x ~ U[0, 2 pi)^d;  log p(x) = -d log(2 pi)

The metric in angle coordinates is the identity, so the Riemannian divergence of a field is its Euclidean
divergence in the angles, and the likelihood machinery of Part I applies as it is (with the wrapping step).
A network should still see the angles through (cos x, sin x) (:meth:`FlatTorus.embed`) so that its field is
periodic: the same angle must give the same velocity on both sides of the seam 0 = 2 pi.
"""

from __future__ import annotations

import math

import torch

from .._checks import check_positive_int
from .base import CompactManifold

TWO_PI = 2 * math.pi
#: How far outside [0, 2 pi) an angle may be and still count as a point of the torus.
ON_TORUS_TOL = 1e-4


class FlatTorus(CompactManifold):
    """The flat torus T^dim in angle coordinates [0, 2 pi)^dim, as a space (:mod:`fmlearn.spaces`).

    Args:
        dim: the number of angles d >= 1 (T^1 is the circle).
    """

    def __init__(self, dim: int = 2):
        check_positive_int("dim", dim)
        self.dim, self.embed_dim, self.symbol = dim, 2 * dim, f"T^{dim}"

    coordinates = "angles"
    point_tol = ON_TORUS_TOL

    def _check_values(self, name: str, x: torch.Tensor, tol: float) -> torch.Tensor:
        """Every angle in [-tol, 2 pi + tol] (wrap angles first: :meth:`wrap`)."""
        lo, hi = float(x.min()), float(x.max())
        if not (lo >= -tol and hi <= TWO_PI + tol):
            raise ValueError(f"{name} must hold angles in [0, 2 pi) (tolerance {tol:g}), got values from {lo:.4g} to "
                             f"{hi:.4g}; wrap them first: torus.wrap(x)")
        return x

    def wrap(self, x: torch.Tensor) -> torch.Tensor:
        """x mod 2 pi in [0, 2 pi) (a float32 remainder that rounds up to 2 pi is mapped to 0)."""
        r = torch.remainder(x, TWO_PI)
        return torch.where(r >= TWO_PI, r - TWO_PI, r)

    def proj(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Every vector is tangent: v."""
        return v

    def exp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """wrap(x + v)."""
        return self.wrap(x + v)

    def log(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The wrapped difference wrap(y - x + pi) - pi, each entry in [-pi, pi): the shortest way from x to y."""
        return torch.remainder(y - x + math.pi, TWO_PI) - math.pi

    def dist(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """|log(x, y)|, shape (batch,)."""
        return self.log(x, y).norm(dim=-1)

    def cdist(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """|log(x_i, y_j)| for every pair, shape (n, m) (in row blocks, so memory stays near 2^24 entries)."""
        block = max(1, (1 << 24) // max(1, y.shape[0] * self.dim))
        return torch.cat([self.log(x[i:i + block, None, :], y[None]).norm(dim=-1)
                          for i in range(0, x.shape[0], block)])

    def geodesic(self, x0: torch.Tensor, x1: torch.Tensor,
                 s: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The shortest geodesic from x0 (s = 0) to x1 (s = 1) at s, and its velocity: (wrap(x0 + s v), v),
        v = log(x0, x1). s: a float or a tensor broadcasting against (batch, 1)."""
        v = self.log(x0, x1)
        return self.wrap(x0 + torch.as_tensor(s, dtype=x0.dtype, device=x0.device) * v), v

    def step(self, x: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
        """wrap(x + dx)."""
        return self.wrap(x + dx)

    def _draw_uniform(self, n: int, generator: torch.Generator | None, device: torch.device,
                      dtype: torch.dtype | None) -> torch.Tensor:
        """U[0, 2 pi)^dim, shape (n, dim)."""
        return self.wrap(TWO_PI * torch.rand(n, self.dim, generator=generator, device=device, dtype=dtype))

    def log_volume(self) -> float:
        """log (2 pi)^d."""
        return self.dim * math.log(TWO_PI)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """What a network sees of a point: (cos x, sin x), shape (batch, 2 dim): T^d as a product of unit circles
        in R^{2d}, periodic in every angle."""
        return torch.cat([torch.cos(x), torch.sin(x)], dim=-1)

    def tangent_from_ambient(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """An ambient vector w = (a, b) of R^{2d} at the embedded point (cos x, sin x), projected onto the tangent
        space of the product of circles and read in angles: -sin(x) a + cos(x) b, shape (batch, dim)."""
        return -torch.sin(x) * w[..., :self.dim] + torch.cos(x) * w[..., self.dim:]

    def __repr__(self) -> str:
        return f"FlatTorus(dim={self.dim})"
