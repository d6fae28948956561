import math

import pytest
import torch

import fmlearn
from fmlearn import config


@pytest.mark.parametrize("raw, want", [
    ("1", True), ("true", True), ("TRUE", True), (" yes ", True), ("on", True),
    ("0", False), ("false", False), ("No", False), ("off", False), ("", False),
])
def test_is_quick_values(monkeypatch, raw, want):
    """is_quick vs the documented truth table of FMLEARN_QUICK values."""
    monkeypatch.setenv("FMLEARN_QUICK", raw)
    assert config.is_quick() is want


def test_is_quick_unset(monkeypatch):
    """Unset FMLEARN_QUICK means the default (non-quick) budget, as documented."""
    monkeypatch.delenv("FMLEARN_QUICK", raising=False)
    assert config.is_quick() is False


@pytest.mark.parametrize("raw", ["2", "maybe", "quick"])
def test_is_quick_bad_value(monkeypatch, raw):
    """An unrecognised FMLEARN_QUICK raises ValueError naming the variable and the value."""
    monkeypatch.setenv("FMLEARN_QUICK", raw)
    with pytest.raises(ValueError, match=rf"FMLEARN_QUICK.*{raw}"):
        config.is_quick()


@pytest.mark.parametrize("raw, quick", [("1", True), ("0", False)])
def test_budget_picks_by_mode(monkeypatch, raw, quick):
    """budget returns the quick value exactly when FMLEARN_QUICK is on (vs the env value set here)."""
    monkeypatch.setenv("FMLEARN_QUICK", raw)
    default, small = object(), object()
    assert fmlearn.budget(default, small) is (small if quick else default)


def test_get_device_cpu_explicit():
    """get_device('cpu') vs torch.device('cpu')."""
    assert config.get_device("cpu") == torch.device("cpu")
    assert config.get_device(torch.device("cpu")) == torch.device("cpu")


def test_get_device_env_honoured(monkeypatch):
    """FMLEARN_DEVICE=cpu is used when no device is passed, even where CUDA would be the default."""
    monkeypatch.setenv("FMLEARN_DEVICE", "cpu")
    assert config.get_device() == torch.device("cpu")


def test_get_device_default_matches_torch(monkeypatch):
    """With no argument and no env var, the choice agrees with torch.cuda.is_available()."""
    monkeypatch.delenv("FMLEARN_DEVICE", raising=False)
    assert config.get_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("via_env", [False, True])
def test_get_device_cuda_without_cuda_raises(monkeypatch, via_env):
    """Asking for CUDA where torch sees none raises ValueError (argument and env var alike)."""
    if via_env:
        monkeypatch.setenv("FMLEARN_DEVICE", "cuda")
        with pytest.raises(ValueError, match="CUDA"):
            config.get_device()
    else:
        with pytest.raises(ValueError, match="CUDA"):
            config.get_device("cuda")


def test_get_device_nonsense_raises():
    """A string that is no torch device raises ValueError quoting it."""
    with pytest.raises(ValueError, match="not-a-device"):
        config.get_device("not-a-device")


def test_seed_everything_reproducible():
    """Two seedings with the same seed give the same torch.randn / generator draws; another seed differs."""
    g1 = fmlearn.seed_everything(123)
    a, ga = torch.randn(16), torch.randn(16, generator=g1)
    g2 = fmlearn.seed_everything(123)
    b, gb = torch.randn(16), torch.randn(16, generator=g2)
    fmlearn.seed_everything(124)
    c = torch.randn(16)
    assert torch.equal(a, b)
    assert torch.equal(ga, gb)
    assert not torch.equal(a, c)
    # the returned generator is seeded like torch.manual_seed(123) would seed one
    assert torch.equal(ga, torch.randn(16, generator=torch.Generator().manual_seed(123)))


def test_seed_everything_numpy_and_random():
    """NumPy and Python's random are seeded too: same draws after re-seeding."""
    import random

    import numpy as np

    fmlearn.seed_everything(7)
    a = (np.random.rand(4), random.random())
    fmlearn.seed_everything(7)
    b = (np.random.rand(4), random.random())
    assert np.array_equal(a[0], b[0]) and math.isclose(a[1], b[1])


@pytest.mark.parametrize("bad", [1.5, "3", True])
def test_seed_everything_rejects_non_int(bad):
    """A non-int seed raises TypeError naming 'seed'."""
    with pytest.raises(TypeError, match="seed"):
        fmlearn.seed_everything(bad)


def test_describe_mentions_mode_and_device(monkeypatch):
    """describe() reports the mode and the device that get_device() picks."""
    monkeypatch.setenv("FMLEARN_QUICK", "1")
    monkeypatch.setenv("FMLEARN_DEVICE", "cpu")
    line = fmlearn.describe()
    assert "quick" in line and "device cpu" in line and torch.__version__ in line


@pytest.mark.cuda
def test_train_and_sample_on_cuda():
    """On CUDA, a tiny model trains (finite, decreasing loss) and samples land on the GPU near the target mean."""
    target = fmlearn.Gaussian(mean=[3.0, -2.0], std=0.5)
    model = fmlearn.MLP(2, hidden=64, depth=2)
    res = fmlearn.train(model, fmlearn.CFMObjective(fmlearn.AffineGaussianPath("condot"), target),
                        steps=300, batch_size=256, lr=3e-3, device="cuda", progress=False)
    assert res.device.startswith("cuda")
    assert next(model.parameters()).device.type == "cuda"
    assert res.losses[-50:].mean() < res.losses[:50].mean()
    out = fmlearn.sample(model, torch.randn(2000, 2), steps=20, method="midpoint")
    assert out.x.device.type == "cuda"
    assert torch.isfinite(out.x).all()
    err = (out.x.mean(0).cpu() - target.mean).norm()
    assert err < 0.5, err


@pytest.mark.parametrize("env, expected", [({}, True), ({"CI": "true"}, False), ({"CI": "0"}, True),
                                           ({"FMLEARN_PROGRESS": "0"}, False),
                                           ({"CI": "true", "FMLEARN_PROGRESS": "1"}, True)])
def test_show_progress(monkeypatch, env, expected):
    """Bars by default; none under CI (a headless run would store a stale first frame); FMLEARN_PROGRESS wins."""
    from fmlearn.config import show_progress
    monkeypatch.delenv("CI", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert show_progress() is expected


def test_show_progress_rejects_a_typo(monkeypatch):
    from fmlearn.config import show_progress
    monkeypatch.setenv("FMLEARN_PROGRESS", "maybe")
    with pytest.raises(ValueError, match="FMLEARN_PROGRESS must be one of"):
        show_progress()


def test_draw_device_and_randn_like():
    """Draws happen on the generator's device (else the default, else the CPU) and land on the data's device:
    randn_like with a seeded generator gives torch.randn's numbers for that seed, in x's dtype."""
    from fmlearn._random import draw_device, randn_like

    gen = torch.Generator().manual_seed(7)
    assert draw_device(None) == torch.device("cpu") == draw_device(None, "cpu") == draw_device(gen, "meta")
    x = torch.zeros(4, 3, dtype=torch.float64)
    got = randn_like(x, gen)
    want = torch.randn(4, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    assert got.dtype == torch.float64 and torch.equal(got, want)
    assert randn_like(x).shape == x.shape
