"""The space a state lives in: how an increment is applied, and the geometry Part II needs.

A space offers

    step(x, dx)           the state after the increment dx (a solver's one way to move)
    check_field(v, x)     refuse a field value that is not an increment of x (no silent broadcasting)
    proj(x, v)            v projected onto the tangent space at x
    exp(x, v), log(x, y)  the exponential map and its inverse
    dist(x, y)            the geodesic distance, shape (batch,)

:class:`Euclidean` is R^d, the default of every solver: step(x, dx) = x + dx, proj(x, v) = v,
exp(x, v) = x + v, log(x, y) = y - x, dist(x, y) = |x - y| (over all data dimensions). Its step also
adds tuple states leaf by leaf. The sphere lives in :mod:`fmlearn.manifolds`, token spaces in
:mod:`fmlearn.discrete`.
"""

from __future__ import annotations

import torch

from ._checks import check_velocity_output
from .stepping import leaves, tree_map


class Euclidean:
    """Flat R^d: the space of Part I (any data shape, batch first; tuple states leaf by leaf)."""

    def step(self, x, dx):
        """x + dx."""
        return tree_map(torch.add, x, dx)

    def check_field(self, v, x, name: str = "velocity"):
        """v must have x's structure and each leaf x's shape (reads shapes only: no host sync)."""
        if isinstance(x, tuple):
            if not isinstance(v, tuple) or len(v) != len(x):
                raise TypeError(f"{name}(x, t) must return a tuple of {len(x)} tensors like the state, "
                                f"got {type(v).__name__}")
            for vi, xi in zip(v, x):
                self.check_field(vi, xi, name)
            return v
        return check_velocity_output(v, x, name)

    def proj(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Every vector is tangent: v."""
        return v

    def exp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """x + v."""
        return x + v

    def log(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """y - x."""
        return y - x

    def dist(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """|x - y| over all data dimensions, shape (batch,)."""
        return (x - y).flatten(1).norm(dim=1)

    def __repr__(self) -> str:
        return "Euclidean()"


#: The default space of every solver.
EUCLIDEAN = Euclidean()


def check_space(space) -> object:
    """The space itself (``None``: Euclidean), refused unless it has step and check_field."""
    if space is None:
        return EUCLIDEAN
    if not (callable(getattr(space, "step", None)) and callable(getattr(space, "check_field", None))):
        raise TypeError(f"space must have step(x, dx) and check_field(v, x) methods (e.g. fmlearn.spaces.Euclidean()), "
                        f"got {type(space).__name__}")
    return space


__all__ = ["EUCLIDEAN", "Euclidean", "check_space", "leaves"]
