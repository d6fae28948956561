"""The space a state lives in: how an increment is applied, and the geometry Part II needs.

A space offers

    ===================== ======
    step(x, dx)           the state after the increment dx (a solver's one way to move)
    check_field(v, x)     refuse a field value that is not an increment of x (no silent broadcasting)
    proj(x, v)            v projected onto the tangent space at x
    exp(x, v), log(x, y)  the exponential map and its inverse
    dist(x, y)            the geodesic distance between x_i and y_i, shape (batch,)
    cdist(x, y)           the distances between every x_i and every y_j, shape (n, m): the cost of the
                          two-sample metrics and of optimal transport (:mod:`fmlearn.metrics`, :mod:`fmlearn.couplings`)
    ===================== ======

:class:`Euclidean` is R^d, the default of every solver: step(x, dx) = x + dx, proj(x, v) = v,
exp(x, v) = x + v, log(x, y) = y - x, dist(x, y) = |x - y| (over all data dimensions, so images are points of
R^D, D the number of pixels), cdist = torch.cdist of the flattened points. Its step also
adds tuple states leaf by leaf. The sphere lives in :mod:`fmlearn.manifolds`, token spaces in
:mod:`fmlearn.discrete`.
"""

from __future__ import annotations

from typing import Protocol

import torch

from ._checks import check_velocity_output
from .stepping import State, tree_map


class Space(Protocol):
    """What a solver needs of a space: apply an increment, and check a field's value against a state."""

    def step(self, x: State, dx: State) -> State: ...

    def check_field(self, v: State, x: State, name: str = "velocity") -> State: ...


class Euclidean:
    """Flat R^d: the space of Part I (any data shape, batch first; tuple states leaf by leaf)."""

    def step(self, x: State, dx: State) -> State:
        """x + dx."""
        return tree_map(torch.add, x, dx)

    def check_field(self, v: State, x: State, name: str = "velocity") -> State:
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

    def cdist(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """|x_i - y_j| over all data dimensions, shape (n, m) (torch.cdist of the flattened points)."""
        return torch.cdist(x.flatten(1), y.flatten(1))

    def __repr__(self) -> str:
        return "Euclidean()"


class VectorSpaceFields:
    """For spaces whose states are single tensors of points (the sphere, the torus): a field value is a
    vector of x's shape, which the space's step then applies (projecting or wrapping it)."""

    def check_field(self, v: torch.Tensor, x: torch.Tensor, name: str = "velocity") -> torch.Tensor:
        """v must be a tensor of x's shape (reads shapes only: no host sync)."""
        return check_velocity_output(v, x, name)


#: The default space of every solver.
EUCLIDEAN = Euclidean()


def check_space(space: Space | None) -> object:
    """The space itself (``None``: Euclidean), refused unless it has step and check_field."""
    if space is None:
        return EUCLIDEAN
    if not (callable(getattr(space, "step", None)) and callable(getattr(space, "check_field", None))):
        raise TypeError(f"space must have step(x, dx) and check_field(v, x) methods (e.g. fmlearn.spaces.Euclidean()), "
                        f"got {type(space).__name__}")
    return space


def check_metric_space(space: Space | None) -> object:
    """The space itself (``None``: Euclidean), refused unless it has cdist (the metrics' and transport's cost)."""
    if space is None:
        return EUCLIDEAN
    if not callable(getattr(space, "cdist", None)):
        raise TypeError(f"space must have a cdist(x, y) method, the pairwise distances (e.g. "
                        f"fmlearn.spaces.Euclidean() or fmlearn.manifolds.Sphere()), got {type(space).__name__}")
    return space


__all__ = ["EUCLIDEAN", "Euclidean", "Space", "VectorSpaceFields", "check_metric_space", "check_space"]
