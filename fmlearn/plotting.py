"""The course's figures. Every function draws on an ``ax`` (made if not given),
labels its axes, titles the panel and returns the ``ax``."""

from __future__ import annotations

from typing import Callable, Sequence

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure
import numpy as np
import torch

from ._checks import model_context
from .oracle import MixtureOracle

Extent = tuple[float, float, float, float]
DEFAULT_EXTENT: Extent = (-15.0, 15.0, -15.0, 15.0)
# Axis labels of 2-D point plots: words, because x_0 and x_1 already name the noise and the data point.
COORDINATE_LABELS = ("coordinate 1", "coordinate 2")


def _ax(ax):
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 4.2))
    return ax


def _np(x) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _finish(ax, title: str, extent: Extent | None = None):
    ax.set_title(title)
    ax.set_xlabel(COORDINATE_LABELS[0])
    ax.set_ylabel(COORDINATE_LABELS[1])
    if extent is not None:
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
    ax.set_aspect("equal")
    return ax


def grid_points(extent: Extent = DEFAULT_EXTENT, n: int = 200) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """A regular n x n grid over ``extent``: (X, Y) for plotting and the points as a (n*n, 2) tensor."""
    xs, ys = np.linspace(extent[0], extent[1], n), np.linspace(extent[2], extent[3], n)
    X, Y = np.meshgrid(xs, ys)
    return X, Y, torch.tensor(np.stack([X.ravel(), Y.ravel()], 1), dtype=torch.float32)


def plot_density(log_prob: Callable[[torch.Tensor], torch.Tensor], ax: Axes | None = None,
                 extent: Extent = DEFAULT_EXTENT,
                 n: int = 200, title: str = "density", cmap: str = "viridis", contour: bool = False) -> Axes:
    """exp(log_prob) on a grid, as a heat map or (``contour=True``) as thin grey contour
    lines drawn beneath whatever is plotted on the axes; ``log_prob`` maps (m, 2) points to (m,)."""
    ax = _ax(ax)
    X, Y, pts = grid_points(extent, n)
    with torch.no_grad():
        Z = _np(torch.exp(log_prob(pts))).reshape(X.shape)
    if contour:
        ax.contour(X, Y, Z, levels=np.linspace(0, Z.max(), 6)[1:], colors="0.35", linewidths=0.5, zorder=1)
    else:
        ax.pcolormesh(X, Y, Z, cmap=cmap, shading="auto")
    return _finish(ax, title, extent)


def plot_samples(x: torch.Tensor | np.ndarray, ax: Axes | None = None, extent: Extent | None = DEFAULT_EXTENT,
                 title: str = "samples",
                 color: str = "C0", s: float = 2.0, alpha: float = 0.5, label: str | None = None) -> Axes:
    """Scatter plot of 2-D samples of shape (n, 2)."""
    ax = _ax(ax)
    x = _np(x)
    ax.scatter(x[:, 0], x[:, 1], s=s, alpha=alpha, color=color, label=label, rasterized=True, zorder=2)
    return _finish(ax, title, extent)


def plot_marginals(trajectory: torch.Tensor | np.ndarray, times: Sequence[float], show_at: Sequence[float] = (0,
                   0.25, 0.5, 0.75, 1.0),
                   densities: Callable[[float], Callable] | None = None, extent: Extent = DEFAULT_EXTENT,
                   suptitle: str = "marginals p_t") -> Figure:
    """One panel per t in ``show_at``: samples of the trajectory (T, n, 2) at that time, over thin contour
    lines of the exact density ``densities(t)`` (a log_prob) if given.

    Every t must be one of the solver's grid ``times`` (within 1e-6): a panel never shows a nearby time
    under the label of the one asked for.
    """
    times = _np(times)
    fig, axes = plt.subplots(1, len(show_at), figsize=(3.0 * len(show_at), 3.2), squeeze=False)
    for ax, t in zip(axes[0], show_at):
        i = int(np.argmin(np.abs(times - t)))
        if abs(times[i] - t) > 1e-6:
            raise ValueError(f"show_at holds t = {t}, which is not a time of the grid (nearest: {times[i]:.6g}); "
                             "pick times on the solver's grid")
        if densities is not None:
            plot_density(densities(float(times[i])), ax=ax, extent=extent, n=120, contour=True)
        plot_samples(trajectory[i], ax=ax, extent=extent, title=f"t = {t:g}", s=1.0, alpha=0.5)
    fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plot_trajectories(trajectory: torch.Tensor | np.ndarray, ax: Axes | None = None, n: int = 100,
                      extent: Extent | None = DEFAULT_EXTENT,
                      title: str = "trajectories") -> Axes:
    """Paths of ``n`` particles from a trajectory (T, batch, 2): start (black), end (red)."""
    ax = _ax(ax)
    tr = _np(trajectory)[:, :n]
    ax.plot(tr[:, :, 0], tr[:, :, 1], color="C0", lw=0.6, alpha=0.5)
    ax.scatter(tr[0, :, 0], tr[0, :, 1], s=4, color="black", label="t = 0", zorder=3)
    ax.scatter(tr[-1, :, 0], tr[-1, :, 1], s=4, color="C3", label="t = 1", zorder=3)
    ax.legend(loc="upper right", fontsize=8)
    return _finish(ax, title, extent)


