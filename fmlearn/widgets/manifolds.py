"""Chapter 9: the learned flow on the sphere, as an animation over t (see :class:`Explorer`)."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ..manifolds.plotting import map_axes, plot_map, plot_sphere
from .explorer import Explorer

__all__ = ["sphere_flow"]


def sphere_flow(trajectory: torch.Tensor, times: torch.Tensor | Sequence[float], n: int = 1000,
                frames: int = 16) -> Explorer:
    """Samples of a trajectory on S^2 (shape (steps + 1, batch, 3)) moving along the flow: a t slider with a
    play button, each frame the first ``n`` samples on the sphere and on an equal-area map, at ``frames`` grid
    times spread from t = 0 to t = 1."""
    if not isinstance(trajectory, torch.Tensor) or trajectory.dim() != 3 or trajectory.shape[-1] != 3:
        raise ValueError(f"trajectory must be a tensor of shape (steps + 1, batch, 3), got "
                         f"{getattr(trajectory, 'shape', type(trajectory).__name__)}")
    times = np.asarray(torch.as_tensor(times, dtype=torch.float64).cpu())
    if times.ndim != 1 or len(times) != trajectory.shape[0]:
        raise ValueError(f"times must hold one time per trajectory step ({trajectory.shape[0]}), got shape "
                         f"{times.shape}")
    if frames < 2:
        raise ValueError(f"frames must be at least 2, got {frames}")
    points = trajectory[:, :n].detach().cpu()
    steps = sorted(set(np.linspace(0, len(times) - 1, min(frames, len(times))).round().astype(int).tolist()))

    def draw(t: int) -> Figure:
        fig = plt.figure(figsize=(8, 3.6))
        plot_sphere(points[t], fig.add_subplot(1, 2, 1, projection="3d"), f"t = {times[t]:.2f}")
        plot_map(points[t], map_axes(fig, 122, "equal-area map"), s=3.0)
        fig.subplots_adjust(left=0.02, right=0.98, bottom=0.08, top=0.9, wspace=0.1)
        return fig

    return Explorer(draw, {"t": steps}, labels={"t": [f"{times[k]:.2f}" for k in steps]}, play="t",
                    interval=250,
                    title="Flow on the sphere",
                    look="press play: the uniform cloud gathers into the four clusters, on the sphere (left) and "
                         "on the map (right)")
