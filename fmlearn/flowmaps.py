"""Flow maps: the exact map of a velocity field, a network for the average velocity, and its step.

Time runs from the source (t = 0) to the data (t = 1). The flow map X_{s->t}(x) is where the ODE
dx/dtau = v(x, tau), started from x at time s, is at time t (s <= t). Anchored at the start point x
(the point at time s), the average velocity is::

    u(x, s, t) = (X_{s->t}(x) - x) / (t - s),      u(x, s, s) = v(x, s),
    so X_{s->t}(x) = x + (t - s) u(x, s, t)        (one evaluation of u: one "step" of size t - s).

Two identities hold for every exact map (chapter 11 derives and checks both)::

    semigroup:         X_{s->t} = X_{r->t} o X_{s->r}   for s <= r <= t
    average velocity:  u(x_s, s, t) = v(x_s, s) + (t - s) d/ds u(x_s, s, t)
                       along a trajectory x_s, with d/ds u = (grad_x u) v + partial_s u

(the second is d/ds of (t - s) u(x_s, s, t) = x_t - x_s). :func:`flow_map` integrates the ODE with the one
solver core (:func:`fmlearn.odeint`) on a rescaled time tau in [0, 1], so that each sample may have its own
(s, t); :class:`FlowMapMLP` is a network u_theta(x, s, t); :func:`flow_map_step` turns it into a
:class:`~fmlearn.solvers.Step` (x <- x + (t - s) u_theta(x, s, t)) that :func:`fmlearn.simulate` runs
over any grid. The training objectives are in :mod:`fmlearn.flowmap_objectives`.
Shapes: x (batch, dim); s, t floats or (batch,) tensors in [0, 1].
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ._checks import check_points, check_positive_int, check_time, model_context
from .distributions import GaussianMixture
from .models import TimeEmbedding, mlp_layers
from .solvers import Step, odeint, simulate
from .stepping import Solution


def check_times(s: float | torch.Tensor, t: float | torch.Tensor, x: torch.Tensor,
                names: tuple[str, str] = ("s", "t")) -> tuple[torch.Tensor, torch.Tensor]:
    """(s, t) as (batch,) tensors in x's dtype, in [0, 1], with s <= t; a ValueError names the argument."""
    x = check_points("x", x)
    s, t = check_time(s, x, name=names[0]), check_time(t, x, name=names[1])
    if bool((s > t).any()):
        i = int((s > t).nonzero()[0])
        raise ValueError(f"{names[0]} must be <= {names[1]} (the map goes forward, from the source at 0 to the data "
                         f"at 1), got {names[0]} = {float(s[i])} > {names[1]} = {float(t[i])} at index {i}")
    return s, t


def flow_map(velocity: Callable[..., torch.Tensor], x: torch.Tensor, s: float | torch.Tensor,
             t: float | torch.Tensor, *, method: str = "dopri5", steps: int | None = None,
             rtol: float = 1e-7, atol: float = 1e-7) -> torch.Tensor:
    """X_{s->t}(x): the solution at t of dy/dtau = velocity(y, tau) started from x at time s.

    Each sample has its own interval: with tau in [0, 1] and time(tau) = s + tau (t - s), one call of
    :func:`fmlearn.odeint` integrates dy/dtau = (t - s) velocity(y, time(tau)) from 0 to 1.

    Args:
        velocity: ``velocity(x, t)`` with t a (batch,) tensor (a model, or a
            :class:`~fmlearn.MixtureOracle` for the exact map), run without gradients.
        x: (batch, dim) points at time s; use float64 for tight tolerances.
        s, t: floats or (batch,) tensors in [0, 1], s <= t.
        method: "dopri5" (adaptive, ``rtol`` and ``atol``) or a fixed-step method with ``steps``.

    Returns:
        (batch, dim) tensor, x's dtype and device.
    """
    s, t = check_times(s, t, x)
    h = (t - s)[:, None]
    with model_context(velocity, x) as (net, y0):
        field = (lambda y, tau: h.to(y) * net(y, (s + tau * (t - s)).to(y)))
        if method == "dopri5":
            if steps is not None:
                raise ValueError("steps sets a fixed grid, but method='dopri5' chooses its own steps: set rtol, atol")
            return odeint(field, y0, method=method, rtol=rtol, atol=atol).x
        return odeint(field, y0, method=method, steps=100 if steps is None else steps).x


