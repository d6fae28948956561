"""The one explorer (issues 15 and 22): frames drawn once per grid point, the live widget and the HTML slider show
the frame of the values asked for with an alt text that names them, it shows itself as HTML (no widget view), bad
input is refused; chapter 2's path explorer and its static grid."""

import io
import json
import re

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import QuadMesh
from matplotlib.image import imread
from matplotlib.quiver import Quiver

import fmlearn as fm
from fmlearn import widgets
from fmlearn.widgets import Explorer

from _browser import chromium, console_errors, needs_browser

TARGET = fm.GaussianMixture.symmetric_2d(n_modes=3, radius=3.0, std=0.7)


def _draw_square(a, b):
    """A frame whose pixels encode its values: a black square at (a, b) on white."""
    fig = plt.figure(figsize=(1, 1))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set(xlim=(0, 3), ylim=(0, 3))
    ax.axis("off")
    ax.add_patch(plt.Rectangle((a, b), 1, 1, color="k"))
    return fig


def _dark_cell(png: bytes) -> tuple[int, int]:
    """Where the square is in a frame: (a, b) from the darkest 3x3 cell of the image."""
    img = imread(io.BytesIO(png))[..., :3].mean(-1)
    h, w = img.shape
    cells = img[: h // 3 * 3, : w // 3 * 3].reshape(3, h // 3, 3, w // 3).mean(axis=(1, 3))  # rows top->bottom
    row, col = np.unravel_index(cells.argmin(), cells.shape)
    return int(col), int(2 - row)


@pytest.fixture
def squares():
    calls = []

    def draw(a, b):
        calls.append((a, b))
        return _draw_square(a, b)

    ex = Explorer(draw, {"a": [0, 1, 2], "b": [0, 2]}, look="the square moves", start={"a": 1},
                  image_format="png", dpi=30)
    return ex, calls


def test_frames_are_drawn_once_in_grid_order(squares):
    ex, calls = squares
    assert calls == []  # nothing drawn before it is shown
    frames = ex.frames
    assert calls == [(a, b) for a in (0, 1, 2) for b in (0, 2)]
    assert ex.frames is frames and len(calls) == 6  # cached
    for a in (0, 1, 2):
        for b in (0, 2):
            assert _dark_cell(ex.frame(a=a, b=b)) == (a, b)


def test_html_slider_holds_every_frame_and_starts_where_asked(squares):
    ex, _ = squares
    page = ex.to_html()
    data = json.loads(re.search(r'<script type="application/json" class="fmx-data">(.*?)</script>', page,
                                re.S).group(1))
    assert data["shape"] == [3, 2] and data["labels"] == [["0", "1", "2"], ["0", "2"]]
    import base64
    assert [base64.b64decode(f) for f in data["frames"]] == ex.frames
    first = re.search(r'<img class="fmx-frame"[^>]*src="data:image/png;base64,([^"]+)"', page).group(1)
    assert _dark_cell(base64.b64decode(first)) == (1, 0)  # start a = 1, b at its first value
    assert re.findall(r'<input type="range" min="0" max="(\d)" step="1" value="(\d)"', page) == [("2", "1"),
                                                                                                   ("1", "0")]
    assert "What to look at:</b> the square moves" in page
    assert "http" not in page  # nothing fetched


def _shown(img_tag: str) -> tuple[bytes, str]:
    """The image bytes and the alt text of an ``<img>`` tag with a data URI."""
    import base64
    import html

    alt = html.unescape(re.search(r'alt="([^"]*)"', img_tag).group(1))
    return base64.b64decode(re.search(r'src="data:image/\w+;base64,([^"]+)"', img_tag).group(1)), alt


def test_widget_shows_the_frame_of_the_slider_values(squares):
    pytest.importorskip("ipywidgets")
    ex, _ = squares
    box = ex.widget()
    look, slider_a, slider_b, image = box.children
    assert "the square moves" in look.value
    assert [_dark_cell(_shown(image.value)[0]), _shown(image.value)[1]] == [(1, 0), "Explorer frame, a = 1, b = 0"]
    slider_b.value = 1  # the index of b = 2
    assert [_dark_cell(_shown(image.value)[0]), _shown(image.value)[1]] == [(1, 2), "Explorer frame, a = 1, b = 2"]
    slider_a.value = 0
    assert _dark_cell(_shown(image.value)[0]) == (0, 2)


def test_play_button_is_linked_to_its_slider():
    w = pytest.importorskip("ipywidgets")
    ex = Explorer(lambda t: _draw_square(t, 0), {"t": [0, 1, 2]}, look="it moves", play="t", dpi=20)
    box = ex.widget()
    (player, slider) = box.children[1].children
    assert isinstance(player, w.Play) and (player.min, player.max) == (0, 2)
    assert 'class="fmx-play"' in ex.to_html()


def test_each_frame_and_slider_say_what_they_show():
    """Alt text: the title and every slider's value with its unit; a slider announces its value and unit
    (aria-valuetext), not its index; the HTML carries what its script needs to keep both in step."""
    ex = Explorer(_draw_square, {"a": [0, 1, 2], "b": [0.0, 2.0]}, look="x", title="A square", dpi=20,
                  units={"a": "cells"}, labels={"b": ["low", "high"]}, start={"b": 2.0})
    assert ex.alt() == "A square, a = 0 cells, b = high"
    assert ex.alt(a=2, b=0) == "A square, a = 2 cells, b = low"
    assert [ex.value_text("a", 1), ex.value_text("b", 0)] == ["1 cells", "low"]
    page = ex.to_html()
    assert _shown(re.search(r"<img [^>]*>", page).group(0))[1] == "A square, a = 0 cells, b = high"
    assert re.findall(r'<input type="range"[^>]*aria-label="(\w)" aria-valuetext="([^"]*)"', page) == \
        [("a", "0 cells"), ("b", "high")]
    assert re.findall(r"<output>([^<]*)</output>", page) == ["0 cells", "high"]
    data = json.loads(re.search(r'<script type="application/json" class="fmx-data">(.*?)</script>', page,
                                re.S).group(1))
    assert (data["title"], data["names"], data["units"]) == ("A square", ["a", "b"], ["cells", ""])
    assert 'img.alt = alt.join(", ")' in page and 'setAttribute("aria-valuetext"' in page


def test_a_label_cannot_close_the_script_that_holds_the_frames():
    ex = Explorer(lambda a: _draw_square(a, 0), {"a": [0, 1]}, look="x", dpi=20, labels={"a": ["</script>", "b"]})
    page = ex.to_html()
    data = re.search(r'<script type="application/json" class="fmx-data">(.*?)</script>', page, re.S).group(1)
    assert json.loads(data)["labels"] == [["</script>", "b"]]


def test_mimebundle_is_the_html_and_a_line_of_text_even_in_a_kernel(squares, monkeypatch):
    """No widget view, even in a live kernel: JupyterLab would show it before the HTML, and a saved notebook would
    reopen on "Error displaying widget: model not found" (issue 22)."""
    IPython = pytest.importorskip("IPython")
    ex, _ = squares
    bundle = ex._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"}
    assert "What to look at: the square moves" in bundle["text/plain"]
    shell = type("Shell", (), {"kernel": object()})()
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    assert set(ex._repr_mimebundle_()) == {"text/plain", "text/html"}


def test_static_fallback_puts_frames_side_by_side(squares):
    ex, _ = squares
    fig = ex.static("a")
    assert [ax.get_title() for ax in fig.axes] == ["a = 0", "a = 1", "a = 2"]
    plt.close(fig)


@pytest.mark.parametrize("kwargs, match", [
    (dict(params={}), "params must be a non-empty"),
    (dict(params={"a": []}), r"params\['a'\] is empty"),
    (dict(look=""), "look must be one non-empty line"),
    (dict(start={"c": 1}), "start names 'c'"),
    (dict(start={"a": "x"}), r"start\['a'\] = 'x' is not one of its values"),
    (dict(labels={"a": ["x"]}), r"labels\['a'\] has 1 entries for 3 values"),
    (dict(play="z"), "play must name a parameter"),
    (dict(image_format="gif"), "image_format must be 'webp' or 'png', got 'gif'"),
    (dict(title=" "), "title must be a short non-empty text"),
    (dict(units={"c": "cm"}), "units names 'c'"),
    (dict(params={"a": list(range(30)), "b": list(range(30))}), "900 frames"),
])
def test_bad_input_is_refused_with_the_argument_named(kwargs, match):
    args = dict(draw=_draw_square, params={"a": [0, 1, 2], "b": [0, 2]}, look="x")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        Explorer(args.pop("draw"), args.pop("params"), **args)


def test_draw_must_return_a_figure():
    ex = Explorer(lambda a: None, {"a": [0]}, look="x")
    with pytest.raises(TypeError, match="draw must return a matplotlib Figure, got NoneType for {'a': 0}"):
        ex.frames


def test_path_explorer_draws_each_schedule_and_time(monkeypatch):
    """Chapter 2's explorer: a frame per (schedule, t), each the exact field of that schedule at that t."""
    drawn = []
    real = widgets.paths.plot_marginal_field
    monkeypatch.setattr(widgets.paths, "plot_marginal_field",
                        lambda oracle, t, **kw: (drawn.append((oracle.path.schedule.name, t)), real(oracle, t, **kw)))
    ex = widgets.path_explorer(TARGET, schedules=("condot", "vp"), times=(0.0, 0.5))
    assert ex.params == {"schedule": ["condot", "vp"], "t": [0.0, 0.5]}
    assert ex.start == {"schedule": 0, "t": 1}
    assert len(ex.frames) == 4
    assert drawn == [(fm.get_schedule(s).name, t) for s in ("condot", "vp") for t in (0.0, 0.5)]
    assert len(set(ex.frames)) == 4  # four different pictures


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


def test_sphere_flow_shows_the_trajectory_at_each_frame_time():
    """Chapter 9's animation: frames at grid steps from t = 0 to 1; the sphere panel of a frame holds exactly
    the trajectory's points at that step; bad shapes are refused."""
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    traj = torch.nn.functional.normalize(torch.randn(11, 50, 3, generator=g), dim=-1)
    times = torch.linspace(0, 1, 11)
    ex = widgets.sphere_flow(traj, times, n=20, frames=6)
    assert ex.params["t"] == [0, 2, 4, 6, 8, 10] and ex.play == "t" and ex.labels["t"][-1] == "1.00"
    fig = ex._draw(t=4)
    shown = np.concatenate([np.stack(c._offsets3d, -1) for c in fig.axes[0].collections[-2:]])  # back, front
    expected = traj[4, :20].numpy()
    key = lambda a: a[np.lexsort(a.T)]  # noqa: E731  the same set of points, in any order
    np.testing.assert_allclose(key(shown), key(expected), atol=1e-6)
    assert not np.allclose(key(shown), key(traj[2, :20].numpy()), atol=1e-3)
    plt.close(fig)
    with pytest.raises(ValueError, match=r"trajectory must be a tensor of shape \(steps \+ 1, batch, 3\)"):
        widgets.sphere_flow(traj[..., :2], times)
    with pytest.raises(ValueError, match=r"times must hold one time per trajectory step \(11\)"):
        widgets.sphere_flow(traj, times[:5])


@needs_browser
def test_the_html_slider_answers_the_keyboard_in_a_browser(tmp_path):
    """The HTML explorer alone on a page (as in the web book, from file://): an arrow key moves a slider, and the
    frame, its alt text, the value shown and the slider's aria-valuetext follow; Home goes back to the start."""
    from selenium.webdriver.common.keys import Keys

    ex = Explorer(_draw_square, {"a": [0, 1, 2], "b": [0.0, 2.0]}, look="the square moves", title="A square",
                  units={"a": "cells"}, image_format="png", dpi=30)
    page = tmp_path / "explorer.html"
    page.write_text(f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>t</title></head>"
                    f"<body>{ex.to_html()}</body></html>")
    driver = chromium(800, 600)
    try:
        driver.get(page.as_uri())
        slider_a, slider_b = driver.find_elements("css selector", "input[type=range]")
        img = driver.find_element("css selector", "img.fmx-frame")

        def state():
            import base64
            return (_dark_cell(base64.b64decode(img.get_attribute("src").split(",", 1)[1])), img.get_attribute("alt"),
                    slider_a.get_attribute("aria-valuetext"), driver.find_element("css selector", "output").text)

        assert state() == ((0, 0), "A square, a = 0 cells, b = 0", "0 cells", "0 cells")
        slider_a.send_keys(Keys.ARROW_RIGHT)
        assert state() == ((1, 0), "A square, a = 1 cells, b = 0", "1 cells", "1 cells")
        slider_b.send_keys(Keys.ARROW_RIGHT)
        assert state()[:2] == ((1, 2), "A square, a = 1 cells, b = 2")
        assert slider_b.get_attribute("aria-valuetext") == "2"
        slider_a.send_keys(Keys.HOME)
        assert state()[1] == "A square, a = 0 cells, b = 2"
        assert not console_errors(driver)
    finally:
        driver.quit()
