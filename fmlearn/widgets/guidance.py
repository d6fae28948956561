"""Chapter 6: the guidance weight w on a slider beside the samples it gives.

The explorer takes samples that were already drawn and measured (one set per w, e.g. a guidance sweep),
so it costs no sampling: one frame per w shows a grid of images, one row per asked class, the first
``per_class`` samples of that class, and in the title the measures the caller passes (the held-out
classifier's accuracy, the worst class's distance to real images over its floor). When every w's samples
start from the same noise, a grid position shows the same starting noise at every w, so moving the slider
shows what guidance does to one sample.
"""

from __future__ import annotations

import numbers
from typing import Any, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from .._checks import check_positive_int, check_real
from ..digits import plot_digits
from .explorer import Explorer

__all__ = ["guidance_figure", "guidance_explorer"]

MAX_FRAMES = 40


def _check_labels(labels: Any) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.dtype.is_floating_point \
            or labels.dtype == torch.bool or len(labels) == 0:
        got = f"{labels.dtype} tensor of shape {tuple(labels.shape)}" if isinstance(labels, torch.Tensor) \
            else type(labels).__name__
        raise ValueError(f"labels must be a non-empty 1-D integer tensor (the asked class of each sample), got {got}")
    return labels.cpu()


def _check_images(name: str, images: Any, n: int) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 1 \
            or not images.is_floating_point():
        got = f"{images.dtype} tensor of shape {tuple(images.shape)}" if isinstance(images, torch.Tensor) \
            else type(images).__name__
        raise ValueError(f"{name} must be a floating tensor of one-channel images (n, 1, h, w), got {got}")
    if len(images) != n:
        raise ValueError(f"{name} holds {len(images)} images but labels has {n} entries: one label per image")
    return images


def _rows(images: torch.Tensor, labels: torch.Tensor, per_class: int) -> tuple[torch.Tensor, list[int]]:
    """The first ``per_class`` images of each class, classes in increasing order, row by row."""
    classes = sorted(set(labels.tolist()))
    rows = []
    for c in classes:
        of_c = images[labels == c]
        if len(of_c) < per_class:
            raise ValueError(f"per_class = {per_class}, but class {c} has only {len(of_c)} samples: "
                             f"ask for at most {len(of_c)} per class")
        rows.append(of_c[:per_class])
    return torch.cat(rows), classes


def guidance_figure(images: torch.Tensor, labels: torch.Tensor, w: float, *, accuracy: float | None = None,
                    worst_ratio: float | None = None, per_class: int = 8) -> Figure:
    """One frame: the samples of guidance weight ``w`` as a grid, one row per asked class (increasing), the
    first ``per_class`` samples of each, drawn by :func:`fmlearn.digits.plot_digits` (values in [-1, 1]).

    Args:
        images: (n, 1, h, w) samples; labels: (n,) their asked classes (integers).
        accuracy, worst_ratio: optional measures of these samples for the title (a fraction classified as
            asked; the worst class's distance to real images over its floor).
    """
    labels = _check_labels(labels)
    images = _check_images("images", images, len(labels))
    w = check_real("w", w)
    check_positive_int("per_class", per_class)
    grid, classes = _rows(images, labels, per_class)
    fig, ax = plt.subplots(figsize=(0.5 * per_class + 1.2, 0.5 * len(classes) + 1.0))
    title = f"w = {w:g}"
    if accuracy is not None:
        title += f"; {check_real('accuracy', accuracy):.1%} classified as asked"
    if worst_ratio is not None:
        title += f"\ndistance to real digits / floor, worst digit: {check_real('worst_ratio', worst_ratio):.2f}"
    plot_digits(grid.detach().float().cpu(), ncols=per_class, ax=ax, title=title)
    ax.axis("on")
    ax.set(xticks=[], yticks=[1 + k * (images.shape[2] + 1) + (images.shape[2] - 1) / 2 for k in range(len(classes))],
           yticklabels=[str(c) for c in classes])
    ax.set_ylabel("asked class", fontsize=9)
    for side in ax.spines.values():
        side.set_visible(False)
    fig.subplots_adjust(left=0.14, right=0.97, bottom=0.02, top=0.9)
    return fig


def _numbers(name: str, values: Any, n: int) -> list[float] | None:
    if values is None:
        return None
    if isinstance(values, torch.Tensor):
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a sequence of numbers, one per w, got {type(values).__name__}")
    if len(values) != n:
        raise ValueError(f"{name} must hold one number per w ({n}), got {len(values)}")
    return [check_real(f"{name}[{k}]", v) for k, v in enumerate(values)]


