"""Small posterior networks for token sequences, called as ``model(x_t, t) -> logits (batch, L, V)``.

:class:`TokenMLP` embeds each of the L tokens (S states, the mask included), concatenates the embeddings with
sinusoidal features of t, and maps them through an MLP to L x V logits: every output sees every input token,
which is what a posterior p_{1|t}(x1^i | x_t) needs, at a size that trains in seconds on a CPU.

A token model knows the path it is built for: ``vocab_size`` V, ``num_states`` S and ``source`` ("mask" when
S = V + 1, the extra state being the mask; "uniform" when S = V), plain attributes that a checkpoint stores and
that :meth:`~fmlearn.discrete.MixturePath.check_model` compares with a path. The values of its input tokens
are checked where they come in, not at every call (a host sync): the training objective checks the model and
the first batch, the sampler and the ELBO their x0 and x1.
"""

from __future__ import annotations

import torch
from torch import nn

from .._checks import check_positive_int, check_time
from ..models import TimeEmbedding
from .categorical import check_tokens_cheap
from .paths import SOURCES


def declared_source(num_states: int, vocab_size: int, source: str | None) -> str:
    """The source a token model of S = num_states states over V = vocab_size values is built for: "mask" for
    S = V + 1, "uniform" for S = V; a ``source`` given must agree, and any other S is refused."""
    inferred = {vocab_size + 1: "mask", vocab_size: "uniform"}.get(num_states)
    if source is not None and source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES} or None (inferred from num_states), got {source!r}")
    if inferred is None or (source is not None and source != inferred):
        want = {"mask": vocab_size + 1, "uniform": vocab_size}
        wanted = f"num_states = {want[source]} for source={source!r}" if source is not None else \
            f"num_states = vocab_size + 1 = {vocab_size + 1} (mask source: the +1 is the mask) or vocab_size = " \
            f"{vocab_size} (uniform source)"
        raise ValueError(f"num_states={num_states} does not fit vocab_size={vocab_size}: expected {wanted}; pass "
                         "num_states=path.num_states, vocab_size=path.vocab_size")
    return inferred


def check_input(model: nn.Module, x: torch.Tensor) -> None:
    """x must be integer tokens (batch, model.length) in 0..num_states - 1 (no host sync: shapes and dtype always,
    values only on the CPU, :func:`~fmlearn.discrete.categorical.check_tokens_cheap`; on a device the sampler
    and the objective have checked them)."""
    if not isinstance(x, torch.Tensor) or x.is_floating_point() or x.dtype == torch.bool or x.ndim != 2 or \
            x.shape[1] != model.length:
        got = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be integer tokens of shape (batch, {model.length}), got {got}")
    check_tokens_cheap("x", x, model.num_states)


class TokenMLP(nn.Module):
    """logits = MLP([embed(x^1), ..., embed(x^L), time features(t)]), reshaped to (batch, L, V).

    Args:
        num_states: S, the states a token of x_t can take (V + 1 with a mask). vocab_size: V, the data values.
        source: "mask" or "uniform", the path's source; None: read from S (V + 1: mask, V: uniform).
        length: L, tokens per sequence. embed: embedding width per token. hidden, depth: the MLP's hidden layers.
        n_freqs, max_freq: the time features (:class:`fmlearn.models.TimeEmbedding`).
        dropout: dropout rate after each hidden layer (0: none); it keeps a model of a small data set (the 898
            training digits) from memorising it.
    """

    def __init__(self, num_states: int, vocab_size: int, length: int, embed: int = 32, hidden: int = 256,
                 depth: int = 3, n_freqs: int = 8, max_freq: float = 8.0, dropout: float = 0.0,
                 source: str | None = None):
        super().__init__()
        for name, value in (("num_states", num_states), ("vocab_size", vocab_size), ("length", length),
                            ("embed", embed), ("hidden", hidden), ("depth", depth)):
            check_positive_int(name, value)
        self.source = declared_source(num_states, vocab_size, source)
        self.num_states, self.vocab_size, self.length = num_states, vocab_size, length
        self.embed = nn.Embedding(num_states, embed)
        self.time = TimeEmbedding(n_freqs, max_freq)
        if not (isinstance(dropout, (int, float)) and 0 <= dropout < 1):
            raise ValueError(f"dropout must be a rate in [0, 1), got {dropout!r}")
        drop = [nn.Dropout(dropout)] if dropout else []
        layers: list[nn.Module] = [nn.Linear(length * embed + self.time.dim, hidden), nn.SiLU(), *drop]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), nn.SiLU(), *drop]
        layers.append(nn.Linear(hidden, length * vocab_size))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        check_input(self, x)
        tt = check_time(t, x, check_values=False).to(self.embed.weight.dtype)
        h = torch.cat([self.embed(x).flatten(1), self.time(tt)], dim=1)
        return self.net(h).view(x.shape[0], self.length, self.vocab_size)


class TokenConvNet(nn.Module):
    """A posterior network for tokens on a ``side`` x ``side`` grid (images as tokens): token embeddings as
    channels, ``depth`` 3x3 convolutions (padding 1) each followed by a bias from the time features and a SiLU,
    and a 1x1 convolution to V logits per pixel. Weights shared across positions suit images and keep a model
    of a small data set from memorising it. Each convolution widens what an output sees by one pixel each way:
    with depth >= side - 1 every output sees every input pixel (depth 5 on 8 x 8: the central outputs do).
    x: (batch, side^2) tokens in row-major order; output (batch, side^2, V). ``source`` as for
    :class:`TokenMLP`."""

    def __init__(self, num_states: int, vocab_size: int, side: int = 8, embed: int = 16, channels: int = 64,
                 depth: int = 5, n_freqs: int = 8, max_freq: float = 8.0, source: str | None = None):
        super().__init__()
        for name, value in (("num_states", num_states), ("vocab_size", vocab_size), ("side", side),
                            ("embed", embed), ("channels", channels), ("depth", depth)):
            check_positive_int(name, value)
        self.source = declared_source(num_states, vocab_size, source)
        self.num_states, self.vocab_size, self.side, self.length = num_states, vocab_size, side, side * side
        self.embed = nn.Embedding(num_states, embed)
        self.time = TimeEmbedding(n_freqs, max_freq)
        self.convs = nn.ModuleList(nn.Conv2d(embed if i == 0 else channels, channels, 3, padding=1)
                                   for i in range(depth))
        self.film = nn.ModuleList(nn.Linear(self.time.dim, channels) for _ in range(depth))
        self.out = nn.Conv2d(channels, vocab_size, 1)

    def forward(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        check_input(self, x)
        tt = self.time(check_time(t, x, check_values=False).to(self.embed.weight.dtype))
        h = self.embed(x).transpose(1, 2).reshape(x.shape[0], -1, self.side, self.side)
        for conv, film in zip(self.convs, self.film):
            h = nn.functional.silu(conv(h) + film(tt)[:, :, None, None])
        return self.out(h).flatten(2).transpose(1, 2)
