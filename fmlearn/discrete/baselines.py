"""Classical baselines for token sequences, to put a model's bits in context.

PerPosition: each position an independent categorical, p(x) = prod_i pi_i(x^i), fitted by counting with
add-``alpha`` smoothing: pi_i(v) = (n_i(v) + alpha) / (n + alpha V).

ProductMixture: a mixture of K such products, p(x) = sum_k w_k prod_i pi_{k,i}(x^i), fitted by EM:

    E-step  r_{nk} proportional to w_k prod_i pi_{k,i}(x_n^i)        (in log space)
    M-step  w_k = (sum_n r_nk + alpha_w) / (N + K alpha_w),   pi_{k,i}(v) = (sum_n r_nk [x_n^i = v] + alpha) / (sum_n r_nk + alpha V)

Both report -log2 p(x) per sequence (:meth:`bits`).
"""

from __future__ import annotations

import math

import torch

from .._checks import check_positive_int, check_real
from .paths import check_tokens


class PerPosition:
    """Independent categoricals per position (see the module docstring)."""

    def __init__(self, vocab_size: int, alpha: float = 0.5):
        check_positive_int("vocab_size", vocab_size)
        self.vocab_size, self.alpha = vocab_size, check_real("alpha", alpha, positive=True)
        self.log_pi: torch.Tensor | None = None

    def fit(self, x: torch.Tensor) -> "PerPosition":
        check_tokens("x", x, self.vocab_size)
        counts = torch.nn.functional.one_hot(x, self.vocab_size).double().sum(0)
        self.log_pi = torch.log((counts + self.alpha) / (len(x) + self.alpha * self.vocab_size))
        return self

    def bits(self, x: torch.Tensor) -> torch.Tensor:
        """-log2 p(x) per sequence, (n,)."""
        check_tokens("x", x, self.vocab_size)
        return -self.log_pi.gather(1, x.T).sum(0) / math.log(2)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n sequences, each position drawn on its own."""
        return torch.multinomial(self.log_pi.exp(), n, replacement=True, generator=generator).T


class ProductMixture:
    """A mixture of ``components`` products of categoricals, fitted by EM (see the module docstring)."""

    def __init__(self, vocab_size: int, components: int = 20, alpha: float = 0.5, iters: int = 100, seed: int = 0):
        for name, value in (("vocab_size", vocab_size), ("components", components), ("iters", iters)):
            check_positive_int(name, value)
        self.vocab_size, self.k, self.iters, self.seed = vocab_size, components, iters, seed
        self.alpha = check_real("alpha", alpha, positive=True)
        self.log_w: torch.Tensor | None = None
        self.log_pi: torch.Tensor | None = None

    def _log_joint(self, onehot: torch.Tensor) -> torch.Tensor:
        return torch.einsum("niv,kiv->nk", onehot, self.log_pi) + self.log_w

    def fit(self, x: torch.Tensor) -> "ProductMixture":
        check_tokens("x", x, self.vocab_size)
        onehot = torch.nn.functional.one_hot(x, self.vocab_size).double()
        g = torch.Generator().manual_seed(self.seed)
        r = torch.rand(len(x), self.k, generator=g, dtype=torch.float64)
        r = r / r.sum(1, keepdim=True)
        for _ in range(self.iters):
            nk = r.sum(0)
            self.log_w = torch.log((nk + 1.0) / (len(x) + self.k))
            counts = torch.einsum("nk,niv->kiv", r, onehot)
            self.log_pi = torch.log((counts + self.alpha) / (nk[:, None, None] + self.alpha * self.vocab_size))
            r = torch.softmax(self._log_joint(onehot), dim=1)
        return self

    def bits(self, x: torch.Tensor) -> torch.Tensor:
        """-log2 p(x) per sequence, (n,)."""
        check_tokens("x", x, self.vocab_size)
        onehot = torch.nn.functional.one_hot(x, self.vocab_size).double()
        return -torch.logsumexp(self._log_joint(onehot), dim=1) / math.log(2)
