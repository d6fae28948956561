"""The space a state lives in: how an increment is applied, and the geometry Part II needs.

Three declared contracts (``typing.Protocol``; ``isinstance`` checks them, so a space missing a method is
refused with a message that lists it):

    =============== ======
    Space           step(x, dx), check_field(v, x): what a solver needs (R^d, a manifold, tokens, tuple states)
    MetricSpace     cdist(x, y): the pairwise distances, the cost of the two-sample metrics and of optimal
                    transport (:mod:`fmlearn.metrics`, :mod:`fmlearn.couplings`)
    Manifold        a Space and a MetricSpace with check_points, proj, exp, log, geodesic, dist and a default
                    source (sample_source, source_log_prob): what paths, likelihoods and samplers of continuous
                    states read (:class:`Manifold` lists them with their formulas)
    =============== ======

:class:`Euclidean` is R^d, the default of every solver and a Manifold: step(x, dx) = x + dx, proj(x, v) = v,
exp(x, v) = x + v, log(x, y) = y - x, dist(x, y) = |x - y| (over all data dimensions, so images are points of
R^D, D the number of pixels), cdist = torch.cdist of the flattened points, default source N(0, I). Its step
also adds tuple states leaf by leaf. The sphere and the flat torus live in :mod:`fmlearn.manifolds` (with a
base class for what compact manifolds share), token spaces in :mod:`fmlearn.discrete`.

A model or a distribution says which space it was built for with a ``space`` attribute (a
:class:`~fmlearn.manifolds.ProjectedVelocity`, a :class:`~fmlearn.manifolds.Uniform` source); one without it
is a model of R^d. :func:`resolve_space` is the one rule the samplers and the likelihood follow: the given
``space=``, else the declared one, else Euclidean; a given space that contradicts the declared one is refused.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

import torch

from ._checks import as_tensor, check_finite, check_velocity_output
from .stepping import State, tree_map


@runtime_checkable
class Space(Protocol):
    """What a solver needs of a space: apply an increment, and check a field's value against a state."""

    def step(self, x: State, dx: State) -> State: ...

    def check_field(self, v: State, x: State, name: str = "velocity") -> State: ...


