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

from .base import CompactManifold


class ProjectedVelocity(nn.Module):
    """``model(x, t) = space.tangent_from_ambient(x, net(space.embed(x), t))``, a tangent field on ``space``.

    Args:
        space: a :class:`~fmlearn.manifolds.CompactManifold` (:class:`~fmlearn.manifolds.Sphere`,
            :class:`~fmlearn.manifolds.FlatTorus`): its ``embed``, ``tangent_from_ambient`` and ``embed_dim``.
            The model declares it (attribute ``space``), so :func:`fmlearn.sample` and
            :func:`fmlearn.log_likelihood` run on it without ``space=`` and refuse another one.
        net: a velocity network ``net(z, t)`` on R^{space.embed_dim} returning the same shape, such as
            ``fmlearn.MLP(space.embed_dim)``.
    """

    def __init__(self, space: CompactManifold, net: nn.Module):
        super().__init__()
        if not isinstance(space, CompactManifold):
            raise TypeError(f"space must be a manifold with an embedding for the network (a "
                            f"fmlearn.manifolds.CompactManifold such as fmlearn.manifolds.Sphere()), got "
                            f"{type(space).__name__}")
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
