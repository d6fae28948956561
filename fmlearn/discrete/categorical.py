"""Tokens as a space (:mod:`fmlearn.spaces`): x holds integer states in {0, ..., S - 1}, shape (batch, *positions).

A field on tokens is a probability velocity: for each token, the rates u(j | x) of jumping to each state j,
shape (*x.shape, S), with u(j | x) >= 0 for j != x and the rates of a row summing to 0. A solver's
increment is dx = h u, and the step draws the next state from

    P(x_next = j) = delta(j, x) + dx_j,

the Euler step of the chain (Gillespie's exact jumps in the limit h -> 0). With the rows Q[x] of a
generator matrix Q as the field, many small steps reproduce the law exp(t Q) (the tests check it).
"""

from __future__ import annotations

import torch


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
        """A draw from delta_x + dx per token (negative entries, a step too large for the rates, are clipped to 0)."""
        probs = (torch.nn.functional.one_hot(x, self.num_states).to(dx.dtype) + dx).clamp_min(0)
        cdf = probs.cumsum(-1)
        dev = self.generator.device if self.generator is not None else x.device
        u = torch.rand(x.shape, generator=self.generator, device=dev, dtype=dx.dtype).to(x.device) * cdf[..., -1]
        return (cdf < u.unsqueeze(-1)).sum(-1).clamp_max(self.num_states - 1)

    def __repr__(self) -> str:
        return f"Categorical({self.num_states})"
