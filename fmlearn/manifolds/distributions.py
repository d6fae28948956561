"""Targets with exact densities and exact samplers on the sphere and the torus, and the uniform source.

von Mises-Fisher on S^2, mean direction mu (|mu| = 1), concentration kappa > 0 (density w.r.t. area):

    p(x) = C(kappa) exp(kappa mu . x),   C(kappa) = kappa / (4 pi sinh kappa),
    entropy  H = -log C(kappa) - kappa coth(kappa) + 1          (-1.074 nats at kappa = 50)

sampled exactly: w = mu . x has density prop. to exp(kappa w) on [-1, 1], so by the inverse CDF
w = 1 + log(u + (1 - u) e^{-2 kappa}) / kappa, u ~ U(0, 1), and x = w mu + sqrt(1 - w^2) (cos phi e1 + sin phi e2)
with phi ~ U[0, 2 pi) and (e1, e2) an orthonormal basis of mu's tangent plane.

Wrapped normal on T^d with mean mu and per-angle std sigma (density w.r.t. d theta):

    p(theta) = prod_i sum_{k in Z} N(theta_i + 2 pi k; mu_i, sigma_i^2)

(the sum truncated at |k| <= m with m 2 pi >= 8 sigma + 2 pi, far below float64 rounding), sampled by wrapping
a normal draw. A mixture has log p = logsumexp_k (log w_k + log p_k).
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import torch

from .._checks import as_tensor, check_finite, check_positive_int
from .._random import draw_device
from .base import CompactManifold
from .sphere import Sphere
from .torus import TWO_PI, FlatTorus


def vmf_log_normalizer(kappa: float | torch.Tensor) -> torch.Tensor:
    """log C(kappa) = log kappa - log(4 pi) - log sinh kappa, with log sinh k = k + log(1 - e^{-2k}) - log 2."""
    k = as_tensor("kappa", kappa, dtype=torch.float64)
    if k.device.type == "cpu" and not bool((k > 0).all()):  # a device tensor (a mixture's, checked) is not synced
        got = kappa if isinstance(kappa, (int, float)) else f"values down to {float(k.min())}"
        raise ValueError(f"kappa must be positive (the concentration of a vMF), got {got}")
    return torch.log(k) - math.log(4 * math.pi) - (k + torch.log(-torch.expm1(-2 * k)) - math.log(2.0))


def vmf_entropy(kappa: float) -> float:
    """The closed-form entropy of one vMF on S^2: -log C(kappa) - kappa coth(kappa) + 1 (nats)."""
    k = float(kappa)
    return float(-vmf_log_normalizer(k) - k / math.tanh(k) + 1)


def _weights(weights, n: int, dtype) -> torch.Tensor:
    if weights is None:
        return torch.full((n,), 1.0 / n, dtype=dtype)
    w = check_finite("weights", as_tensor("weights", weights, dtype=dtype)).reshape(-1)
    if w.shape != (n,) or not bool((w > 0).all()):
        raise ValueError(f"weights must be {n} positive numbers (one per component), got {w.tolist()}")
    return w / w.sum()


class ManifoldMixture:
    """What the two mixtures share: weights, means on ``space``, the log-density and scoring by nearest mode."""

    space: Sphere | FlatTorus
    means: torch.Tensor
    weights: torch.Tensor
    #: the tensors a sampler reads, kept on each device they are drawn on (:meth:`_on_device`)
    _sampled: tuple[str, ...] = ("weights", "means")

    @property
    def dim(self) -> int:
        """The size of a point's coordinates (3 on S^2, d on T^d)."""
        return self.space.dim

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    def _on_device(self, device: torch.device | str) -> dict[str, torch.Tensor]:
        """The sampler's tensors on ``device``, copied there once (a training loop that copied them every step
        would wait for the GPU each time); a copy is renewed when an attribute is reassigned."""
        cache = self.__dict__.setdefault("_device_copies", {})
        dev = torch.device(device)
        sources = tuple(getattr(self, name) for name in self._sampled)
        hit = cache.get(dev)
        if hit is None or any(a is not b for a, b in zip(hit[0], sources)):
            hit = cache[dev] = (sources, {name: v.to(dev) for name, v in zip(self._sampled, sources)})
        return hit[1]

    def component_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """log w_k + log p_k(x), shape (batch, K)."""
        raise NotImplementedError

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) = logsumexp_k (log w_k + log p_k(x)), shape (batch,), in x's dtype and on its device (computed
        in float64 on the CPU)."""
        x = self.space.check_points("x", x)
        log_p = torch.logsumexp(self.component_log_probs(x.detach().cpu().double()), dim=1)
        return log_p.to(device=x.device, dtype=x.dtype)

    def mode_fractions(self, x: torch.Tensor) -> torch.Tensor:
        """The share of samples whose nearest mean (geodesic distance) is mode k, shape (K,)."""
        x = self.space.check_points("x", x).detach().cpu().double()
        near = self.space.cdist(x, self.means).argmin(dim=1)
        return torch.bincount(near, minlength=self.n_components).double() / x.shape[0]

    def fraction_near_modes(self, x: torch.Tensor, radius: float = 0.5) -> float:
        """The share of samples within geodesic distance ``radius`` (radians) of some mean."""
        x = self.space.check_points("x", x).detach().cpu().double()
        return float((self.space.cdist(x, self.means).min(dim=1).values <= radius).double().mean())

    def entropy_mc(self, n: int = 100_000, generator: torch.Generator | None = None) -> tuple[float, float]:
        """The entropy -E[log p(x)] by Monte Carlo on n exact samples, with its standard error (nats)."""
        log_p = self.log_prob(self.sample(n, generator=generator).double())
        return float(-log_p.mean()), float(log_p.std() / math.sqrt(n))

    def sample(self, n: int, generator: torch.Generator | None = None, device: torch.device | str | None = None,
               return_labels: bool = False, dtype: torch.dtype = torch.float32
               ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """n exact samples of shape (n, dim) (computed in float64, returned in ``dtype``), drawn on the generator's
        device (else ``device``, else the CPU); with ``return_labels`` also their components (n,)."""
        check_positive_int("n", n)
        dev = draw_device(generator, device, same_kind=True)
        labels = torch.multinomial(self._on_device(dev)["weights"], n, replacement=True, generator=generator)
        x = self.sample_components(labels, generator).to(dtype)
        return (x, labels) if return_labels else x

    def sample_components(self, labels: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """One float64 sample of component labels[i] for each i, shape (n, dim), on the labels' device."""
        raise NotImplementedError


