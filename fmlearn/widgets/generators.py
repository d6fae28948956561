"""Explorers of generator matching (see :class:`~fmlearn.widgets.explorer.Explorer`), for chapter 10:

- :func:`draw_weight_frame`: for one superposition weight a, the histogram of its 1-D samples over the exact
  target density (its W2 in the title), beside W2 against a for every weight of the sweep;
- :func:`superposition_explorer`: the weight a on a slider over those frames.

They take what the chapter already sampled (a sweep a -> (samples, W2)) and only draw: no sampling here.
Every input is checked first, with an error that names the argument.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Mapping

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from .explorer import Explorer

__all__ = ["weight_label", "draw_weight_frame", "superposition_explorer"]

MAX_FRAMES = 40  # an explorer draws every frame in advance and embeds it in the page


def weight_label(a: float) -> str:
    """What the superposition a L^flow + (1 - a) L^jump is at weight a: "jumps" at 0, "flow" at 1."""
    return {0.0: "jumps", 1.0: "flow"}.get(float(a), "superposition")


# -- input checks --------------------------------------------------------------------------------------------
def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _samples(name: str, value: Any) -> np.ndarray:
    """1-D samples, shape (n,) or (n, 1), n >= 1, finite, as a float64 array (n,)."""
    if isinstance(value, torch.Tensor):
        arr = value.detach().double().cpu().numpy()
    else:
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} must be a tensor or array of numbers, got {type(value).__name__}") from err
    shape = arr.shape
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or arr.shape[0] == 0:
        raise ValueError(f"{name} must be 1-D samples of shape (n, 1) or (n,) with n >= 1, got {shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, but {int((~np.isfinite(arr)).sum())} samples are NaN or inf")
    return arr


def _sweep(sweep: Any) -> dict[float, tuple[np.ndarray, float]]:
    """a -> (samples (n,), W2), keys sorted, every a in [0, 1], every W2 finite and >= 0."""
    if not isinstance(sweep, Mapping) or not sweep:
        raise ValueError(f"sweep must be a non-empty mapping a -> (samples, W2), got {sweep!r}")
    if len(sweep) > MAX_FRAMES:
        raise ValueError(f"sweep has {len(sweep)} weights; an explorer draws each in advance, so keep it at most "
                         f"{MAX_FRAMES}")
    out = {}
    for a, entry in sweep.items():
        a_ = _real("sweep's weight a", a)
        if not 0.0 <= a_ <= 1.0:
            raise ValueError(f"sweep's weight a must lie in [0, 1] (1: the flow, 0: the jumps), got {a!r}")
        if not (isinstance(entry, (tuple, list)) and len(entry) == 2):
            raise ValueError(f"sweep[{a!r}] must be a pair (samples, W2), got {type(entry).__name__}")
        w2 = _real(f"sweep[{a!r}]'s W2", entry[1])
        if w2 < 0:
            raise ValueError(f"sweep[{a!r}]'s W2 must be >= 0 (a distance), got {w2}")
        out[a_] = (_samples(f"sweep[{a!r}]'s samples", entry[0]), w2)
    if len(out) != len(sweep):
        raise ValueError(f"sweep names one weight twice (as different numbers): {list(sweep)}")
    return dict(sorted(out.items()))


def _density(target: Any, xs: np.ndarray) -> np.ndarray:
    if not callable(getattr(target, "log_prob", None)):
        raise TypeError(f"target must have a log_prob (a 1-D distribution), got {type(target).__name__}")
    if getattr(target, "dim", 1) != 1:
        raise ValueError(f"target must be 1-D (dim 1), got dim {target.dim}")
    with torch.no_grad():
        return target.log_prob(torch.as_tensor(xs, dtype=torch.get_default_dtype())[:, None]).exp().double().numpy()


# -- the frames ----------------------------------------------------------------------------------------------
def draw_weight_frame(sweep: Mapping[float, tuple[np.ndarray, float]], a: float, target: Any, *,
                      floor: float | None = None, extent: tuple[float, float] = (-5.0, 5.0), bins: int = 200,
                      ymax: float | None = None) -> Figure:
    """One frame of :func:`superposition_explorer`: on the left the histogram of ``sweep[a]``'s samples (a
    density, ``bins`` bins over ``extent``) over the target's density (black), W2 in the title; on the right
    W2 against a for the whole sweep (markers, not joined: the weights are separate runs), weight a marked, the
    floor dashed. ``sweep`` as :func:`superposition_explorer` checks it; ``ymax`` fixes the left panel's height."""
    samples, w2 = sweep[a]
    xs = np.linspace(extent[0], extent[1], 500)
    fig, (left, right) = plt.subplots(1, 2, figsize=(7.0, 3.0), gridspec_kw={"width_ratios": (2.2, 1)})
    left.hist(samples, bins=bins, range=extent, density=True, histtype="stepfilled", color="C0", alpha=0.6,
              label="samples")
    left.plot(xs, _density(target, xs), color="black", lw=1, label="data density")
    left.set(xlim=extent, xlabel="x", ylabel="density")
    if ymax is not None:
        left.set_ylim(0, ymax)
    left.set_title(f"a = {a:g} ({weight_label(a)}): W2 {w2:.3f}", fontsize=10)
    left.legend(fontsize=7, loc="upper left")
    weights = list(sweep)
    right.plot(weights, [sweep[b][1] for b in weights], "o", color="0.5", ms=4)  # markers only: no trend implied
    right.plot([a], [w2], "o", color="C3", ms=9, zorder=3)
    if floor is not None:
        right.axhline(floor, color="black", ls="--", lw=1, label=f"floor {floor:.3f}")
        right.legend(fontsize=7)
    right.set(xlabel="weight a (0: jumps, 1: flow)", ylabel="W2", xlim=(-0.05, 1.05))
    right.set_title("W2 of each weight", fontsize=10)
    right.tick_params(labelsize=8)
    fig.tight_layout()
    return fig


