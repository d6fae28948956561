"""Where random numbers are drawn: on the generator's device, then moved to the data.

A seeded ``torch.Generator`` lives on one device, and torch draws with it only on that device. The course's
rule: draw on the generator's device (a CPU generator then gives the same numbers for CPU and CUDA data, so a
seed means the same thing on every machine) and move the draws to where the data are; without a generator,
draw where ``default`` says (the data's device, usually).
"""

from __future__ import annotations

import torch


def draw_device(generator: torch.Generator | None, default: torch.device | str | None = None) -> torch.device:
    """The device to draw on: the generator's, else ``default``, else the CPU."""
    if generator is not None:
        return generator.device
    return torch.device(default) if default is not None else torch.device("cpu")


def randn_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal noise of x's shape and dtype on x's device, drawn on the generator's device."""
    if generator is None:
        return torch.randn_like(x)
    return torch.randn(x.shape, generator=generator, device=draw_device(generator), dtype=x.dtype).to(x.device)


__all__ = ["draw_device", "randn_like"]