def plot_vector_field(velocity: Callable, t: float, ax: Axes | None = None, extent: Extent = DEFAULT_EXTENT,
                      n: int = 21,
                      title: str | None = None, color: str = "C0", scale: float | None = None) -> Axes:
    """Arrows of ``velocity(x, t)`` on an n x n grid at time t.

    By default matplotlib scales the arrows to fit each panel; give ``scale`` (velocity
    units per data unit of arrow length) to draw several panels on one common scale. A network is
    evaluated as every sampler does (:func:`fmlearn._checks.model_context`: eval mode, no gradients, on its
    device and in its dtype).
    """
    ax = _ax(ax)
    X, Y, pts = grid_points(extent, n)
    with model_context(velocity, pts) as (net, pts):
        v = _np(net(pts, t))
    fixed = {} if scale is None else {"scale_units": "xy", "scale": scale}
    ax.quiver(X, Y, v[:, 0].reshape(X.shape), v[:, 1].reshape(X.shape), color=color, angles="xy", **fixed)
    return _finish(ax, title or f"velocity at t = {t:.2f}", extent)


def plot_marginal_field(oracle: MixtureOracle, t: float, ax: Axes | None = None, extent: Extent = DEFAULT_EXTENT,
                        n_arrows: int = 15,
                        title: str | None = None, scale: float = 5.0) -> Axes:
    """The exact marginal p_t (heat map) and marginal velocity u_t (arrows, ``scale``
    velocity units per data unit, the same in every panel) of a
    :class:`~fmlearn.oracle.MixtureOracle` at time t: one panel of the path explorer."""
    ax = _ax(ax)
    plot_density(oracle.marginal(t).log_prob, ax=ax, extent=extent, n=120, cmap="Blues")
    plot_vector_field(oracle, t, ax=ax, extent=extent, n=n_arrows, color="C3", scale=scale)
    return _finish(ax, title or f"{oracle.path.schedule.name}, t = {t:.2f}", extent)


def plot_loss(losses: Sequence[float] | np.ndarray, ax: Axes | None = None, window: int = 100,
              title: str = "training loss", color: str = "C0",
              label: str | None = None) -> Axes:
    """Per-step loss (faint) and its running median over ``window`` steps (labelled ``label``).

    A median, not a mean: one heavy-tailed batch would lift a running mean for
    ``window`` steps and draw a block that looks like instability.
    """
    ax = _ax(ax)
    losses = _np(losses)
    ax.plot(losses, color=color, alpha=0.25, lw=0.5)
    if len(losses) >= window:
        medians = np.median(np.lib.stride_tricks.sliding_window_view(losses, window), axis=1)
        ax.plot(np.arange(window - 1, len(losses)), medians, color=color,
                label=f"{label + ': ' if label else ''}median of {window} steps")
    ax.set(title=title, xlabel="step", ylabel="CFM loss", yscale="log")
    # label the 1x, 2x and 5x ticks of each decade: a log axis over a decade or two otherwise shows
    # only two labels (10^2, 10^3)
    ax.yaxis.set_major_locator(mticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(mticker.NullFormatter())
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return ax


def plot_mode_fractions(fractions: torch.Tensor | np.ndarray, ax: Axes | None = None, tolerance: float = 0.03,
                        title: str = "share of samples per mode") -> Axes:
    """Bar chart of per-mode fractions, with the ideal 1/K and a +-``tolerance`` band."""
    ax = _ax(ax)
    f = _np(fractions)
    k = len(f)
    ax.axhspan(1 / k - tolerance, 1 / k + tolerance, color="C2", alpha=0.25, label=f"1/{k} ± {tolerance:.0%}",
               zorder=0)
    ax.bar(np.arange(k), f, color="C0", zorder=2)
    ax.axhline(1 / k, color="black", lw=1, label=f"1/{k}", zorder=3)
    ax.set(title=title, xlabel="mode", ylabel="fraction", xticks=np.arange(k))
    ax.legend(fontsize=8)
    return ax