def superposition_explorer(sweep: Mapping[float, Any], target: Any, *, floor: float | None = None,
                           extent: tuple[float, float] = (-5.0, 5.0), bins: int = 200,
                           look: str | None = None) -> Explorer:
    """The superposition weight a on a slider: each frame the 1-D samples drawn at that a against the exact
    density, and W2 against a for the whole sweep (see :func:`draw_weight_frame`). No sampling: it draws the
    samples given.

    Args:
        sweep: a -> (samples of shape (n, 1) or (n,), their W2 to the data), each a in [0, 1] (1: the flow
            alone, 0: the jumps alone), at most 40 weights, shown in increasing order, e.g. chapter 10's
            ``{a: (sol.x, fm.w2_distance(sol.x, data)) for a in (0, 0.25, 0.5, 0.75, 1)}``.
        target: the data distribution, 1-D, with a ``log_prob`` (drawn as the black curve).
        floor: the W2 floor (the W2 between two data sets of the same size), a dashed line; None: none.
        extent: the histogram's range (lo, hi); bins: its number of bins.
        look: what to look at (default: a line that claims no ranking of the weights, which varies by run).
    """
    runs = _sweep(sweep)
    if floor is not None:
        floor = _real("floor", floor)
        if floor < 0:
            raise ValueError(f"floor must be >= 0 (a distance), got {floor}")
    if not (isinstance(extent, (tuple, list)) and len(extent) == 2):
        raise ValueError(f"extent must be a pair (lo, hi), got {extent!r}")
    extent = (_real("extent[0]", extent[0]), _real("extent[1]", extent[1]))
    if not extent[0] < extent[1]:
        raise ValueError(f"extent must be (lo, hi) with lo < hi, got {extent}")
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    xs = np.linspace(extent[0], extent[1], 500)
    heights = [np.histogram(x, bins=bins, range=extent, density=True)[0].max() for x, _ in runs.values()]
    ymax = 1.05 * max(max(heights), float(_density(target, xs).max()))
    weights = list(runs)

    def draw(a: float) -> Figure:
        return draw_weight_frame(runs, a, target, floor=floor, extent=extent, bins=int(bins), ymax=ymax)

    return Explorer(draw, {"a": weights}, start={"a": weights[len(weights) // 2]},
                    labels={"a": [f"{a:g} ({weight_label(a)})" if weight_label(a) != "superposition" else f"{a:g}"
                                  for a in weights]},
                    title="Flow and jump superposition",
                    look=look or "move a from 0 (the jumps alone) to 1 (the flow alone): compare the bars with "
                                 "the black density, mode by mode, and find the red dot among the grey W2 of the weights")
