"""The course's figures. Every function draws on an ``ax`` (made if not given),
labels its axes, titles the panel and returns the ``ax``.

Two things every figure of the course gets from this module, set when it is imported:

* **Colours a colour-blind reader can tell apart.** Matplotlib's colour cycle ``C0, C1, ...`` becomes Okabe and
  Ito's palette (Okabe & Ito 2008, "Color Universal Design"): C0 blue, C1 orange, C2 bluish green, C3 vermillion,
  C4 reddish purple, C5 sky blue, C6 yellow, C7 grey, the same hues as matplotlib's default blue, orange, green,
  red... so code that says ``"C3"`` still means "the red one". A pair of colours that carries a meaning is one of
  :data:`PAIRS` (checked under simulated deuteranopia and protanopia by ``tests/test_palette.py``): never C1 with
  C3, which such readers see as one orange.
* **A short description (alt text) for screen readers.** In IPython, a figure is displayed as ``text/html``, an
  ``<img alt="...">`` of the same PNG, beside the usual ``image/png``; see :func:`figure_alt` and
  :func:`set_alt`.
"""

from __future__ import annotations

import base64
import html
import re
from typing import Callable, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure
import numpy as np
import torch

from ._checks import check_real, model_context
from .oracle import MixtureOracle

# Okabe & Ito's eight colours, in the order of the course's colour cycle (grey replaces their black, which stays
# for reference marks: start points, exact values).
OKABE_ITO = {
    "blue": "#0072B2", "orange": "#E69F00", "bluish green": "#009E73", "vermillion": "#D55E00",
    "reddish purple": "#CC79A7", "sky blue": "#56B4E9", "yellow": "#F0E442", "grey": "#999999",
}
BLUE, ORANGE, GREEN, VERMILLION = (OKABE_ITO[k] for k in ("blue", "orange", "bluish green", "vermillion"))
PURPLE, SKY_BLUE = OKABE_ITO["reddish purple"], OKABE_ITO["sky blue"]

# The colour pairs whose meaning the course's figures carry by colour alone (the test checks each under
# deuteranopia and protanopia, drawn opaque and at the transparency given). Roles, not hues: a chapter says
# ``GAIN`` for "where the density rises", and the palette, not the chapter, decides what a reader can tell apart.
GAIN, LOSS = BLUE, VERMILLION                  # chapter 10: land here / leave from here (filled, alpha 0.5)
FIRST, SECOND = BLUE, ORANGE                   # two runs compared on one axes: losses, samples, lines
START, END = "black", VERMILLION               # trajectories: t = 0 and t = 1; pairs x_0 and x_1
REFERENCE, HIGHLIGHT = "0.6", VERMILLION       # grey data behind the coloured thing the figure is about
# name: ((colour, alpha), (colour, alpha)), each drawn over white at its alpha
PAIRS: dict[str, tuple[tuple[str, float], tuple[str, float]]] = {
    "gain / loss, filled (chapter 10)": ((GAIN, 0.5), (LOSS, 0.5)),
    "first / second: two runs' lines": ((FIRST, 1.0), (SECOND, 1.0)),
    "first / second: two sample clouds": ((FIRST, 0.5), (SECOND, 0.5)),
    "start / end of trajectories, x_0 / x_1": ((START, 1.0), (END, 1.0)),
    "grey reference / highlight": ((REFERENCE, 1.0), (HIGHLIGHT, 1.0)),
    "first / highlight (blue arrows under vermillion ones)": ((FIRST, 1.0), (HIGHLIGHT, 1.0)),
    "density heat map (mid Blues) / arrows": (("#6BAED6", 1.0), (HIGHLIGHT, 1.0)),
    "mode shares: bars / tolerance band": ((FIRST, 1.0), (GREEN, 0.25)),
    "first / bluish green": ((FIRST, 1.0), (GREEN, 1.0)),
    "second / bluish green (the third line of a plot)": ((SECOND, 1.0), (GREEN, 1.0)),
    "bluish green / vermillion": ((GREEN, 1.0), (VERMILLION, 1.0)),
}
# Modes in a ring (the 8 Gaussians, the 11-mode mixture): no palette has 11 colours a colour-blind reader tells
# apart, and position already tells far modes apart, so neighbours differ: three colours in turn around the ring
# (first / second / bluish green, each pair above; an odd count still gives the last and the first two colours).
MODE_CYCLE = (FIRST, SECOND, GREEN)


def mode_colours(index) -> list[str]:
    """The colour of each mode index (ints, or an integer tensor/array) for modes numbered around a ring."""
    return [MODE_CYCLE[int(i) % len(MODE_CYCLE)] for i in np.asarray(index).reshape(-1)]