@runtime_checkable
class MetricSpace(Protocol):
    """What the two-sample metrics and optimal transport need of a space: its pairwise distances."""

    def cdist(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class Manifold(Space, MetricSpace, Protocol):
    """A space with a Riemannian geometry and a default source: what paths, likelihoods and samplers of
    continuous states read (R^d, the sphere, the flat torus). Points and tangent vectors are ``(batch, *data)``.

    ======================================= ======
    check_points(name, x)                   x, if a batch of points of the space; else an error naming ``name``
    proj(x, v)                              v projected onto the tangent space at x
    exp(x, v), log(x, y)                    the exponential map and its inverse
    geodesic(x0, x1, s)                     (x_s, d x_s / ds) on the geodesic from x0 (s = 0) to x1
    dist(x, y), cdist(x, y)                 geodesic distances, shapes (batch,) and (n, m)
    sample_source(shape, generator, device) the default source: N(0, I) in R^d, else uniform
    source_log_prob(x)                      its log-density (space's volume), shape (batch,)
    ======================================= ======
    """

    def check_points(self, name: str, x: torch.Tensor) -> torch.Tensor: ...

    def proj(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor: ...

    def exp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor: ...

    def log(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...

    def geodesic(self, x0: torch.Tensor, x1: torch.Tensor,
                 s: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def dist(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...

    def sample_source(self, shape: tuple[int, ...], generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> torch.Tensor: ...

    def source_log_prob(self, x: torch.Tensor) -> torch.Tensor: ...


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

    def check_points(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """x as a floating tensor if it is a finite batch (batch, *data), batch >= 1, else an error naming ``name``."""
        x = as_tensor(name, x)
        if x.ndim < 2 or x.shape[0] == 0:
            raise ValueError(f"{name} must be points of R^d, a tensor of shape (batch, *data) with batch >= 1, "
                             f"got shape {tuple(x.shape)}")
        return check_finite(name, x)

    def proj(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Every vector is tangent: v."""
        return v

    def exp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """x + v."""
        return x + v

    def log(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """y - x."""
        return y - x

    def geodesic(self, x0: torch.Tensor, x1: torch.Tensor,
                 s: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The straight line (x0 + s (x1 - x0), x1 - x0); s a float or a tensor broadcasting against x0."""
        v = x1 - x0
        return x0 + torch.as_tensor(s, dtype=x0.dtype, device=x0.device) * v, v

    def dist(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """|x - y| over all data dimensions, shape (batch,)."""
        return (x - y).flatten(1).norm(dim=1)

    def cdist(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """|x_i - y_j| over all data dimensions, shape (n, m) (torch.cdist of the flattened points)."""
        return torch.cdist(x.flatten(1), y.flatten(1))

    def sample_source(self, shape: tuple[int, ...], generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> torch.Tensor:
        """x0 ~ N(0, I) of the given shape (batch, *data), in the default dtype, drawn on ``device``."""
        shape = check_shape("shape", shape)
        return torch.randn(shape, generator=generator, device=device)

    def source_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log N(x; 0, I) = -|x|^2 / 2 - D/2 log(2 pi) over the D data dimensions, shape (batch,)."""
        batch, d = x.shape[0], x[0].numel()
        return -0.5 * (x.reshape(batch, d) ** 2).sum(1) - 0.5 * d * math.log(2 * math.pi)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Euclidean)

    def __hash__(self) -> int:
        return hash(Euclidean)

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


def check_shape(name: str, shape: Any) -> tuple[int, ...]:
    """A batch shape (batch, *data) of positive ints, at least two of them, as a tuple."""
    ok = isinstance(shape, (tuple, list, torch.Size)) and len(shape) >= 2 and \
        all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)
    if not ok:
        raise ValueError(f"{name} must be a batch shape (batch, *data) of positive ints, got {shape!r}")
    return tuple(shape)


def _require(space: Any, protocol: type, what: str) -> Any:
    """The space itself (``None``: Euclidean), refused with a TypeError (``what``, an example, what it got) unless
    it follows ``protocol``."""
    if space is None:
        return EUCLIDEAN
    if not isinstance(space, protocol):
        raise TypeError(f"{what} (e.g. fmlearn.spaces.Euclidean() or fmlearn.manifolds.Sphere()), got "
                        f"{type(space).__name__}")
    return space


def check_space(space: Space | None, name: str = "space") -> Space:
    """The space itself (``None``: Euclidean), refused unless it is a :class:`Space` (step and check_field)."""
    return _require(space, Space, f"{name} must be a space with step(x, dx) and check_field(v, x) methods")


def check_manifold(space: Any, name: str = "space") -> Manifold:
    """The space itself (``None``: Euclidean), refused unless it is a :class:`Manifold` (the error lists what
    it lacks)."""
    if space is None:
        return EUCLIDEAN
    if not isinstance(space, Manifold):
        missing = [m for m in _MANIFOLD_MEMBERS if not callable(getattr(type(space), m, None))]
        raise TypeError(f"{name} must be a manifold (fmlearn.spaces.Manifold: e.g. fmlearn.spaces.Euclidean(), "
                        f"fmlearn.manifolds.Sphere() or fmlearn.manifolds.FlatTorus(2)), got "
                        f"{type(space).__name__}, which lacks {', '.join(missing)}")
    return space


_MANIFOLD_MEMBERS = ("step", "check_field", "cdist", "check_points", "proj", "exp", "log", "geodesic", "dist",
                     "sample_source", "source_log_prob")


def check_metric_space(space: Space | None) -> MetricSpace:
    """The space itself (``None``: Euclidean), refused unless it has cdist (the metrics' and transport's cost)."""
    return _require(space, MetricSpace, "space must have a cdist(x, y) method, the pairwise distances")


def declared_space(obj: Any, owner: str = "model") -> Space | None:
    """The space ``obj`` (a model, a distribution) declares in its ``space`` attribute; None if it declares none
    (a plain function, a Part I network or distribution: R^d)."""
    space = getattr(obj, "space", None)
    if space is not None and not isinstance(space, Space):
        raise TypeError(f"the {owner}'s space attribute must be a space (fmlearn.spaces.Space), got "
                        f"{type(space).__name__}")
    return space


def resolve_space(obj: Any, space: Space | None, *, owner: str = "model", name: str = "space") -> Space:
    """The space to run ``obj`` on: ``space`` if given, else the one ``obj`` declares, else Euclidean.

    A ``space`` that contradicts the declared one is refused with a ValueError naming both (a sphere model
    integrated in R^3, or scored on a torus, gives a plausible wrong number)."""
    declared = declared_space(obj, owner)
    if space is None:
        return EUCLIDEAN if declared is None else declared
    space = check_space(space, name)
    if declared is not None and space != declared:
        raise ValueError(f"{name}={space!r} contradicts the {owner}'s own space {declared!r}: the {owner} was "
                         f"built for {declared!r}; leave {name} out (the {owner}'s space is used) or pass "
                         f"{name}={declared!r}")
    return space


__all__ = ["EUCLIDEAN", "Euclidean", "Manifold", "MetricSpace", "Space", "VectorSpaceFields", "check_manifold",
           "check_metric_space", "check_shape", "check_space", "declared_space", "resolve_space"]
