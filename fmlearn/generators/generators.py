"""Generators of Markov processes, as objects applied to test functions.

The generator of a process X_t is the operator on test functions

    L_t f(x) = lim_{h -> 0} (E[f(X_{t+h}) | X_t = x] - f(x)) / h,

and the marginals p_t of the process obey the Kolmogorov forward equation, in weak form
d/dt E_{p_t}[f(X_t)] = E_{p_t}[L_t f(X_t)] for every test function f. The course's processes:

    flow       dx = u_t(x) dt                   L f = u . grad f                              (chapters 1-7, 9)
    diffusion  dx = b_t(x) dt + g_t dW          L f = b . grad f + g^2 / 2 lap f               (chapter 7)
    jumps      leave at rate lambda, land ~ J   L f = sum_d lambda_d (E_{y ~ J_d} f(x_d <- y) - f(x))   (chapter 10)
    CTMC       rates Q_t(x, y) on states        L f(x) = sum_y Q_t(x, y) f(y)                  (chapter 8)

Each object is called as ``L(f, x, t)`` with a test function ``f(x) -> (batch,)`` (for the CTMC, f is the
vector of its values on the S states) and returns L_t f at each x, shape (batch,). Flow and diffusion
generators are exact (autograd derivatives of f); the jump generator averages f over ``samples`` draws of
the landing point per coordinate (an unbiased estimate).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from .._checks import check_positive_int, check_velocity_output


def _check_f(f: Any) -> None:
    if not callable(f):
        raise TypeError(f"f must be a test function f(x) -> (batch,), got {type(f).__name__}")


def _values(f, x, name="f(x)"):
    out = f(x)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (x.shape[0],):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{name} must return one value per sample, shape ({x.shape[0]},), got {got}")
    return out


def _grad(f, x, create_graph=False):
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 1 or x.shape[0] == 0:
        got = f"shape {tuple(x.shape)}, dtype {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"x must be a floating tensor of points, shape (batch, *data) with batch >= 1, got {got}")
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        fx = _values(f, xr)
        (g,) = torch.autograd.grad(fx.sum(), xr, create_graph=create_graph)
    return xr, g


class FlowGenerator:
    """L_t f(x) = u_t(x) . grad f(x) for a velocity ``velocity(x, t)``."""

    def __init__(self, velocity: Callable[..., torch.Tensor]):
        if not callable(velocity):
            raise TypeError(f"velocity must be callable as velocity(x, t), got {type(velocity).__name__}")
        self.velocity = velocity

    def __call__(self, f: Callable, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        _check_f(f)
        _, g = _grad(f, x)
        return (check_velocity_output(self.velocity(x, t), x) * g).flatten(1).sum(1)


class DiffusionGenerator:
    """L_t f(x) = b_t(x) . grad f(x) + g_t^2 / 2 lap f(x) for a drift ``drift(x, t)`` and a noise scale
    ``g`` (a number, or a function of t) of dx = b dt + g dW."""

    def __init__(self, drift: Callable[..., torch.Tensor], g: float | Callable[[Any], Any]):
        if not callable(drift):
            raise TypeError(f"drift must be callable as drift(x, t), got {type(drift).__name__}")
        if not callable(g) and (isinstance(g, bool) or not isinstance(g, (int, float)) or g < 0):
            raise ValueError(f"g must be a number >= 0 or a function of t, got {g!r}")
        self.drift, self.g = drift, g

    def __call__(self, f: Callable, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        _check_f(f)
        xr, g = _grad(f, x, create_graph=True)
        lap = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        flat = g.flatten(1)
        for i in range(flat.shape[1] if flat.requires_grad else 0):  # a linear f has no second derivatives
            (h,) = torch.autograd.grad(flat[:, i].sum(), xr, retain_graph=True, allow_unused=True)
            if h is not None:
                lap = lap + h.flatten(1)[:, i]
        gt = self.g(t) if callable(self.g) else self.g
        gt = torch.as_tensor(gt, dtype=x.dtype, device=x.device).reshape(-1)
        return ((self.drift(x, t) * g.detach()).flatten(1).sum(1) + 0.5 * gt ** 2 * lap).detach()


class JumpGenerator:
    """L_t f(x) = sum_d lambda_d(x) (E_{y ~ J_d(. | x)} f(x with x_d = y) - f(x)), for ``process(x, t) ->
    JumpRates``, the expectation by ``samples`` landing draws per coordinate (seeded by ``generator``)."""

    def __init__(self, process: Callable[..., Any], samples: int = 256, generator: torch.Generator | None = None):
        if not callable(process):
            raise TypeError(f"process must be callable as process(x, t) -> JumpRates, got {type(process).__name__}")
        self.process, self.samples, self.generator = process, check_positive_int("samples", samples), generator

    def __call__(self, f: Callable, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        _check_f(f)
        if x.ndim != 2:
            raise ValueError(f"x must have shape (batch, dim), got {tuple(x.shape)}")
        fx = _values(f, x)
        rates = self.process(x, t)
        out = torch.zeros_like(fx)
        for d in range(x.shape[1]):
            mean = torch.zeros_like(fx)
            for _ in range(self.samples):
                y = x.clone()
                y[:, d] = rates.sample(self.generator)[:, d]
                mean = mean + _values(f, y)
            out = out + rates.intensity[:, d] * (mean / self.samples - fx)
        return out


class CTMCGenerator:
    """L_t f(x) = sum_y Q_t(x, y) f(y) for rates ``rates(x, t)`` of shape (batch, S) (the rows of a generator
    matrix: off-diagonal >= 0, each row summing to 0) at integer states x (batch,) in 0..S - 1; f holds f's S
    values. Rows that are no generator's (a negative off-diagonal rate, a sum other than 0 beyond rounding,
    NaN) are refused: L f of such rows is no derivative of an expectation."""

    def __init__(self, rates: Callable[..., torch.Tensor]):
        if not callable(rates):
            raise TypeError(f"rates must be callable as rates(x, t) -> (batch, S), got {type(rates).__name__}")
        self.rates = rates

    def __call__(self, f: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        if not isinstance(f, torch.Tensor) or f.ndim != 1:
            got = f"shape {tuple(f.shape)}" if isinstance(f, torch.Tensor) else type(f).__name__
            raise TypeError(f"f must be a 1-D tensor of the test function's values on the S states, shape (S,), "
                            f"got {got}")
        s = f.shape[0]
        if not isinstance(x, torch.Tensor) or x.is_floating_point() or x.dtype == torch.bool or x.ndim != 1:
            got = f"shape {tuple(x.shape)}, dtype {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise TypeError(f"x must be integer states of shape (batch,), got {got}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= s):
            raise ValueError(f"x must hold states in 0..{s - 1} (f has {s} values), got values from "
                             f"{int(x.min())} to {int(x.max())}")
        q = self.rates(x, t)
        if not isinstance(q, torch.Tensor) or not q.is_floating_point() or q.shape != (x.shape[0], s):
            got = f"{tuple(q.shape)} {q.dtype}" if isinstance(q, torch.Tensor) else type(q).__name__
            raise ValueError(f"rates(x, t) must return floating rates of shape (batch, S) = ({x.shape[0]}, {s}), "
                             f"got {got}")
        check_generator_rows(q, x)
        return q @ f.to(q.dtype)


def check_generator_rows(q: torch.Tensor, x: torch.Tensor, tol: float = 1e-5) -> torch.Tensor:
    """The rows Q(x, .) (batch, S) of a generator matrix at states x (batch,): finite, off-diagonal >= 0, each
    summing to 0 within ``tol`` times the row's largest rate (one host sync)."""
    off = q.scatter(1, x[:, None], 0.0)
    scale = q.abs().amax(1).clamp_min(1.0)
    gap = (q.sum(1).abs() / scale)
    if not bool(torch.isfinite(q).all()) or bool((off < 0).any()) or bool((gap > tol).any()):
        raise ValueError(f"rates(x, t) must be rows of a generator matrix (finite, off-diagonal >= 0, each row "
                         f"summing to 0: the diagonal is minus the total rate of leaving), got off-diagonal rates "
                         f"from {float(off.min()):.4g}, row sums from {float(q.sum(1).min()):.4g} to "
                         f"{float(q.sum(1).max()):.4g}")
    return q



__all__ = ["CTMCGenerator", "DiffusionGenerator", "FlowGenerator", "JumpGenerator", "check_generator_rows"]
