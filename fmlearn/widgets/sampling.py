"""Explorers of sampling (see :class:`~fmlearn.widgets.explorer.Explorer`), for 2-D samples:

- :func:`flow_animation` (chapter 1): samples carried from noise (t = 0) to data (t = 1), a slider over t
  with a play button, optionally coloured by the mode each sample ends in and over the exact marginal;
- :func:`solver_explorer` (chapter 3): ODE solver x number of steps, each frame the solver's end points
  against a reference solution, with the mean error in the title;
- :func:`noise_explorer` (chapter 7): the noise scale g of an SDE sampler, each frame a few sample paths
  beside the final samples.

Each takes what its chapter already computed (trajectories, solutions) and only draws; every input is
checked first, with an error that names the argument.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._checks import check_int_range as _count
from ..plotting import COORDINATE_LABELS, DEFAULT_EXTENT, Extent, mode_colours, plot_density, plot_samples
from .explorer import Explorer

__all__ = ["flow_animation", "solver_explorer", "noise_explorer"]

MAX_FRAMES = 40  # an explorer draws every frame in advance and embeds it in the page


# -- input checks --------------------------------------------------------------------------------------------
def _array(name: str, value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().double().cpu().numpy()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a tensor or array of numbers, got {type(value).__name__}") from err


def _trajectory(name: str, value: Any) -> np.ndarray:
    """A 2-D trajectory as a float64 array (T, n, 2), T >= 2, n >= 1, finite; a Solution gives its trajectory."""
    if hasattr(value, "trajectory") and hasattr(value, "times"):
        if value.trajectory is None:
            raise ValueError(f"{name} is a Solution without its trajectory: solve with return_trajectory=True")
        value = value.trajectory
    tr = _array(name, value)
    if tr.ndim != 3 or tr.shape[2] != 2 or tr.shape[0] < 2 or tr.shape[1] < 1:
        raise ValueError(f"{name} must have shape (times, samples, 2) with at least 2 times and 1 sample "
                         f"(2-D points), got {tr.shape}")
    if not np.isfinite(tr).all():
        raise ValueError(f"{name} must be finite, but {int((~np.isfinite(tr)).sum())} entries are NaN or inf")
    return tr


def _points(name: str, value: Any, n: int | None = None) -> np.ndarray:
    """Points as a float64 array (n, 2), finite."""
    x = _array(name, value)
    want = f"({n}, 2)" if n is not None else "(points, 2) with at least one point"
    if x.ndim != 2 or x.shape[1] != 2 or x.shape[0] < 1 or (n is not None and x.shape[0] != n):
        raise ValueError(f"{name} must have shape {want}, got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} must be finite, but {int((~np.isfinite(x)).sum())} entries are NaN or inf")
    return x


def _runs(name: str, runs: Any) -> dict:
    if not isinstance(runs, Mapping) or not runs:
        raise ValueError(f"{name} must be a non-empty mapping (one entry per slider value), got {runs!r}")
    if len(runs) > MAX_FRAMES:
        raise ValueError(f"{name} has {len(runs)} entries; an explorer draws each in advance, so keep it at most "
                         f"{MAX_FRAMES}")
    return {key: _trajectory(f"{name}[{key!r}]", value) for key, value in runs.items()}


def _nearest(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre of each point."""
    return ((points[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)


def _mark_centres(ax: Axes, centres: np.ndarray | None) -> None:
    if centres is not None:
        ax.scatter(centres[:, 0], centres[:, 1], marker="x", s=30, color="black", lw=1.0, zorder=4,
                   label="mode centres")


# -- chapter 1: the flow -------------------------------------------------------------------------------------
def draw_flow_frame(trajectory: np.ndarray, times: np.ndarray, index: int, *, colours: np.ndarray | Sequence | None,
                    centres: np.ndarray | None, density: Callable[[float], Callable] | None, extent: Extent,
                    title: str) -> Figure:
    """One frame of :func:`flow_animation`: the samples ``trajectory[index]`` at ``times[index]`` (arrays as
    :func:`flow_animation` checks them)."""
    fig, ax = plt.subplots(figsize=(5, 5))
    t = float(times[index])
    if density is not None:
        plot_density(density(t), ax=ax, extent=extent, n=120, contour=True)
    x = trajectory[index]
    ax.scatter(x[:, 0], x[:, 1], s=2.0, alpha=0.6, c=colours if colours is not None else "C0", rasterized=True,
               zorder=2)
    _mark_centres(ax, centres)
    ax.set_title(f"{title}, t = {t:.2f}")
    ax.set(xlabel=COORDINATE_LABELS[0], ylabel=COORDINATE_LABELS[1], xlim=extent[:2], ylim=extent[2:],
           aspect="equal")
    fig.tight_layout()
    return fig


def flow_animation(trajectory: Any, times: Any, *, frames: int = 26, n: int = 2000, centres: Any = None,
                   density: Callable[[float], Callable] | None = None, extent: Extent = DEFAULT_EXTENT,
                   title: str = "samples", look: str | None = None) -> Explorer:
    """The flow as an animation: a slider over t (with a play button), each frame the samples at that time.

    Args:
        trajectory: (T, batch, 2) states at ``times`` (or a Solution with its trajectory), e.g.
            ``fm.sample(model, x0, return_trajectory=True).trajectory``.
        times: (T,) increasing times of the trajectory.
        frames: how many times to show (2 to 40; all of them if the trajectory has fewer), spread evenly over
            [times[0], times[-1]], each the grid time nearest to its even spot (grid times only: a frame never
            shows one time under another's label).
        n: draw the first ``n`` samples only (fewer dots, lighter frames).
        centres: (K, 2) mode centres, marked with crosses; each sample is then coloured by the centre nearest to
            its *final* position, so one sees from the first frame which part of the source goes where.
        density: ``density(t)`` -> a log_prob over (m, 2) points, drawn as thin contours (e.g. the exact
            marginal ``lambda t: oracle.marginal(t).log_prob``).
        title: the frame title, followed by ", t = ...".
        look: what to look at (default: a generic line).
    """
    tr = _trajectory("trajectory", trajectory)
    ts = _array("times", times).reshape(-1)
    if ts.shape[0] != tr.shape[0]:
        raise ValueError(f"times must hold one time per state of the trajectory: trajectory has {tr.shape[0]} "
                         f"states, times has {ts.shape[0]}")
    if not np.isfinite(ts).all() or not (np.diff(ts) > 0).all():
        raise ValueError(f"times must be finite and strictly increasing, got {ts[:5]}...")
    frames = min(_count("frames", frames, 2, MAX_FRAMES), tr.shape[0])
    n = _count("n", n, 1)
    tr = tr[:, :n]
    marks = _points("centres", centres) if centres is not None else None
    if density is not None and not callable(density):
        raise TypeError(f"density must be a function t -> log_prob, got {type(density).__name__}")
    colours = None
    if marks is not None:
        colours = mode_colours(_nearest(tr[-1], marks))  # neighbouring modes differ, for every reader
    spots = np.linspace(ts[0], ts[-1], frames)
    indices = sorted({int(np.abs(ts - s).argmin()) for s in spots})
    values = [float(ts[i]) for i in indices]

    def draw(t: float) -> Figure:
        return draw_flow_frame(tr, ts, indices[values.index(t)], colours=colours, centres=marks, density=density,
                               extent=extent, title=title)

    return Explorer(draw, {"t": values}, play="t", labels={"t": [f"{v:.2f}" for v in values]},
                    title="Samples along the flow",
                    look=look or "press play: the samples leave the noise at t = 0 and gather on the target at t = 1")


# -- chapter 3: solvers and steps ----------------------------------------------------------------------------
def draw_solver_frame(trajectory: np.ndarray, reference: np.ndarray, *, method: str, steps: int, n_paths: int,
                      extent: Extent, nfe: int | None = None) -> Figure:
    """One frame of :func:`solver_explorer`: every end point of ``trajectory`` (T, n, 2) beside ``reference``
    (n, 2), ``n_paths`` trajectories, and the error of those paths' end points as red segments; the legend sits below
    the axes."""
    end = trajectory[-1]
    err = np.linalg.norm(end - reference, axis=1).mean()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(reference[:, 0], reference[:, 1], s=2.0, color="0.6", alpha=0.6, rasterized=True, zorder=1,
               label="reference end points")
    ax.scatter(end[:, 0], end[:, 1], s=2.0, color="C0", alpha=0.6, rasterized=True, zorder=2,
               label=f"{method} end points")
    paths = trajectory[:, :n_paths]
    ax.plot(paths[:, :, 0], paths[:, :, 1], ".-", color="C0", lw=0.8, ms=3, alpha=0.8, zorder=3)
    for a, b in zip(end[:n_paths], reference[:n_paths]):
        ax.plot([a[0], b[0]], [a[1], b[1]], color="C3", lw=1.2, zorder=4)
    ax.plot([], [], color="C3", label="error of the drawn paths")
    cost = f" ({nfe} evaluation{'s' if nfe != 1 else ''})" if nfe is not None else ""
    ax.set_title(f"{method}, {steps} step{'s' if steps != 1 else ''}{cost}: mean error {err:.3g}", fontsize=10)
    ax.set(xlabel=COORDINATE_LABELS[0], ylabel=COORDINATE_LABELS[1], xlim=extent[:2], ylim=extent[2:],
           aspect="equal")
    # below the axes, so that it covers none of the points
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=7, markerscale=3,
               frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def solver_explorer(runs: Mapping[tuple[str, int], Any], reference: Any, *, n_paths: int = 12,
                    extent: Extent = DEFAULT_EXTENT, look: str | None = None) -> Explorer:
    """Solver and number of steps on two sliders; each frame the solver's end points (blue) against the
    reference end points (grey), a few of its trajectories (one dot per step), and the mean error
    ``mean_i |x_i - reference_i|`` in the title.

    Args:
        runs: (method, steps) -> a Solution solved with ``return_trajectory=True`` (or its (steps + 1, n, 2)
            trajectory), for every method and every number of steps (a full grid, at most 40 frames), all from
            the same n starting points, e.g.
            ``{(m, s): fm.odeint(field, x0, steps=s, method=m, return_trajectory=True) for m in ... for s in ...}``.
        reference: (n, 2) the exact (or far more accurate) end points of the same starting points.
        n_paths: how many trajectories to draw (the first ones).
    """
    trs = _runs("runs", runs)
    for key in trs:
        if not (isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], str)
                and isinstance(key[1], (int, np.integer)) and not isinstance(key[1], bool)):
            raise ValueError(f"runs must be keyed by (method name, number of steps), got the key {key!r}")
    methods = list(dict.fromkeys(k[0] for k in trs))
    steps = sorted({int(k[1]) for k in trs})
    missing = [(m, s) for m in methods for s in steps if (m, s) not in trs]
    if missing:
        raise ValueError(f"runs must hold every (method, steps) pair of methods {methods} and steps {steps}; "
                         f"missing {missing}")
    sizes = {key: tr.shape[1] for key, tr in trs.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"runs hold different numbers of samples ({sizes}): all must start from the same points")
    n = next(iter(sizes.values()))
    ref = _points("reference", reference, n)
    n_paths = _count("n_paths", n_paths, 0)
    nfe = {key: getattr(value, "nfe", None) for key, value in runs.items()}

    def draw(method: str, steps: int) -> Figure:
        return draw_solver_frame(trs[(method, steps)], ref, method=method, steps=steps, n_paths=n_paths,
                                 extent=extent, nfe=nfe[(method, steps)])

    return Explorer(draw, {"method": methods, "steps": steps},
                    title="Solver paths against the reference", units={"steps": "steps"},
                    look=look or "raise the steps at one method: its end points (blue) close in on the reference "
                                 "(grey) and the error in the title falls")


