"""The exact marginal velocity and score of a Gaussian-mixture target.

Source N(0, I), target p = sum_k w_k N(m_k, diag(s_k^2)), path
x_t = alpha_t x1 + beta_t x0. Then the marginal is again a mixture,

    p_t = sum_k w_k N(alpha_t m_k, diag(v_k)),   v_k = alpha_t^2 s_k^2 + beta_t^2,

and with r_k(x) = p(k | x_t = x) the posterior weight of component k,

    score_t(x) = sum_k r_k(x) (alpha_t m_k - x) / v_k,

    u_t(x)     = E[d_alpha x1 + d_beta x0 | x_t = x]
               = sum_k r_k(x) [d_alpha m_k + (alpha d_alpha s_k^2 + beta d_beta)(x - alpha m_k) / v_k].

v_k > 0 at every t, and beta d_beta is finite in closed form, so both are
finite on all of [0, 1]. The course checks every learned model against this.
"""

from __future__ import annotations

import torch

from ._checks import check_points, check_time, expand_time
from .distributions import GaussianMixture
from .paths import AffineGaussianPath


class MixtureOracle:
    """Exact marginal quantities for ``target`` under ``path`` from a N(0, I) source.

    Calling the oracle, ``oracle(x, t)``, returns the marginal velocity, so it can
    stand in for a trained model anywhere (samplers, plots, checks).
    """

    def __init__(self, target: GaussianMixture, path: AffineGaussianPath):
        if not isinstance(target, GaussianMixture):
            raise TypeError(f"target must be a GaussianMixture, got {type(target).__name__}")
        if not isinstance(path, AffineGaussianPath):
            raise TypeError(f"path must be an AffineGaussianPath, got {type(path).__name__}")
        self.target, self.path = target, path
        self.dim = target.dim

    def _terms(self, x, t):
        x = check_points("x", x, self.dim)
        t = expand_time(check_time(t, x), x)[:, :, None]  # (B, 1, 1)
        s = self.path.schedule
        m, sd, w = self.target.means.to(x), self.target.stds.to(x), self.target.weights.to(x)
        a, b = s.alpha(t), s.beta(t)
        var = a**2 * sd[None] ** 2 + b**2  # (B, K, d)
        diff = x[:, None, :] - a * m[None]  # (B, K, d)
        log_comp = torch.log(w)[None] - 0.5 * (torch.log(2 * torch.pi * var) + diff**2 / var).sum(-1)
        return t, a, m, sd, var, diff, log_comp

    def _posterior(self, log_comp):
        return torch.softmax(log_comp, dim=-1)[:, :, None]  # r_k(x), (B, K, 1)

    def score(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """grad_x log p_t(x), shape (batch, dim)."""
        *_, var, diff, log_comp = self._terms(x, t)
        return (self._posterior(log_comp) * (-diff / var)).sum(1)

    def velocity(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """The marginal velocity u_t(x), shape (batch, dim)."""
        t, a, m, sd, var, diff, log_comp = self._terms(x, t)
        s = self.path.schedule
        da, bdb = s.d_alpha(t), s.beta_d_beta(t)
        per_comp = da * m[None] + (a * da * sd[None] ** 2 + bdb) * diff / var
        return (self._posterior(log_comp) * per_comp).sum(1)

    def __call__(self, x, t, **cond) -> torch.Tensor:
        if cond:
            raise TypeError(f"the oracle is unconditional; got conditioning arguments {sorted(cond)}")
        return self.velocity(x, t)

    def marginal(self, t: float) -> GaussianMixture:
        """p_t as a GaussianMixture (exact log_prob, score and samples at time t)."""
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 1:
            raise ValueError(f"t must be a float in [0, 1], got {t!r}")
        s = self.path.schedule
        tt = torch.tensor(float(t), dtype=torch.float64)
        a, b = s.alpha(tt), s.beta(tt)
        tgt = self.target
        stds = torch.sqrt(a**2 * tgt.stds.double() ** 2 + b**2)
        return GaussianMixture((a * tgt.means.double()).float(), stds.float(), tgt.weights.double())

    def log_prob(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """log p_t(x), shape (batch,)."""
        *_, log_comp = self._terms(x, t)
        return torch.logsumexp(log_comp, dim=-1)

    def __repr__(self):
        return f"MixtureOracle({self.target!r}, {self.path!r})"
