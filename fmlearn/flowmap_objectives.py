"""Objectives that teach a network u_theta(x, s, t) the average velocity of a flow (see :mod:`fmlearn.flowmaps`),
all trained by the one loop, :func:`fmlearn.train`, and all regressions ||u_theta(x, s, t) - target||^2 (sum
over dimensions, mean over the batch) with the target held fixed (no gradient through it):

MeanFlow (:class:`MeanFlowObjective`), from data: x0 ~ N(0, I), x1 ~ data, x_s on the conditional path,
v its conditional velocity at s, and the average-velocity identity anchored at s,

    target = v + (t - s) d/ds u_theta(x_s, s, t),    d/ds u_theta = jvp of u_theta at (x_s, s, t) along (v, 1, 0)

(one forward-mode Jacobian-vector product, :func:`meanflow_target`). On the diagonal s = t it is the CFM loss.

Shortcut (:class:`ShortcutObjective`, a self-consistency method): off the diagonal, two half steps of the
network itself, with r = (s + t) / 2 and x_r = x_s + (r - s) u_theta(x_s, s, r),

    target = (u_theta(x_s, s, r) + u_theta(x_r, r, t)) / 2,

the semigroup X_{s->t} = X_{r->t} o X_{s->r} in average velocities; on the diagonal the CFM target v.

Distillation (:class:`DistillationObjective`): a teacher's trajectories, solved once on a grid t_0 < ... < t_K,
give the exact average velocity of the teacher between any two grid times a < b,

    target = (x_{t_b} - x_{t_a}) / (t_b - t_a),   at x = x_{t_a}, s = t_a, t = t_b.

Times (s, t) for MeanFlow and shortcut: (:func:`sample_time_pairs`) two uniform times, sorted; a share
``diagonal`` of the batch has t = s.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ._checks import check_unit_interval
from .paths import AffineGaussianPath
from . import stepping


def sample_time_pairs(n: int, generator: torch.Generator | None, device: torch.device | str | None,
                      diagonal: float = 0.75) -> tuple[torch.Tensor, torch.Tensor]:
    """(s, t), each of shape (n,), with s <= t: two U[0, 1) times, sorted; a share ``diagonal`` get t = s."""
    a, b = torch.rand(2, n, generator=generator, device=device)
    s, t = torch.minimum(a, b), torch.maximum(a, b)
    same = torch.rand(n, generator=generator, device=device) < diagonal
    return s, torch.where(same, s, t)


def meanflow_target(model: Callable[..., torch.Tensor], x: torch.Tensor, s: torch.Tensor, t: torch.Tensor,
                    v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(u_theta(x, s, t), the MeanFlow target v + (t - s) d/ds u_theta(x, s, t), detached).

    d/ds u_theta is the derivative along the trajectory through x with velocity v: one
    ``torch.func.jvp`` of (x, s, t) -> u_theta with tangents (v, 1, 0). x, v: (batch, dim); s, t: (batch,).
    """
    if not (isinstance(x, torch.Tensor) and isinstance(v, torch.Tensor) and x.shape == v.shape and x.ndim == 2):
        raise ValueError(f"x and v must be tensors of one shape (batch, dim), got {getattr(x, 'shape', x)} and "
                         f"{getattr(v, 'shape', v)}")
    for name, tt in (("s", s), ("t", t)):
        if not isinstance(tt, torch.Tensor) or tt.shape != (x.shape[0],):
            raise ValueError(f"{name} must be a tensor of shape (batch,) = ({x.shape[0]},), got "
                             f"{getattr(tt, 'shape', tt)}")
    u, du_ds = torch.func.jvp(model, (x, s, t), (v, torch.ones_like(s), torch.zeros_like(t)))
    return u, (v + (t - s)[:, None] * du_ds).detach()


def _regression(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred.float() - target.float()).pow(2).sum(1).mean()


class _FromData:
    """Shared by MeanFlow and shortcut: a batch (x_s, s, t, v) from the path between N(0, I) and the data."""

    def __init__(self, path: AffineGaussianPath, data: Any, diagonal: float):
        if not isinstance(path, AffineGaussianPath):
            raise TypeError(f"path must be an AffineGaussianPath, got {type(path).__name__}")
        if not callable(getattr(data, "sample", None)):
            raise TypeError(f"data must have a sample(n, generator, device) method, got {type(data).__name__}")
        self.path, self.data = path, data
        self.diagonal = check_unit_interval("diagonal", diagonal)

    def draw(self, n: int, generator: torch.Generator | None, device: torch.device | str | None) -> tuple:
        x1 = self.data.sample(n, generator=generator, device=device)
        x0 = self.path.sample_source(tuple(x1.shape), generator, device)
        s, t = sample_time_pairs(n, generator, device, self.diagonal)
        ps = self.path.sample(x0, x1, s, check=False)
        return ps.xt, s, t, ps.dxt

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r}, {type(self.data).__name__}, diagonal={self.diagonal})"


