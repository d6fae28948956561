"""Chapter 5: Sinkhorn's epsilon on a slider beside the plan it gives.

For a small minibatch x0 (n, 2), x1 (n, 2) and each epsilon = fraction x c_bar (c_bar the mean squared
distance of all n^2 pairs), one frame shows

- the entropic plan n P (:func:`fmlearn.couplings.sinkhorn_plan`) as an image on a log colour scale,
  a red line on its colour bar at 1/n, the value of every entry of the independent plan;
- the pairs (x0_i, x1_j) drawn as lines whose opacity is n P_ij (1: x1_j's only partner);
- in the title, the plan's transport cost <P, C> beside the exact OT cost (:func:`fmlearn.couplings.ot_plan_exact`)
  and the independent one (c_bar), the number of partners per data point, e^H with H the entropy of a column
  of n P (1 for a permutation, n for the independent plan), and the row sums' error left by Sinkhorn.

The explorer orders the points so that the exact OT plan is the identity: x0 is re-indexed by the
optimal permutation, then the pairs are sorted by the angle of their source point about the sources' mean,
starting after the widest empty sector (for a source of Gaussians on a circle, the pairs of one Gaussian sit next
to each other). A small epsilon then shows as a (block-)diagonal plan.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.collections import LineCollection
from matplotlib.colors import LogNorm, to_rgba
from matplotlib.figure import Figure

from .._checks import check_points, check_positive_int, check_real
from ..couplings import ot_plan_exact, sinkhorn_plan, squared_distances
from .explorer import Explorer

__all__ = ["sinkhorn_plan_figure", "sinkhorn_explorer", "EPSILON_FRACTIONS"]

EPSILON_FRACTIONS = tuple(float(f) for f in np.geomspace(1e-3, 10.0, 9))
"""The default slider: epsilon / c_bar on a log grid, half a decade apart, from 0.001 to 10."""

MAX_POINTS = 64  # n^2 lines per frame, and the plan's pixels must stay readable

SINKHORN_ITERS = 5000  # at the smallest default epsilons not enough for SINKHORN_TOL: the title shows the error left
SINKHORN_TOL = 1e-6


def _check_batch(x0: Any, x1: Any) -> tuple[torch.Tensor, torch.Tensor]:
    x0, x1 = check_points("x0", x0, dim=2).double(), check_points("x1", x1, dim=2).double()
    if len(x0) != len(x1):
        raise ValueError(f"x0 and x1 must hold the same number of points (the exact plan is a permutation), "
                         f"got {len(x0)} and {len(x1)}")
    if not 2 <= len(x0) <= MAX_POINTS:
        raise ValueError(f"x0 and x1 must hold between 2 and {MAX_POINTS} points each (a small minibatch: "
                         f"n^2 lines per frame), got {len(x0)}")
    return x0, x1


def sinkhorn_plan_figure(x0: torch.Tensor, x1: torch.Tensor, reg: float, *, iters: int = SINKHORN_ITERS,
                         tol: float = SINKHORN_TOL) -> Figure:
    """One frame: the entropic plan between x0 (n, 2) and x1 (n, 2) at ``reg`` = epsilon (squared-distance
    units), in the points' own order, as an image of n P (log scale) and as lines of opacity n P_ij.

    The plan is ``n * sinkhorn_plan(x0, x1, reg, iters=iters, tol=tol)`` in float64; the title gives
    epsilon / c_bar, the transport cost <P, C> = sum_ij P_ij |x0_i - x1_j|^2 against the exact OT cost and the
    independent one c_bar = mean_ij C_ij, e^H, H = -sum_i nP_ij log nP_ij averaged over the columns j, and the
    row sums' L1 error sum_i |sum_j P_ij - 1/n| (the columns are exact; a small epsilon needs many iterations)."""
    x0, x1 = _check_batch(x0, x1)
    reg = check_real("reg", reg, positive=True)
    n = len(x0)
    cost = squared_distances(x0, x1)
    mean_cost = cost.mean().item()
    exact = cost[ot_plan_exact(x0, x1), torch.arange(n)].mean().item()  # (x0[perm[j]], x1[j]): the exact pairs
    nplan = n * sinkhorn_plan(x0, x1, reg, iters=check_positive_int("iters", iters), tol=tol)
    transport = (nplan * cost).sum().item() / n
    partners = math.exp((-(nplan * nplan.clamp_min(1e-300).log()).sum(0)).mean().item())
    row_error = (nplan.sum(1) - 1).abs().sum().item() / n  # sum_i |sum_j P_ij - 1/n|, what tol bounds

    fig, (ax_plan, ax_pairs) = plt.subplots(1, 2, figsize=(7.0, 3.9), gridspec_kw={"width_ratios": [1.15, 1]})
    image = ax_plan.imshow(nplan.numpy(), cmap="Greys", norm=LogNorm(vmin=1e-3, vmax=1), interpolation="nearest")
    ax_plan.set(title="plan $nP_{ij}$ (log scale; white: < 0.001)", xlabel="data point j", ylabel="source point i")
    ax_plan.title.set_fontsize(9)
    bar = fig.colorbar(image, ax=ax_plan, fraction=0.046, pad=0.03)
    bar.ax.axhline(1 / n, color="C3", lw=2)
    bar.ax.tick_params(labelsize=7)

    weight = nplan.clamp(0, 1).numpy()
    i, j = np.nonzero(weight > 1e-3)
    keep = np.argsort(weight[i, j])  # the strongest lines on top
    i, j = i[keep], j[keep]
    a, b = x0.numpy(), x1.numpy()
    colors = np.tile(to_rgba("C0"), (len(i), 1))
    colors[:, 3] = weight[i, j]
    ax_pairs.add_collection(LineCollection(np.stack([a[i], b[j]], axis=1), colors=colors, linewidths=1.2))
    ax_pairs.scatter(*a.T, s=12, color="black", zorder=3, label="$x_0$")
    ax_pairs.scatter(*b.T, s=12, color="C3", zorder=3, label="$x_1$")
    both = np.concatenate([a, b])
    lo, hi = both.min(0), both.max(0)
    pad = 0.08 * (hi - lo).max()
    ax_pairs.set(xlim=(lo[0] - pad, hi[0] + pad), ylim=(lo[1] - pad, hi[1] + pad), aspect="equal",
                 xticks=[], yticks=[], title="pairs (i, j), opacity $nP_{ij}$")
    ax_pairs.title.set_fontsize(9)
    ax_pairs.legend(loc="upper right", fontsize=7)
    fig.suptitle(rf"$\varepsilon$ = {reg / mean_cost:.2g} $\bar c$: transport cost $\langle P, C\rangle$ = "
                 f"{transport:.2f} (exact OT {exact:.2f}, independent $\\bar c$ = {mean_cost:.2f})\n"
                 f"partners per data point $e^H$ = {partners:.1f} of {n}; row sums' L1 error {row_error:.0e}",
                 fontsize=10)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.12, top=0.78, wspace=0.25)
    return fig


