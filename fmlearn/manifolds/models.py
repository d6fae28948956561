"""A velocity network on a manifold: any Part I network, fed the embedded point, its output made tangent.

    u_theta(x, t) = space.tangent_from_ambient(x, net(space.embed(x), t))

On the sphere embed(x) = x and tangent_from_ambient = proj(x, .) = (I - x x^T / |x|^2) w, so the field is
tangent at every point (and its ambient divergence is the intrinsic one: :mod:`fmlearn.manifolds.sphere`).
On the flat torus embed(x) = (cos x, sin x) in R^{2d}, so the field is periodic across the seam, and the
network's output (a, b) in R^{2d} is read in angles as -sin(x) a + cos(x) b.
"""

from __future__ import annotations

import torch
from torch import nn

from .sphere import Sphere
from .torus import FlatTorus


class ProjectedVelocity(nn.Module):
    """``model(x, t) = space.tangent_from_ambient(x, net(space.embed(x), t))``, a tangent field on ``space``.

    Args:
        space: a :class:`~fmlearn.manifolds.Sphere` or :class:`~fmlearn.manifolds.FlatTorus` (anything with
            ``embed``, ``tangent_from_ambient`` and ``embed_dim``).
        net: a velocity network ``net(z, t)`` on R^{space.embed_dim} returning the same shape, such as
            ``fmlearn.MLP(space.embed_dim)``.
    """

    def __init__(self, space: Sphere | FlatTorus, net: nn.Module):
        super().__init__()
        for name in ("embed", "tangent_from_ambient"):
            if not callable(getattr(space, name, None)):
                raise TypeError(f"space must have embed(x) and tangent_from_ambient(x, w) (e.g. "
                                f"fmlearn.manifolds.Sphere()), got {type(space).__name__}")
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be a torch.nn.Module such as fmlearn.MLP({space.embed_dim}), "
                            f"got {type(net).__name__}")
        net_dim = getattr(net, "dim", space.embed_dim)
        if net_dim != space.embed_dim:
            raise ValueError(f"net must act on the embedded points, of dimension space.embed_dim = {space.embed_dim} "
                             f"for {space!r}, got a net of dim {net_dim}")
        self.space, self.net = space, net
        self.dim = space.dim

    def forward(self, x: torch.Tensor, t: float | torch.Tensor, **cond: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != self.space.dim:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be points of {self.space!r}, shape (batch, {self.space.dim}), got {shape}")
        return self.space.tangent_from_ambient(x, self.net(self.space.embed(x), t, **cond))
