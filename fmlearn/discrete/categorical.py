"""Tokens as a space (:mod:`fmlearn.spaces`): x holds integer states in {0, ..., S - 1}, shape (batch, *positions).

A field on tokens is a probability velocity: for each token, the rates u(j | x) of jumping to each state j,
shape (*x.shape, S), with u(j | x) >= 0 for j != x (the diagonal entry, minus the total rate, is ignored).
A solver's increment is dx = h u, and the step is the Euler step of the chain with an exponential waiting
time: a token leaves its state x with probability

    1 - exp(-h lambda(x)),          lambda(x) = sum_{j != x} u(j | x)   (the total jump rate),

and lands on j != x with probability proportional to u(j | x). For small h this is delta_x + h u up to
O(h^2); unlike delta_x + h u it is a probability distribution for every step size, however large the
rates. Many small steps with the rows Q[x] of a generator matrix Q reproduce the law exp(t Q) (tested).

:func:`jump_chance` is that Poisson clock, 1 - exp(-h lambda), the one place it is written: the jumps of a
process in R^d (:func:`fmlearn.generators.jump_step`) leave with it too. :func:`jump_probabilities` is the
one-step law; :class:`Categorical` draws from it, and :class:`fmlearn.discrete.exact.JointLaw` pushes a whole
distribution through it.

A diverged model (NaN or infinite rates or logits) must not yield plausible tokens: :func:`draw` refuses a row
of weights that is not a distribution up to scale (NaN, inf, a negative weight, all zero), and so does the
token space's step, which gathers its verdict in a flag tensor (no host sync per step) when ``deferred``: the
sampler (:func:`fmlearn.discrete.sample`) reads it once, at the end (:meth:`Categorical.check_draws`).
"""

from __future__ import annotations

from typing import Any

import torch

from .._random import draw_device


def jump_chance(total: torch.Tensor) -> torch.Tensor:
    """The chance 1 - exp(-total) that a Poisson clock of integrated rate ``total`` = h lambda rings in a step
    (at least one jump): at most h lambda, and a probability for any step size, however large the rate."""
    return -torch.expm1(-total)


