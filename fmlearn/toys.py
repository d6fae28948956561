"""The field's 2-D toy targets, as samplers (no closed-form density needed).

Scales follow common practice so that samples fill roughly [-4, 4]^2.
"""

from __future__ import annotations

import math

import torch

from ._checks import check_positive_int
from ._random import draw_device
from .distributions import Sampleable


class _Toy(Sampleable):
    dim = 2

    def __init__(self, noise: float):
        if not noise >= 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        self.noise = float(noise)

    def sample(self, n, generator=None, device=None):
        check_positive_int("n", n)
        dev = draw_device(generator, device, same_kind=True)
        x = self._clean(n, generator, dev)
        return x + self.noise * torch.randn(x.shape, generator=generator, device=dev)

    def _clean(self, n, generator, dev):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(noise={self.noise})"


class Moons(_Toy):
    """Two interleaved half circles (scikit-learn's moons), centred and scaled by 2."""

    def __init__(self, noise: float = 0.05):
        super().__init__(noise)

    def _clean(self, n, generator, dev):
        upper = torch.rand(n, generator=generator, device=dev) < 0.5
        angle = math.pi * torch.rand(n, generator=generator, device=dev)
        x = torch.where(upper, torch.cos(angle), 1 - torch.cos(angle))
        y = torch.where(upper, torch.sin(angle), 0.5 - torch.sin(angle))
        return 2.0 * torch.stack([x - 0.5, y - 0.25], dim=1)


class EightGaussians(_Toy):
    """Eight equal modes on a circle of ``radius``, each blurred by ``noise``."""

    def __init__(self, radius: float = 4.0, noise: float = 0.3):
        super().__init__(noise)
        if not radius > 0:
            raise ValueError(f"radius must be > 0, got {radius}")
        self.radius = float(radius)

    def _clean(self, n, generator, dev):
        k = torch.randint(0, 8, (n,), generator=generator, device=dev)
        angle = k.to(torch.float32) * (2 * math.pi / 8)
        return self.radius * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)


class Checkerboard(_Toy):
    """Uniform on the dark squares of a 4x4 board covering [-4, 4]^2."""

    def __init__(self, noise: float = 0.0):
        super().__init__(noise)

    def _clean(self, n, generator, dev):
        x1 = 8 * torch.rand(n, generator=generator, device=dev) - 4
        u = torch.rand(n, generator=generator, device=dev)
        row = torch.randint(0, 2, (n,), generator=generator, device=dev).to(torch.float32)
        # column cell c = floor(x1 / 2) in {-2,-1,0,1}; dark squares are where row and column parity agree
        col = torch.floor(x1 / 2)
        parity = torch.remainder(col, 2)
        x2 = 2 * u + 4 * row - 4 + 2 * parity
        return torch.stack([x1, x2], dim=1)


class TwoSpirals(_Toy):
    """Two interleaved Archimedean spirals, each up to three half turns."""

    def __init__(self, noise: float = 0.1):
        super().__init__(noise)

    def _clean(self, n, generator, dev):
        s = torch.sqrt(torch.rand(n, generator=generator, device=dev)) * 3 * math.pi
        arm = torch.where(torch.rand(n, generator=generator, device=dev) < 0.5, 1.0, -1.0)
        r = s / math.pi * 1.2
        return arm[:, None] * torch.stack([r * torch.cos(s), r * torch.sin(s)], dim=1)
