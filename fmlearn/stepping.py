"""The time-stepping core shared by every sampler: the solution type, time grids, states, steppers.

A state is a tensor or a tuple of them (the likelihood integrates the pair (x, a) without packing
them into one tensor). A field ``u(state, t)`` returns the rate of change of the state (same
structure); a stepper turns it into an *increment* dx over a step of size h, and a *space* applies
it, ``space.step(x, dx)``:

    R^d (:class:`fmlearn.spaces.Euclidean`, the default):   x + dx
    a manifold (e.g. :class:`fmlearn.manifolds.Sphere`):     back onto it, e.g. (x + dx) / |x + dx| on the sphere
    tokens (:class:`fmlearn.discrete.Categorical`):          a jump with probability 1 - exp(-h lambda)

Fixed-step methods, one step of size h from t with k1 = u(x, t)::

    euler:    step(x, h k1)                                                       (1 evaluation)
    heun:     step(x, h/2 (k1 + kh)),             kh = u(step(x, h k1), t + h)    (2 evaluations)
    midpoint: step(x, h u(step(x, h/2 k1), t + h/2))                              (2 evaluations)
    rk4:      step(x, h/6 (k1 + 2 k2 + 2 k3 + k4))  (classic Runge-Kutta)         (4 evaluations)
              k2 = u(step(x, h/2 k1), t + h/2), k3 = u(step(x, h/2 k2), t + h/2), k4 = u(step(x, h k3), t + h)

In R^d their global errors shrink like h, h^2, h^2 and h^4 (the tests measure these orders).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence, Union

import torch

from ._checks import as_tensor, check_finite, check_positive_int, check_real

#: A state: a tensor, or a tuple of states.
State = Union[torch.Tensor, tuple]
#: A field u(state, t) -> d state / dt, t a Python float.
Field = Callable[[Any, float], Any]

GRID_KINDS = ("uniform", "cosine", "power")


@dataclass
class Solution:
    """What every sampler returns (ODE, adaptive, SDE, guided, jump).

    - x: the final state (a tensor of x0's shape, or a tuple for a tuple state).
    - times: float64 CPU tensor of shape (n,): the grid, or the accepted step times of an adaptive solve,
      from the first time to the last.
    - nfe: the number of field evaluations per sample (an SDE corrector's evaluations included).
    - trajectory: the state at each of ``times``, stacked to (n, *x.shape), if asked for.
    - accepted_steps, rejected_steps: the steps taken and thrown away (a fixed grid rejects none).
    """

    x: Any
    times: torch.Tensor
    nfe: int
    trajectory: Any = None
    accepted_steps: int | None = None
    rejected_steps: int | None = None


def tree_map(fn: Callable, *states: State) -> State:
    """fn applied leaf by leaf to states of one structure (a tensor, or nested tuples of tensors)."""
    if isinstance(states[0], tuple):
        return tuple(tree_map(fn, *parts) for parts in zip(*states))
    return fn(*states)


def leaves(state: State) -> list:
    """The tensors of a state, in order."""
    return [leaf for part in state for leaf in leaves(part)] if isinstance(state, tuple) else [state]


def stack_states(states: list) -> State:
    """A list of states of one structure stacked along a new first axis (a trajectory)."""
    return tree_map(lambda *xs: torch.stack(xs), *states)


def time_grid(steps: int, t0: float = 0.0, t1: float = 1.0, *, kind: str = "uniform",
              power: float = 2.0) -> torch.Tensor:
    """A grid of ``steps`` steps from t0 to t1: a float64 tensor of shape (steps + 1,).

    With s_i = i / steps, a warped fraction w_i goes from 0 to 1 and t_i = (1 - w_i) t0 + w_i t1,
    so t_0 = t0 and t_steps = t1 exactly:

        uniform: w_i = s_i                      equal steps
        cosine:  w_i = (1 - cos(pi s_i)) / 2    steps shrink towards both ends
        power:   w_i = 1 - (1 - s_i)^power      steps shrink towards t1 when power > 1 (towards t0 when < 1)

    ``power`` (> 0, default 2) is used by kind="power" only. The grid is strictly monotone; t1 < t0 runs backwards.
    """
    check_positive_int("steps", steps)
    t0, t1 = check_real("t0", t0), check_real("t1", t1)
    if t0 == t1:
        raise ValueError(f"t1 must differ from t0, got t0 = t1 = {t0}")
    if kind not in GRID_KINDS:
        raise ValueError(f"kind must be one of {GRID_KINDS}, got {kind!r}")
    power = check_real("power", power, positive=True)
    s = torch.arange(steps + 1, dtype=torch.float64) / steps
    if kind == "cosine":
        w = (1 - torch.cos(math.pi * s)) / 2
    elif kind == "power":
        w = 1 - (1 - s) ** power
    else:
        w = s
    return (1 - w) * t0 + w * t1


def check_grid(times: Sequence[float] | torch.Tensor, name: str = "times") -> torch.Tensor:
    """A time grid as a float64 CPU tensor of shape (n,), n >= 2, finite and strictly monotone
    (increasing, or decreasing to run backwards); a ValueError names what is wrong."""
    times = check_finite(name, as_tensor(name, times, dtype=torch.float64, device="cpu"))
    if times.ndim > 1:
        raise ValueError(f"{name} must be a 1-D grid of shape (n,), got shape {tuple(times.shape)}")
    times = times.reshape(-1)
    if times.numel() < 2:
        raise ValueError(f"{name} must hold at least 2 time points, got {times.numel()}")
    d = times[1:] - times[:-1]
    if not (bool((d > 0).all()) or bool((d < 0).all())):
        raise ValueError(f"{name} must be strictly increasing or strictly decreasing")
    return times


def grid_from(steps: int | None, times: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """The grid of a fixed-step solve: ``steps`` equal steps on [0, 1], or the grid ``times`` (exactly one)."""
    if (steps is None) == (times is None):
        raise ValueError("give exactly one of steps (equal steps on [0, 1]) or times (a grid)")
    return check_grid(times) if times is not None else time_grid(steps)


def _scale(c: float, k):
    return tree_map(lambda a: c * a, k)


def _add(*ks):
    out = ks[0]
    for k in ks[1:]:
        out = tree_map(torch.add, out, k)
    return out


def _euler(u, step, x, t, h):
    return step(x, _scale(h, u(x, t)))


def _heun(u, step, x, t, h):
    k1 = u(x, t)
    k_hat = u(step(x, _scale(h, k1)), t + h)  # chapter 3's k-hat (kh above): the slope at Euler's end point
    return step(x, _scale(0.5 * h, _add(k1, k_hat)))


def _midpoint(u, step, x, t, h):
    return step(x, _scale(h, u(step(x, _scale(0.5 * h, u(x, t))), t + 0.5 * h)))


def _rk4(u, step, x, t, h):
    k1 = u(x, t)
    k2 = u(step(x, _scale(0.5 * h, k1)), t + 0.5 * h)
    k3 = u(step(x, _scale(0.5 * h, k2)), t + 0.5 * h)
    k4 = u(step(x, _scale(h, k3)), t + h)
    return step(x, _scale(h / 6, _add(k1, _scale(2, k2), _scale(2, k3), k4)))


#: method -> (stepper(u, step, x, t, h) -> the state at t + h, evaluations per step)
STEPPERS = {"euler": (_euler, 1), "heun": (_heun, 2), "midpoint": (_midpoint, 2), "rk4": (_rk4, 4)}


def march(advance: Callable[[Any, float, float], Any], x0: State, grid: torch.Tensor, *,
          return_trajectory: bool = False) -> tuple[Any, Any]:
    """The time loop: x <- advance(x, t, t_next) over consecutive points of ``grid``.

    Returns (the final state, the stacked trajectory of every grid point or None). ``advance`` gets the
    times as Python floats, so no host sync happens between steps.
    """
    times = grid.tolist()
    x, traj = x0, ([x0] if return_trajectory else None)
    for t, t_next in zip(times[:-1], times[1:]):
        x = advance(x, t, t_next)
        if traj is not None:
            traj.append(x)
    return x, (stack_states(traj) if traj is not None else None)