def use_course_colors() -> None:
    """Make Okabe and Ito's palette matplotlib's colour cycle (``C0``... and the default of every line)."""
    mpl.rcParams["axes.prop_cycle"] = mpl.cycler(color=list(OKABE_ITO.values()))


use_course_colors()

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
    """Paths of ``n`` particles from a trajectory (T, batch, 2): start (black), end (vermillion)."""
    ax = _ax(ax)
    tr = _np(trajectory)[:, :n]
    ax.plot(tr[:, :, 0], tr[:, :, 1], color="C0", lw=0.6, alpha=0.5)
    ax.scatter(tr[0, :, 0], tr[0, :, 1], s=4, color=START, label="t = 0", zorder=3)
    ax.scatter(tr[-1, :, 0], tr[-1, :, 1], s=4, color=END, label="t = 1", zorder=3)
    ax.legend(loc="upper right", fontsize=8)
    return _finish(ax, title, extent)


def plot_vector_field(velocity: Callable, t: float, ax: Axes | None = None, extent: Extent = DEFAULT_EXTENT,
                      n: int = 21,
                      title: str | None = None, color: str = "C0", scale: float | None = None,
                      width: float | None = None) -> Axes:
    """Arrows of ``velocity(x, t)`` on an n x n grid at time t.

    By default matplotlib scales the arrows to fit each panel; give ``scale`` (velocity
    units per data unit of arrow length) to draw several panels on one common scale. ``width``: the shafts'
    width as a fraction of the panel's width (matplotlib's default when None); two fields drawn on one panel
    stay both visible where they agree when the first is drawn wide and the second narrow. A network is
    evaluated as every sampler does (:func:`fmlearn._checks.model_context`: eval mode, no gradients, on its
    device and in its dtype).
    """
    ax = _ax(ax)
    X, Y, pts = grid_points(extent, n)
    with model_context(velocity, pts) as (net, pts):
        v = _np(net(pts, t))
    fixed = {} if scale is None else {"scale_units": "xy", "scale": scale}
    if width is not None:
        fixed["width"] = check_real("width", width, positive=True)
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
    plot_vector_field(oracle, t, ax=ax, extent=extent, n=n_arrows, color=HIGHLIGHT, scale=scale)
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
    ax.axhspan(1 / k - tolerance, 1 / k + tolerance, color=GREEN, alpha=0.25, label=f"1/{k} ± {tolerance:.0%}",
               zorder=0)
    ax.bar(np.arange(k), f, color=FIRST, zorder=2)
    ax.axhline(1 / k, color="black", lw=1, label=f"1/{k}", zorder=3)
    ax.set(title=title, xlabel="mode", ylabel="fraction", xticks=np.arange(k))
    ax.legend(fontsize=8)
    return ax


# ---- alt text -------------------------------------------------------------------------------------------------

_GREEK = {name: chr(code) for name, code in (
    ("alpha", 0x3B1), ("beta", 0x3B2), ("gamma", 0x3B3), ("delta", 0x3B4), ("epsilon", 0x3B5), ("varepsilon", 0x3B5),
    ("kappa", 0x3BA), ("lambda", 0x3BB), ("mu", 0x3BC), ("nu", 0x3BD), ("pi", 0x3C0), ("rho", 0x3C1),
    ("sigma", 0x3C3), ("tau", 0x3C4), ("phi", 0x3C6), ("varphi", 0x3C6), ("theta", 0x3B8), ("psi", 0x3C8),
    ("omega", 0x3C9), ("eta", 0x3B7), ("xi", 0x3BE), ("chi", 0x3C7), ("Delta", 0x394), ("Phi", 0x3A6),
    ("Sigma", 0x3A3), ("Omega", 0x3A9), ("nabla", 0x2207), ("partial", 0x2202), ("infty", 0x221E),
    ("approx", 0x2248), ("le", 0x2264), ("leq", 0x2264), ("ge", 0x2265), ("geq", 0x2265), ("times", 0xD7),
    ("cdot", 0xB7), ("pm", 0xB1), ("to", 0x2192), ("rightarrow", 0x2192), ("in", 0x2208), ("sim", 0x223C),
    ("ell", 0x2113), ("|", 0x2016), ("mid", 0x7C), ("lvert", 0x7C), ("rvert", 0x7C), ("sqrt", 0x221A),
    ("top", 0x1D40), ("ldots", 0x2026), ("dots", 0x2026), ("leftarrow", 0x2190), ("mapsto", 0x21A6))}
_BLACKBOARD = {"R": "\u211d", "E": "\U0001d53c", "N": "\u2115", "T": "\U0001d54b", "S": "\U0001d54a"}


