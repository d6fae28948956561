"""Figures on the sphere and the torus: 3-D views, a map projection, the torus square, and flow snapshots.

Longitude and latitude of a point x of S^2: lon = atan2(x_2, x_1) in [-pi, pi], lat = arcsin(x_3) in
[-pi/2, pi/2]; the maps use matplotlib's equal-area Mollweide projection (``projection="mollweide"``).
The torus T^2 is drawn in R^3 as ((R + r cos x_2) cos x_1, (R + r cos x_2) sin x_1, r sin x_2).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..plotting import FIRST  # the course's palette (and figures' alt text), set up when fmlearn.plotting loads

TWO_PI = 2 * math.pi


def _np(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=float)


def sphere_axes(ax: Axes | None = None, title: str = "", elev: float = 20.0, azim: float = 35.0) -> Axes:
    """A 3-D axes with a faint wireframe of the unit sphere, equal aspect, no ticks (a new figure if ax is None)."""
    if ax is None:
        ax = plt.figure(figsize=(4.5, 4.5)).add_subplot(projection="3d")
    u, v = np.meshgrid(np.linspace(0, TWO_PI, 37), np.linspace(0, math.pi, 19))
    ax.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="0.8", linewidth=0.4)
    ax.set_box_aspect((1, 1, 1))
    ax.set(xlim=(-1, 1), ylim=(-1, 1), zlim=(-1, 1), xticks=[], yticks=[], zticks=[], title=title)
    ax.view_init(elev=elev, azim=azim)
    return ax


def plot_sphere(x: torch.Tensor | np.ndarray, ax: Axes | None = None, title: str = "", s: float = 2.0,
                color: Any = FIRST) -> Axes:
    """Points of S^2 on a wireframe sphere; those on the far side (facing away from the viewer) drawn faint."""
    ax = sphere_axes(ax, title)
    p = _np(x)
    elev, azim = np.radians(ax.elev), np.radians(ax.azim)
    view = np.array([np.cos(elev) * np.cos(azim), np.cos(elev) * np.sin(azim), np.sin(elev)])
    front = p @ view >= 0
    for mask, alpha in ((~front, 0.08), (front, 0.6)):
        c = color[mask] if isinstance(color, np.ndarray) and color.shape[:1] == p.shape[:1] else color
        ax.scatter(*p[mask].T, s=s, alpha=alpha, c=c, depthshade=False, linewidths=0)
    return ax


def lonlat(x: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(longitude, latitude) in radians of points of S^2, each of shape (n,)."""
    p = _np(x)
    return np.arctan2(p[:, 1], p[:, 0]), np.arcsin(np.clip(p[:, 2], -1, 1))


def lonlat_grid(n_lon: int = 72, n_lat: int = 36) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """Cell centres of an n_lat x n_lon longitude-latitude grid: (LON, LAT) of shape (n_lat, n_lon) and the points
    of S^2, a float64 tensor of shape (n_lat n_lon, 3), row-major like LON."""
    lon = (np.arange(n_lon) + 0.5) / n_lon * TWO_PI - math.pi
    lat = (np.arange(n_lat) + 0.5) / n_lat * math.pi - math.pi / 2
    LON, LAT = np.meshgrid(lon, lat)
    pts = np.stack([np.cos(LAT) * np.cos(LON), np.cos(LAT) * np.sin(LON), np.sin(LAT)], -1).reshape(-1, 3)
    return LON, LAT, torch.tensor(pts)


def map_axes(fig: Figure, position: int | tuple, title: str = "") -> Axes:
    """A Mollweide (equal-area) map axes added to ``fig`` at ``position`` (e.g. 121), with a light grid."""
    ax = fig.add_subplot(*position, projection="mollweide") if isinstance(position, tuple) else \
        fig.add_subplot(position, projection="mollweide")
    ax.grid(True, linewidth=0.3)
    ax.set_title(title, pad=12)
    ax.set_xticklabels([])  # the meridians every 30 degrees stay; their labels would sit on the equator
    ax.tick_params(labelsize=7)
    return ax


def plot_map(x: torch.Tensor | np.ndarray, ax: Axes, s: float = 1.0, color: Any = FIRST, alpha: float = 0.4) -> Axes:
    """Points of S^2 on a map axes (:func:`map_axes`), at their longitude and latitude."""
    lon, lat = lonlat(x)
    ax.scatter(lon, lat, s=s, c=color, alpha=alpha, linewidths=0)
    return ax


