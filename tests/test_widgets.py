"""The path explorer (issue 11, item 7): it builds, it redraws on a value change with the chosen schedule and
time, and the static grid it falls back to holds one exact panel per (schedule, t)."""

import matplotlib.pyplot as plt
import pytest
from matplotlib.collections import QuadMesh
from matplotlib.quiver import Quiver

import fmlearn as fm
from fmlearn import widgets

TARGET = fm.GaussianMixture.symmetric_2d(n_modes=3, radius=3.0, std=0.7)


@pytest.fixture
def drawn(monkeypatch):
    """Each panel the explorer draws, as (schedule name, t), without rendering it."""
    calls = []
    monkeypatch.setattr(widgets, "plot_marginal_field",
                        lambda oracle, t, **kw: calls.append((oracle.path.schedule.name, t)))
    monkeypatch.setattr(plt, "show", lambda: None)
    return calls


def test_explorer_builds_with_its_controls(drawn):
    w = pytest.importorskip("ipywidgets")
    box = widgets.path_explorer(TARGET)
    (controls, out) = box.children
    schedule, t = controls.children
    assert isinstance(box, w.VBox) and isinstance(out, w.Output)
    assert isinstance(schedule, w.Dropdown) and set(schedule.options) == set(fm.schedules.SCHEDULES)
    assert isinstance(t, w.FloatSlider) and (t.min, t.max, t.value) == (0.0, 1.0, 0.5)
    assert drawn == [(fm.get_schedule("condot").name, 0.5)]  # the first panel is drawn at once


def test_explorer_redraws_on_a_value_change(drawn):
    pytest.importorskip("ipywidgets")
    box = widgets.path_explorer(TARGET)
    schedule, t = box.children[0].children
    t.value = 0.25
    schedule.value = "vp"
    assert drawn[1:] == [(fm.get_schedule("condot").name, 0.25), (fm.get_schedule("vp").name, 0.25)]


def test_static_grid_has_one_exact_panel_per_schedule_and_time():
    """The fallback: a (schedules x times) grid, rows labelled by schedule, each panel a density heat map and
    the velocity's arrows."""
    schedules, times = ("condot", "vp"), (0.0, 0.5, 1.0)
    fig = widgets.path_grid(TARGET, schedules=schedules, times=times)
    axes = fig.axes
    assert len(axes) == len(schedules) * len(times)
    assert [axes[i * len(times)].get_ylabel() for i in range(len(schedules))] == \
        [fm.get_schedule(s).name for s in schedules]
    for ax in axes:
        assert any(isinstance(c, QuadMesh) for c in ax.collections) or ax.images
        assert any(isinstance(c, Quiver) for c in ax.collections)
    plt.close(fig)


def test_explorer_needs_ipywidgets(monkeypatch):
    """Without ipywidgets the explorer raises ImportError (the chapter draws path_grid regardless)."""
    import builtins

    real_import = builtins.__import__

    def no_widgets(name, *args, **kw):
        if name == "ipywidgets":
            raise ImportError("no ipywidgets here")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_widgets)
    with pytest.raises(ImportError):
        widgets.path_explorer(TARGET)