def plain_text(text: str) -> str:
    """A matplotlib title as plain text for a screen reader: the mathtext of ``$...$`` without dollars, braces or
    backslashes (``$\\alpha_t$`` gives ``α_t``, ``$\\mathbb R^d$`` gives ``ℝ^d``), one line."""
    out = re.sub(r"\\mathbb\s*\{?([A-Z])\}?", lambda m: _BLACKBOARD.get(m.group(1), m.group(1)), text)
    out = re.sub(r"\\(?:math[a-z]*|text[a-z]*|operatorname|left|right|hat|bar|tilde|dot|ddot|vec)(?![A-Za-z])\s*",
                 "", out)
    out = re.sub(r"\\([A-Za-z]+|\|)", lambda m: _GREEK.get(m.group(1), m.group(1)), out)
    out = re.sub(r"\\[,;:! ]", " ", out)
    out = out.replace("$", "").replace("{", "").replace("}", "")
    return " ".join(out.split())


def set_alt(fig: Figure, text: str) -> Figure:
    """Give ``fig`` the description a screen reader reads (its ``alt`` text), in place of the one
    :func:`figure_alt` makes from its titles; returns ``fig``. Use it where the titles do not say what the figure
    shows (one sentence: what is drawn, and what to look at)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be a non-empty description of the figure, got {text!r}")
    fig.fmlearn_alt = " ".join(text.split())
    return fig


MAX_PANELS_NAMED = 6  # a figure with more panels under a suptitle is described by the suptitle and their number


def figure_alt(fig: Figure) -> str:
    """The alt text of a figure: the text given to :func:`set_alt`, else its suptitle followed by the titles of
    its panels, else the one panel's title with its axis labels, in plain text (:func:`plain_text`)."""
    explicit = getattr(fig, "fmlearn_alt", None)
    if explicit:
        return explicit
    titles = []
    for ax in fig.axes:
        title = " ".join(t for t in (ax.get_title("left"), ax.get_title(), ax.get_title("right")) if t)
        if title:
            titles.append(plain_text(title))
    suptitle = plain_text(fig.get_suptitle())
    if suptitle:
        if len(titles) > MAX_PANELS_NAMED:
            return f"{suptitle} ({len(titles)} panels)"
        return suptitle + (f" (panels: {'; '.join(titles)})" if len(titles) > 1 else "")
    if len(titles) == 1:
        ax = next(a for a in fig.axes if a.get_title())
        x, y = plain_text(ax.get_xlabel()), plain_text(ax.get_ylabel())
        return titles[0] + (f": {y} against {x}" if x and y else "")
    if titles:
        return f"{len(titles)} panels: " + "; ".join(titles)
    return "a figure without a title"


def figure_html(fig: Figure, alt: str | None = None) -> str:
    """The figure as ``<img alt="..." src="data:image/png;base64,...">``: the PNG that JupyterLab shows for it (the
    inline backend's, cropped to its content) with its description, ``alt`` or :func:`figure_alt`."""
    from IPython.core.pylabtools import print_figure

    png = print_figure(fig, fmt="png", bbox_inches="tight")
    if not png:  # a figure with nothing drawn
        return ""
    alt = figure_alt(fig) if alt is None else alt
    return (f'<img alt="{html.escape(alt, quote=True)}" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">')


def _html_with_alt(fig: Figure):
    """IPython's text/html formatter for a figure: the ``<img>`` of :func:`figure_html`, and the same alt text in
    the output's metadata, ``{"text/html": {"alt": ...}}``, for tools that keep the image/png."""
    alt = figure_alt(fig)
    return figure_html(fig, alt), {"alt": alt}


def register_alt_text(shell=None) -> bool:
    """Display every matplotlib figure in ``shell`` (the running IPython, if any) with its alt text: a text/html
    ``<img alt=...>`` (JupyterLab prefers it to the bare image/png, which stays in the output). Called when this
    module is imported; returns whether there was a shell to register with.

    Matplotlib's inline backend removes every formatter of figures when it starts (on the first figure, or at
    ``%matplotlib inline``), so the backend is started first, and the formatter is put back before each cell runs
    if it was removed."""
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        shell = get_ipython()
    if shell is None:
        return False
    plt.switch_backend(mpl.get_backend())  # start the backend now (as the first figure would), so it is set up
    html_formatter = shell.display_formatter.formatters["text/html"]

    def ensure(*_):
        if html_formatter.type_printers.get(Figure) is not _html_with_alt:
            html_formatter.for_type(Figure, _html_with_alt)

    ensure()
    if not getattr(shell, "_fmlearn_alt_hook", False):
        shell.events.register("pre_run_cell", ensure)
        shell._fmlearn_alt_hook = True
    return True


register_alt_text()
