"""What the sphere and the flat torus share: a compact manifold with coordinates in R^dim, a finite volume,
the uniform distribution as its default source, and an embedding a network reads.

A subclass (:class:`~fmlearn.manifolds.Sphere`, :class:`~fmlearn.manifolds.FlatTorus`) gives its geometry
(proj, exp, log, dist, cdist, step, and geodesic where it has a closed form: the :class:`fmlearn.spaces.Manifold`
protocol), its volume
(log_volume), its uniform draw (``_draw_uniform``), what makes coordinates a point (``_check_values``) and what a
network sees (embed, embed_dim, tangent_from_ambient); the base class turns them into

    check_points(name, x)          the shape (batch, dim), then the subclass's test of the values
    geodesic(x0, x1, s)            from exp and log alone, unless the subclass has a closed form
    random_uniform(n, ...)         n uniform points;  uniform_log_prob(x) = -log vol  (shape (batch,))
    sample_source, source_log_prob the default source of a path or a likelihood on the manifold: the uniform one

Two manifolds are equal when they are of one kind and dimension (``Sphere() == Sphere(3)``), so a model built
for one can be checked against a space given to a sampler.
"""

from __future__ import annotations

import abc

import torch

from .._checks import as_tensor, check_positive_int
from .._random import draw_device
from ..spaces import VectorSpaceFields, check_shape


class CompactManifold(VectorSpaceFields, abc.ABC):
    """The shared part of the course's compact manifolds (see the module docstring).

    A subclass sets ``dim`` (a point's coordinates), ``embed_dim`` (what a network sees) and ``symbol`` (its name
    in messages, e.g. "S^2" or "T^3"), and may set the class attributes ``coordinates`` (what a row holds, for
    messages) and ``point_tol`` (how far off a point may be).
    """

    dim: int
    embed_dim: int
    symbol: str
    coordinates: str = "coordinates"
    point_tol: float = 1e-4

    @abc.abstractmethod
    def log_volume(self) -> float:
        """log of the manifold's volume (area on S^2, (2 pi)^d on T^d)."""

    @abc.abstractmethod
    def _draw_uniform(self, n: int, generator: torch.Generator | None, device: torch.device,
                      dtype: torch.dtype | None) -> torch.Tensor:
        """n uniform points (n, dim) drawn on ``device`` (n already checked)."""

    @abc.abstractmethod
    def _check_values(self, name: str, x: torch.Tensor, tol: float) -> torch.Tensor:
        """x itself if its rows (already of shape (batch, dim)) are points within tol, else a ValueError."""

    def geodesic(self, x0: torch.Tensor, x1: torch.Tensor,
                 s: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The geodesic from x0 (s = 0) to x1 (s = 1) at s and its velocity d x_s / ds, from exp and log alone
        (the sphere and the torus override it with their closed forms): x_s = exp(x0, s log(x0, x1)); the
        velocity is the parallel transport of log_{x0}(x1) to x_s, which a geodesic gives as
        log_{x_s}(x1) / (1 - s) and as -log_{x_s}(x0) / s; the first is used for s < 1/2 and the second from
        1/2 on, so neither divides by less than 1/2 and both ends are exact. s: a float or a tensor
        broadcasting against (batch, 1)."""
        s = torch.as_tensor(s, dtype=x0.dtype, device=x0.device)
        xs = self.exp(x0, s * self.log(x0, x1))
        early = s < 0.5
        ahead = self.log(xs, x1) / torch.where(early, 1 - s, torch.ones_like(s))
        behind = -self.log(xs, x0) / torch.where(early, torch.ones_like(s), s)
        return xs, torch.where(early, ahead, behind)

    def check_points(self, name: str, x: torch.Tensor, tol: float | None = None) -> torch.Tensor:
        """x itself if it is a floating (batch, dim) tensor of points of the manifold (within ``tol``, default
        ``point_tol``), else a ValueError/TypeError naming ``name``, what it got and what was expected."""
        x = as_tensor(name, x)
        if x.ndim != 2 or x.shape[1] != self.dim or x.shape[0] == 0:
            raise ValueError(f"{name} must be points of {self.symbol}, a tensor of shape (batch, {self.dim}) of "
                             f"{self.coordinates} with batch >= 1, got shape {tuple(x.shape)}")
        return self._check_values(name, x, self.point_tol if tol is None else tol)

    def random_uniform(self, n: int, generator: torch.Generator | None = None, device: torch.device | str | None = None,
                       dtype: torch.dtype | None = None) -> torch.Tensor:
        """n points uniform on the manifold, shape (n, dim), drawn on the generator's device (else ``device``)."""
        check_positive_int("n", n)
        return self._draw_uniform(n, generator, draw_device(generator, device, same_kind=True), dtype)

    def uniform_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """The uniform log-density -log vol at each point, shape (batch,)."""
        return torch.full(x.shape[:1], -self.log_volume(), dtype=x.dtype, device=x.device)

    def sample_source(self, shape: tuple[int, ...], generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> torch.Tensor:
        """The default source of a path on the manifold: shape = (n, dim) uniform points (:meth:`random_uniform`)."""
        shape = check_shape("shape", shape)
        if shape[1:] != (self.dim,):
            raise ValueError(f"shape must be (n, {self.dim}) for points of {self.symbol}, got {shape!r}")
        return self.random_uniform(shape[0], generator=generator, device=device)

    def source_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """The default source's log-density: :meth:`uniform_log_prob`."""
        return self.uniform_log_prob(x)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.dim == self.dim

    def __hash__(self) -> int:
        return hash((type(self), self.dim))
