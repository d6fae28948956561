"""Tokens as a space (:mod:`fmlearn.spaces`): x holds integer states in {0, ..., S - 1}, shape (batch, *positions).

A field on tokens is a probability velocity: for each token, the rates u(j | x) of jumping to each state j,
shape (*x.shape, S), with u(j | x) >= 0 for j != x (the diagonal entry, minus the total rate, is ignored).
A solver's increment is dx = h u, and the step is the Euler step of the chain with an exponential waiting
time: a token leaves its state x with probability

    1 - exp(-h lambda(x)),          lambda(x) = sum_{j != x} u(j | x)   (the total jump rate),

and lands on j != x with probability proportional to u(j | x). For small h this is delta_x + h u up to
O(h^2); unlike delta_x + h u it is a probability distribution for every step size, however large the
rates. Many small steps with the rows Q[x] of a generator matrix Q reproduce the law exp(t Q) (tested).

:func:`jump_probabilities` is that one-step law; :class:`Categorical` draws from it, and
:class:`fmlearn.discrete.exact.JointLaw` pushes a whole distribution through it.
"""

from __future__ import annotations

import torch


def jump_probabilities(x: torch.Tensor, dx: torch.Tensor, num_states: int) -> torch.Tensor:
    """The law of the next state of each token after an increment dx = h u, shape (*x.shape, num_states):

        P(next = j) = (1 - exp(-Lambda)) dx_j / Lambda  for j != x,     P(next = x) = exp(-Lambda),

    with Lambda = sum_{j != x} max(dx_j, 0) (negative off-diagonal increments are treated as 0)."""
    onehot = torch.nn.functional.one_hot(x, num_states).to(dx.dtype)
    off = (dx * (1 - onehot)).clamp_min(0)
    total = off.sum(-1, keepdim=True)
    leave = -torch.expm1(-total)
    share = torch.where(total > 0, leave / total.clamp_min(torch.finfo(dx.dtype).tiny), torch.zeros_like(total))
    return off * share + onehot * (1 - leave)


def draw(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per row of ``probs`` (*shape, S), rows of nonnegative weights: integer states of shape (*shape)."""
    cdf = probs.cumsum(-1)
    dev = generator.device if generator is not None else probs.device
    u = torch.rand(probs.shape[:-1], generator=generator, device=dev, dtype=probs.dtype).to(probs.device)
    return (cdf < (u * cdf[..., -1]).unsqueeze(-1)).sum(-1).clamp_max(probs.shape[-1] - 1)


class Categorical:
    """One of ``num_states`` states per position; ``generator`` seeds the jumps."""

    def __init__(self, num_states: int, generator: torch.Generator | None = None):
        if isinstance(num_states, bool) or not isinstance(num_states, int) or num_states < 2:
            raise ValueError(f"num_states must be an int >= 2, got {num_states!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        self.num_states = num_states
        self.generator = generator

    def check_field(self, v: torch.Tensor, x: torch.Tensor, name: str = "velocity") -> torch.Tensor:
        """x must hold integer tokens and v be floating rates of shape (*x.shape, num_states)."""
        if x.is_floating_point() or x.dtype == torch.bool:
            raise TypeError(f"x must hold integer tokens, got dtype {x.dtype}")
        want = (*x.shape, self.num_states)
        if not isinstance(v, torch.Tensor) or tuple(v.shape) != want or not v.is_floating_point():
            got = f"{tuple(v.shape)} {v.dtype}" if isinstance(v, torch.Tensor) else type(v).__name__
            raise ValueError(f"{name}(x, t) must return floating jump rates of shape (*x.shape, num_states) = {want}, "
                             f"got {got}")
        return v

    def step(self, x: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
        """A draw from :func:`jump_probabilities` per token: leave x with probability 1 - exp(-h lambda)."""
        return draw(jump_probabilities(x, dx, self.num_states), self.generator)

    def __repr__(self) -> str:
        return f"Categorical({self.num_states})"