def _trend(ws: Sequence[float], values: Sequence[float], fmt: str) -> str:
    """How ``values`` (one per w) move as w grows, in words: from the first w's value to the last one's, and
    whether at every step (e.g. "goes from 80.0% to 100.0%, rising at every step"). ``ws`` need not be sorted."""
    ordered = [v for _, v in sorted(zip(ws, values))]
    steps = [b - a for a, b in zip(ordered, ordered[1:])]
    span = f"goes from {ordered[0]:{fmt}} to {ordered[-1]:{fmt}}"
    if all(d == 0 for d in steps):
        return f"stays at {ordered[0]:{fmt}}"
    if all(d > 0 for d in steps):
        return f"{span}, rising at every step"
    if all(d < 0 for d in steps):
        return f"{span}, falling at every step"
    if all(d >= 0 for d in steps):
        return f"{span}, never falling"
    if all(d <= 0 for d in steps):
        return f"{span}, never rising"
    w_sorted = sorted(ws)
    k = next(k for k, d in enumerate(steps) if (d < 0) == (ordered[-1] >= ordered[0]))  # the first step against
    against = "falls" if steps[k] < 0 else "rises"
    return f"{span}, not monotonically (it {against} from w = {w_sorted[k]:g} to w = {w_sorted[k + 1]:g})"


def _default_look(ws: Sequence[float], accuracies: Sequence[float] | None,
                  worst_ratios: Sequence[float] | None) -> str:
    """The what-to-look-at line, its trends written from the numbers given (none claimed that was not measured)."""
    parts = []
    if len(ws) > 1 and accuracies is not None:
        parts.append(f"the title's accuracy {_trend(ws, accuracies, '.1%')}")
    if len(ws) > 1 and worst_ratios is not None:
        parts.append(f"the worst digit's distance to real digits (over its floor) {_trend(ws, worst_ratios, '.2f')}")
    lead = f"raise w from {min(ws):g} to {max(ws):g}" if len(ws) > 1 else f"w = {ws[0]:g}"
    return "; ".join([lead + (": " + parts[0] if parts else ""), *parts[1:],
                      "each place in the grid keeps its starting noise, and its strokes turn darker"])


def guidance_explorer(ws: Sequence[float], samples: Sequence[torch.Tensor], labels: torch.Tensor, *,
                      accuracies: Sequence[float] | None = None, worst_ratios: Sequence[float] | None = None,
                      per_class: int = 8, start: float | None = None, look: str | None = None) -> Explorer:
    """The guidance weight on a slider beside its samples (an :class:`~fmlearn.widgets.Explorer`), from samples
    already drawn: nothing is sampled again.

    Args:
        ws: the guidance weights, distinct numbers (at most 40), in the slider's order.
        samples: one tensor (n, 1, h, w) per w, in [-1, 1]; sample k was asked to be class ``labels[k]``.
        labels: (n,) the asked class of each sample, shared by all w.
        accuracies, worst_ratios: optional, one number per w, shown in that frame's title.
        per_class: samples shown per class (the first ones of each class).
        start: the w shown first (the nearest in ``ws``; default the first).
        look: the what-to-look-at line (default: written from ``accuracies`` and ``worst_ratios`` where given:
            each one's value at the smallest and the largest w, and whether it moves the same way at every step).
    """
    if isinstance(ws, (str, bytes)) or not isinstance(ws, Sequence) and not isinstance(ws, torch.Tensor):
        raise TypeError(f"ws must be a sequence of guidance weights, got {type(ws).__name__}")
    ws = [check_real(f"ws[{k}]", w) for k, w in enumerate(ws.tolist() if isinstance(ws, torch.Tensor) else ws)]
    if not 1 <= len(ws) <= MAX_FRAMES:
        raise ValueError(f"ws must hold between 1 and {MAX_FRAMES} weights (one frame each), got {len(ws)}")
    if len(set(ws)) != len(ws):
        raise ValueError(f"ws must be distinct (one frame per weight), got {ws}")
    if isinstance(samples, torch.Tensor) or not isinstance(samples, Sequence):
        raise TypeError(f"samples must be a sequence of image tensors, one per w, got {type(samples).__name__}")
    if len(samples) != len(ws):
        raise ValueError(f"samples must hold one tensor per w ({len(ws)}), got {len(samples)}")
    labels = _check_labels(labels)
    samples = [_check_images(f"samples[{k}]", x, len(labels)) for k, x in enumerate(samples)]
    accuracies = _numbers("accuracies", accuracies, len(ws))
    worst_ratios = _numbers("worst_ratios", worst_ratios, len(ws))
    check_positive_int("per_class", per_class)
    _rows(samples[0], labels, per_class)  # enough samples of every class: fail now, not at the first frame
    if start is not None and not isinstance(start, numbers.Real):
        raise TypeError(f"start must be a guidance weight (a number) or None, got {type(start).__name__}")

    def draw(w: float) -> Figure:
        k = ws.index(w)
        return guidance_figure(samples[k], labels, w, per_class=per_class,
                               accuracy=None if accuracies is None else accuracies[k],
                               worst_ratio=None if worst_ratios is None else worst_ratios[k])

    if look is None:
        look = _default_look(ws, accuracies, worst_ratios)
    return Explorer(draw, {"w": ws}, title="Guided digit samples", look=look,
                    start=None if start is None else {"w": start})
