"""Solving dx/dt = u(x, t), and sampling from a velocity model: one entry point, ``odeint(method=...)``.

Fixed-step methods (euler, heun, midpoint, rk4; the steppers of :mod:`fmlearn.stepping`) on a grid, and
the adaptive Dormand-Prince 5(4) method "dopri5" (:mod:`fmlearn.adaptive`), which chooses its own steps
under an error tolerance, share one call and one :class:`~fmlearn.stepping.Solution`. Each applies its
increments through a space (:mod:`fmlearn.spaces`): x + dx in R^d, the default; a projection or an exp
map on a manifold; a jump on tokens. States may be tuples of tensors.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Sequence

import torch

from ._checks import at_dtype, check_unit_interval, model_context, model_dtype_device
from .adaptive import dopri5
from .spaces import Space, check_space, resolve_space
from .stepping import STEPPERS, Field, Solution, State, check_grid, grid_from, march, time_grid

METHODS = (*sorted(STEPPERS), "dopri5")


def _checked(field: Field, space) -> Field:
    """field, its first value checked by the space (shapes only: no host sync)."""
    checked = False

    def u(x, t):
        nonlocal checked
        v = field(x, t)
        if not checked:
            space.check_field(v, x)
            checked = True
        return v

    return u


def odeint(field: Field, x0: State, *, method: str = "euler", steps: int | None = None,
           times: Sequence[float] | torch.Tensor | None = None,
           rtol: float | None = None, atol: float | None = None, first_step: float | None = None,
           max_steps: int = 10_000, space: Space | None = None, return_trajectory: bool = False) -> Solution:
    """Integrate dx/dt = field(x, t) from times[0] to times[-1].

    Args:
        field: ``field(x, t) -> dx/dt`` with x's structure and shapes (the first value is checked by the
            space: a ValueError naming both shapes, so a wrong shape cannot broadcast silently); t is a
            Python float, so no host sync happens between steps. Gradients flow if enabled.
        x0: the initial state: a tensor of any shape, e.g. (batch, dim) or (batch, 1, 8, 8), or a tuple of them.
        method: "euler", "heun", "midpoint", "rk4" (fixed steps: give ``steps``, equal steps on [0, 1], or a
            grid ``times``, any strictly monotone grid, e.g. decreasing from 1 to 0 to run backwards), or
            "dopri5" (adaptive: ``times`` = (t0, t1), default (0, 1); tolerances ``rtol``, ``atol``, default
            1e-5 each, of the error norm in :mod:`fmlearn.adaptive`; ``first_step`` (default Hairer's
            heuristic, one extra evaluation) and ``max_steps`` attempted steps).
        space: how an increment is applied, ``space.step(x, dx)``; default :class:`~fmlearn.spaces.Euclidean`.
        return_trajectory: also return the state at every grid (or accepted step) time.

    Returns a :class:`~fmlearn.stepping.Solution` (x, times, nfe, trajectory, accepted and rejected steps).
    """
    space = check_space(space)
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    if not isinstance(x0, (torch.Tensor, tuple)):
        raise TypeError(f"x0 must be a tensor (or a tuple of tensors), got {type(x0).__name__}")
    for part in (x0 if isinstance(x0, tuple) else (x0,)):
        if isinstance(part, torch.Tensor) and (part.dtype == torch.bool or part.is_complex()):
            raise TypeError(f"x0 must hold real numbers, got dtype {part.dtype}")
    if not callable(field):
        raise TypeError(f"field must be callable, field(x, t) -> dx/dt, got {type(field).__name__} {field!r}")
    u = _checked(field, space)
    if method == "dopri5":
        if steps is not None:
            raise ValueError("steps sets a fixed grid, but method='dopri5' chooses its own steps: set rtol and atol")
        t0, t1 = (0.0, 1.0) if times is None else _ends(times)
        tol = {k: v for k, v in (("rtol", rtol), ("atol", atol), ("first_step", first_step)) if v is not None}
        return dopri5(u, x0, t0, t1, max_steps=max_steps, return_trajectory=return_trajectory, space=space, **tol)
    if rtol is not None or atol is not None or first_step is not None:
        raise ValueError(f"rtol, atol and first_step control method='dopri5', not method={method!r}: "
                         "set steps or times instead")
    grid = grid_from(steps, times)
    stepper, evals = STEPPERS[method]
    x, traj = march(lambda x, t, t_next: stepper(u, space.step, x, t, t_next - t), x0, grid,
                    return_trajectory=return_trajectory)
    n = len(grid) - 1
    return Solution(x=x, times=grid, nfe=evals * n, trajectory=traj, accepted_steps=n, rejected_steps=0)


def _ends(times) -> tuple[float, float]:
    grid = check_grid(times)
    if grid.numel() != 2:
        raise ValueError(f"times of method='dopri5' must be (t0, t1): it chooses the steps between them, "
                         f"got {grid.numel()} time points")
    return float(grid[0]), float(grid[1])


def sample(model: Callable[..., torch.Tensor], x0: torch.Tensor, *, method: str = "euler", steps: int | None = None,
           times: Sequence[float] | torch.Tensor | None = None,
           rtol: float | None = None, atol: float | None = None, space: Space | None = None,
           return_trajectory: bool = False,
           **cond: torch.Tensor) -> Solution:
    """Push source samples x0 through a velocity model from t = 0 to t = 1: :func:`odeint` of
    ``model(x, t, **cond)``, with 100 steps when a fixed-step method gets neither ``steps`` nor ``times``.

    ``space``: where the state lives; None: the model's own space (its ``space`` attribute, as a
    :class:`~fmlearn.manifolds.ProjectedVelocity` declares), else R^d. A space that contradicts the model's is
    refused (a ValueError naming both), and on a space with ``check_points`` (every :class:`~fmlearn.spaces.Manifold`,
    the ellipsoid) x0 must be points of it: on the sphere, unit vectors; on the ellipsoid, points of its surface.

    Runs on the model's device (x0 is moved there), in eval mode, without gradients
    (:func:`fmlearn._checks.model_context`). The state, and so the solution, keeps x0's dtype: the model
    gets x cast to the dtype of its parameters and its velocity is cast back (float64 x0 and a float32
    model: a float64 solution of float32 velocities).
    """
    if not isinstance(x0, torch.Tensor):
        raise TypeError(f"x0 must be a tensor, got {type(x0).__name__}")
    space = resolve_space(model, space)
    check_points = getattr(space, "check_points", None)
    if callable(check_points):  # every space of points has it, the ellipsoid too (no exp or log: not a Manifold)
        x0 = check_points("x0", x0)
    if method in STEPPERS and steps is None and times is None:
        steps = 100
    with model_context(model, x0) as (net, x0):
        return odeint(lambda x, t: net(x, t, **cond), x0, method=method, steps=steps, times=times, rtol=rtol,
                      atol=atol, space=space, return_trajectory=return_trajectory)


class Step:
    """One step of a process, ``step(x, t, t_next) -> the state at t_next``: the unit the time loop
    (:func:`fmlearn.stepping.march`) advances, and what :func:`simulate` runs.

    ``evals`` is the number of network evaluations per step; ``models`` the modules it calls (put in eval
    mode and on x's device by :func:`simulate`). Composing steps (one after the other over the same
    interval) gives the generator's sum to first order in the step: see :func:`fmlearn.generators.superpose`.
    """

    def __init__(self, advance: Callable[[Any, float, float], Any], evals: int, models: tuple = ()):
        self.advance, self.evals, self.models = advance, evals, tuple(models)

    def __call__(self, x: Any, t: float, t_next: float) -> Any:
        return self.advance(x, t, t_next)


def flow_step(velocity: Field, *, method: str = "euler", weight: float = 1.0, space: Space | None = None,
              **cond: torch.Tensor) -> Step:
    """The step of the flow dx/dt = weight * velocity(x, t, **cond) by a fixed-step ``method`` (as in
    :func:`odeint`), applied through ``space`` (None: the velocity's own space, else R^d; another one than the
    velocity declares is refused). weight in [0, 1] scales the generator (Markov superposition)."""
    space = resolve_space(velocity, space, owner="velocity")
    if method not in STEPPERS:
        raise ValueError(f"method must be one of {sorted(STEPPERS)} for a step, got {method!r}")
    weight = check_unit_interval("weight", weight)
    stepper, evals = STEPPERS[method]
    net = at_dtype(velocity, model_dtype_device(velocity)[0])

    def u(x, t):
        return weight * net(x, t, **cond)

    u = _checked(u, space)

    def advance(x, t, t_next):
        return stepper(u, space.step, x, t, t_next - t)

    return Step(advance, evals, (velocity,) if isinstance(velocity, torch.nn.Module) else ())


def simulate(step: Step, x0: torch.Tensor, *, steps: int | None = None,
             times: Sequence[float] | torch.Tensor | None = None, return_trajectory: bool = False) -> Solution:
    """Run a :class:`Step` (a flow, jump or superposed step) from x0 over a grid: ``steps`` equal steps on
    [0, 1], or the grid ``times``. Without gradients, its modules in eval mode (restored after), x0 moved to
    their device. Returns a :class:`~fmlearn.stepping.Solution` (nfe = evaluations per step x steps)."""
    if not isinstance(step, Step):
        raise TypeError(f"step must be a fmlearn Step (e.g. fmlearn.flow_step(model) or fmlearn.generators."
                        f"jump_step(model)), got {type(step).__name__}")
    if not isinstance(x0, torch.Tensor):
        raise TypeError(f"x0 must be a tensor, got {type(x0).__name__}")
    grid = grid_from(steps, times)
    with contextlib.ExitStack() as stack:
        for m in step.models:
            _, moved = stack.enter_context(model_context(m, x0))
            x0 = moved
        with torch.no_grad():
            x, traj = march(step, x0, grid, return_trajectory=return_trajectory)
    n = len(grid) - 1
    return Solution(x=x, times=grid, nfe=step.evals * n, trajectory=traj, accepted_steps=n, rejected_steps=0)


__all__ = ["METHODS", "Solution", "Step", "flow_step", "odeint", "sample", "simulate", "time_grid"]
