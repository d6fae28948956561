import math

import numpy as np
import pytest
import torch

from fmlearn import Checkerboard, EightGaussians, Moons, TwoSpirals

TOYS = [Moons, EightGaussians, Checkerboard, TwoSpirals]


def gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("cls", TOYS)
def test_shape_dtype_finite(cls):
    """sample(n) has shape (n, 2), is floating and finite, like every Sampleable."""
    x = cls().sample(333, generator=gen(0))
    assert x.shape == (333, 2) and x.is_floating_point()
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("cls", TOYS)
def test_seeding(cls):
    """Same generator seed gives identical samples; another seed gives different ones."""
    a, b, c = (cls().sample(200, generator=gen(s)) for s in (1, 1, 2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("cls", TOYS)
def test_negative_noise_raises(cls):
    """noise < 0 raises ValueError naming noise."""
    with pytest.raises(ValueError, match="noise"):
        cls(noise=-0.1)


def test_checkerboard_on_dark_squares():
    """noise=0: every point lies in [-4, 4]^2 on a square with floor(x/2) + floor(y/2) even."""
    x = Checkerboard(noise=0.0).sample(20_000, generator=gen(3)).double()
    assert float(x.abs().max()) <= 4.0
    cells = torch.floor(x / 2).long()
    assert bool(((cells[:, 0] + cells[:, 1]) % 2 == 0).all())
    # uniform on the 8 dark squares: each holds 1/8 of the points (5 binomial standard errors)
    counts = torch.unique(cells, dim=0, return_counts=True)[1].double() / len(x)
    assert len(counts) == 8
    assert bool(((counts - 1 / 8).abs() < 5 * math.sqrt(1 / 8 * 7 / 8 / len(x))).all())


def test_eight_gaussians_noise_free_points():
    """noise=0: exactly 8 distinct points, all at radius 4, at the angles 2 pi k / 8."""
    x = EightGaussians(noise=0.0).sample(1000, generator=gen(4)).double()
    pts = torch.unique(torch.round(x * 1e4) / 1e4, dim=0)
    assert len(pts) == 8
    torch.testing.assert_close(pts.norm(dim=1), torch.full((8,), 4.0, dtype=torch.float64), rtol=0, atol=1e-4)
    angles = torch.sort(torch.remainder(torch.atan2(pts[:, 1], pts[:, 0]), 2 * math.pi)).values
    want = torch.arange(8, dtype=torch.float64) * 2 * math.pi / 8
    torch.testing.assert_close(angles, want, rtol=0, atol=1e-4)


def test_eight_gaussians_radius_and_noise():
    """With noise s, the distance to the nearest of the 8 centres of radius r has per-coordinate std ~ s."""
    r, s = 2.5, 0.2
    x = EightGaussians(radius=r, noise=s).sample(20_000, generator=gen(5)).double()
    ang = torch.arange(8, dtype=torch.float64) * 2 * math.pi / 8
    centres = r * torch.stack([torch.cos(ang), torch.sin(ang)], 1)
    d = x[:, None, :] - centres[None]
    nearest = d[torch.arange(len(x)), d.norm(dim=-1).argmin(1)]
    assert abs(float(nearest.std()) - s) < 0.01
    assert abs(float(nearest.mean())) < 0.01


def moon_arm_distances(x):
    """Distance of each point to the two (scaled, centred) sklearn half circles."""
    # upper arm: centre (0, 0) in sklearn coordinates; lower: centre (1, 0.5); radius 1; map back
    p = x.double() / 2 + torch.tensor([0.5, 0.25], dtype=torch.float64)
    up = (p.norm(dim=1) - 1).abs()
    low = ((p - torch.tensor([1.0, 0.5], dtype=torch.float64)).norm(dim=1) - 1).abs()
    return up, low, p


def test_moons_balanced_and_on_arcs():
    """noise=0: every point on one of two unit half circles (scaled by 2), the arms balanced within 5 SE."""
    x = Moons(noise=0.0).sample(20_000, generator=gen(6))
    up, low, p = moon_arm_distances(x)
    on_up = (up < 1e-5) & (p[:, 1] >= -1e-6)
    on_low = (low < 1e-5) & (p[:, 1] <= 0.5 + 1e-6)
    assert bool((on_up | on_low).all())
    frac = float(on_up.double().mean())
    assert abs(frac - 0.5) < 5 * math.sqrt(0.25 / len(x))
    # centred: the mean of the clean moons is 0 (each arm's mean is symmetric about the joint centre)
    assert float(x.double().mean(0).abs().max()) < 0.05


def test_moons_bounded():
    """Default noise: the points stay within the clean moons' box [-3, 3] x [-1.5, 1.5] widened by 6 noise std."""
    x = Moons().sample(10_000, generator=gen(7))
    assert float(x[:, 0].abs().max()) <= 3 + 6 * 0.05
    assert float(x[:, 1].abs().max()) <= 1.5 + 6 * 0.05


def test_two_spirals_balanced_arms_and_bounded():
    """noise=0: points are on r = 1.2 s / pi with s = winding angle (one arm or its point reflection), arms
    balanced within 5 SE, radius bounded by 3.6."""
    x = TwoSpirals(noise=0.0).sample(20_000, generator=gen(8)).double()
    r = x.norm(dim=1)
    assert float(r.max()) <= 3 * 1.2 + 1e-5
    s = r * math.pi / 1.2  # the parameter of the point if it sits on an arm
    arm_a = torch.stack([r * torch.cos(s), r * torch.sin(s)], 1)
    on_a = (x - arm_a).norm(dim=1) < 1e-4
    on_b = (x + arm_a).norm(dim=1) < 1e-4
    assert bool((on_a | on_b).all())
    frac = float(on_a.double().mean())
    assert abs(frac - 0.5) < 5 * math.sqrt(0.25 / len(x))


def test_two_spirals_noisy_bounded():
    """Default noise 0.1: every radius below 3.6 + 6 noise std."""
    x = TwoSpirals().sample(10_000, generator=gen(9))
    assert float(x.norm(dim=1).max()) <= 3.6 + 6 * 0.1 * math.sqrt(2)


@pytest.mark.parametrize("cls", TOYS)
def test_noise_adds_gaussian_blur(cls):
    """sample = clean + noise * N(0, I): the extra variance over the clean samples is noise^2 (within 10%,
    about 4 standard errors at this n)."""
    n, s = 200_000, 1.0
    clean = cls(noise=0.0).sample(n, generator=gen(10)).double()
    noisy = cls(noise=s).sample(n, generator=gen(11)).double()
    extra = noisy.var(0) - clean.var(0)
    np.testing.assert_allclose(extra.numpy(), [s**2, s**2], rtol=0.1)