# -- chapter 7: the SDE's noise level ------------------------------------------------------------------------
def draw_noise_frame(trajectory: np.ndarray, *, g: float, n_paths: int, centres: np.ndarray | None, note: str,
                     extent: Extent) -> Figure:
    """One frame of :func:`noise_explorer`: ``n_paths`` paths of ``trajectory`` (T, n, 2) on the left, their
    starts black and their ends red, every final sample on the right; the legend sits below the panels."""
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.5))
    paths = trajectory[:, :n_paths]
    axes[0].plot(paths[:, :, 0], paths[:, :, 1], color="C0", lw=0.6, alpha=0.7)
    axes[0].scatter(paths[0, :, 0], paths[0, :, 1], s=5, color="black", zorder=3, label="path start (t = 0)")
    axes[0].scatter(paths[-1, :, 0], paths[-1, :, 1], s=5, color="C3", zorder=3, label="path end (t = 1)")
    plot_samples(trajectory[-1], ax=axes[1], extent=extent, s=1.0, title=f"all {trajectory.shape[1]} end points")
    for ax, title in zip(axes, (f"{paths.shape[1]} sample paths", None)):
        _mark_centres(ax, centres)
        if title:
            ax.set_title(title)
        ax.set(xlim=extent[:2], ylim=extent[2:], aspect="equal")
        ax.tick_params(labelsize=7)
        ax.xaxis.label.set_size(8)
        ax.yaxis.label.set_size(8)
        ax.title.set_size(9)
    axes[0].set(xlabel=COORDINATE_LABELS[0], ylabel=COORDINATE_LABELS[1])
    axes[1].set_ylabel("")
    fig.suptitle(f"g = {g:g}" + (f": {note}" if note else ""), fontsize=9)
    # below the panels, so that it covers none of the paths or points
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=7, markerscale=1.5,
               frameon=False)
    fig.tight_layout(rect=(0, 0.09, 1, 1))
    return fig