class VonMisesFisherMixture(ManifoldMixture):
    """A mixture of von Mises-Fisher distributions on S^2 (see the module docstring).

    Args:
        means: (K, 3) unit mean directions (normalised here; they must be nonzero).
        kappa: the concentration, one float > 0 or K of them.
        weights: K positive numbers (normalised here); default equal.
    """

    _sampled = ("weights", "means", "kappas")

    def __init__(self, means: torch.Tensor | Sequence, kappa: float | torch.Tensor | Sequence,
                 weights: torch.Tensor | Sequence | None = None):
        self.space = Sphere(3)
        m = check_finite("means", as_tensor("means", means, dtype=torch.float64))
        if m.ndim != 2 or m.shape[1] != 3 or m.shape[0] == 0:
            raise ValueError(f"means must have shape (K, 3): mean directions on S^2 in R^3, got {tuple(m.shape)}")
        if not bool((m.norm(dim=1) > 0).all()):
            raise ValueError("means must be nonzero vectors (each is normalised to a direction)")
        self.means = m / m.norm(dim=1, keepdim=True)
        k = check_finite("kappa", as_tensor("kappa", kappa, dtype=torch.float64)).reshape(-1)
        if k.numel() == 1:
            k = k.expand(m.shape[0]).clone()
        if k.shape != (m.shape[0],) or not bool((k > 0).all()):
            raise ValueError(f"kappa must be a positive number or {m.shape[0]} positive numbers (one per mean), "
                             f"got {k.tolist()}")
        self.kappas = k
        self.weights = _weights(weights, m.shape[0], torch.float64)

    @classmethod
    def tetrahedron(cls, kappa: float = 50.0) -> VonMisesFisherMixture:
        """The course's target: 4 equal vMFs at the vertices of a regular tetrahedron, (+-1, +-1, +-1) / sqrt(3)
        with an even number of minus signs (109.5 degrees apart)."""
        return cls(torch.tensor([[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]), kappa)

    def component_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        return self.weights.log() + vmf_log_normalizer(self.kappas) + self.kappas * (x @ self.means.T)

    def sample_components(self, labels: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        n, dev = labels.shape[0], labels.device
        on = self._on_device(dev)
        mu, k = on["means"][labels], on["kappas"][labels]
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=dev)
        w = (1 + torch.log(u + (1 - u) * torch.exp(-2 * k)) / k).clamp(-1.0, 1.0)
        phi = TWO_PI * torch.rand(n, generator=generator, dtype=torch.float64, device=dev)
        helper = torch.nn.functional.one_hot(mu.abs().argmin(1), 3).double()
        e1 = torch.nn.functional.normalize(helper - (helper * mu).sum(1, keepdim=True) * mu, dim=1)
        e2 = torch.linalg.cross(mu, e1)
        r = torch.sqrt((1 - w * w).clamp_min(0.0))[:, None]
        x = w[:, None] * mu + r * (torch.cos(phi)[:, None] * e1 + torch.sin(phi)[:, None] * e2)
        return x / x.norm(dim=1, keepdim=True)

    def __repr__(self) -> str:
        return f"VonMisesFisherMixture(K={self.n_components}, kappa={self.kappas.tolist()})"


class WrappedNormalMixture(ManifoldMixture):
    """A mixture of wrapped normals with diagonal covariance on T^d (see the module docstring).

    Args:
        means: (K, d) angles (wrapped into [0, 2 pi) here).
        stds: one float > 0, or (K,) or (K, d) of them (per component, per angle).
        weights: K positive numbers (normalised here); default equal.
    """

    _sampled = ("weights", "means", "stds")

    def __init__(self, means: torch.Tensor | Sequence, stds: float | torch.Tensor | Sequence,
                 weights: torch.Tensor | Sequence | None = None):
        m = check_finite("means", as_tensor("means", means, dtype=torch.float64))
        if m.ndim != 2 or m.shape[0] == 0 or m.shape[1] == 0:
            raise ValueError(f"means must have shape (K, d): K mean angles on T^d, got {tuple(m.shape)}")
        self.space = FlatTorus(m.shape[1])
        self.means = self.space.wrap(m)
        s = check_finite("stds", as_tensor("stds", stds, dtype=torch.float64))
        try:
            s = torch.broadcast_to(s.reshape(-1, 1) if s.ndim == 1 else s, m.shape).clone()
        except RuntimeError:
            raise ValueError(f"stds must be a number, K = {m.shape[0]} numbers or a (K, d) = {tuple(m.shape)} "
                             f"tensor, got shape {tuple(s.shape)}") from None
        if not bool((s > 0).all()):
            raise ValueError(f"stds must be positive, got a minimum of {float(s.min())}")
        self.stds = s
        self.weights = _weights(weights, m.shape[0], torch.float64)
        m_max = math.ceil((8 * float(s.max()) + TWO_PI) / TWO_PI)
        self.shifts = TWO_PI * torch.arange(-m_max, m_max + 1, dtype=torch.float64)

    @classmethod
    def product(cls, means_1d: Sequence[float], std: float, dim: int) -> WrappedNormalMixture:
        """The product over ``dim`` angles of one 1-D mixture (equal weights, means ``means_1d``, one ``std``):
        a mixture of len(means_1d)^dim components, its entropy dim times the 1-D one."""
        check_positive_int("dim", dim)
        means = torch.tensor(list(itertools.product(list(means_1d), repeat=dim)), dtype=torch.float64)
        return cls(means, std)

    def component_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        z = (x[:, None, :, None] - self.means[None, :, :, None] + self.shifts) / self.stds[None, :, :, None]
        per_angle = torch.logsumexp(-0.5 * z * z, dim=-1) - torch.log(self.stds) - 0.5 * math.log(TWO_PI)
        return self.weights.log() + per_angle.sum(-1)

    def sample_components(self, labels: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        z = torch.randn(labels.shape[0], self.dim, generator=generator, dtype=torch.float64, device=labels.device)
        on = self._on_device(labels.device)
        return self.space.wrap(on["means"][labels] + on["stds"][labels] * z)

    def __repr__(self) -> str:
        return f"WrappedNormalMixture(K={self.n_components}, d={self.dim})"


class Uniform:
    """The uniform distribution on a compact manifold (the default source of Riemannian flow matching):
    ``sample(n, generator, device)`` and ``log_prob(x)``, as the Part I distributions; ``space`` says where."""

    def __init__(self, space: CompactManifold):
        if not isinstance(space, CompactManifold):
            raise TypeError(f"space must be a compact manifold with a uniform distribution (a "
                            f"fmlearn.manifolds.CompactManifold such as fmlearn.manifolds.Sphere()), got "
                            f"{type(space).__name__}")
        self.space = space

    @property
    def dim(self) -> int:
        return self.space.dim

    def sample(self, n: int, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> torch.Tensor:
        """n uniform points, shape (n, dim)."""
        return self.space.random_uniform(n, generator=generator, device=device)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """-log vol at each point, shape (batch,)."""
        return self.space.uniform_log_prob(self.space.check_points("x", x))

    def __repr__(self) -> str:
        return f"Uniform({self.space!r})"