def average_velocity(velocity: Callable[..., torch.Tensor], x: torch.Tensor, s: float | torch.Tensor,
                     t: float | torch.Tensor, **solver) -> torch.Tensor:
    """u(x, s, t) = (X_{s->t}(x) - x) / (t - s), and velocity(x, s) where t = s; shape (batch, dim).
    ``solver``: the keyword arguments of :func:`flow_map` (method, steps, rtol, atol)."""
    s, t = check_times(s, t, x)
    end = flow_map(velocity, x, s, t, **solver)
    h = (t - s)[:, None]
    same = h == 0
    with model_context(velocity, x) as (net, y):
        at_s = net(y, s) if bool(same.any()) else torch.zeros_like(x)
    return torch.where(same, at_s, (end - x) / torch.where(same, torch.ones_like(h), h))


class FlowMapMLP(nn.Module):
    """A network for the average velocity u_theta(x, s, t) of flat data: an MLP on [x, embed(s), embed(t - s)],
    so that X_{s->t}(x) ~ x + (t - s) u_theta(x, s, t). Arguments as :class:`fmlearn.MLP`.

    ``forward(x, s, t)``: x (batch, dim), s and t floats or (batch,) tensors (values not checked, so the
    training loop never waits on the device; :func:`flow_map_step` checks its grid)."""

    def __init__(self, dim: int, hidden: int = 96, depth: int = 4, activation: str = "gelu", n_freqs: int = 2,
                 max_freq: float = 1.0):
        super().__init__()
        check_positive_int("dim", dim)
        self.dim = dim
        self.time_embedding = TimeEmbedding(n_freqs, max_freq)
        self.net = mlp_layers(dim + 2 * self.time_embedding.dim, dim, hidden, depth, activation)

    def forward(self, x: torch.Tensor, s: float | torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != self.dim:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be a tensor of shape (batch, {self.dim}), got {shape}")
        dtype = self.net[0].weight.dtype
        s = check_time(s, x, name="s", check_values=False).to(dtype)
        t = check_time(t, x, name="t", check_values=False).to(dtype)
        feats = torch.cat([x.to(dtype), self.time_embedding(s), self.time_embedding(t - s)], dim=1)
        return self.net(feats).to(x.dtype)


def flow_map_step(model: Callable[..., torch.Tensor]) -> Step:
    """The step of a flow-map model: x <- x + (t_next - t) model(x, t, t_next) (one evaluation), run by
    :func:`fmlearn.simulate` over a grid, e.g. ``fm.simulate(flow_map_step(model), x0, steps=2)``."""
    if not callable(model):
        raise TypeError(f"model must be callable, model(x, s, t) -> u, got {type(model).__name__}")

    def advance(x: torch.Tensor, s: float, t: float) -> torch.Tensor:
        if not 0.0 <= s <= t <= 1.0:
            raise ValueError(f"a flow-map step needs 0 <= s <= t <= 1 (forward in time), got s = {s}, t = {t}")
        u = model(x, s, t)
        if not isinstance(u, torch.Tensor) or u.shape != x.shape:
            got = tuple(u.shape) if isinstance(u, torch.Tensor) else type(u).__name__
            raise ValueError(f"model(x, s, t) must return x's shape {tuple(x.shape)}, got {got}")
        return x + (t - s) * u

    return Step(advance, 1, (model,) if isinstance(model, nn.Module) else ())


def sample_flow_map(model: Callable[..., torch.Tensor], x0: torch.Tensor, steps: int = 1) -> Solution:
    """x0 pushed from t = 0 to t = 1 by ``steps`` equal flow-map steps (``steps`` network evaluations)."""
    check_positive_int("steps", steps)
    return simulate(flow_map_step(model), x0, steps=steps)


def map_agreement(mixture: GaussianMixture, x: torch.Tensor, exact: torch.Tensor) -> tuple[float, float]:
    """How close end points x are to the exact map's end points ``exact`` of the same starting points:
    (mean |x_i - exact_i|, the share of x_i whose most probable mode is exact_i's)."""
    if not isinstance(x, torch.Tensor) or not isinstance(exact, torch.Tensor) or x.shape != exact.shape:
        shapes = [tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__ for a in (x, exact)]
        raise ValueError(f"x and exact must be tensors of one shape (batch, dim), got {shapes[0]} and {shapes[1]}")
    x, exact = x.detach().float().cpu(), exact.detach().float().cpu()
    same = mixture.component_log_probs(x).argmax(1) == mixture.component_log_probs(exact).argmax(1)
    return float((x - exact).norm(dim=1).mean()), float(same.double().mean())


__all__ = ["FlowMapMLP", "average_velocity", "check_times", "flow_map", "flow_map_step", "map_agreement",
           "sample_flow_map"]
