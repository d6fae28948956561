"""Explorer of few-step generation (chapter 11, see :class:`~fmlearn.widgets.explorer.Explorer`):
:func:`few_step_explorer`, a method and its number of steps on two sliders, each frame the method's end
points over the exact flow map's end points of the same starting points, the mean distance between them in
the title.

It takes the end points the chapter already computed and only draws; every input is checked first, with an
error that names the argument.
"""

from __future__ import annotations

from typing import Any, Mapping

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ..plotting import COORDINATE_LABELS, DEFAULT_EXTENT, Extent, mode_colours
from .explorer import Explorer

__all__ = ["few_step_explorer", "draw_few_step_frame"]

MAX_FRAMES = 64  # an explorer draws every frame in advance and embeds it in the page


def _points(name: str, value: Any, n: int | None = None) -> np.ndarray:
    """Points as a float64 array (n, 2), finite."""
    try:
        x = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a tensor or array of numbers, got {type(value).__name__}") from err
    want = f"({n}, 2)" if n is not None else "(points, 2) with at least one point"
    if x.ndim != 2 or x.shape[1] != 2 or x.shape[0] < 1 or (n is not None and x.shape[0] != n):
        raise ValueError(f"{name} must have shape {want}, got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} must be finite, but {int((~np.isfinite(x)).sum())} entries are NaN or inf")
    return x


def draw_few_step_frame(x: np.ndarray, exact: np.ndarray, *, method: str, steps: int, centres: np.ndarray | None,
                        extent: Extent = DEFAULT_EXTENT) -> Figure:
    """One frame: end points x (n, 2) of ``method`` with ``steps`` steps, coloured by the mode the exact map
    sends each start to, over the exact end points (grey); the mean distance |x_i - exact_i| in the title."""
    fig, ax = plt.subplots(figsize=(4.6, 4.6))
    ax.scatter(exact[:, 0], exact[:, 1], s=3, color="0.75", rasterized=True, zorder=1, label="exact map")
    colours = None
    if centres is not None:
        colours = mode_colours(((exact[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1))
    ax.scatter(x[:, 0], x[:, 1], s=2, c=colours if colours is not None else "C0", alpha=0.7, rasterized=True,
               zorder=2, label=f"{method}")
    if centres is not None:
        ax.scatter(centres[:, 0], centres[:, 1], marker="x", s=30, color="black", lw=1.0, zorder=3)
    dist = float(np.linalg.norm(x - exact, axis=1).mean())
    ax.set_title(f"{method}, {steps} step{'s' if steps > 1 else ''}: mean distance to the exact map {dist:.2f}",
                 fontsize=8)
    ax.set(xlabel=COORDINATE_LABELS[0], ylabel=COORDINATE_LABELS[1], xlim=extent[:2], ylim=extent[2:],
           aspect="equal")
    ax.legend(loc="lower right", fontsize=7, markerscale=3)
    fig.tight_layout()
    return fig


def few_step_explorer(runs: Mapping[tuple[str, int], Any], exact: Any, *, centres: Any = None,
                      extent: Extent = DEFAULT_EXTENT, look: str | None = None) -> Explorer:
    """Method and number of steps on two sliders; each frame the method's end points over the exact map's.

    Args:
        runs: (method name, steps) -> (n, 2) end points from the same n starting points, for every method and
            every number of steps (a full grid, at most 64 frames), e.g. ``{("MeanFlow", k):
            fm.sample_flow_map(model, x0, k).x for k in (1, 2, 4, 8)}``.
        exact: (n, 2) the exact flow map's end points of those starting points (``fm.flow_map(oracle, x0, 0, 1)``).
        centres: optional (K, 2) mode centres: the points are coloured by the mode their exact end point is nearest.
    """
    if not isinstance(runs, Mapping) or not runs:
        raise ValueError(f"runs must be a non-empty mapping (method, steps) -> end points, got {runs!r}")
    if len(runs) > MAX_FRAMES:
        raise ValueError(f"runs has {len(runs)} entries; an explorer draws each in advance, so keep it at most "
                         f"{MAX_FRAMES}")
    for key in runs:
        if not (isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], str)
                and isinstance(key[1], (int, np.integer)) and not isinstance(key[1], bool) and key[1] >= 1):
            raise ValueError(f"runs must be keyed by (method name, number of steps >= 1), got the key {key!r}")
    ref = _points("exact", exact)
    pts = {key: _points(f"runs[{key!r}]", value, ref.shape[0]) for key, value in runs.items()}
    methods = list(dict.fromkeys(k[0] for k in pts))
    steps = sorted({int(k[1]) for k in pts})
    missing = [(m, s) for m in methods for s in steps if (m, s) not in pts]
    if missing:
        raise ValueError(f"runs must hold every (method, steps) pair of methods {methods} and steps {steps}; "
                         f"missing {missing}")
    c = None if centres is None else _points("centres", centres)

    def draw(method: str, steps: int) -> Figure:
        return draw_few_step_frame(pts[(method, steps)], ref, method=method, steps=steps, centres=c, extent=extent)

    return Explorer(draw, {"method": methods, "steps": steps}, start={"steps": steps[0]},
                    title="Few-step end points against the exact flow map", units={"steps": "steps"},
                    look=look or "pick a method and raise the steps: the title gives the mean distance to the "
                                 "exact end points (grey); compare it across methods at the same steps")
