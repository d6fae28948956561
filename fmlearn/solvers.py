"""Fixed-step ODE solvers for dx/dt = u(x, t), and sampling from a velocity model.

Each step of size h from t:
    euler:    x + h k1,                                   k1 = u(x, t)              (1 evaluation)
    midpoint: x + h u(x + h/2 k1, t + h/2)                                          (2 evaluations)
    rk4:      x + h/6 (k1 + 2 k2 + 2 k3 + k4)             (classic Runge-Kutta)     (4 evaluations)
Global errors shrink like h, h^2 and h^4; the tests measure these orders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ._checks import as_tensor, check_finite, check_positive_int

VelocityFn = Callable[[torch.Tensor, float], torch.Tensor]


def _euler(u, x, t, h):
    return x + h * u(x, t)


def _midpoint(u, x, t, h):
    return x + h * u(x + 0.5 * h * u(x, t), t + 0.5 * h)


def _rk4(u, x, t, h):
    k1 = u(x, t)
    k2 = u(x + 0.5 * h * k1, t + 0.5 * h)
    k3 = u(x + 0.5 * h * k2, t + 0.5 * h)
    k4 = u(x + h * k3, t + h)
    return x + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)


STEPPERS = {"euler": (_euler, 1), "midpoint": (_midpoint, 2), "rk4": (_rk4, 4)}


@dataclass
class ODESolution:
    """x: the final state; trajectory: (len(times), *x.shape) if asked for; nfe: velocity evaluations."""

    x: torch.Tensor
    times: torch.Tensor
    nfe: int
    trajectory: torch.Tensor | None = None


def time_grid(steps: int, t0: float = 0.0, t1: float = 1.0) -> torch.Tensor:
    """``steps`` equal steps from t0 to t1: a float64 tensor of steps + 1 times."""
    check_positive_int("steps", steps)
    return torch.linspace(t0, t1, steps + 1, dtype=torch.float64)


def _check_grid(times) -> torch.Tensor:
    times = check_finite("times", as_tensor("times", times, dtype=torch.float64, device="cpu")).reshape(-1)
    if times.numel() < 2:
        raise ValueError(f"times must hold at least 2 time points, got {times.numel()}")
    d = times[1:] - times[:-1]
    if not (bool((d > 0).all()) or bool((d < 0).all())):
        raise ValueError("times must be strictly increasing or strictly decreasing")
    return times


def odeint(velocity: VelocityFn, x0: torch.Tensor, *, steps: int | None = None, times=None,
           method: str = "euler", return_trajectory: bool = False) -> ODESolution:
    """Integrate dx/dt = velocity(x, t) from times[0] to times[-1].

    Give either ``steps`` (equal steps on [0, 1]) or ``times`` (any monotone grid,
    e.g. decreasing from 1 to 0 to run backwards). ``velocity(x, t)`` gets t as a
    Python float, so no host sync happens between steps. Gradients flow if enabled.
    """
    if method not in STEPPERS:
        raise ValueError(f"method must be one of {sorted(STEPPERS)}, got {method!r}")
    if (steps is None) == (times is None):
        raise ValueError("give exactly one of steps (equal steps on [0, 1]) or times (a grid)")
    times = _check_grid(times) if times is not None else time_grid(steps)
    if not isinstance(x0, torch.Tensor):
        raise TypeError(f"x0 must be a tensor, got {type(x0).__name__}")
    stepper, evals = STEPPERS[method]
    grid = times.tolist()
    x = x0
    traj = [x0] if return_trajectory else None
    for t, t_next in zip(grid[:-1], grid[1:]):
        x = stepper(velocity, x, t, t_next - t)
        if traj is not None:
            traj.append(x)
    return ODESolution(x=x, times=times, nfe=evals * (len(grid) - 1),
                       trajectory=torch.stack(traj) if traj is not None else None)


@torch.no_grad()
def sample(model, x0: torch.Tensor, *, steps: int = 100, method: str = "euler", times=None,
           return_trajectory: bool = False, **cond) -> ODESolution:
    """Push source samples x0 through a velocity model from t = 0 to t = 1.

    Runs on the model's device (x0 is moved there), in eval mode, without gradients.
    ``cond`` is passed on: ``model(x, t, **cond)``.
    """
    if not isinstance(x0, torch.Tensor):
        raise TypeError(f"x0 must be a tensor, got {type(x0).__name__}")
    is_module = isinstance(model, torch.nn.Module)
    if is_module:
        tensor = next(iter(model.parameters()), None)
        tensor = tensor if tensor is not None else next(iter(model.buffers()), None)
        if tensor is not None:
            x0 = x0.to(tensor.device)
        was_training = model.training
        model.eval()
    try:
        return odeint(lambda x, t: model(x, t, **cond), x0, steps=None if times is not None else steps,
                      times=times, method=method, return_trajectory=return_trajectory)
    finally:
        if is_module:
            model.train(was_training)
