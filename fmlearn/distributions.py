"""Distributions in R^d: what we sample from, and what we can score exactly.

``Gaussian`` and ``GaussianMixture`` have exact ``sample``, ``log_prob`` and
``score`` (the gradient of ``log_prob``). The 2-D toy targets of the field
(moons, 8 Gaussians, checkerboard, two spirals) only sample; they live in
:mod:`fmlearn.toys`.

Every ``sample(n, generator=None, device=None)`` is seedable through a
``torch.Generator`` and returns a tensor of shape (n, dim).
"""

from __future__ import annotations

import math

import torch

from ._checks import as_tensor, check_finite, check_points, check_positive_int
from ._random import draw_device


class Sampleable:
    """Anything we can draw samples from: ``sample(n, generator, device)``."""

    dim: int

    def sample(self, n: int, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> torch.Tensor:
        raise NotImplementedError


class Gaussian(Sampleable):
    """N(mean, diag(std^2)) in R^dim; ``Gaussian.standard(dim)`` is N(0, I).

    log p(x) = -1/2 sum_i ((x_i - m_i)/s_i)^2 - sum_i log s_i - d/2 log(2 pi),
    score(x) = -(x - m) / s^2.
    """

    def __init__(self, mean, std):
        self.mean = check_finite("mean", as_tensor("mean", mean, dtype=torch.float32)).reshape(-1)
        std = check_finite("std", as_tensor("std", std, dtype=torch.float32))
        if std.ndim == 0:
            std = std.expand_as(self.mean)
        if std.shape != self.mean.shape:
            raise ValueError(f"std must be a scalar or have the shape of mean {tuple(self.mean.shape)}, got {tuple(std.shape)}")
        if not bool((std > 0).all()):
            raise ValueError(f"std must be > 0 everywhere, got minimum {float(std.min())}")
        self.std = std.clone()
        self.dim = self.mean.numel()

    @classmethod
    def standard(cls, dim: int) -> "Gaussian":
        check_positive_int("dim", dim)
        return cls(torch.zeros(dim), torch.ones(dim))

    def sample(self, n: int, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> torch.Tensor:
        check_positive_int("n", n)
        dev = draw_device(generator, device, same_kind=True)
        z = torch.randn(n, self.dim, generator=generator, device=dev)
        return self.mean.to(dev) + self.std.to(dev) * z

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        x = check_points("x", x, self.dim)
        m, s = self.mean.to(x), self.std.to(x)
        z = (x - m) / s
        return -0.5 * (z**2).sum(-1) - torch.log(s).sum() - 0.5 * self.dim * math.log(2 * math.pi)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        x = check_points("x", x, self.dim)
        return -(x - self.mean.to(x)) / self.std.to(x) ** 2

    def __repr__(self):
        return f"Gaussian(dim={self.dim})"


class GaussianMixture(Sampleable):
    """sum_k w_k N(mu_k, diag(s_k^2)) in R^dim.

    Args:
        means: (K, dim) component means.
        stds: a scalar, (K,) per-component isotropic stds, or (K, dim) diagonal stds; all > 0.
        weights: (K,) non-negative, summing to 1 (default: equal weights).

    log p(x) = logsumexp_k [log w_k + log N(x; mu_k, s_k^2)];
    score(x) = sum_k r_k(x) (mu_k - x) / s_k^2 with responsibilities r_k(x).
    """

    def __init__(self, means, stds=1.0, weights=None):
        means = check_finite("means", as_tensor("means", means, dtype=torch.float32))
        if means.ndim != 2:
            raise ValueError(f"means must have shape (n_components, dim), got {tuple(means.shape)}")
        k, d = means.shape
        stds = check_finite("stds", as_tensor("stds", stds, dtype=torch.float32))
        if stds.ndim == 0:
            stds = stds.expand(k, d)
        elif stds.shape == (k,):
            stds = stds[:, None].expand(k, d)
        elif stds.shape != (k, d):
            raise ValueError(f"stds must be a scalar, shape ({k},) or ({k}, {d}), got {tuple(stds.shape)}")
        if not bool((stds > 0).all()):
            raise ValueError(f"stds must be > 0, got minimum {float(stds.min())}")
        if weights is None:
            weights = torch.full((k,), 1.0 / k)
        weights = check_finite("weights", as_tensor("weights", weights, dtype=torch.float64))
        if weights.shape != (k,):
            raise ValueError(f"weights must have shape ({k},) to match means, got {tuple(weights.shape)}")
        if not bool((weights >= 0).all()):
            raise ValueError(f"weights must be >= 0, got minimum {float(weights.min())}")
        if abs(float(weights.sum()) - 1.0) > 1e-6:
            raise ValueError(f"weights must sum to 1, got sum {float(weights.sum()):.8g}")
        self.means = means.clone()
        self.stds = stds.contiguous().clone()
        self.weights = weights.to(torch.float32)
        self.n_components, self.dim = k, d

    @classmethod
    def symmetric_2d(cls, n_modes: int = 11, radius: float = 10.0, std: float = 1.0) -> "GaussianMixture":
        """Equal-weight modes evenly on a circle of ``radius``: the course's running target
        (11 modes, radius 10, std 1), the first at angle 0."""
        check_positive_int("n_modes", n_modes)
        if not radius > 0:
            raise ValueError(f"radius must be > 0, got {radius}")
        angles = 2 * math.pi * torch.arange(n_modes, dtype=torch.float64) / n_modes
        means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
        return cls(means.float(), std)

    def component_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """log w_k + log N(x; mu_k, s_k^2), shape (batch, K)."""
        x = check_points("x", x, self.dim)
        m, s, w = self.means.to(x), self.stds.to(x), self.weights.to(x)
        z = (x[:, None, :] - m[None]) / s[None]
        log_norm = -torch.log(s).sum(-1) - 0.5 * self.dim * math.log(2 * math.pi)
        return torch.log(w) + log_norm - 0.5 * (z**2).sum(-1)

    def responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior p(k | x), shape (batch, K)."""
        return torch.softmax(self.component_log_probs(x), dim=-1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(self.component_log_probs(x), dim=-1)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        x = check_points("x", x, self.dim)
        r = self.responsibilities(x)
        m, s = self.means.to(x), self.stds.to(x)
        return (r[:, :, None] * (m[None] - x[:, None, :]) / s[None] ** 2).sum(1)

    def sample(self, n: int, generator: torch.Generator | None = None, device: torch.device | str | None = None,
               return_labels: bool = False) -> torch.Tensor:
        check_positive_int("n", n)
        dev = draw_device(generator, device, same_kind=True)
        labels = torch.multinomial(self.weights.to(dev), n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, device=dev)
        x = self.means.to(dev)[labels] + self.stds.to(dev)[labels] * z
        return (x, labels) if return_labels else x

    def __repr__(self):
        return f"GaussianMixture(n_components={self.n_components}, dim={self.dim})"


class PairedData:
    """Fixed (x0, x1) pairs, drawn in random minibatches by :class:`~fmlearn.objectives.CFMObjective`: e.g. the (noise, sample)
    pairs of a trained flow, to train a rectified ("reflowed") flow on them.

    Args:
        x0, x1: tensors of the same shape (n, *data_shape): pair i is (x0[i], x1[i]).
    """

    def __init__(self, x0: torch.Tensor, x1: torch.Tensor):
        if not (isinstance(x0, torch.Tensor) and isinstance(x1, torch.Tensor)):
            raise TypeError(f"x0 and x1 must be tensors, got {type(x0).__name__} and {type(x1).__name__}")
        if x0.shape != x1.shape or x0.ndim < 2:
            raise ValueError(f"x0 and x1 must have the same shape (n, *data_shape), got {tuple(x0.shape)} "
                             f"and {tuple(x1.shape)}")
        if not (torch.isfinite(x0).all() and torch.isfinite(x1).all()):
            raise ValueError("x0 and x1 must be finite")
        self.x0, self.x1 = x0.detach(), x1.detach()
        self._on = {}  # device -> (x0, x1) copies, made once

    def _tensors(self, dev: torch.device):
        if dev == self.x0.device:
            return self.x0, self.x1
        if dev not in self._on:
            self._on[dev] = (self.x0.to(dev), self.x1.to(dev))
        return self._on[dev]

    def __len__(self):
        return self.x0.shape[0]

    def sample_pairs(self, n: int, generator: torch.Generator | None = None,
                     device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """n pairs drawn uniformly with replacement, on ``device`` (default the generator's device)."""
        check_positive_int("n", n)
        dev = torch.device(device) if device is not None else draw_device(generator, self.x0.device)
        idx = torch.randint(len(self), (n,), generator=generator, device=dev)
        x0, x1 = self._tensors(dev)
        return x0[idx], x1[idx]

    def __repr__(self):
        return f"PairedData(n={len(self)}, shape={tuple(self.x0.shape[1:])})"

