"""Jump processes in R^d, factorised per dimension: the conditional jumps of the CondOT path and a learned model.

A jump process leaves x at rate lambda_t(x) and lands at y ~ J_t(. | x). Per dimension d (one coordinate
jumps at a time) its generator is L_t f(x) = sum_d lambda_d(x) (E_{y ~ J_d}[f(x with x_d = y)] - f(x)).

The CondOT conditional path p_t(x | z) = N(t z, (1 - t)^2) (per coordinate) is reached by jumps alone.
With eps = (x - t z) / (1 - t) and phi the standard normal density, p_t(x | z) = phi(eps) / (1 - t) and

    d/dt p_t(x | z) = p_t(x | z) (1 + eps z - eps^2) / (1 - t).

Leave where the density falls and land where it rises:

    lambda_t(x | z) = [eps^2 - eps z - 1]_+ / (1 - t),        J_t(y | z) = [d/dt p_t(y | z)]_+ / N_t(z),

with N_t(z) = int [d/dt p_t]_+ = int [d/dt p_t]_- (the density's mass is conserved). Then the forward
equation holds: -p lambda + J int p lambda = -[d/dt p]_- + [d/dt p]_+ = d/dt p. In eps units the kernel's
density is proportional to phi(e) (1 + z e - e^2) on the interval (``r_-``, ``r_+``), ``r_+-`` = (z +- sqrt(z^2 + 4)) / 2,
and its mass below e is F(e) - F(``r_-``) with the closed form F(e) = (e - z) phi(e) (d/de F = phi (1 + z e - e^2)).

A learned model (:class:`JumpModel`) gives, per coordinate, the rate of jumping into each of B fixed bins,
q_b(x, t) >= 0 (lambda = sum_b q_b, J = q / lambda; a landing point is uniform within its bin), and is
trained (:class:`JumpObjective`) with the generalized-KL Bregman divergence against the conditional rates
integrated over the bins. Both are scaled by (1 - t), which keeps the loss finite near t = 1 and does not
move the minimiser (the divergence is 1-homogeneous).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

from .._checks import as_tensor, check_positive_int, check_real, check_time
from .._random import draw_device
from ..models import TimeEmbedding
from ..objectives import uniform_time
from ..paths import AffineGaussianPath
from .bregman import generalized_kl

_SQRT_2PI = math.sqrt(2 * math.pi)


def _phi(e: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * e * e) / _SQRT_2PI


def _check_t(t: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """t in [0, 1) as a tensor of like's dtype (a (batch,) tensor is broadcast over the data axes)."""
    t = as_tensor("t", t, dtype=like.dtype, device=like.device)
    if bool((t < 0).any()) or bool((t >= 1).any()):
        raise ValueError(f"t must lie in [0, 1): the conditional rates divide by 1 - t and blow up at t = 1; got "
                         f"values in [{float(t.min()):.6g}, {float(t.max()):.6g}]")
    return t.reshape(t.shape + (1,) * (like.ndim - t.ndim)) if t.ndim else t


def _eps(x, z, t):
    return (x - t * z) / (1 - t)


def _pair(x: Any, z: Any) -> tuple[torch.Tensor, torch.Tensor]:
    x, z = as_tensor("x", x), as_tensor("z", z)
    if x.shape != z.shape:
        raise ValueError(f"x and z must have one shape, got {tuple(x.shape)} and {tuple(z.shape)}")
    return x, z.to(x.dtype)


def condot_density(x: Any, z: Any, t: float | torch.Tensor) -> torch.Tensor:
    """p_t(x | z) = phi((x - t z) / (1 - t)) / (1 - t), per coordinate, x's shape."""
    x, z = _pair(x, z)
    t = _check_t(t, x)
    return _phi(_eps(x, z, t)) / (1 - t)


def condot_density_rate(x: Any, z: Any, t: float | torch.Tensor) -> torch.Tensor:
    """d/dt p_t(x | z) = p_t(x | z) (1 + eps z - eps^2) / (1 - t), eps = (x - t z) / (1 - t), per coordinate."""
    x, z = _pair(x, z)
    t = _check_t(t, x)
    e = _eps(x, z, t)
    return _phi(e) * (1 + e * z - e * e) / (1 - t) ** 2