def plot_map_density(log_density: torch.Tensor | np.ndarray, lon: np.ndarray, lat: np.ndarray, ax: Axes,
                     vmin: float | None = None, vmax: float | None = None) -> Any:
    """A log-density on the grid of :func:`lonlat_grid` (any shape that reshapes to lon's), as a colour map;
    returns the mesh (for a colour bar)."""
    z = _np(log_density).reshape(lon.shape)
    return ax.pcolormesh(lon, lat, z, vmin=vmin, vmax=vmax, shading="auto")


def torus_xyz(x: torch.Tensor | np.ndarray, big: float = 2.0, small: float = 0.8) -> np.ndarray:
    """Points of T^2 (angles, shape (n, 2)) on the torus of radii ``big`` and ``small`` in R^3, shape (n, 3)."""
    a = _np(x)
    ring = big + small * np.cos(a[:, 1])
    return np.stack([ring * np.cos(a[:, 0]), ring * np.sin(a[:, 0]), small * np.sin(a[:, 1])], -1)


def plot_torus_3d(x: torch.Tensor | np.ndarray, ax: Axes | None = None, title: str = "", s: float = 2.0,
                  color: Any = FIRST) -> Axes:
    """Points of T^2 on a wireframe torus in R^3 (:func:`torus_xyz`)."""
    if ax is None:
        ax = plt.figure(figsize=(5, 4)).add_subplot(projection="3d")
    u, v = np.meshgrid(np.linspace(0, TWO_PI, 41), np.linspace(0, TWO_PI, 21))
    grid = torus_xyz(np.stack([u.ravel(), v.ravel()], -1)).reshape(*u.shape, 3)
    ax.plot_wireframe(grid[..., 0], grid[..., 1], grid[..., 2], color="0.85", linewidth=0.4)
    ax.scatter(*torus_xyz(x).T, s=s, c=color, alpha=0.5, depthshade=False, linewidths=0)
    ax.set_box_aspect((1, 1, 0.4))
    ax.set(xticks=[], yticks=[], zticks=[], title=title)
    ax.view_init(elev=35, azim=-60)
    return ax


def plot_torus_square(x: torch.Tensor | np.ndarray | None = None, ax: Axes | None = None, title: str = "",
                      s: float = 1.0, color: Any = FIRST, density: tuple | None = None) -> Axes:
    """T^2 as the square [0, 2 pi)^2 whose opposite edges are glued: points (and/or a density given as
    (X, Y, Z) on a grid), with the glued edges drawn dashed (a point leaving right re-enters left)."""
    if ax is None:
        ax = plt.subplots(figsize=(4.5, 4.5))[1]
    if density is not None:
        ax.pcolormesh(*density, shading="auto", cmap="Greys")
    if x is not None:
        a = _np(x)
        ax.scatter(a[:, 0], a[:, 1], s=s, c=color, alpha=0.5, linewidths=0)
    for edge in (0, TWO_PI):
        ax.axvline(edge, color="k", linestyle="--", linewidth=0.8)
        ax.axhline(edge, color="k", linestyle="--", linewidth=0.8)
    ticks = [0, math.pi, TWO_PI]
    ax.set(xlim=(-0.1, TWO_PI + 0.1), ylim=(-0.1, TWO_PI + 0.1), aspect="equal", xticks=ticks, yticks=ticks,
           xticklabels=["0", "π", "2π"], yticklabels=["0", "π", "2π"], xlabel="angle 1", ylabel="angle 2",
           title=title)
    return ax


def flow_snapshots(trajectory: torch.Tensor, times: torch.Tensor | Sequence[float],
                   show_at: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0), n: int = 2000) -> Figure:
    """The static version of :func:`fmlearn.widgets.sphere_flow`: the first n samples of a trajectory on S^2 (shape
    (steps + 1, batch, 3)) on maps at the grid times nearest to ``show_at``."""
    times = _np(torch.as_tensor(times))
    fig = plt.figure(figsize=(3.3 * len(show_at), 2.4))
    for i, t in enumerate(show_at):
        k = int(np.abs(times - t).argmin())
        ax = map_axes(fig, (1, len(show_at), i + 1), f"t = {times[k]:.2f}")
        ax.set(xticklabels=[], yticklabels=[])
        plot_map(trajectory[k, :n], ax, s=0.8)
    fig.suptitle("samples moving along the learned flow, from the uniform source (t = 0) to the model (t = 1)")
    fig.tight_layout()
    return fig