def noise_explorer(runs: Mapping[float, Any], *, n_paths: int = 30, centres: Any = None,
                   notes: Mapping[float, str] | None = None, extent: Extent = DEFAULT_EXTENT,
                   look: str | None = None) -> Explorer:
    """The noise scale g of an SDE sampler on a slider; each frame ``n_paths`` sample paths (left) beside all the
    final samples (right).

    Args:
        runs: g -> a Solution of ``fm.sde_sample(..., g=g, return_trajectory=True)`` (or its (T, n, 2)
            trajectory), at most 40 values of g (numbers, g >= 0), shown in increasing order.
        centres: (K, 2) mode centres, marked with crosses.
        notes: g -> a short text for that frame's title (say, the W2 of its samples).
    """
    trs = _runs("runs", runs)
    for g in trs:
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not np.isfinite(g) or g < 0:
            raise ValueError(f"runs must be keyed by noise scales g (numbers >= 0), got the key {g!r}")
    notes = dict(notes or {})
    extra = [g for g in notes if g not in trs]
    if extra:
        raise ValueError(f"notes names g = {extra}, which runs does not hold (runs: {list(trs)})")
    marks = _points("centres", centres) if centres is not None else None
    n_paths = _count("n_paths", n_paths, 1)
    values = sorted(trs)

    def draw(g: float) -> Figure:
        return draw_noise_frame(trs[g], g=g, n_paths=n_paths, centres=marks, note=str(notes.get(g, "")),
                                extent=extent)

    return Explorer(draw, {"g": values},
                    title="SDE paths and end points",
                    look=look or "raise g: the paths (left) get rougher while the end points (right) keep "
                                 "the same distribution")
