"""What a discrete posterior model is trained on (objectives for :func:`fmlearn.train`) and the data it draws.

For x1 ~ data, t ~ U[0, 1), x_t ~ p_t(. | x1) (:class:`~fmlearn.discrete.paths.MixturePath`) and the model's
posterior p^theta = p^theta_{1|t}(. | x_t):

cross-entropy (:class:`DiscreteObjective`, ``loss="ce"``): the mean over the batch and the L positions of

    -log p^theta(x1^i | x_t),

minimised by the true posterior (0 on unmasked tokens of the mask source, which are copied);

generalized KL (``loss="gkl"``): the Bregman divergence of the rates, sum_{y != x_t^i} [u^theta(y) - u(y | x1)
+ u(y | x1) log(u(y | x1) / u^theta(y))] with u(. | x1) the conditional velocity; for the mixture path,
with r = kappa'_t / (1 - kappa_t),

    x_t^i != x1^i:   r [ -p^theta(x_t^i) - log p^theta(x1^i) ],
    x_t^i  = x1^i:   r [ 1 - p^theta(x_t^i) ],

(divided by L here). Its integral over t, summed over positions, is the ELBO (:mod:`fmlearn.discrete.elbo`):
the loss of the likelihood, at the price of the weight r, which grows like 1 / (1 - t).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .categorical import check_tokens_cheap
from .paths import MixturePath, check_tokens

LOSSES = ("ce", "gkl")


def check_loss(loss: Any) -> str:
    """loss must name one of :data:`LOSSES`; "kl" is refused with a pointer to "gkl" (the generalized KL of the
    rates, which is no plain KL of distributions: rates need not sum to 1)."""
    if loss not in LOSSES:
        hint = ("; the discrete loss is the generalized KL of the rates, sum u log(u / v) - u + v, named 'gkl' "
                "(a plain KL of the rates would be no divergence: they need not sum to 1)") \
            if isinstance(loss, str) and loss.lower() in ("kl", "kld", "generalized_kl", "generalized-kl") else ""
        raise ValueError(f"loss must be one of {LOSSES} ('ce': cross-entropy, 'gkl': generalized KL), "
                         f"got {loss!r}{hint}")
    return loss


class TokenData:
    """Sequences drawn with replacement from a table of rows (M, L) (optionally with probabilities (M,)):
    ``sample(n, generator, device)`` -> (n, L) integer tokens."""

    def __init__(self, table: torch.Tensor, probs: torch.Tensor | None = None):
        if not isinstance(table, torch.Tensor) or table.ndim != 2 or table.shape[0] < 1:
            raise ValueError(f"table must be a tensor of shape (M, L), got "
                             f"{tuple(table.shape) if isinstance(table, torch.Tensor) else type(table).__name__}")
        check_tokens("table", table, int(table.max()) + 1)
        if probs is not None and (probs.shape != (table.shape[0],) or float(probs.min()) < 0
                                  or abs(float(probs.sum()) - 1) > 1e-6):
            raise ValueError(f"probs must be probabilities of shape ({table.shape[0]},) summing to 1")
        self.table, self.probs = table.long(), probs
        self._on: dict = {}

    def __len__(self) -> int:
        return self.table.shape[0]

    def sample(self, n: int, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> torch.Tensor:
        dev = torch.device(device) if device is not None else self.table.device
        if dev not in self._on:
            self._on[dev] = (self.table.to(dev), None if self.probs is None else self.probs.to(dev))
        table, probs = self._on[dev]
        if probs is None:
            idx = torch.randint(len(table), (n,), generator=generator, device=dev)
        else:
            idx = torch.multinomial(probs, n, replacement=True, generator=generator)
        return table[idx]

    def __repr__(self) -> str:
        return f"TokenData({self.table.shape[0]} rows of {self.table.shape[1]} tokens)"


def token_losses(path: MixturePath, logits: torch.Tensor, x: torch.Tensor, x1: torch.Tensor, t: torch.Tensor,
                 loss: str = "ce") -> torch.Tensor:
    """The per-token loss (nats), shape (batch, L): ``loss="ce"`` the cross-entropy, ``"gkl"`` the generalized KL
    of the rates (module docstring)."""
    check_loss(loss)
    logp = path.log_posterior(logits, x)
    check_tokens_cheap("x1", x1, path.vocab_size)  # values on the CPU only: no host sync per training step
    if x1.shape != x.shape:
        raise ValueError(f"x1 must have x's shape {tuple(x.shape)}, got {tuple(x1.shape)}")
    nll = -logp.gather(-1, x1.unsqueeze(-1)).squeeze(-1)
    if loss == "ce":
        return nll
    rate = path.rate(t, x).unsqueeze(-1)
    stay = logp.gather(-1, x.clamp_max(path.vocab_size - 1).unsqueeze(-1)).squeeze(-1).exp()
    if path.mask is not None:
        stay = torch.where(x == path.mask, torch.zeros_like(stay), stay)
    moved = x != x1
    return rate * torch.where(moved, nll - stay, 1 - stay)


class DiscreteObjective:
    """Train a posterior model on a mixture path: ``loss="ce"`` (cross-entropy on x1) or ``"gkl"`` (generalized KL).

    ``data.sample(n, generator, device)`` gives x1 (n, L) (e.g. :class:`TokenData`)."""

    def __init__(self, path: MixturePath, data: Any, loss: str = "ce"):
        if not isinstance(path, MixturePath):
            raise TypeError(f"path must be a MixturePath, got {type(path).__name__}")
        if not callable(getattr(data, "sample", None)):
            raise TypeError(f"data must have a sample(n, generator, device) method, got {type(data).__name__}")
        self.path, self.data, self.loss_name = path, data, check_loss(loss)
        if isinstance(data, TokenData):
            self._check_data(data.table, "its table")
        self._checked = False

    def _check_data(self, x1: torch.Tensor, what: str) -> None:
        check_tokens(f"data ({what})", x1, self.path.vocab_size,
                     f"the path's vocabulary of {self.path.vocab_size} data values; the mask {self.path.mask} "
                     "is no data value" if self.path.mask is not None else
                     f"the path's vocabulary of {self.path.vocab_size} data values")

    def bind(self, model: nn.Module) -> None:
        """Called by the training loop before the first step: refuse a model built for another path
        (:meth:`MixturePath.check_model`); the run's first batch will be checked."""
        self.path.check_model(model)
        self._checked = False

    def draw(self, n: int, generator: torch.Generator | None,
             device: torch.device | str | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x_t, x1, t) for n sequences; the first batch of a run is checked (tokens in the vocabulary)."""
        x1 = self.data.sample(n, generator=generator, device=device)
        if not self._checked:
            self._check_data(x1, "a batch of data.sample")
        t = torch.rand(n, generator=generator, device=device)
        xt = self.path.sample_given(x1, t, generator, check=not self._checked)
        self._checked = True
        return xt, x1, t

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, x1, t = batch
        return token_losses(self.path, model(x, t), x, x1, t, self.loss_name).mean()

    def __repr__(self) -> str:
        return f"DiscreteObjective({self.path!r}, {self.data!r}, loss={self.loss_name!r})"