def check_tokens_cheap(name: str, x: Any, num_states: int) -> torch.Tensor:
    """x must be an integer tensor of tokens in 0..num_states - 1, checked without a host sync: its dtype always,
    its values only when it lies on the CPU (where reading them costs no device wait). For per-step calls
    (a sampler's step, a forward pass, a training loss): on a device, the entry point has checked the values."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a tensor of integer tokens, got {type(x).__name__}")
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer tokens, got dtype {x.dtype}")
    if x.device.type == "cpu" and x.numel() and (int(x.min()) < 0 or int(x.max()) >= num_states):
        raise ValueError(f"{name} must hold tokens in 0..{num_states - 1}, got values from {int(x.min())} to "
                         f"{int(x.max())}")
    return x


def jump_probabilities(x: torch.Tensor, dx: torch.Tensor, num_states: int) -> torch.Tensor:
    """The law of the next state of each token after an increment dx = h u, shape (*x.shape, num_states):

        P(next = j) = (1 - exp(-Lambda)) dx_j / Lambda  for j != x,     P(next = x) = exp(-Lambda),

    with Lambda = sum_{j != x} max(dx_j, 0) (negative off-diagonal increments are treated as 0). The tokens'
    values are checked on the CPU only (no host sync per step: see :func:`check_tokens_cheap`)."""
    check_tokens_cheap("x", x, num_states)
    if not isinstance(dx, torch.Tensor) or tuple(dx.shape) != (*x.shape, num_states) or not dx.is_floating_point():
        got = f"shape {tuple(dx.shape)}, dtype {dx.dtype}" if isinstance(dx, torch.Tensor) else type(dx).__name__
        raise ValueError(f"dx must be a floating increment of shape (*x.shape, num_states) = "
                         f"{(*x.shape, num_states)}, got {got}")
    onehot = torch.nn.functional.one_hot(x, num_states).to(dx.dtype)
    off = (dx * (1 - onehot)).clamp_min(0)
    total = off.sum(-1, keepdim=True)
    leave = jump_chance(total)
    share = torch.where(total > 0, leave / total.clamp_min(torch.finfo(dx.dtype).tiny), torch.zeros_like(total))
    return off * share + onehot * (1 - leave)


def invalid_rows(probs: torch.Tensor) -> torch.Tensor:
    """True for each row of ``probs`` (*shape, S) that is no distribution up to scale: a NaN, an infinite or
    a negative weight, or all zeros (a bool tensor of shape (*shape); no host sync)."""
    total = probs.sum(-1)
    return ~((probs >= 0).all(-1) & (total > 0) & torch.isfinite(total))


def describe_invalid(name: str, probs: torch.Tensor) -> str:
    """What is wrong with the rows of ``probs`` that :func:`invalid_rows` flags, for an error message."""
    bad = invalid_rows(probs)
    rows = probs[bad]
    kinds = [f"{int(n)} with NaN" for n in [rows.isnan().any(-1).sum()] if n]
    kinds += [f"{int(n)} with inf" for n in [rows.isinf().any(-1).sum()] if n]
    kinds += [f"{int(n)} with a negative weight" for n in [(rows < 0).any(-1).sum()] if n]
    kinds += [f"{int(n)} all zero" for n in [(rows == 0).all(-1).sum()] if n]
    return (f"{name} must hold rows of nonnegative, finite weights with a positive sum (one distribution per "
            f"row), but {int(bad.sum())} of its {bad.numel()} rows are not ({', '.join(kinds)}): a diverged model "
            "(NaN or infinite logits or rates) gives no valid state to draw")


def draw(probs: torch.Tensor, generator: torch.Generator | None = None, *, check: bool = True) -> torch.Tensor:
    """One draw per row of ``probs`` (*shape, S), rows of nonnegative weights: integer states of shape (*shape).

    A row that is no distribution up to scale (NaN, inf, a negative weight, all zero) is refused with a
    ValueError (``check``, one host sync); with ``check=False`` its draw is meaningless: test it with
    :func:`invalid_rows` yourself (the token space's step gathers it in a flag)."""
    if not isinstance(probs, torch.Tensor) or not probs.is_floating_point() or probs.ndim < 1:
        got = f"dtype {probs.dtype}, shape {tuple(probs.shape)}" if isinstance(probs, torch.Tensor) else \
            type(probs).__name__
        raise TypeError(f"probs must be a floating tensor of weights (*shape, S), got {got}")
    if check and bool(invalid_rows(probs).any()):
        raise ValueError(describe_invalid("probs", probs))
    cdf = probs.cumsum(-1)
    u = torch.rand(probs.shape[:-1], generator=generator, device=draw_device(generator, probs.device),
                   dtype=probs.dtype).to(probs.device)
    return (cdf < (u * cdf[..., -1]).unsqueeze(-1)).sum(-1).clamp_max(probs.shape[-1] - 1)


class Categorical:
    """One of ``num_states`` states per position; ``generator`` seeds the jumps.

    ``deferred=False`` (default): a step whose one-step law has a row that is no distribution (NaN or infinite
    rates: a diverged model) raises at once (one host sync per step). ``deferred=True``: the step only records
    it in a flag tensor (no sync), and :meth:`check_draws` raises at the end of a run (the sampler's use)."""

    def __init__(self, num_states: int, generator: torch.Generator | None = None, *, deferred: bool = False):
        if isinstance(num_states, bool) or not isinstance(num_states, int) or num_states < 2:
            raise ValueError(f"num_states must be an int >= 2, got {num_states!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        self.num_states = num_states
        self.generator = generator
        self.deferred = bool(deferred)
        self._invalid: torch.Tensor | None = None   # rows no distribution, summed over the deferred steps

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
        probs = jump_probabilities(x, dx, self.num_states)
        if not self.deferred:
            return draw(probs, self.generator)
        bad = invalid_rows(probs).sum()
        self._invalid = bad if self._invalid is None else self._invalid + bad
        return draw(probs, self.generator, check=False)

    def check_draws(self) -> None:
        """Raise if a deferred step met rates that give no distribution (NaN or infinite: a diverged model);
        one host sync. The flag is cleared."""
        bad, self._invalid = self._invalid, None
        if bad is not None and int(bad):
            raise ValueError(f"the jump rates of {int(bad)} token-steps were NaN or infinite, so their next "
                             "states could not be drawn (a diverged model: its logits or rates hold NaN or "
                             "inf); the samples are not valid tokens")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.num_states == self.num_states

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.num_states))

    def __repr__(self) -> str:
        return f"Categorical({self.num_states})"
