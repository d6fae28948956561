"""Checks for the exercises of chapter 5 (couplings): an exact OT pairing, counting crossing paths, Sinkhorn."""

from __future__ import annotations

import itertools

import numpy as np
import torch

from ._base import call, fail, max_err, ok, tensor_of
from .forbidden import guarded_for

_EXERCISE = "ex05_couplings_straight_paths"


def _cost(x0, x1, perm):
    return float(((x0[perm] - x1) ** 2).sum())


def check_ot_pairing(pairing) -> bool:
    """The learner's ``pairing(x0, x1) -> perm`` (a (n,) index tensor: x0[perm[j]] goes with x1[j]) must be a
    permutation with the least total squared distance: against all 7! permutations for n = 7, and against
    scipy's Hungarian solver for n = 64."""
    pairing = guarded_for(pairing, _EXERCISE, "ot_pairing_check")
    from scipy.optimize import linear_sum_assignment

    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(7, 2, generator=g, dtype=torch.float64), torch.randn(7, 2, generator=g, dtype=torch.float64) + 2
    best = min(_cost(x0, x1, list(p)) for p in itertools.permutations(range(7)))
    for n, want in ((7, best), (64, None)):
        if n == 64:
            x0 = torch.randn(64, 2, generator=g, dtype=torch.float64)
            x1 = torch.randn(64, 2, generator=g, dtype=torch.float64) * 2 + 1
            rows, cols = linear_sum_assignment(torch.cdist(x1, x0).pow(2).numpy())
            want = float(torch.cdist(x1, x0).pow(2).numpy()[rows, cols].sum())
        perm = tensor_of(call(pairing, x0, x1, what="pairing"), (n,), "pairing", "return an index tensor")
        if perm.dtype not in (torch.int64, torch.int32) or sorted(perm.tolist()) != list(range(n)):
            fail("pairing must return a permutation of 0..n-1", f"each index once ({n} indices)",
                  perm.tolist()[:10], "return the column indices that scipy's linear_sum_assignment gives for a "
                  "cost matrix with x1 along the rows and x0 along the columns")
        got = _cost(x0, x1, perm)
        if not got <= want * (1 + 1e-9) + 1e-12:
            ident = _cost(x0, x1, torch.arange(n))
            unsquared = _cost(x0, x1, linear_sum_assignment(torch.cdist(x1, x0).numpy())[1])
            if abs(got - ident) < 1e-12:
                hint = "that is the pairing you were given: nothing was re-paired"
            elif abs(got - unsquared) < 1e-12:
                hint = ("your pairing minimizes the total distance sum_j |x1_j - x0_perm(j)|, not the squared "
                        "distance: square the cost matrix (torch.cdist(x1, x0).pow(2)) before solving")
            else:
                hint = ("solve the assignment problem on the matrix of squared distances |x1_j - x0_i|^2; check that "
                        "rows and columns are not swapped (perm[j] is the x0 for x1[j])")
            fail(f"the pairing is not optimal for n = {n}", f"total squared distance {want:.4f}", f"{got:.4f}", hint)
    return ok("your pairing is a permutation with the least total squared distance (n = 7 by brute force, n = 64)")


def _crossings_reference(x0: torch.Tensor, x1: torch.Tensor) -> int:
    """Pairs i < j whose segments x0_i -> x1_i and x0_j -> x1_j meet: solve x0_i + s d_i = x0_j + r d_j
    for (s, r) by Cramer's rule and test s, r in [0, 1] (parallel segments never count)."""
    a, b = x0.double().numpy(), x1.double().numpy()
    d = b - a
    count = 0
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            den = d[i, 0] * (-d[j, 1]) - d[i, 1] * (-d[j, 0])
            if abs(den) < 1e-12:
                continue
            rhs = a[j] - a[i]
            s = (rhs[0] * (-d[j, 1]) - rhs[1] * (-d[j, 0])) / den
            r = (d[i, 0] * rhs[1] - d[i, 1] * rhs[0]) / den
            count += bool(0 <= s <= 1 and 0 <= r <= 1)
    return count


def _count(out) -> int:
    """The learner's count as an int (a Python int, or a 0-d integer tensor or array)."""
    try:
        return int(out)
    except (TypeError, ValueError, RuntimeError):
        fail("count_crossings must return a number", "an int", type(out).__name__,
              "return int(...) of the number of crossing pairs")


def check_count_crossings(count_crossings) -> bool:
    """The learner's ``count_crossings(x0, x1) -> int``: how many pairs of straight paths x0_i -> x1_i cross in
    the plane, against a reference that solves for the intersection point pair by pair."""
    count_crossings = guarded_for(count_crossings, _EXERCISE, "count_crossings_check")
    g = torch.Generator().manual_seed(1)
    square = torch.tensor([[0.0, 0.0], [1.0, 0.0]]), torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    got = _count(call(count_crossings, *square, what="count_crossings"))
    if got != 1:
        fail("two segments forming an X must count as one crossing", 1, got,
              "you counted each pair twice, (i, j) and (j, i)" if got == 2 else
              "(0,0)->(1,1) and (1,0)->(0,1) cross at (0.5, 0.5)")
    for n in (10, 40):
        x0, x1 = torch.randn(n, 2, generator=g), torch.randn(n, 2, generator=g) + 1
        want, got = _crossings_reference(x0, x1), _count(call(count_crossings, x0, x1, what="count_crossings"))
        if got != want:
            hint = ("you counted each pair twice (i, j) and (j, i)" if got == 2 * want else
                    "segments p->q and r->s cross when r and s lie on opposite sides of the line through p, q "
                    "and p, q on opposite sides of the line through r, s (signs of 2-D cross products)")
            fail(f"wrong number of crossings for {n} random paths", want, got, hint)
    return ok("your crossing count matches the reference")


