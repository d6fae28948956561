"""Bregman divergences: the losses of generator matching.

For a strictly convex Phi, the Bregman divergence of a from b is

    D(a, b) = Phi(a) - Phi(b) - <grad Phi(b), a - b>   >= 0, and = 0 only at a = b.

It is affine in its first argument a, which is why matching a *conditional* generator works: for a
target that is an average, a(x) = E_z[a(x | z) | x], the losses E_z D(a(x | z), b) and D(a(x), b) differ
by a term free of b, so they have the same gradient in the model's output b (and the same minimiser).

    squared_norm:    Phi(a) = |a|^2        D(a, b) = |a - b|^2                   flows, diffusions (chapters 1-7, 9)
    generalized_kl:  Phi(a) = sum a log a  D(a, b) = sum a log(a / b) - a + b    rates of CTMCs and jumps (8, 10)

The generalized KL compares non-negative measures that need not sum to 1 (jump rates); 0 log 0 = 0.
It is 1-homogeneous, D(c a, c b) = c D(a, b), so rates may be rescaled by any positive factor per
sample (for example 1 - t) without moving the minimiser. Both reduce over the last ``dims`` axes.
"""

from __future__ import annotations

from typing import Callable

import torch

_TINY = 1e-30


def _check_pair(a: torch.Tensor, b: torch.Tensor, name_a: str = "a", name_b: str = "b") -> None:
    for name, v in ((name_a, a), (name_b, b)):
        if not isinstance(v, torch.Tensor) or not v.is_floating_point():
            got = f"dtype {v.dtype}" if isinstance(v, torch.Tensor) else type(v).__name__
            raise TypeError(f"{name} must be a floating tensor, got {got}")
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have one shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def _reduce(d: torch.Tensor, dims: int) -> torch.Tensor:
    return d.flatten(-dims).sum(-1) if dims > 0 else d


def squared_norm(a: torch.Tensor, b: torch.Tensor, dims: int = 1) -> torch.Tensor:
    """|a - b|^2 summed over the last ``dims`` axes (Phi(a) = |a|^2)."""
    _check_pair(a, b)
    return _reduce((a - b) ** 2, dims)


def generalized_kl(a: torch.Tensor, b: torch.Tensor | None = None, dims: int = 1, *,
                   log_b: torch.Tensor | None = None, check: bool = True) -> torch.Tensor:
    """sum a log(a / b) - a + b over the last ``dims`` axes (Phi(a) = sum a log a), for a >= 0 and b > 0.

    a = 0 entries contribute b (0 log 0 = 0). Give b, or ``log_b`` (log b, e.g. log-intensity plus a
    log-softmax, which keeps tiny rates accurate). Negative entries are refused (they are not rates) unless
    ``check=False``, which a training loss passes to avoid a host sync per step.
    """
    if (b is None) == (log_b is None):
        raise ValueError("give exactly one of b or log_b")
    if b is None:
        _check_pair(a, log_b, "a", "log_b")
        if check and bool((a < 0).any()):
            raise ValueError(f"generalized_kl compares non-negative rates: a must be >= 0 (min a = {float(a.min()):.3g})")
        return _reduce(torch.xlogy(a, a) - a * log_b - a + torch.exp(log_b), dims)
    _check_pair(a, b)
    if check and (bool((a < 0).any()) or bool((b < 0).any())):
        raise ValueError("generalized_kl compares non-negative rates: a and b must be >= 0 "
                         f"(min a = {float(a.min()):.3g}, min b = {float(b.min()):.3g})")
    return _reduce(torch.xlogy(a, a) - torch.xlogy(a, b.clamp_min(_TINY)) - a + b, dims)


def bregman(phi: Callable[[torch.Tensor], torch.Tensor], a: torch.Tensor, b: torch.Tensor,
            dims: int = 1) -> torch.Tensor:
    """D(a, b) = Phi(a) - Phi(b) - <grad Phi(b), a - b> for any convex ``phi`` acting elementwise
    (its gradient by autograd); summed over the last ``dims`` axes. A reference for the closed forms above."""
    _check_pair(a, b)
    with torch.enable_grad():
        bb = b.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(phi(bb).sum(), bb)
    return _reduce(phi(a) - phi(b) - grad * (a - b), dims)


__all__ = ["bregman", "generalized_kl", "squared_norm"]
