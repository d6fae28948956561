"""Chapter 2: the probability-path explorer and its static grid."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from ..distributions import GaussianMixture
from ..oracle import MixtureOracle
from ..paths import AffineGaussianPath
from ..plotting import DEFAULT_EXTENT, Extent, plot_marginal_field
from ..schedules import get_schedule
from .explorer import Explorer

__all__ = ["path_grid", "path_explorer"]


def path_grid(target: GaussianMixture, schedules: Sequence[str] = ("condot", "sqrt", "cosine", "polynomial", "vp"),
              times: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0), extent: Extent = DEFAULT_EXTENT) -> Figure:
    """The static explorer: one row per schedule, one column per t, each panel the
    exact marginal density and velocity (see :func:`~fmlearn.plotting.plot_marginal_field`)."""
    fig, axes = plt.subplots(len(schedules), len(times), figsize=(2.6 * len(times), 2.6 * len(schedules)),
                             squeeze=False)
    for row, name in zip(axes, schedules):
        oracle = MixtureOracle(target, AffineGaussianPath(name))
        for ax, t in zip(row, times):
            plot_marginal_field(oracle, t, ax=ax, extent=extent, n_arrows=11)
            ax.set(xlabel="", ylabel="", xticks=[], yticks=[])
        row[0].set_ylabel(get_schedule(name).name)
    fig.suptitle("marginal density $p_t$ (blue) and velocity $u_t$ (red arrows)")
    fig.tight_layout()
    return fig


def path_explorer(target: GaussianMixture, extent: Extent = DEFAULT_EXTENT,
                  schedules: Sequence[str] = ("condot", "sqrt", "cosine", "polynomial", "vp"),
                  times: Sequence[float] = tuple(i / 10 for i in range(11))) -> Explorer:
    """Pick a schedule and a time, see the exact p_t and u_t (an :class:`~fmlearn.widgets.Explorer`: the same
    HTML sliders in JupyterLab and on a web page)."""

    def draw(schedule: str, t: float) -> Figure:
        fig, ax = plt.subplots(figsize=(5, 5))
        plot_marginal_field(MixtureOracle(target, AffineGaussianPath(schedule)), t, ax=ax, extent=extent)
        ax.set_title(f"{get_schedule(schedule).name}, t = {t:.2f}")
        return fig

    return Explorer(draw, {"schedule": list(schedules), "t": list(times)}, start={"t": 0.5},
                    labels={"schedule": [get_schedule(s).name for s in schedules]},
                    title="Probability path",
                    look="slide t with one schedule fixed, then switch schedules at the same t: "
                         "the mass moves from the one Gaussian to the modes at a different pace")
