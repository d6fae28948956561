"""Fixed-step ODE solvers for dx/dt = u(x, t), time grids, and sampling from a velocity model.

Each step of size h from t:
    euler:    x + h k1,                                   k1 = u(x, t)              (1 evaluation)
    heun:     x + h/2 (k1 + k2),                          k2 = u(x + h k1, t + h)   (2 evaluations)
    midpoint: x + h u(x + h/2 k1, t + h/2)                                          (2 evaluations)
    rk4:      x + h/6 (k1 + 2 k2 + 2 k3 + k4)             (classic Runge-Kutta)     (4 evaluations)
Global errors shrink like h, h^2, h^2 and h^4; the tests measure these orders.
The adaptive Dormand-Prince 5(4) solver lives in :mod:`fmlearn.adaptive` and is re-exported here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ._checks import (as_tensor, at_dtype, check_finite, check_positive_int, check_real, check_velocity_output,
                      model_dtype_device)

VelocityFn = Callable[[torch.Tensor, float], torch.Tensor]


def _euler(u, x, t, h):
    return x + h * u(x, t)


def _heun(u, x, t, h):
    k1 = u(x, t)
    k2 = u(x + h * k1, t + h)
    return x + (0.5 * h) * (k1 + k2)


def _midpoint(u, x, t, h):
    return x + h * u(x + 0.5 * h * u(x, t), t + 0.5 * h)


def _rk4(u, x, t, h):
    k1 = u(x, t)
    k2 = u(x + 0.5 * h * k1, t + 0.5 * h)
    k3 = u(x + 0.5 * h * k2, t + 0.5 * h)
    k4 = u(x + h * k3, t + h)
    return x + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)


STEPPERS = {"euler": (_euler, 1), "heun": (_heun, 2), "midpoint": (_midpoint, 2), "rk4": (_rk4, 4)}
GRID_KINDS = ("uniform", "cosine", "power")


@dataclass
class ODESolution:
    """What the solvers return.

    x: the final state, shape of x0.
    times: float64 CPU tensor of shape (n,): the grid (odeint) or the accepted step times (odeint_adaptive),
        from the first time to the last.
    nfe: the number of velocity evaluations.
    trajectory: (n, *x.shape), the state at each of ``times``, if asked for.
    accepted_steps, rejected_steps: the steps taken and thrown away (a fixed grid rejects none).
    """

    x: torch.Tensor
    times: torch.Tensor
    nfe: int
    trajectory: torch.Tensor | None = None
    accepted_steps: int | None = None
    rejected_steps: int | None = None


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
    It must return a tensor of x's shape: the first evaluation is checked (a ValueError
    naming both shapes), so a wrong shape cannot broadcast silently.
    """
    if method not in STEPPERS:
        hint = " (the adaptive dopri5 is odeint_adaptive)" if method == "dopri5" else ""
        raise ValueError(f"method must be one of {sorted(STEPPERS)}, got {method!r}{hint}")
    if (steps is None) == (times is None):
        raise ValueError("give exactly one of steps (equal steps on [0, 1]) or times (a grid)")
    times = _check_grid(times) if times is not None else time_grid(steps)
    if not isinstance(x0, torch.Tensor):
        raise TypeError(f"x0 must be a tensor, got {type(x0).__name__}")
    stepper, evals = STEPPERS[method]
    grid = times.tolist()
    checked = False

    def u(x, t):  # the first value's shape is checked (shapes only: no host sync)
        nonlocal checked
        v = velocity(x, t)
        if not checked:
            check_velocity_output(v, x)
            checked = True
        return v

    x = x0
    traj = [x0] if return_trajectory else None
    for t, t_next in zip(grid[:-1], grid[1:]):
        x = stepper(u, x, t, t_next - t)
        if traj is not None:
            traj.append(x)
    return ODESolution(x=x, times=times, nfe=evals * (len(grid) - 1),
                       trajectory=torch.stack(traj) if traj is not None else None,
                       accepted_steps=len(grid) - 1, rejected_steps=0)


@torch.no_grad()
def sample(model, x0: torch.Tensor, *, steps: int | None = None, method: str = "euler", times=None,
           rtol: float | None = None, atol: float | None = None, return_trajectory: bool = False,
           **cond) -> ODESolution:
    """Push source samples x0 through a velocity model from t = 0 to t = 1.

    ``method`` is a fixed-step method of :func:`odeint` (euler, heun, midpoint, rk4: give ``steps``,
    default 100, or a grid ``times``) or "dopri5", the adaptive :func:`odeint_adaptive` on [0, 1]
    (give ``rtol`` and ``atol``, default 1e-5 each; it chooses its own steps).
    Runs on the model's device (x0 is moved there), in eval mode, without gradients.
    The state, and so the solution, keeps x0's dtype: the model gets x cast to the dtype of its parameters
    and its velocity is cast back (float64 x0 and a float32 model: a float64 solution of float32 velocities).
    ``cond`` is passed on: ``model(x, t, **cond)``.
    """
    if method == "dopri5":
        if steps is not None or times is not None:
            raise ValueError("steps and times set a fixed grid, but method='dopri5' chooses its own steps: "
                             "set rtol and atol instead")
    elif method in STEPPERS:
        if rtol is not None or atol is not None:
            raise ValueError(f"rtol and atol set the error control of method='dopri5', not of method={method!r}: "
                             "set steps or times instead")
        if steps is None and times is None:
            steps = 100
    else:
        raise ValueError(f"method must be one of {sorted(STEPPERS) + ['dopri5']}, got {method!r}")
    if not isinstance(x0, torch.Tensor):
        raise TypeError(f"x0 must be a tensor, got {type(x0).__name__}")
    dtype, device = model_dtype_device(model)
    x0 = x0.to(device) if device is not None else x0
    net = at_dtype(model, dtype)
    is_module = isinstance(model, torch.nn.Module)
    if is_module:
        was_training = model.training
        model.eval()
    try:
        def velocity(x, t):
            return net(x, t, **cond)

        if method == "dopri5":
            tol = {k: v for k, v in (("rtol", rtol), ("atol", atol)) if v is not None}
            return odeint_adaptive(velocity, x0, 0.0, 1.0, return_trajectory=return_trajectory, **tol)
        return odeint(velocity, x0, steps=steps, times=times, method=method, return_trajectory=return_trajectory)
    finally:
        if is_module:
            model.train(was_training)


# adaptive.py builds on ODESolution above, so it is imported last and re-exported from here.
from .adaptive import odeint_adaptive  # noqa: E402