def _diagonal_order(x0: torch.Tensor, x1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x0 re-indexed so that (x0[k], x1[k]) are the exact OT pairs, then the pairs sorted by the angle of their
    source point about the sources' mean, starting after the widest empty sector (so that no cluster of sources
    is split between the first and the last rows): the exact plan becomes the identity matrix."""
    x0 = x0[ot_plan_exact(x0, x1)]
    centred = x0 - x0.mean(0)
    angle = torch.atan2(centred[:, 1], centred[:, 0])
    order = torch.argsort(angle)
    gaps = torch.diff(angle[order], append=angle[order][:1] + 2 * math.pi)
    order = torch.roll(order, -int(torch.argmax(gaps) + 1))
    return x0[order], x1[order]


def sinkhorn_explorer(x0: torch.Tensor, x1: torch.Tensor, fractions: Sequence[float] = EPSILON_FRACTIONS, *,
                      start: float | None = None, iters: int = SINKHORN_ITERS, tol: float = SINKHORN_TOL,
                      look: str | None = None) -> Explorer:
    """Sinkhorn's epsilon on a slider beside the plan (an :class:`~fmlearn.widgets.Explorer`).

    Args:
        x0, x1: a small minibatch of source and data points, each (n, 2) with 2 <= n <= 64.
        fractions: the slider's epsilons as fractions of c_bar, the mean squared distance of all pairs
            (positive; default :data:`EPSILON_FRACTIONS`, 0.001 to 10 on a log grid), at most 40 values.
        start: the fraction shown first (the nearest on the grid; default the middle one).
        iters, tol: Sinkhorn's budget per plan (:func:`fmlearn.couplings.sinkhorn_plan`).
        look: the what-to-look-at line (default: what a shrinking and a growing epsilon do).

    The points are numbered so that the exact OT plan is the identity (see the module's docstring) and each
    frame is :func:`sinkhorn_plan_figure` at epsilon = fraction x c_bar.
    """
    x0, x1 = _check_batch(x0, x1)
    if isinstance(fractions, (str, bytes)) or not isinstance(fractions, Sequence):
        raise TypeError(f"fractions must be a sequence of positive numbers (epsilon / mean cost), "
                        f"got {type(fractions).__name__}")
    if not 1 <= len(fractions) <= 40:
        raise ValueError(f"fractions must hold between 1 and 40 values (one frame each), got {len(fractions)}")
    fractions = [check_real(f"fractions[{k}]", f, positive=True) for k, f in enumerate(fractions)]
    if len(set(fractions)) != len(fractions):
        raise ValueError(f"fractions must be distinct (one frame per epsilon), got {fractions}")
    check_positive_int("iters", iters)
    tol = check_real("tol", tol, positive=True)
    a, b = _diagonal_order(x0, x1)
    mean_cost = squared_distances(a, b).mean().item()

    def draw(epsilon: float) -> Figure:
        return sinkhorn_plan_figure(a, b, epsilon * mean_cost, iters=iters, tol=tol)

    if look is None:
        look = ("shrink epsilon: the mass gathers on the diagonal and the cost falls to the exact OT cost; grow it: "
                "the plan flattens towards 1/n and the cost rises towards c\u0304")
    return Explorer(draw, {"epsilon": fractions}, title="Sinkhorn plan", look=look,
                    start={"epsilon": fractions[len(fractions) // 2] if start is None else start},
                    labels={"epsilon": [f"{f:.2g} c\u0304" for f in fractions]})
