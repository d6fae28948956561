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


def _check_flat(x, dim: int):
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != dim:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a tensor of shape (batch, {dim}), got {shape}")


def mlp_layers(in_width: int, out_width: int, hidden: int, depth: int, activation: str) -> nn.Sequential:
    """``depth`` hidden layers of ``hidden`` units (Linear, then ``"silu"`` or ``"gelu"``) and a Linear output:
    the body of :class:`MLP` and of :class:`fmlearn.flowmaps.FlowMapMLP`."""
    check_positive_int("hidden", hidden)
    check_positive_int("depth", depth)
    acts = {"silu": nn.SiLU, "gelu": nn.GELU}
    if activation not in acts:
        raise ValueError(f"activation must be one of {sorted(acts)}, got {activation!r}")
    layers: list[nn.Module] = []
    width = in_width
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), acts[activation]()]
        width = hidden
    layers.append(nn.Linear(width, out_width))
    return nn.Sequential(*layers)


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
        self.dim = dim
        self.time_embedding = TimeEmbedding(n_freqs, max_freq)
        self.net = mlp_layers(dim + self.time_embedding.dim, dim, hidden, depth, activation)

    def forward(self, x: torch.Tensor, t: float | torch.Tensor, **cond: torch.Tensor) -> torch.Tensor:
        if cond:
            raise TypeError(f"MLP is unconditional; got conditioning arguments {sorted(cond)}")
        _check_flat(x, self.dim)
        dtype = self.net[0].weight.dtype
        if x.is_floating_point() and x.dtype != dtype:  # e.g. a float64 state: cast in and back (dtype only, no sync)
            return self.forward(x.to(dtype), t if isinstance(t, (int, float)) else check_time(t, x, check_values=False)
                                .to(dtype)).to(x.dtype)
        t = check_time(t, x, check_values=False)
        return self.net(torch.cat([x, self.time_embedding(t)], dim=1))


def check_labels(y: torch.Tensor | None, num_classes: int, x: torch.Tensor,
                 check_values: bool = True) -> torch.Tensor:
    """Class labels as a (batch,) int64 tensor on x's device.

    ``y`` is None (every row gets the "no label" index ``num_classes``), an int, or an integer tensor
    of shape () or (batch,), with values in 0..num_classes (``num_classes`` itself means "no label").
    The value check is a host sync: conditional models skip it while training on CUDA.
    """
    batch = x.shape[0]
    if y is None:
        return torch.full((batch,), num_classes, dtype=torch.long, device=x.device)
    if isinstance(y, int) and not isinstance(y, bool):
        y = torch.tensor(y)
    if not isinstance(y, torch.Tensor) or y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
        kind = f"tensor of dtype {y.dtype}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise TypeError(f"y must be None, an int or an integer tensor of class labels, got {kind}")
    if y.ndim == 0:
        y = y.expand(batch)
    if y.shape != (batch,):
        raise ValueError(f"y must be an int or a tensor of shape (batch,) = ({batch},), got shape {tuple(y.shape)}")
    if check_values and y.numel() and not bool(((y >= 0) & (y <= num_classes)).all()):
        raise ValueError(f"y must hold labels in 0..{num_classes} ({num_classes} = no label), got values from "
                         f"{int(y.min())} to {int(y.max())}")
    return y.to(device=x.device, dtype=torch.long)


def _check_num_classes(num_classes) -> int:
    return check_positive_int("num_classes", num_classes)


class ConditionalMLP(MLP):
    """A class-conditional velocity field u_theta(x, t, y) for flat data: an MLP on [x, embed(t), embed(y)].

    The label embedding has ``num_classes + 1`` rows; row ``num_classes`` is the learned "no label"
    token, so one network gives both u(x, t, y) and the unconditional u(x, t, none) that classifier-free
    guidance needs (see :mod:`fmlearn.guidance`). ``y=None`` means "no label".

    Args:
        dim: data dimension. num_classes: number of classes K (labels 0..K-1, K = no label).
        label_dim: size of the label embedding; the rest as in :class:`MLP`.
    """

    def __init__(self, dim: int, num_classes: int, hidden: int = 256, depth: int = 3, label_dim: int = 32,
                 activation: str = "silu", n_freqs: int = 16, max_freq: float = 64.0):
        check_positive_int("label_dim", label_dim)
        _check_num_classes(num_classes)
        super().__init__(dim, hidden, depth, activation, n_freqs, max_freq)
        self.num_classes = num_classes
        self.label_embedding = nn.Embedding(num_classes + 1, label_dim)
        first = self.net[0]
        self.net[0] = nn.Linear(first.in_features + label_dim, first.out_features)

    def forward(self, x: torch.Tensor, t: float | torch.Tensor, y: torch.Tensor | None = None,
                **cond: torch.Tensor) -> torch.Tensor:
        if cond:
            raise TypeError(f"ConditionalMLP takes only the conditioning argument y; got {sorted(cond)}")
        _check_flat(x, self.dim)
        t = check_time(t, x, check_values=False)
        y = check_labels(y, self.num_classes, x, check_values=not (self.training and x.is_cuda))
        return self.net(torch.cat([x, self.time_embedding(t), self.label_embedding(y).to(x.dtype)], dim=1))


