import math

import pytest
import torch

from fmlearn import MLP
from fmlearn.models import TimeEmbedding


def model_and_x(dim=3, batch=7, seed=0, **kw):
    torch.manual_seed(seed)
    return MLP(dim, hidden=16, depth=2, **kw), torch.randn(batch, dim, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("dim, batch", [(1, 1), (2, 5), (5, 64)])
def test_output_shape(dim, batch):
    """The output has the shape of x (batch, dim), as a velocity field must."""
    model, x = model_and_x(dim, batch)
    assert model(x, 0.5).shape == (batch, dim)


def test_float_and_tensor_time_agree():
    """A float t, a 0-d tensor, a (1,) tensor and a (batch,) tensor of the same value give the same output."""
    model, x = model_and_x()
    ref = model(x, 0.3)
    for t in (torch.tensor(0.3), torch.tensor([0.3]), torch.full((7,), 0.3)):
        torch.testing.assert_close(model(x, t), ref)


def test_per_sample_time_rows_independent():
    """Row i of model(x, t) with a (batch,) t equals model(x[i:i+1], t_i) computed alone."""
    model, x = model_and_x()
    t = torch.linspace(0, 1, 7)
    rows = torch.cat([model(x[i:i + 1], float(t[i])) for i in range(7)])
    torch.testing.assert_close(model(x, t), rows, rtol=1e-5, atol=1e-6)


def test_output_depends_on_time():
    """Different times give different outputs (the time embedding reaches the network)."""
    model, x = model_and_x()
    assert not torch.allclose(model(x, 0.1), model(x, 0.9))


def test_matches_manual_forward():
    """forward vs net(cat[x, t, sin(2 pi f t), cos(2 pi f t)]) assembled by hand with geometric frequencies."""
    model, x = model_and_x(n_freqs=4)
    t = torch.rand(7, generator=torch.Generator().manual_seed(1))
    f = 2 * math.pi * torch.logspace(math.log10(0.5), math.log10(64.0), 4)
    emb = torch.cat([t[:, None], torch.sin(t[:, None] * f), torch.cos(t[:, None] * f)], 1)
    torch.testing.assert_close(model(x, t), model.net(torch.cat([x, emb], 1)))


def test_time_embedding_dim():
    """TimeEmbedding(n).dim = 2 n + 1 equals the width of its output."""
    emb = TimeEmbedding(n_freqs=5)
    assert emb(torch.rand(3)).shape == (3, emb.dim) and emb.dim == 11


def test_gelu_activation():
    """activation='gelu' puts nn.GELU layers in the network (and no SiLU)."""
    model = MLP(2, hidden=8, activation="gelu")
    kinds = {type(m) for m in model.net}
    assert torch.nn.GELU in kinds and torch.nn.SiLU not in kinds


def test_depth_and_width():
    """depth hidden layers of width hidden: depth + 1 Linear layers, shapes by hand."""
    model = MLP(3, hidden=10, depth=4, n_freqs=2)
    lin = [m for m in model.net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in lin] == [(3 + 5, 10), (10, 10), (10, 10), (10, 10), (10, 3)]


@pytest.mark.parametrize("x, match", [
    (torch.zeros(4, 2), r"x must be a tensor of shape \(batch, 3\), got \(4, 2\)"),
    (torch.zeros(3), r"x must be a tensor of shape \(batch, 3\), got \(3,\)"),
    (torch.zeros(2, 3, 1), r"x must be a tensor of shape \(batch, 3\)"),
    ([[0.0, 0.0, 0.0]], r"x must be a tensor of shape \(batch, 3\), got list"),
])
def test_wrong_x_raises(x, match):
    """x of the wrong shape or type raises ValueError naming x, the expected and the given shape."""
    model, _ = model_and_x()
    with pytest.raises(ValueError, match=match):
        model(x, 0.5)


@pytest.mark.parametrize("t", [torch.zeros(3), torch.zeros(7, 1), torch.zeros(2, 7)])
def test_wrong_t_shape_raises(t):
    """t of a shape other than (), (1,) or (batch,) raises ValueError naming t and the batch size."""
    model, x = model_and_x()
    with pytest.raises(ValueError, match=r"t must be a float or a tensor of shape \(batch,\) = \(7,\)"):
        model(x, t)


def test_t_not_a_number_raises():
    """t given as a string raises TypeError naming t."""
    model, x = model_and_x()
    with pytest.raises(TypeError, match="t must be a float or a tensor"):
        model(x, "0.5")


@pytest.mark.parametrize("t", [-0.01, 1.5, 2])
def test_float_t_out_of_range_raises(t):
    """A float (or int) t outside [0, 1] raises ValueError naming t and quoting it."""
    model, x = model_and_x()
    with pytest.raises(ValueError, match=rf"t must lie in \[0, 1\], got {t}"):
        model(x, t)


def test_conditioning_kwargs_raise():
    """Conditioning kwargs raise TypeError listing their names (the MLP is unconditional)."""
    model, x = model_and_x()
    with pytest.raises(TypeError, match=r"unconditional.*\['label'\]"):
        model(x, 0.5, label=torch.zeros(7, dtype=torch.long))


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(dim=0), ValueError, "dim"),
    (dict(dim=2, hidden=-1), ValueError, "hidden"),
    (dict(dim=2, depth=1.5), TypeError, "depth"),
    (dict(dim=2, activation="relu"), ValueError, "activation"),
])
def test_bad_constructor_args(kwargs, exc, match):
    """Bad constructor arguments raise with a message naming the argument."""
    with pytest.raises(exc, match=match):
        MLP(**kwargs)


def test_gradients_flow_to_every_parameter():
    """A backward pass through the output reaches every parameter (all receive a non-zero gradient)."""
    model, x = model_and_x()
    model(x, torch.rand(7)).pow(2).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_float64_model():
    """model.double() accepts float64 x and returns float64, equal to the float32 output up to rounding."""
    model, x = model_and_x()
    out32 = model(x, 0.4)
    out64 = model.double()(x.double(), 0.4)
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), out32, rtol=1e-4, atol=1e-5)



@pytest.mark.parametrize("max_freq", [0.1, float("inf")])
def test_bad_max_freq(max_freq):
    """max_freq must be finite and above the lowest frequency 0.5: ValueError naming it."""
    with pytest.raises(ValueError, match="max_freq"):
        MLP(2, max_freq=max_freq)


def test_time_embedding_frequencies_vs_formula():
    """TimeEmbedding(n, f) holds [t, sin(2 pi f_j t), cos(2 pi f_j t)] with f_j geometric from 1/2 to f."""
    import math
    from fmlearn.models import TimeEmbedding
    emb = TimeEmbedding(3, 8.0)
    t = torch.tensor([0.3])
    freqs = [0.5, 2.0, 8.0]
    want = [0.3] + [math.sin(2 * math.pi * f * 0.3) for f in freqs] + [math.cos(2 * math.pi * f * 0.3) for f in freqs]
    torch.testing.assert_close(emb(t)[0], torch.tensor(want), rtol=1e-5, atol=1e-6)
