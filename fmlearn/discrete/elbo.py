"""The ELBO of a posterior model, in bits, with its standard error.

For x1 with L tokens, the path law of the model's CTMC and that of the conditional path p_t(. | x1) (same
source) end in p^theta_1 and delta_{x1}, so their KL bounds the negative log-likelihood:

    -log p^theta_1(x1) <= int_0^1 E_{x_t ~ p_t(. | x1)} sum_i D_i(x_t, x1, t) dt,

with D_i the generalized KL of token i (:func:`fmlearn.discrete.objectives.token_losses`, ``loss="gkl"``).

Estimator ``"plain"``: for each of ``repeats`` passes over the N sequences, stratified times t_n = (pi_n + U_n) / N
(pi a random permutation, U_n ~ U[0, 1)), one x_t per sequence; the pass's mean is unbiased and the standard
error is the spread of the passes' means over sqrt(repeats). The weight r = kappa'/(1 - kappa) makes it noisy.

Estimator ``"masked"`` (mask source): an exact rewrite without the weight. D_i = r (-log p^theta(x1^i | x_t)) when
token i is masked and 0 otherwise, and P(masked) = 1 - kappa_t, so

    E_{x_t}[D_i] = kappa'_t E_{x_t | token i masked}[-log p^theta(x1^i | x_t)]:

for each position i, mask it, draw the others from the path, and weight by kappa'_t (L model evaluations
per sequence, each term bounded). With ``positions=k`` a pass masks, k times, one position drawn at random for
each sequence, and multiplies the sum by L / k: still unbiased, at k / L of the cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._checks import check_positive_int, model_context
from .._random import draw_device
from .objectives import token_losses
from .paths import MixturePath, check_path, check_tokens
from .sampling import PosteriorModel

ESTIMATORS = ("plain", "masked")


@dataclass
class ELBOEstimate:
    """bits: the bound on -log2 p^theta(x1) per sequence, averaged over the data; se: its standard error;
    repeats: passes over the data; estimator: "plain" or "masked"."""

    bits: float
    se: float
    repeats: int
    estimator: str

    def __str__(self) -> str:
        return f"{self.bits:.4f} ± {self.se:.4f} bits"


def _stratified_times(n: int, generator: torch.Generator | None, device) -> torch.Tensor:
    dev = draw_device(generator)
    perm = torch.randperm(n, generator=generator, device=dev).to(device)
    return (perm + torch.rand(n, generator=generator, device=dev).to(device)) / n


def _pass(model, path: MixturePath, x1: torch.Tensor, t: torch.Tensor, estimator: str,
          generator: torch.Generator | None, positions: int | None) -> torch.Tensor:
    """The integrand (nats) of each sequence at its time t, shape (N,)."""
    if estimator == "plain":
        x = path.sample_given(x1, t, generator, check=False)
        return token_losses(path, model(x, t), x, x1, t, "gkl").sum(-1)
    n, length = x1.shape
    rows = torch.arange(n, device=x1.device)
    total = torch.zeros(n, device=x1.device)
    for k in range(positions or length):
        i = torch.randint(length, (n,), generator=generator, device=draw_device(generator)).to(x1.device) \
            if positions else torch.full_like(rows, k)
        x = path.sample_given(x1, t, generator, check=False)
        x[rows, i] = path.mask
        total += -path.log_posterior(model(x, t), x)[rows, i].gather(-1, x1[rows, i, None]).squeeze(-1)
    return total * path.schedule.d_kappa(t) * (length / (positions or length))


def elbo(model: PosteriorModel, path: MixturePath, x1: torch.Tensor, *, repeats: int = 8,
         estimator: str | None = None, generator: torch.Generator | None = None,
         batch_size: int = 8192, positions: int | None = None) -> ELBOEstimate:
    """The ELBO of ``model`` on the sequences x1 (N, L), in bits per sequence, with its standard error.

    ``estimator``: "plain" or "masked" (module docstring); default "masked" for the mask source, else "plain".
    ``positions``: with "masked", the number of positions per pass (default all L).

    A model built for another path (its ``vocab_size``, ``num_states``, ``source``) is refused; so is an
    estimate that comes out NaN (a diverged model's logits), which would otherwise print as a number.
    """
    check_positive_int("repeats", repeats)
    check_positive_int("batch_size", batch_size)
    check_path(path).check_model(model)
    check_tokens("x1", x1, path.vocab_size, "the data values of the vocabulary")
    if x1.ndim != 2:
        raise ValueError(f"x1 must be data tokens of shape (N, L), got shape {tuple(x1.shape)}")
    estimator = estimator or ("masked" if path.mask is not None else "plain")
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if estimator == "masked" and path.mask is None:
        raise ValueError("estimator='masked' needs the mask source; use 'plain' for source='uniform'")
    length = x1.shape[1]
    if positions is not None:
        check_positive_int("positions", positions)
        if positions > length:
            raise ValueError(f"positions must be at most the sequence length {length}, got {positions}")
    means = []
    with model_context(model, x1) as (net, x1):
        for _ in range(repeats):
            t = _stratified_times(len(x1), generator, x1.device)
            parts = [_pass(net, path, x1[i:i + batch_size], t[i:i + batch_size], estimator, generator, positions)
                     for i in range(0, len(x1), batch_size)]
            means.append(float(torch.cat(parts).double().mean()) / math.log(2))
    if any(math.isnan(m) for m in means):
        raise ValueError("the ELBO came out NaN: the model's logits hold NaN (a diverged model, or inf - inf); "
                         "its bound is no number")
    m = torch.tensor(means, dtype=torch.float64)
    se = float(m.std() / math.sqrt(repeats)) if repeats > 1 else float("nan")
    return ELBOEstimate(bits=float(m.mean()), se=se, repeats=repeats, estimator=estimator)
