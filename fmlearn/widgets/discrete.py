"""Explorers of discrete flows (see :class:`~fmlearn.widgets.explorer.Explorer`), for chapter 8:

- :func:`token_image`: sequences of tokens laid out as small square images side by side, one RGB array;
  a token's value is a grey level (0 white, the highest level black: ink on paper), a masked token a
  colour no grey level has (:data:`MASK_COLOUR`);
- :func:`draw_token_frame`: that array as a figure, with how many tokens are masked and how many jumped;
- :func:`token_explorer`: a sampler's trajectory of token images on a slider over t, with a play button.

Each takes what the chapter already computed (the trajectory of ``fmlearn.discrete.sample(...,
return_trajectory=True)``) and only draws; every input is checked first, with an error that names the
argument.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from .._checks import check_int_range as _int
from .explorer import Explorer

__all__ = ["MASK_COLOUR", "token_image", "draw_token_frame", "token_explorer"]

MAX_FRAMES = 40  # an explorer draws every frame in advance and embeds it in the page
#: RGB of a masked token: orange, a colour that no grey level of a token has.
MASK_COLOUR = (0.93, 0.47, 0.10)
#: RGB of the one-pixel gaps between images: pale blue, neither grey nor the mask's orange.
GAP_COLOUR = (0.72, 0.82, 0.95)


# -- input checks --------------------------------------------------------------------------------------------
def _tokens(name: str, value: Any, ndim: int, shape_text: str) -> np.ndarray:
    """An integer tensor or array of ``ndim`` axes as an int64 array (bools and floats refused)."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
            raise ValueError(f"{name} must hold integer tokens, got a tensor of dtype {value.dtype}")
        arr = value.detach().cpu().numpy()
    else:
        arr = np.asarray(value)
        if arr.dtype.kind not in "iu":
            raise ValueError(f"{name} must hold integer tokens, got an array of dtype {arr.dtype}")
    if arr.ndim != ndim or 0 in arr.shape:
        raise ValueError(f"{name} must have shape {shape_text}, none of them 0, got {tuple(arr.shape)}")
    return arr.astype(np.int64)


def _check_values(name: str, tokens: np.ndarray, levels: int, mask: int | None) -> None:
    bad = (tokens < 0) | (tokens >= levels)
    if mask is not None:
        bad &= tokens != mask
    if bad.any():
        allowed = f"0..{levels - 1}" + (f" or the mask {mask}" if mask is not None else "")
        raise ValueError(f"{name} must hold tokens in {allowed} (levels = {levels}), got {int(tokens[bad][0])} "
                         f"({int(bad.sum())} such tokens)")


def _layout(name: str, length: int, side: int) -> None:
    if length != side * side:
        raise ValueError(f"{name} has {length} tokens per sequence, but side = {side} lays out square images of "
                         f"side * side = {side * side} tokens")


def _mask(mask: Any, levels: int) -> int | None:
    if mask is None:
        return None
    mask = _int("mask", mask, 0)
    if mask < levels:
        raise ValueError(f"mask must be a state outside the {levels} levels 0..{levels - 1} (say {levels}), "
                         f"got {mask}")
    return mask


# -- the picture ---------------------------------------------------------------------------------------------
def _grid(tokens: np.ndarray, levels: int, side: int, mask: int | None, ncols: int) -> np.ndarray:
    n = tokens.shape[0]
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    grey = 1.0 - np.clip(tokens, 0, levels - 1) / max(levels - 1, 1)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    if mask is not None:
        rgb[tokens == mask] = MASK_COLOUR
    out = np.empty((nrows * (side + 1) + 1, ncols * (side + 1) + 1, 3))
    out[:] = GAP_COLOUR
    for k in range(n):
        r, c = divmod(k, ncols)
        out[1 + r * (side + 1): (r + 1) * (side + 1), 1 + c * (side + 1): (c + 1) * (side + 1)] = \
            rgb[k].reshape(side, side, 3)
    return out


def token_image(tokens: Any, *, levels: int, side: int, mask: int | None = None, ncols: int = 8) -> np.ndarray:
    """Sequences of ``side * side`` tokens as square images in a grid, one RGB array in [0, 1].

    Args:
        tokens: (n, side * side) integer tokens, each in 0..levels - 1 or the mask; token i of a sequence is
            the pixel (i // side, i % side) of its image (row-major, as ``image.reshape(-1)`` flattens it).
        levels: the number of data values; value v is the grey 1 - v / (levels - 1) in every channel.
        side: the side of an image; mask: the mask state (drawn in :data:`MASK_COLOUR`), or None.
        ncols: images per row (fewer if n is smaller).

    Returns an array (rows * (side + 1) + 1, ncols * (side + 1) + 1, 3): image k at row k // ncols and column
    k % ncols of the grid, images apart by one pixel of :data:`GAP_COLOUR` (which also fills unused cells).
    """
    levels, side, ncols = _int("levels", levels, 2), _int("side", side, 1), _int("ncols", ncols, 1)
    mask = _mask(mask, levels)
    arr = _tokens("tokens", tokens, 2, "(n, side * side)")
    _layout("tokens", arr.shape[1], side)
    _check_values("tokens", arr, levels, mask)
    return _grid(arr, levels, side, mask, ncols)


