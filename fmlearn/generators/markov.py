"""Steps of Markov processes for the one time loop: the Euler step of a jump process, and the superposition.

A jump process gives at (x, t) an intensity lambda (x's shape: one per coordinate) and landing points.
Over a step of size h each coordinate jumps with probability

    1 - exp(-h lambda)      (the chance of at least one jump of a Poisson clock of rate lambda),

to a point drawn from the kernel; else it stays. (h lambda itself is that probability only to first order,
and can exceed 1.) The clock is the token space's (:func:`fmlearn.discrete.categorical.jump_chance`): one
formula for the jumps of tokens and of points.

The Markov superposition of generators, a L_flow + (1 - a) L_jump with a in [0, 1], is run by composing the two steps over each interval, the flow's velocity scaled by a and the jump rates
by 1 - a: the composition's generator is their sum to first order in h (Lie-Trotter splitting).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from .._checks import check_unit_interval
from .._random import draw_device
from ..discrete.categorical import jump_chance
from ..solvers import Step, flow_step


def jump_step(process: Callable[..., Any], *, weight: float = 1.0,
              generator: torch.Generator | None = None) -> Step:
    """The Euler step of a jump process: ``process(x, t)`` returns a :class:`~fmlearn.generators.JumpRates`;
    each coordinate jumps with probability 1 - exp(-h weight lambda) to a landing point drawn from its kernel.

    ``weight`` in [0, 1] scales the generator (superposition); ``generator`` seeds the jumps. An intensity not
    of x's shape (checked at the first step), a negative or non-finite intensity, or a binned kernel whose rows
    do not sum to 1 is refused at whichever step it appears, with the time: the values are tested in one
    reduction per step (one host sync, about a microsecond's wait beside the process's own evaluation).
    """
    weight = check_unit_interval("weight", weight)
    if not callable(process):
        raise TypeError(f"process must be callable as process(x, t) -> JumpRates, got {type(process).__name__}")
    shaped = [False]

    def advance(x, t, t_next):
        rates = process(x, t)
        lam = rates.intensity
        if not shaped[0]:
            if not isinstance(lam, torch.Tensor) or lam.shape != x.shape:
                got = tuple(lam.shape) if isinstance(lam, torch.Tensor) else type(lam).__name__
                raise ValueError(f"the process's intensity must have x's shape {tuple(x.shape)}, got {got}")
            shaped[0] = True
        _check_rates(rates, t)
        u = torch.rand(x.shape, generator=generator, device=draw_device(generator, x.device),
                       dtype=lam.dtype).to(x.device)
        jumps = u < jump_chance((t_next - t) * weight * lam)
        return torch.where(jumps, rates.sample(generator).to(x.dtype), x)

    return Step(advance, 1, (process,) if isinstance(process, torch.nn.Module) else ())


def _check_rates(rates: Any, t: float) -> None:
    """Refuse an intensity that is negative or not finite, or a binned kernel whose rows do not sum to 1
    (within 1e-4): the step's values, tested in one reduction (one host sync)."""
    lam = rates.intensity
    bad = ~torch.isfinite(lam).all() | (lam < 0).any()
    if rates.bins is not None:
        total = rates.bins[1].sum(-1)
        bad = bad | ~((total - 1).abs() < 1e-4).all()
    if not bool(bad):
        return
    if not bool(torch.isfinite(lam).all()) or bool((lam < 0).any()):
        raise ValueError(f"the process's intensity must be finite and >= 0, got values in "
                         f"[{float(lam.min()):.3g}, {float(lam.max()):.3g}] at t = {t}")
    total = rates.bins[1].sum(-1)
    raise ValueError(f"the process's kernel must sum to 1 over its bins, got sums in "
                     f"[{float(total.min()):.6g}, {float(total.max()):.6g}] at t = {t}")


def superpose(*steps: Step) -> Step:
    """The steps applied one after the other over each interval (their generators add, to first order in h)."""
    if not steps or not all(isinstance(s, Step) for s in steps):
        got = ", ".join(type(s).__name__ for s in steps) or "nothing"
        hint = "; wrap a velocity function in flow_step(velocity)" if any(
            callable(s) and not isinstance(s, Step) for s in steps) else ""
        raise TypeError(f"superpose takes one or more fmlearn Steps (flow_step(...), jump_step(...)), got {got}{hint}")

    def advance(x, t, t_next):
        for s in steps:
            x = s(x, t, t_next)
        return x

    models = tuple(m for s in steps for m in s.models)
    return Step(advance, sum(s.evals for s in steps), models)


def superposition(velocity: Callable[..., torch.Tensor], jumps: Callable[..., Any], a: float, *,
                  method: str = "euler", generator: torch.Generator | None = None) -> Step:
    """The Markov superposition a L_flow + (1 - a) L_jump as one step: ``flow_step(velocity, weight=a)``
    then ``jump_step(jumps, weight=1 - a)`` (a = 1: the flow alone; a = 0: the jumps alone)."""
    a = check_unit_interval("a", a)
    return superpose(flow_step(velocity, method=method, weight=a), jump_step(jumps, weight=1.0 - a,
                                                                              generator=generator))


__all__ = ["jump_step", "superpose", "superposition"]
