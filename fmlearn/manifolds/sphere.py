"""The unit sphere S^{d-1} = {x in R^d : |x| = 1}, batch first: x of shape (batch, d).

    proj(x, v)   = v - <x, v> x                                   the tangent part of v at x
    exp(x, v)    = cos(|v|) x + sin(|v|) v / |v|                  follow the great circle from x along v
    log(x, y)    = theta (y - cos(theta) x) / sin(theta),          theta = arccos <x, y> = dist(x, y)
    step(x, dx)  = (x + dx) / |x + dx|                            how a solver applies an increment

The step is the projection of the Euclidean step back onto the sphere (a retraction): a solver that steps
on the sphere stays on it up to rounding, whatever the field, and keeps its order (rk4's increment is
exact to O(h^5), normal part included; exp(x, proj(x, dx)) would drop that normal part, an O(h^3) error
per step for a rotation, and fall to order 2).
"""

from __future__ import annotations

import torch

from .._checks import check_velocity_output

_SMALL = 1e-12


def _dot(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (x * v).sum(-1, keepdim=True)


class Sphere:
    """The unit sphere in R^d, as a space (:mod:`fmlearn.spaces`): points and tangent vectors (batch, d)."""

    def proj(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """v - <x, v> x."""
        return v - _dot(x, v) * x

    def exp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """cos(|v|) x + sin(|v|) v / |v| (x itself where v = 0), renormalised against rounding."""
        norm = v.norm(dim=-1, keepdim=True)
        y = torch.cos(norm) * x + torch.sin(norm) * v / norm.clamp_min(_SMALL)
        return y / y.norm(dim=-1, keepdim=True)

    def log(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The tangent vector at x whose exp is y: theta (y - cos(theta) x) / sin(theta); undefined for y = -x."""
        cos = _dot(x, y).clamp(-1.0, 1.0)
        theta = torch.arccos(cos)
        return theta * (y - cos * x) / torch.sin(theta).clamp_min(_SMALL)

    def dist(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The great-circle distance arccos <x, y>, shape (batch,)."""
        return torch.arccos(_dot(x, y).clamp(-1.0, 1.0)).squeeze(-1)

    def cdist(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The great-circle distances arccos <x_i, y_j>, shape (n, m)."""
        return torch.arccos((x @ y.T).clamp(-1.0, 1.0))

    def step(self, x: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
        """(x + dx) / |x + dx|: the Euclidean step projected back onto the sphere."""
        y = x + dx
        return y / y.norm(dim=-1, keepdim=True)

    def check_field(self, v: torch.Tensor, x: torch.Tensor, name: str = "velocity") -> torch.Tensor:
        """A field value is a vector of x's shape (its normal part is dropped by step)."""
        return check_velocity_output(v, x, name)

    def __repr__(self) -> str:
        return "Sphere()"