def draw_token_frame(tokens: np.ndarray, *, levels: int, side: int, mask: int | None, ncols: int, title: str,
                     before: np.ndarray | None = None) -> Figure:
    """One frame of :func:`token_explorer`: the images of ``tokens`` (n, side * side), checked as
    :func:`token_image` checks them, with the number of masked tokens in the title and, given the tokens of
    the frame ``before``, how many of them changed since."""
    image = token_image(tokens, levels=levels, side=side, mask=mask, ncols=ncols)
    arr = _tokens("tokens", tokens, 2, "(n, side * side)")
    parts = []
    if mask is not None:
        parts.append(f"{int((arr == mask).sum())} of {arr.size} tokens masked (orange)")
    if before is not None:
        prev = _tokens("before", before, 2, "(n, side * side)")
        if prev.shape != arr.shape:
            raise ValueError(f"before must have the shape of tokens, {arr.shape}, got {prev.shape}")
        parts.append(f"{int((arr != prev).sum())} changed since the last frame")
    text = ", ".join(parts)
    height, width = image.shape[:2]
    fig_w = 6.0
    fig_h = min(7.0, 0.98 * fig_w * height / width + 0.4)  # 0.4 inch for the title
    fig = plt.figure(figsize=(fig_w, fig_h))
    ax = fig.add_axes((0.01, 0.01, 0.98, 1 - 0.42 / fig_h))  # fixed place: no tight_layout, one draw per frame
    ax.imshow(image, interpolation="nearest")
    ax.set_title(f"{title}: {text}" if title and text else title or text, fontsize=9)
    ax.axis("off")
    return fig


def token_explorer(trajectory: Any, times: Any = None, *, levels: int, side: int, mask: int | None = None,
                   ncols: int = 8, frames: int = 33, look: str | None = None) -> Explorer:
    """Token images jumping over time: a slider over t with a play button, each frame the tokens at one time
    of a sampler's trajectory (masked tokens in :data:`MASK_COLOUR`, see :func:`token_image`).

    Args:
        trajectory: (T, n, side * side) tokens at ``times``, or the Solution of
            ``fmlearn.discrete.sample(..., return_trajectory=True)`` (then ``times`` is its own), e.g. a few
            sequences of it, ``sol.trajectory[:, :24]``.
        times: (T,) strictly increasing times in [0, 1], one per state of the trajectory.
        levels, side, mask, ncols: as in :func:`token_image`.
        frames: how many states to show (2 to 40; all of them if the trajectory has fewer): the first, the
            last and others evenly spread over the grid's indices.
        look: what to look at; the default is formatted from the trajectory: with a mask, whether a token, once
            unmasked, ever changed again and whether every token is revealed at the end; without one, how many
            tokens jump more than once.
    """
    if hasattr(trajectory, "trajectory") and hasattr(trajectory, "times"):
        if trajectory.trajectory is None:
            raise ValueError("trajectory is a Solution without its trajectory: sample with return_trajectory=True")
        times = trajectory.times if times is None else times
        trajectory = trajectory.trajectory
    levels, side, ncols = _int("levels", levels, 2), _int("side", side, 1), _int("ncols", ncols, 1)
    mask = _mask(mask, levels)
    tr = _tokens("trajectory", trajectory, 3, "(times, n, side * side)")
    _layout("trajectory", tr.shape[2], side)
    _check_values("trajectory", tr, levels, mask)
    if times is None:
        raise ValueError("times must be given with a trajectory tensor: one time per state, shape "
                         f"({tr.shape[0]},)")
    ts = (times.detach().double().cpu().numpy() if isinstance(times, torch.Tensor)
          else np.asarray(times, dtype=np.float64)).reshape(-1)
    if ts.shape[0] != tr.shape[0]:
        raise ValueError(f"times must hold one time per state of the trajectory: trajectory has {tr.shape[0]} "
                         f"states, times has {ts.shape[0]}")
    if not (np.isfinite(ts).all() and (np.diff(ts) > 0).all() and ts[0] >= 0 and ts[-1] <= 1):
        raise ValueError(f"times must be strictly increasing within [0, 1], got {np.round(ts[:5], 4)}"
                         f"{'...' if len(ts) > 5 else ''}")
    frames = min(_int("frames", frames, 2, MAX_FRAMES), tr.shape[0])
    indices = sorted({int(i) for i in np.linspace(0, tr.shape[0] - 1, frames).round()})
    values = [float(ts[i]) for i in indices]
    position = {v: k for k, v in enumerate(values)}

    def draw(t: float) -> Figure:
        k = position[t]
        before = tr[indices[k - 1]] if k > 0 else None
        return draw_token_frame(tr[indices[k]], levels=levels, side=side, mask=mask, ncols=ncols,
                                title=f"t = {t:.2f}", before=before)

    if look is None:
        if mask is None:
            repeat = int(((tr[1:] != tr[:-1]).sum(0) > 1).sum())
            look = (f"press play: each token jumps from its source value towards its final value; {repeat} of "
                    f"{tr[0].size} tokens jump more than once")
        else:
            rejumps = int(((tr[1:] != tr[:-1]) & (tr[:-1] != mask)).sum())
            left = int((tr[-1] == mask).sum())
            look = ("press play: the masked tokens (orange) are revealed a few at a time, and "
                    + ("a revealed token never changes again" if rejumps == 0 else
                       f"revealed tokens change again ({rejumps} times: re-masked or re-drawn)")
                    + (f"; by t = {ts[-1]:.2f} every token is revealed" if left == 0 else
                       f"; {left} tokens are still masked at t = {ts[-1]:.2f}"))
    # PNG: frames of flat colour blocks compress to less than half their lossy WebP size
    return Explorer(draw, {"t": values}, play="t", labels={"t": [f"{v:.2f}" for v in values]}, look=look,
                    title="Tokens along the discrete flow", image_format="png")
