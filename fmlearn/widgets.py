"""Interactive explorers (ipywidgets), each with a static figure to fall back on.

A widget needs a live kernel; a notebook read on a web page or executed in CI
shows the static figure that every explorer also draws.
"""

from __future__ import annotations

from typing import Any, Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from .distributions import GaussianMixture
from .oracle import MixtureOracle
from .paths import AffineGaussianPath
from .plotting import DEFAULT_EXTENT, Extent, plot_marginal_field
from .schedules import SCHEDULES, get_schedule


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


def path_explorer(target: GaussianMixture, extent: Extent = DEFAULT_EXTENT) -> Any:
    """An ipywidgets explorer: pick a schedule and a time, see p_t and u_t.

    Returns the widget (display it as a cell's last expression). Without a live
    kernel it cannot respond: a saved notebook shows a frozen copy or a line of
    text (``VBox(children=(...``), so draw :func:`path_grid` as the static version.
    """
    import ipywidgets as w

    schedule = w.Dropdown(options=sorted(SCHEDULES), value="condot", description="schedule")
    t = w.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="t", continuous_update=False)
    out = w.Output()

    def draw(*_):
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(5, 5))
            plot_marginal_field(MixtureOracle(target, AffineGaussianPath(schedule.value)), t.value, ax=ax,
                                extent=extent)
            plt.show()

    schedule.observe(draw, names="value")
    t.observe(draw, names="value")
    draw()
    return w.VBox([w.HBox([schedule, t]), out])
