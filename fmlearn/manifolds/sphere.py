"""The unit sphere S^{d-1} = {x in R^d : |x| = 1}, batch first: x of shape (batch, d), d = ``dim`` (3: S^2).

    proj(x, v)   = v - <x, v> x / |x|^2                           the tangent part of v at x
    exp(x, v)    = cos(|v|) x + sin(|v|) v / |v|                  follow the great circle from x along v
    log(x, y)    = theta w / |w|,  w = y - <x, y> x,               theta = dist(x, y) = atan2(|w|, <x, y>)
    dist(x, y)   = 2 atan2(|x - y|, |x + y|)                      the great-circle distance (0 at y = x, no NaN)
    geodesic(x0, x1, s) = (exp(x0, s v), cos(s theta) v - theta sin(s theta) x0),   v = log(x0, x1)
    step(x, dx)  = (x + dx) / |x + dx|                            how a solver applies an increment
    uniform:     x = z / |z|, z ~ N(0, I_d);  log p(x) = -log |S^{d-1}| = -log(2 pi^{d/2} / Gamma(d/2))

The step is the projection of the Euclidean step back onto the sphere (a retraction): a solver that steps
on the sphere stays on it up to rounding, whatever the field, and keeps its order (rk4's increment is
exact to O(h^5), normal part included; exp(x, proj(x, dx)) would drop that normal part, an O(h^3) error
per step for a rotation, and fall to order 2).

**The divergence contract.** The projection divides by |x|^2, so P(x) = I - x x^T / |x|^2 is the projection
onto the tangent space of the sphere *through x* for every x != 0, and the field w(x) = P(x) v(x) is tangent
to every sphere |x| = r. Its ambient divergence, tr(dw/dx), then equals the intrinsic (Riemannian)
divergence on S^{d-1}: the radial term n^T (dw/dx) n, n = x / |x|, is the radial derivative of w . n = 0.
With I - x x^T instead, w . x = (1 - |x|^2) (v . x) does change radially, and the ambient divergence is off
by -2 x . v at |x| = 1. :func:`fmlearn.divergence_exact` with ``space=Sphere()`` sidesteps the question: it
takes the trace tr(P J P) over tangent directions only, which is right for either projection.
"""

from __future__ import annotations

import math

import torch

from .._checks import as_tensor, check_positive_int
from .base import CompactManifold

#: How far from |x| = 1 a point may be and still count as on the sphere (float32 rounding is ~1e-7).
ON_SPHERE_TOL = 1e-4