def _scaled_intensity(e: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """(1 - t) lambda_t(x | z) = [eps^2 - eps z - 1]_+ at eps = (x - t z) / (1 - t)."""
    return (e * e - e * z - 1).clamp_min(0)


def condot_intensity(x: Any, z: Any, t: float | torch.Tensor) -> torch.Tensor:
    """lambda_t(x | z) = [eps^2 - eps z - 1]_+ / (1 - t): the rate of leaving x, per coordinate."""
    x, z = _pair(x, z)
    t = _check_t(t, x)
    return _scaled_intensity(_eps(x, z, t), z) / (1 - t)


def _roots(z):
    s = torch.sqrt(z * z + 4)
    return (z - s) / 2, (z + s) / 2


def _F(e, z):
    return (e - z) * _phi(e)


def condot_kernel_mass(edges: Any, z: Any, t: float | torch.Tensor) -> torch.Tensor:
    """The kernel J_t(. | z) integrated over bins: shape (*z.shape, B) for B + 1 increasing ``edges``.

    Exact (the closed form F(e) = (e - z) phi(e)); mass landing outside [edges[0], edges[-1]] is dropped,
    so a row sums to 1 only when the edges cover the kernel's support t z + (1 - t) (``r_-``, ``r_+``).
    """
    z = as_tensor("z", z)
    edges = _check_edges(edges).to(z)
    t = _check_t(t, z)
    return _kernel_mass(edges, z, t)


def _kernel_mass(edges, z, t):
    lo, hi = _roots(z)
    tt = t.unsqueeze(-1) if t.ndim else t
    e = (edges - tt * z.unsqueeze(-1)) / (1 - tt)                    # (*z.shape, B + 1) in eps units
    e = torch.minimum(torch.maximum(e, lo.unsqueeze(-1)), hi.unsqueeze(-1))
    zz = z.unsqueeze(-1)
    total = (_F(hi, z) - _F(lo, z)).unsqueeze(-1)
    return ((_F(e[..., 1:], zz) - _F(e[..., :-1], zz)) / total).clamp_min(0)  # rounding can leave -1e-11


def condot_kernel_sample(z: Any, t: float | torch.Tensor, generator: torch.Generator | None = None,
                         iters: int = 60) -> torch.Tensor:
    """Exact draws y ~ J_t(. | z), z's shape: the inverse of the kernel's CDF in eps units by bisection
    (F is increasing on (``r_-``, ``r_+``)), then y = t z + (1 - t) eps."""
    z = as_tensor("z", z)
    t = _check_t(t, z)
    lo, hi = _roots(z)
    target = _F(lo, z) + torch.rand(z.shape, generator=generator, device=draw_device(generator, z.device),
                                    dtype=z.dtype).to(z.device) * (
        _F(hi, z) - _F(lo, z))
    a, b = lo.clone(), hi.clone()
    for _ in range(iters):
        m = (a + b) / 2
        below = _F(m, z) < target
        a, b = torch.where(below, m, a), torch.where(below, b, m)
    return t * z + (1 - t) * (a + b) / 2


def _check_edges(edges: Any) -> torch.Tensor:
    edges = as_tensor("edges", edges).reshape(-1)
    if edges.numel() < 2 or not bool((edges[1:] > edges[:-1]).all()) or not bool(torch.isfinite(edges).all()):
        raise ValueError(f"edges must be at least 2 finite, strictly increasing bin edges, got {edges.numel()} values")
    return edges


class JumpRates:
    """The jumps of a process at (x, t): ``intensity`` (x's shape, >= 0) and how to draw landing points.

    Either ``bins = (edges, probs)`` (probs of shape (*x.shape, B), rows summing to 1; uniform within a bin)
    or ``sampler(generator) -> y`` of x's shape.
    """

    def __init__(self, intensity: torch.Tensor, *, bins: tuple[torch.Tensor, torch.Tensor] | None = None,
                 sampler: Callable[[torch.Tensor | None], torch.Tensor] | None = None):
        if (bins is None) == (sampler is None):
            raise ValueError("give exactly one of bins=(edges, probs) or sampler=f(generator)")
        self.intensity, self.bins, self.sampler = intensity, bins, sampler

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Landing points, the intensity's shape."""
        if self.sampler is not None:
            return self.sampler(generator)
        edges, probs = self.bins
        dev = draw_device(generator, probs.device)
        flat = probs.reshape(-1, probs.shape[-1]).float()
        b = torch.multinomial(flat.to(dev), 1, generator=generator).squeeze(-1).to(probs.device)
        u = torch.rand(b.shape, generator=generator, device=dev, dtype=edges.dtype).to(probs.device)
        y = edges[b] + u * (edges[b + 1] - edges[b])
        return y.reshape(self.intensity.shape).to(self.intensity.dtype)


class ConditionalJumps:
    """The exact conditional jump process of the CondOT path towards fixed endpoints ``z``: ``(x, t) -> JumpRates``."""

    def __init__(self, z: Any):
        self.z = as_tensor("z", z)

    def __call__(self, x: torch.Tensor, t: float | torch.Tensor) -> JumpRates:
        lam = condot_intensity(x, self.z, t)
        return JumpRates(lam, sampler=lambda g: condot_kernel_sample(self.z, t, g))


class JumpModel(nn.Module):
    """A learned jump process in R^dim: an MLP on [x, time features] gives per coordinate a scaled intensity
    (1 - t) lambda >= 0 (softplus) and a kernel over the B bins between ``edges`` (softmax), so the rate
    of jumping into bin b is q_b = lambda J_b; ``model(x, t)`` returns :class:`JumpRates`.

    ``scaled_log_rates(x, t)`` is log((1 - t) q), shape (batch, dim, B): what the loss compares with the
    conditional target (so nothing blows up at t -> 1; q itself divides by 1 - t).
    """

    def __init__(self, dim: int, edges: Any, hidden: int = 128, depth: int = 3, n_freqs: int = 2,
                 max_freq: float = 1.0):
        super().__init__()
        for name, v in (("dim", dim), ("hidden", hidden), ("depth", depth)):
            check_positive_int(name, v)
        self.dim = dim
        self.register_buffer("edges", _check_edges(edges).float())
        self.bins = self.edges.numel() - 1
        self.time_embedding = TimeEmbedding(n_freqs, max_freq)
        layers: list[nn.Module] = []
        width = dim + self.time_embedding.dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.GELU()]
            width = hidden
        layers.append(nn.Linear(width, dim * (self.bins + 1)))
        self.net = nn.Sequential(*layers)

    def scaled_log_rates(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """log((1 - t) q_b(x, t)) = log((1 - t) lambda) + log J_b, shape (batch, dim, B)."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (batch, {self.dim}), got {tuple(x.shape)}")
        t = check_time(t, x, check_values=False)  # a float's range always, a tensor's shape only: no host sync
        out = self.net(torch.cat([x, self.time_embedding(t)], dim=1)).reshape(x.shape[0], self.dim, self.bins + 1)
        log_lam = torch.log(nn.functional.softplus(out[..., :1]).clamp_min(1e-20))
        return log_lam + torch.log_softmax(out[..., 1:], dim=-1)

    def forward(self, x: torch.Tensor, t: float | torch.Tensor) -> JumpRates:
        log_r = self.scaled_log_rates(x, t)
        tt = torch.as_tensor(t, dtype=log_r.dtype, device=log_r.device).reshape(-1, 1)
        log_lam = torch.logsumexp(log_r, dim=-1)
        lam = torch.exp(log_lam) / (1 - tt).clamp_min(1e-6)
        return JumpRates(lam, bins=(self.edges.to(log_r.dtype), torch.softmax(log_r, dim=-1)))


class JumpObjective:
    """Generator matching for :class:`JumpModel` (the objective of :func:`fmlearn.train`).

    Per step: z ~ data, t ~ time sampler scaled into [0, t_max], x ~ N(t z, (1 - t)^2 I) (a draw of the CondOT
    path, :class:`~fmlearn.paths.AffineGaussianPath`, whose marginals the jumps follow); the conditional
    scaled rates a_b = (1 - t) lambda_t(x | z) J_t(bin b | z) per coordinate; the loss is the mean over the
    batch of sum over coordinates and bins of the generalized KL D(a, (1 - t) q_theta(x, t)), which splits into
    a Poisson term for the intensity and a cross-entropy for the kernel weighted by the target's intensity.
    """

    def __init__(self, data: Any, *, time_sampler: Callable = uniform_time, t_max: float = 0.999):
        if not hasattr(data, "sample"):
            raise TypeError(f"data must have a sample(n, generator, device) method, got {type(data).__name__}")
        t_max = check_real("t_max", t_max)
        if not 0 < t_max < 1:
            raise ValueError(f"t_max must lie in (0, 1), got {t_max}")
        self.data, self.time_sampler, self.t_max = data, time_sampler, t_max
        self.path = AffineGaussianPath("condot")   # x_t = t z + (1 - t) x0, x0 ~ N(0, I): the jumps' own marginals
        self.edges: torch.Tensor | None = None
        self._edges_on: dict = {}

    def bind(self, model: nn.Module) -> None:
        if not isinstance(getattr(model, "edges", None), torch.Tensor):
            raise TypeError(f"JumpObjective trains a model with bin edges (a JumpModel), got {type(model).__name__}")
        self.edges, self._edges_on = model.edges, {}

    def _edges_like(self, z: torch.Tensor) -> torch.Tensor:
        """The edges on z's device and in its dtype, copied once (a copy to the GPU every step waits for it)."""
        key = (z.device, z.dtype)
        if key not in self._edges_on:
            self._edges_on[key] = self.edges.to(z)
        return self._edges_on[key]

    def draw(self, n: int, generator: torch.Generator | None, device: Any) -> tuple[torch.Tensor, ...]:
        """(x, t, the conditional scaled rates (batch, dim, B)), x ~ p_t(. | z) drawn by the CondOT path."""
        z = self.data.sample(n, generator=generator, device=device)
        t = self.time_sampler(n, generator, device) * self.t_max
        x = self.path.sample(torch.randn(z.shape, generator=generator, device=device), z, t, check=False).xt
        tt = t.reshape(-1, *([1] * (z.ndim - 1)))
        target = _scaled_intensity(_eps(x, z, tt), z).unsqueeze(-1) * _kernel_mass(self._edges_like(z), z, tt)
        return x, t, target

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, t, target = batch
        log_pred = model.scaled_log_rates(x, t)
        return generalized_kl(target.float(), log_b=log_pred.float(), dims=2, check=False).mean()


__all__ = ["ConditionalJumps", "JumpModel", "JumpObjective", "JumpRates", "condot_density", "condot_density_rate",
           "condot_intensity", "condot_kernel_mass", "condot_kernel_sample"]
