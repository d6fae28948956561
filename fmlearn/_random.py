"""Where random numbers are drawn: on the generator's device, then moved to the data.

A seeded ``torch.Generator`` lives on one device, and torch draws with it only on that device. The course's
rule: draw on the generator's device (a CPU generator then gives the same numbers for CPU and CUDA data, so a
seed means the same thing on every machine) and move the draws to where the data are; without a generator,
draw where ``default`` says (the data's device, usually).
"""

from __future__ import annotations

import torch


def draw_device(generator: torch.Generator | None, default: torch.device | str | None = None, *,
                same_kind: bool = False) -> torch.device:
    """The device to draw on: the generator's, else ``default``, else the CPU.

    With ``same_kind``, ``default`` is where the caller asked the samples to be, and a generator on another kind
    of device (CPU vs CUDA) is refused (ValueError) instead of drawing where the caller did not ask.
    """
    if generator is not None:
        if same_kind and default is not None and torch.device(default).type != generator.device.type:
            raise ValueError(f"device {default} differs from the generator's device {generator.device}; pass a "
                             f"generator made on {default}")
        return generator.device
    return torch.device(default) if default is not None else torch.device("cpu")


def randn_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal noise of x's shape and dtype on x's device, drawn on the generator's device."""
    if generator is None:
        return torch.randn_like(x)
    return torch.randn(x.shape, generator=generator, device=draw_device(generator), dtype=x.dtype).to(x.device)


__all__ = ["draw_device", "randn_like"]