def _dot(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (x * v).sum(-1, keepdim=True)


def _same_shape(name: str, v, x) -> None:
    """v must be a tensor of x's shape (reads shapes only: no host sync)."""
    if not isinstance(v, torch.Tensor) or not isinstance(x, torch.Tensor):
        raise TypeError(f"x and {name} must be tensors, got {type(x).__name__} and {type(v).__name__}")
    if v.shape != x.shape:
        raise ValueError(f"{name} must have the shape of the points x, {tuple(x.shape)}, got {tuple(v.shape)}")


class Sphere(CompactManifold):
    """The unit sphere in R^dim, as a space (:mod:`fmlearn.spaces`): points and tangent vectors (batch, dim).

    Args:
        dim: the ambient dimension d >= 2 (the sphere S^{d-1} has intrinsic dimension d - 1); default 3, S^2.
    """

    def __init__(self, dim: int = 3):
        check_positive_int("dim", dim)
        if dim < 2:
            raise ValueError(f"dim must be the ambient dimension, at least 2 (S^1 in R^2), got {dim}")
        self.dim, self.embed_dim, self.symbol = dim, dim, f"S^{dim - 1}"

    coordinates = "ambient coordinates"
    point_tol = ON_SPHERE_TOL

    def _check_values(self, name: str, x: torch.Tensor, tol: float) -> torch.Tensor:
        """Every row within tol of the unit sphere, | |x_i| - 1 | <= tol."""
        off = float((x.norm(dim=1) - 1).abs().max())
        if not off <= tol:
            raise ValueError(f"{name} must lie on the unit sphere (| |x| - 1 | <= {tol:g}), but a row has "
                             f"| |x| - 1 | = {off:.3g}; normalise it: x / x.norm(dim=1, keepdim=True)")
        return x

    def check_tangent(self, name: str, x: torch.Tensor, v: torch.Tensor, tol: float = ON_SPHERE_TOL) -> torch.Tensor:
        """v itself if it has x's shape and is tangent at x, |<x, v>| <= tol (1 + |v|), else a ValueError."""
        v = as_tensor(name, v, dtype=x.dtype, device=x.device)
        if v.shape != x.shape:
            raise ValueError(f"{name} must have the points' shape {tuple(x.shape)}, got {tuple(v.shape)}")
        off = float((_dot(x, v).abs() / (1 + v.norm(dim=-1, keepdim=True))).max())
        if not off <= tol:
            raise ValueError(f"{name} must be tangent to the sphere at x (<x, v> = 0, tolerance {tol:g} (1 + |v|)), "
                             f"but |<x, v>| / (1 + |v|) reaches {off:.3g}; project it: sphere.proj(x, v)")
        return v

    def proj(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """P(x) v = v - <x, v> x / |x|^2 (tangent to the sphere through x: see the divergence contract above)."""
        return v - _dot(x, v) / _dot(x, x) * x

    def exp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """cos(|v|) x + sin(|v|) v / |v| (x itself where v = 0), renormalised against rounding."""
        _same_shape("v", v, x)
        norm = v.norm(dim=-1, keepdim=True)
        y = torch.cos(norm) * x + torch.sin(norm) * v / norm.clamp_min(torch.finfo(v.dtype).tiny)
        return y / y.norm(dim=-1, keepdim=True)

    def log(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The tangent vector at x whose exp is y: theta w / |w|, w = y - <x, y> x, theta = atan2(|w|, <x, y>).

        0 at y = x. At y = -x every great circle through x reaches y: the result is pi times a fixed unit tangent
        (the projection of the axis along which x is smallest), so exp(x, log(x, -x)) = -x and nothing is NaN.
        """
        _same_shape("y", y, x)
        cos = _dot(x, y)
        w = y - cos * x
        w = w - _dot(x, w) * x  # a second pass: near y = -x, |w| is tiny and the first leaves a normal part
        sin = w.norm(dim=-1, keepdim=True)
        theta = torch.atan2(sin, cos)
        axis = torch.nn.functional.one_hot(x.abs().argmin(-1), x.shape[-1]).to(x.dtype)
        fallback = self.proj(x, axis)
        fallback = fallback / fallback.norm(dim=-1, keepdim=True)
        direction = torch.where(sin > 0, w / sin.clamp_min(torch.finfo(w.dtype).tiny), fallback)
        return theta * direction

    def dist(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The great-circle distance 2 atan2(|x - y|, |x + y|) = arccos <x, y>, shape (batch,); accurate near
        0 and pi, and 0 (not NaN) for identical points."""
        return 2 * torch.atan2((x - y).norm(dim=-1), (x + y).norm(dim=-1))

    def cdist(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The great-circle distances arccos <x_i, y_j>, shape (n, m)."""
        return torch.arccos((x @ y.T).clamp(-1.0, 1.0))

    def geodesic(self, x0: torch.Tensor, x1: torch.Tensor,
                 s: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The great circle from x0 (s = 0) to x1 (s = 1) at s, and its velocity d x_s / ds (closed form):

            x_s = cos(s theta) x0 + sin(s theta) v / theta = sin((1 - s) theta) / sin(theta) x0 +
                                                              sin(s theta) / sin(theta) x1   (slerp),

            d x_s / ds = cos(s theta) v - theta sin(s theta) x0,     v = log(x0, x1), theta = |v|,

        the parallel transport of v to x_s, of length theta for every s: no division by 1 - s, so it is
        exact up to s = 1. s: a float or a tensor broadcasting against (batch, 1).
        """
        v = self.log(x0, x1)
        theta = v.norm(dim=-1, keepdim=True)
        s = torch.as_tensor(s, dtype=x0.dtype, device=x0.device)
        c, sn = torch.cos(s * theta), torch.sin(s * theta)
        unit = v / theta.clamp_min(torch.finfo(v.dtype).tiny)
        xs = c * x0 + sn * unit
        return xs / xs.norm(dim=-1, keepdim=True), c * v - theta * sn * x0

    def step(self, x: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
        """(x + dx) / |x + dx|: the Euclidean step projected back onto the sphere."""
        y = x + dx
        return y / y.norm(dim=-1, keepdim=True)

    def _draw_uniform(self, n: int, generator: torch.Generator | None, device: torch.device,
                      dtype: torch.dtype | None) -> torch.Tensor:
        """z / |z| for z ~ N(0, I_dim) (rotation invariant), shape (n, dim)."""
        z = torch.randn(n, self.dim, generator=generator, device=device, dtype=dtype)
        return z / z.norm(dim=1, keepdim=True)

    def log_volume(self) -> float:
        """log |S^{d-1}| = log(2 pi^{d/2} / Gamma(d/2)): log(4 pi) for S^2."""
        return math.log(2.0) + 0.5 * self.dim * math.log(math.pi) - math.lgamma(0.5 * self.dim)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """What a network sees of a point: x itself (the sphere is already embedded in R^dim)."""
        return x

    def tangent_from_ambient(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """A network's ambient output w made a tangent vector at x: proj(x, w)."""
        return self.proj(x, w)

    def __repr__(self) -> str:
        return f"Sphere(dim={self.dim})" if self.dim != 3 else "Sphere()"
