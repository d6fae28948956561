"""Couplings of source and data points, and how straight the resulting flow is.

A coupling pi(x0, x1) decides which source point x0 travels to which data point x1 in CFM training.
The independent coupling pi = p0 x p1 makes conditional lines cross; the minibatch optimal-transport (OT)
coupling re-pairs each batch so that the total squared distance is smallest:

    exact:     min over permutations sigma of  (1/n) sum_j |x0_sigma(j) - x1_j|^2      (linear assignment)

    entropic:  min over plans P >= 0 with P 1 = a, P^T 1 = b of  <P, C> - reg H(P),
               C_ij = |x0_i - x1_j|^2,  H(P) = -sum_ij P_ij (log P_ij - 1),  a = 1/n, b = 1/m,

the second solved by Sinkhorn's iterations in the log domain. Both are callables ``f(x0, x1) -> x0``
for ``fmlearn.CFMObjective(..., coupling=f)``. Data of any shape (batch, *data_shape) are flattened for the cost.
The cost is the squared distance of a space (:mod:`fmlearn.spaces`): Euclidean by default, e.g. the
great-circle distance of :class:`fmlearn.manifolds.Sphere` for points on the sphere.
:func:`optimal_assignment` is the package's one exact solver of the assignment problem (the exact
coupling here, the exact W2 of :mod:`fmlearn.metrics`).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from ._checks import check_positive_int, check_real
from ._random import draw_device
from .distributions import PairedData, Sampleable
from .solvers import sample
from .spaces import Space, check_metric_space
from .stepping import Solution


def _flat_pair(x0, x1, equal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    for name, v in (("x0", x0), ("x1", x1)):
        if not isinstance(v, torch.Tensor) or not v.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {type(v).__name__}")
        if v.ndim < 2 or v.shape[0] < 1:
            raise ValueError(f"{name} must have shape (batch, *data_shape) with batch >= 1, got {tuple(v.shape)}")
    if x0.shape[1:] != x1.shape[1:]:
        raise ValueError(f"x0 and x1 must have the same data shape, got {tuple(x0.shape[1:])} and "
                         f"{tuple(x1.shape[1:])}")
    if equal and x0.shape[0] != x1.shape[0]:
        raise ValueError(f"x0 and x1 must have the same batch size for an exact (permutation) coupling, "
                         f"got {x0.shape[0]} and {x1.shape[0]}")
    dtype = torch.promote_types(x0.dtype, x1.dtype)
    return x0.detach().flatten(1).to(dtype), x1.detach().flatten(1).to(x0.device, dtype)


def squared_distances(x0: torch.Tensor, x1: torch.Tensor, space: Space | None = None) -> torch.Tensor:
    """The cost matrix C_ij = d(x0_i, x1_j)^2 (flattened data), shape (n, m).

    Euclidean (``space=None``, the default): |x0_i|^2 + |x1_j|^2 - 2 <x0_i, x1_j>, one matrix product (fast on
    a GPU), clamped at 0 against rounding. Another space: its pairwise distances ``space.cdist`` squared.
    """
    a, b = _flat_pair(x0, x1, equal=False)
    if space is not None:
        space = check_metric_space(space)
        if callable(getattr(space, "check_points", None)):  # on a manifold: points off it have no distances
            a, b = space.check_points("x0", a), space.check_points("x1", b)
        return space.cdist(a, b).pow(2)
    return ((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T).clamp_min(0)


def optimal_assignment(cost: torch.Tensor) -> torch.Tensor:
    """The permutation that minimises sum_i cost[i, sigma(i)] for a square cost matrix (n, n), as a long CPU
    tensor ``sigma`` of shape (n,): row i goes to column sigma[i]. Exact (scipy's ``linear_sum_assignment``,
    the Hungarian method's successor, O(n^3), on the CPU in float64: one host sync)."""
    from scipy.optimize import linear_sum_assignment

    if not isinstance(cost, torch.Tensor) or cost.ndim != 2 or cost.shape[0] != cost.shape[1]:
        got = tuple(cost.shape) if isinstance(cost, torch.Tensor) else type(cost).__name__
        raise ValueError(f"cost must be a square matrix (n, n), got {got}")
    cost = cost.detach().double().cpu()
    if not bool(torch.isfinite(cost).all()):
        raise ValueError("cost must be finite (the points' distances hold NaN or inf)")
    _, cols = linear_sum_assignment(cost.numpy())
    return torch.as_tensor(cols, dtype=torch.long)


def ot_plan_exact(x0: torch.Tensor, x1: torch.Tensor, space: Space | None = None) -> torch.Tensor:
    """The optimal permutation between two equal batches x0, x1 of shape (n, *data_shape).

    Returns ``perm``, a long tensor of shape (n,) on x0's device, such that the pairs (x0[perm[j]], x1[j])
    minimise (1/n) sum_j d(x0_perm(j), x1_j)^2 over all permutations (:func:`optimal_assignment` of
    :func:`squared_distances` in ``space``, Euclidean by default). As a plan, P[perm[j], j] = 1/n.
    """
    a, b = _flat_pair(x0, x1, equal=True)
    cost = squared_distances(b.double().cpu(), a.double().cpu(), space)  # rows: data points j, columns: sources i
    return optimal_assignment(cost).to(x0.device)


def _logsumexp(z: torch.Tensor, dim: int) -> torch.Tensor:
    """log sum exp(z) along ``dim``, with the shifted exponents clamped just above log(smallest normal number):
    such terms add nothing at this precision (the largest term is 1), and exp of anything lower is ~20x slower
    on CPUs (subnormal results)."""
    top = z.amax(dim, keepdim=True)
    floor = math.log(torch.finfo(z.dtype).tiny) + 1
    return (z - top).clamp_min_(floor).exp_().sum(dim).log_() + top.squeeze(dim)


def sinkhorn_plan(x0: torch.Tensor, x1: torch.Tensor, reg: float, *, iters: int = 1000, tol: float | None = 1e-5,
                  check_every: int = 25, log: bool = False, space: Space | None = None) -> torch.Tensor:
    """The entropic OT plan between uniform weights on x0 (n, *shape) and x1 (m, *shape), shape (n, m).

    Minimises <P, C> - reg H(P) over plans with row sums 1/n and column sums 1/m, C_ij = d(x0_i, x1_j)^2
    (:func:`squared_distances` in ``space``, Euclidean by default),
    H(P) = -sum P_ij (log P_ij - 1). ``reg`` (> 0) is in the units of C: as reg -> 0 the plan tends to an
    exact OT plan, as reg -> inf to the independent plan 1/(nm). Sinkhorn's iterations on the dual
    potentials f (n,), g (m,) of P_ij = exp((f_i + g_j - C_ij) / reg), in the log domain so that a small
    reg does not underflow; each update makes one set of marginals exact:

        f_i = -reg (logsumexp_j((g_j - C_ij) / reg) + log n),   g_j = -reg (logsumexp_i((f_i - C_ij) / reg) + log m).

    After each g update the column sums are exact; every ``check_every`` iterations the row sums'
    L1 error sum_i |sum_j P_ij - 1/n| is compared with ``tol`` (one host sync per check; tol=None runs
    exactly ``iters`` iterations with none). Runs on x0's device, in at least float32. Non-finite points
    give a NaN plan (checking them would cost a host sync). Returns P, or log P with ``log=True``
    (finite where P underflows).
    """
    reg = check_real("reg", reg, positive=True)
    check_positive_int("iters", iters)
    check_positive_int("check_every", check_every)
    if tol is not None:
        tol = check_real("tol", tol, positive=True)
    a, b = _flat_pair(x0, x1, equal=False)
    dtype = torch.promote_types(a.dtype, torch.float32)
    cost = squared_distances(a.to(dtype), b.to(dtype), space)
    n, m = cost.shape
    k = -cost / reg  # log kernel
    f = torch.zeros(n, dtype=dtype, device=cost.device)
    g = torch.zeros(m, dtype=dtype, device=cost.device)
    for it in range(1, iters + 1):
        f = -reg * (_logsumexp(k + g[None, :] / reg, 1) + math.log(n))
        g = -reg * (_logsumexp(k + f[:, None] / reg, 0) + math.log(m))
        if tol is not None and it % check_every == 0:
            rows = _logsumexp(k + (f[:, None] + g[None, :]) / reg, 1).exp()
            if float((rows - 1 / n).abs().sum()) < tol:
                break
    log_p = k + (f[:, None] + g[None, :]) / reg
    return log_p if log else log_p.exp()


class OTCoupling:
    """The exact minibatch OT coupling: ``OTCoupling()(x0, x1)`` returns x0 re-ordered by
    :func:`ot_plan_exact`, so (out[j], x1[j]) are optimally paired; the multiset of x0 is kept.
    ``space``: whose squared distance is the cost (default Euclidean)."""

    def __init__(self, space=None):
        self.space = None if space is None else check_metric_space(space)

    def __call__(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        return x0[ot_plan_exact(x0, x1, self.space)]

    def __repr__(self) -> str:
        return "OTCoupling()" if self.space is None else f"OTCoupling(space={self.space!r})"


class SinkhornCoupling:
    """The entropic minibatch OT coupling: for each data point x1_j, draw its source point from column j of
    :func:`sinkhorn_plan`, i.e. out[j] = x0_i with probability P_ij / sum_i P_ij = m P_ij
    (with replacement: an x0 may be drawn for several j). No host sync when ``tol=None`` (the default here).

    Args:
        reg: the entropic regularisation, in squared-distance units (e.g. a few percent of the mean cost).
        iters, tol, check_every: passed to :func:`sinkhorn_plan`.
        generator: a torch.Generator for the draws, so a run is reproducible; one on the data's device
            saves a copy of an (n, m) array of uniforms per call.
        space: whose squared distance is the cost (default Euclidean).
    """

    def __init__(self, reg: float, iters: int = 100, tol: float | None = None, check_every: int = 25,
                 generator: torch.Generator | None = None, space=None):
        self.reg = check_real("reg", reg, positive=True)
        self.iters = check_positive_int("iters", iters)
        self.tol = None if tol is None else check_real("tol", tol, positive=True)
        self.check_every = check_positive_int("check_every", check_every)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        self.generator = generator
        self.space = None if space is None else check_metric_space(space)

    def __call__(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        log_p = sinkhorn_plan(x0, x1, self.reg, iters=self.iters, tol=self.tol, check_every=self.check_every,
                              log=True, space=self.space)
        dev = draw_device(self.generator, log_p.device)
        u = torch.rand(log_p.shape, generator=self.generator, device=dev, dtype=log_p.dtype).to(log_p.device)
        gumbel = -torch.log(-torch.log(u.clamp_min(torch.finfo(u.dtype).tiny)))
        return x0[(log_p + gumbel).argmax(dim=0)]  # Gumbel-max: a draw from each column

    def __repr__(self) -> str:
        return f"SinkhornCoupling(reg={self.reg}, iters={self.iters}, tol={self.tol})"


def _trajectory(trajectory, times) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(trajectory, Solution):
        if trajectory.trajectory is None:
            raise ValueError("trajectory is a Solution without its trajectory: solve with return_trajectory=True")
        times = trajectory.times if times is None else times
        trajectory = trajectory.trajectory
    if not isinstance(trajectory, torch.Tensor) or trajectory.ndim < 3 or trajectory.shape[0] < 2:
        shape = tuple(trajectory.shape) if isinstance(trajectory, torch.Tensor) else type(trajectory).__name__
        raise ValueError(f"trajectory must be a tensor of shape (T + 1, batch, *data_shape) with T >= 1, got {shape}")
    steps = trajectory.shape[0] - 1
    times = torch.linspace(0, 1, steps + 1, dtype=torch.float64) if times is None else \
        torch.as_tensor(times, dtype=torch.float64).cpu().reshape(-1)
    if times.shape[0] != steps + 1:
        raise ValueError(f"times must hold one time per trajectory point ({steps + 1}), got {times.shape[0]}")
    if not bool((times[1:] > times[:-1]).all()):
        raise ValueError("times must be strictly increasing")
    return trajectory.detach().double().flatten(2), times.to(trajectory.device)


def path_energy(trajectory: Solution | torch.Tensor, times: Sequence[float] | torch.Tensor | None = None) -> float:
    """Kinetic energy of the polyline through a trajectory, averaged over particles:

        E = (1/n) sum_i sum_k h_k |v_ik|^2,   v_ik = (x_i(t_k+1) - x_i(t_k)) / h_k,   h_k = t_k+1 - t_k,

    the Riemann sum of E = E_x0 int |u_t(x_t)|^2 dt. With Euler steps v_ik is exactly the model's velocity at
    (x_i(t_k), t_k). ``trajectory``: an :class:`~fmlearn.stepping.Solution` (with its trajectory and times) or a tensor
    (T + 1, n, *data_shape) with ``times`` (default equal steps on [0, 1]). On [0, 1],
    E = straightness + mean_i |x_i(1) - x_i(0)|^2 >= the squared displacement, with equality iff straight.
    """
    x, times = _trajectory(trajectory, times)
    h = (times[1:] - times[:-1])[:, None]
    v = (x[1:] - x[:-1]) / h[..., None]
    return float((h * v.pow(2).sum(-1)).sum(0).mean())


def straightness(trajectory: Solution | torch.Tensor, times: Sequence[float] | torch.Tensor | None = None) -> float:
    """How far paths are from straight lines run at constant speed; 0 exactly for those:

        S = (1/n) sum_i sum_k h_k |v_ik - d_i|^2,   d_i = (x_i(t_T) - x_i(t_0)) / (t_T - t_0),

    with v_ik and h_k as in :func:`path_energy`: the Riemann sum of S = E int |u_t(x_t) - (x_1 - x_0)|^2 dt
    (Liu et al. 2022, rectified flow). For a model: ``straightness(fm.sample(model, x0, steps=...,
    return_trajectory=True))``.
    """
    x, times = _trajectory(trajectory, times)
    h = (times[1:] - times[:-1])[:, None]
    v = (x[1:] - x[:-1]) / h[..., None]
    d = (x[-1] - x[0]) / float(times[-1] - times[0])
    return float((h * (v - d[None]).pow(2).sum(-1)).sum(0).mean())


def reflow_pairs(model: Callable[..., torch.Tensor], n: int, source: Sampleable | None = None, *, steps: int = 100,
                 method: str = "rk4",
                 data_shape: tuple[int, ...] | None = None, generator: torch.Generator | None = None,
                 chunk: int = 8192) -> PairedData:
    """(x0, x1) pairs of a trained flow, to train a rectified ("reflowed") flow on: x0 ~ source, and
    x1 = the model's ODE solution from x0 at t = 0 to t = 1 (``steps`` steps of ``method``).

    ``source`` defaults to N(0, I) of ``data_shape`` (default ``(model.dim,)``). The solve runs in chunks
    of ``chunk`` points on the model's device; returns :class:`~fmlearn.distributions.PairedData` there.
    """
    check_positive_int("n", n)
    check_positive_int("chunk", chunk)
    if source is None:
        if data_shape is None:
            if not isinstance(getattr(model, "dim", None), int):
                raise ValueError("data_shape is needed when source is None and the model has no int dim attribute")
            data_shape = (model.dim,)
        x0 = torch.randn((n, *data_shape), generator=generator)
    else:
        if not hasattr(source, "sample"):
            raise TypeError(f"source must have a sample(n, generator, device) method, got {type(source).__name__}")
        x0 = source.sample(n, generator=generator)
    x1 = torch.cat([sample(model, x0[i:i + chunk], steps=steps, method=method).x for i in range(0, n, chunk)])
    return PairedData(x0.to(x1.device), x1)