def _sinkhorn_reference(cost: np.ndarray, reg: float, iters: int, rows_first: bool = True) -> np.ndarray:
    """Scaling-form Sinkhorn in float64 (K = exp(-C / reg), u = e^(f / reg), v = e^(g / reg)): each iteration sets
    u = a / K v (row sums a = 1/n) then v = b / K^T u (column sums b = 1/m), or the other way round when
    ``rows_first`` is False. Before convergence the two orders give different plans."""
    n, m = cost.shape
    k = np.exp(-(cost - cost.min()) / reg)
    u, v = np.ones(n), np.ones(m)
    for _ in range(iters):
        if rows_first:
            u = (1 / n) / (k @ v)
            v = (1 / m) / (k.T @ u)
        else:
            v = (1 / m) / (k.T @ u)
            u = (1 / n) / (k @ v)
    return u[:, None] * k * v[None]


def check_sinkhorn(sinkhorn) -> bool:
    """The learner's ``sinkhorn(cost, reg, iters) -> plan`` (n, m) with uniform marginals 1/n, 1/m, against a
    scaling-form float64 reference at reg = 0.5: converged (200 iterations), then after 3 iterations, where only
    f updated before g in each iteration matches (g first gives a plan off by ~0.04, with exact row sums instead of
    exact column sums); then its marginals and its cost near the exact optimum at small reg (log-domain updates
    needed: exp(-C / reg) underflows there)."""
    sinkhorn = guarded_for(sinkhorn, _EXERCISE, "sinkhorn_check")
    from scipy.optimize import linear_sum_assignment

    g = torch.Generator().manual_seed(2)
    x0, x1 = torch.randn(12, 2, generator=g, dtype=torch.float64), torch.randn(12, 2, generator=g, dtype=torch.float64)
    cost = torch.cdist(x0, x1).pow(2)
    want = torch.from_numpy(_sinkhorn_reference(cost.numpy(), 0.5, 200))
    plan = tensor_of(call(sinkhorn, cost, 0.5, 200, what="sinkhorn"), cost.shape, "sinkhorn")
    if not max_err(plan, want) <= 1e-6:
        rows = plan.sum(1)
        hint = ("the rows do not sum to 1/n: alternate both normalizations, rows and columns, every iteration"
                if not max_err(rows, torch.full_like(rows, 1 / 12)) <= 1e-4 else
                "the Gibbs kernel is exp(-C / reg) (minus sign); update f = reg log(1/n) - reg logsumexp((g - C) / reg)")
        fail("the plan differs from Sinkhorn's at reg = 0.5", want[0, :4].tolist(), plan[0, :4].tolist(), hint)
    few = tensor_of(call(sinkhorn, cost, 0.5, 3, what="sinkhorn"), cost.shape, "sinkhorn")
    want = torch.from_numpy(_sinkhorn_reference(cost.numpy(), 0.5, 3))
    if not max_err(few, want) <= 1e-6:
        cols = f"column sums differ from 1/12 by up to {float((few.double().sum(0) - 1 / 12).abs().max()):.2g}"
        g_first = torch.from_numpy(_sinkhorn_reference(cost.numpy(), 0.5, 3, rows_first=False))
        if max_err(few, g_first) <= 1e-6:
            fail("after 3 iterations at reg = 0.5 the plan is Sinkhorn's with g updated before f",
                  "column sums exactly 1/12", cols, "update f (the row sums) first, then g (the column sums), in "
                  "every iteration; the returned plan's column sums are then exact")
        fail("after 3 iterations at reg = 0.5 the plan differs from Sinkhorn's (it matches after 200)",
              f"first row {[round(v, 6) for v in want[0, :4].tolist()]}, column sums exactly 1/12",
              f"first row {[round(v, 6) for v in few[0, :4].tolist()]}, {cols}",
              "start from f = g = 0 and run exactly `iters` iterations, each updating f (from g) and then g "
              "(from the new f); return the plan after the last g update")
    cost = torch.cdist(x0, x1 + 4.0).pow(2)  # far apart: every exp(-C / reg) underflows at reg = 0.005
    small = tensor_of(call(sinkhorn, cost, 0.005, 2000, what="sinkhorn"), cost.shape, "sinkhorn at reg = 0.005",
                    nan_hint="work in the log domain (torch.logsumexp): exp(-C / reg) underflows to 0 for small reg")
    rows, cols = linear_sum_assignment(cost.numpy())
    exact = float(cost.numpy()[rows, cols].sum()) / 12
    got = float((small.double() * cost).sum())
    if not (abs(got - exact) <= 0.02 * exact and max_err(small.sum(0), torch.full((12,), 1 / 12)) <= 1e-3):
        fail("at reg = 0.005 the plan should be nearly the exact OT plan", f"cost {exact:.4f}", f"cost {got:.4f}",
              "iterate longer, in the log domain")
    return ok("your Sinkhorn plan matches, and approaches exact OT as reg shrinks")
