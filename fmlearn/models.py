"""Velocity networks, all called as ``model(x, t, **cond)``.

x has shape (batch, *data) and t is a float or a (batch,) tensor in [0, 1];
the output has the shape of x.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._checks import check_positive_int, check_time


class TimeEmbedding(nn.Module):
    """Deterministic sinusoidal features of t: [sin(2 pi f_j t), cos(2 pi f_j t)]_j
    with frequencies f_j spread geometrically from 1/2 to ``max_freq``, plus t itself."""

    def __init__(self, n_freqs: int = 16, max_freq: float = 64.0):
        super().__init__()
        check_positive_int("n_freqs", n_freqs)
        if not (isinstance(max_freq, (int, float)) and 0.5 < max_freq < float("inf")):
            raise ValueError(f"max_freq must be a finite number > 0.5 (the lowest frequency), got {max_freq!r}")
        freqs = torch.logspace(math.log10(0.5), math.log10(max_freq), n_freqs)
        self.register_buffer("freqs", 2 * math.pi * freqs, persistent=False)
        self.dim = 2 * n_freqs + 1

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = t[:, None] * self.freqs[None]
        return torch.cat([t[:, None], torch.sin(angles), torch.cos(angles)], dim=1)


class MLP(nn.Module):
    """A velocity field u_theta(x, t) for flat data: an MLP on [x, embed(t)].

    Args:
        dim: data dimension.
        hidden: width of each hidden layer.
        depth: number of hidden layers.
        activation: ``"silu"`` (default) or ``"gelu"``.
        n_freqs, max_freq: the sinusoidal time features (see :class:`TimeEmbedding`).
    """

    def __init__(self, dim: int, hidden: int = 256, depth: int = 3, activation: str = "silu", n_freqs: int = 16,
                 max_freq: float = 64.0):
        super().__init__()
        check_positive_int("dim", dim)
        check_positive_int("hidden", hidden)
        check_positive_int("depth", depth)
        acts = {"silu": nn.SiLU, "gelu": nn.GELU}
        if activation not in acts:
            raise ValueError(f"activation must be one of {sorted(acts)}, got {activation!r}")
        self.dim = dim
        self.time_embedding = TimeEmbedding(n_freqs, max_freq)
        layers: list[nn.Module] = []
        width = dim + self.time_embedding.dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), acts[activation]()]
            width = hidden
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, t, **cond) -> torch.Tensor:
        if cond:
            raise TypeError(f"MLP is unconditional; got conditioning arguments {sorted(cond)}")
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != self.dim:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be a tensor of shape (batch, {self.dim}), got {shape}")
        t = check_time(t, x, check_values=False)
        return self.net(torch.cat([x, self.time_embedding(t)], dim=1))