class _ResBlock(nn.Module):
    """h + conv(silu(FiLM(norm(conv(silu(norm(h))))))): FiLM scales and shifts by the conditioning vector c."""

    def __init__(self, channels: int, cond_dim: int):
        super().__init__()
        self.norm1, self.norm2 = nn.GroupNorm(min(8, channels), channels), nn.GroupNorm(min(8, channels), channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.film = nn.Linear(cond_dim, 2 * channels)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(c)[:, :, None, None].chunk(2, dim=1)
        z = self.conv1(nn.functional.silu(self.norm1(h)))
        z = self.norm2(z) * (1 + scale) + shift
        return h + self.conv2(nn.functional.silu(z))


class TinyUNet(nn.Module):
    """A small class-conditional U-Net u_theta(x, t, y) for images of shape (channels, size, size).

    Two resolutions (size and size / 2) with a residual block each on the way down and up, a skip
    connection, and a dense bottleneck that sees the whole image at once (cheap at 8x8, and it mixes
    information across the image). Time and label enter every block by FiLM: c = time_mlp(embed(t)) +
    embed(y), and each block scales and shifts its features by a linear map of silu(c).
    The label embedding has ``num_classes + 1`` rows, the last the "no label" token; ``y=None`` means no label.

    Args:
        num_classes: number of classes K. image_size: side of the square image (even).
        in_channels: image channels. channels: feature channels at full resolution (twice that at half).
        hidden: width of the dense bottleneck. cond_dim: size of the conditioning vector c.
    """

    def __init__(self, num_classes: int, image_size: int = 8, in_channels: int = 1, channels: int = 16,
                 hidden: int = 512, cond_dim: int = 128, n_freqs: int = 16, max_freq: float = 64.0):
        super().__init__()
        self.num_classes = _check_num_classes(num_classes)
        for name, v in (("image_size", image_size), ("in_channels", in_channels), ("channels", channels),
                        ("hidden", hidden), ("cond_dim", cond_dim)):
            check_positive_int(name, v)
        if image_size % 2:
            raise ValueError(f"image_size must be even (the U-Net halves it once), got {image_size}")
        self.image_shape = (in_channels, image_size, image_size)
        c, c2, half = channels, 2 * channels, image_size // 2
        self.time_embedding = TimeEmbedding(n_freqs, max_freq)
        self.time_mlp = nn.Sequential(nn.Linear(self.time_embedding.dim, cond_dim), nn.SiLU(),
                                      nn.Linear(cond_dim, cond_dim))
        self.label_embedding = nn.Embedding(num_classes + 1, cond_dim)
        self.stem = nn.Conv2d(in_channels, c, 3, padding=1)
        self.down_block = _ResBlock(c, cond_dim)
        self.down = nn.Conv2d(c, c2, 3, stride=2, padding=1)
        self.mid_block = _ResBlock(c2, cond_dim)
        self.bottleneck_in = nn.Linear(c2 * half * half, hidden)
        self.bottleneck_cond = nn.Linear(cond_dim, hidden)
        self.bottleneck_out = nn.Linear(hidden, c2 * half * half)
        self.up_block = _ResBlock(c2, cond_dim)
        self.up = nn.Conv2d(c2, c, 3, padding=1)
        self.merge = nn.Conv2d(2 * c, c, 1)
        self.out_block = _ResBlock(c, cond_dim)
        self.out_norm = nn.GroupNorm(min(8, c), c)
        self.out = nn.Conv2d(c, in_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: float | torch.Tensor, y: torch.Tensor | None = None,
                **cond: torch.Tensor) -> torch.Tensor:
        if cond:
            raise TypeError(f"TinyUNet takes only the conditioning argument y; got {sorted(cond)}")
        if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != self.image_shape:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            want = ", ".join(map(str, self.image_shape))
            raise ValueError(f"x must be a tensor of shape (batch, {want}), got {shape}")
        t = check_time(t, x, check_values=False)
        y = check_labels(y, self.num_classes, x, check_values=not (self.training and x.is_cuda))
        cond_vec = self.time_mlp(self.time_embedding(t)) + self.label_embedding(y)
        silu = nn.functional.silu
        skip = self.down_block(self.stem(x), cond_vec)
        h = self.mid_block(self.down(skip), cond_vec)
        b = silu(self.bottleneck_in(silu(h.flatten(1))) + self.bottleneck_cond(silu(cond_vec)))
        h = self.up_block(h + self.bottleneck_out(b).view_as(h), cond_vec)
        h = self.up(nn.functional.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.out_block(self.merge(torch.cat([h, skip], dim=1)), cond_vec)
        return self.out(silu(self.out_norm(h)))