class MeanFlowObjective(_FromData):
    """MeanFlow from data (see the module docstring). ``diagonal``: the share of the batch with t = s
    (the plain CFM loss there); the default 3/4 is the MeanFlow paper's best share (25 % of pairs with s != t),
    and on chapter 11's mixture it beat 1/4."""

    def __init__(self, path: AffineGaussianPath, data: Any, *, diagonal: float = 0.75):
        super().__init__(path, data, diagonal)

    def loss(self, model: nn.Module, batch: tuple) -> torch.Tensor:
        x, s, t, v = batch
        u, target = meanflow_target(model, x, s, t, v)
        return _regression(u, target)


class ShortcutObjective(_FromData):
    """The shortcut self-consistency (see the module docstring): two half steps of the network as the target
    off the diagonal, the conditional velocity on it. ``diagonal``: the share of the batch with t = s; the
    default 3/4 (Frans et al. train 3/4 of each batch on flow matching) anchors the bootstrap: with 1/4 the
    chapter's network diverged (the targets come from the network itself)."""

    def __init__(self, path: AffineGaussianPath, data: Any, *, diagonal: float = 0.75):
        super().__init__(path, data, diagonal)

    def loss(self, model: nn.Module, batch: tuple) -> torch.Tensor:
        x, s, t, v = batch
        r = (s + t) / 2
        with torch.no_grad():
            u1 = model(x, s, r)
            u2 = model(x + (r - s)[:, None] * u1, r, t)
        target = torch.where((t == s)[:, None], v, (u1 + u2) / 2)
        return _regression(model(x, s, t), target)


class DistillationObjective:
    """Regression on a teacher's average velocities between the grid times of its trajectories (see the module
    docstring). ``teacher``: a :class:`~fmlearn.stepping.Solution` with a trajectory, e.g. ``fm.sample(model, x0,
    steps=64, method="rk4", return_trajectory=True)``; its trajectory (K + 1, n, dim) is kept on the CPU and
    moved to the training device once."""

    def __init__(self, teacher: stepping.Solution):
        if not isinstance(teacher, stepping.Solution) or not isinstance(teacher.trajectory, torch.Tensor):
            raise TypeError("teacher must be a fmlearn Solution with a trajectory (sample(..., "
                            f"return_trajectory=True)), got {type(teacher).__name__}")
        traj, times = teacher.trajectory, teacher.times
        if traj.ndim != 3 or traj.shape[0] < 2 or traj.shape[0] != times.shape[0]:
            raise ValueError(f"teacher.trajectory must have shape (K + 1, n, dim) with K + 1 = len(times) >= 2, got "
                             f"{tuple(traj.shape)} for {times.shape[0]} times")
        if not bool((times[1:] > times[:-1]).all()):
            raise ValueError("teacher.times must increase (a trajectory from the source towards the data)")
        self.trajectory, self.times = traj.detach().float().cpu(), times.float().cpu()
        self._on: dict = {}

    def draw(self, n: int, generator: torch.Generator | None, device: torch.device | str | None) -> tuple:
        key = str(device)
        if key not in self._on:
            self._on = {key: (self.trajectory.to(device), self.times.to(device))}
        traj, times = self._on[key]
        k, m = traj.shape[0] - 1, traj.shape[1]
        i = torch.randint(0, m, (n,), generator=generator, device=device)
        a, b = torch.randint(0, k + 1, (2, n), generator=generator, device=device)
        lo, hi = torch.minimum(a, b), torch.maximum(a, b)
        lo = torch.where(lo == hi, torch.clamp(lo, max=k - 1), lo)
        hi = torch.where(lo == hi, lo + 1, hi)
        s, t = times[lo], times[hi]
        xs, xt = traj[lo, i], traj[hi, i]
        return xs, s, t, (xt - xs) / (t - s)[:, None]

    def loss(self, model: nn.Module, batch: tuple) -> torch.Tensor:
        x, s, t, target = batch
        return _regression(model(x, s, t), target)

    def __repr__(self) -> str:
        points, m, d = self.trajectory.shape
        return f"DistillationObjective({m} trajectories of {points - 1} steps in R^{d})"


__all__ = ["DistillationObjective", "MeanFlowObjective", "ShortcutObjective", "meanflow_target", "sample_time_pairs"]
