import math

import pytest
import torch
from torch import nn

import fmlearn as fm
from fmlearn.guidance import ConditionalMixtureOracle, GuidedVelocity, guided_sample, guided_velocity
from fmlearn.models import ConditionalMLP, TinyUNet

K = 4


def cond_mlp(seed=0):
    torch.manual_seed(seed)
    return ConditionalMLP(2, K, hidden=32, depth=2)


def batch(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g), torch.rand(n, generator=g), torch.randint(K, (n,), generator=g)


def test_w_zero_is_the_conditional_field():
    """u_0(x, t, y) = u(x, t, y): with w = 0 guidance changes nothing."""
    model = cond_mlp()
    x, t, y = batch()
    torch.testing.assert_close(GuidedVelocity(model, 0.0)(x, t, y=y), model(x, t, y=y), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("w", [-1.0, 0.5, 1.7, 4.0])
def test_linear_combination_of_two_separate_calls(w):
    """The batched guided field equals (1 + w) u(x, t, y) - w u(x, t, none) from two separate calls;
    w = -1 gives the unconditional field."""
    model = cond_mlp()
    x, t, y = batch()
    want = (1 + w) * model(x, t, y=y) - w * model(x, t, y=torch.full_like(y, K))
    torch.testing.assert_close(guided_velocity(model, w)(x, t, y=y), want, rtol=1e-5, atol=1e-5)
    if w == -1.0:
        torch.testing.assert_close(guided_velocity(model, w)(x, t, y=y), model(x, t), rtol=1e-5, atol=1e-5)


class Recorder(nn.Module):
    """Counts calls and remembers the labels it was given; velocity = y-dependent constant."""

    num_classes = K

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1))
        self.calls, self.labels = 0, []

    def forward(self, x, t, y=None):
        self.calls += 1
        self.labels.append(y.detach().clone())
        return x * 0 + self.bias + y.to(x.dtype)[:, None]


def test_one_batched_forward_per_evaluation():
    """Each guided evaluation calls the model once, on [x; x] with labels [y; none]; shapes are kept."""
    rec = Recorder()
    x, t, y = batch(5)
    out = GuidedVelocity(rec, 2.0)(x, 0.3, y=y)
    assert out.shape == x.shape
    assert rec.calls == 1
    torch.testing.assert_close(rec.labels[0], torch.cat([y, torch.full_like(y, K)]))
    torch.testing.assert_close(out, (3 * y - 2 * K).float()[:, None].expand(5, 2))


def test_guided_unet_shape():
    """The guided field of the conv net keeps the image shape (batch, 1, 8, 8)."""
    torch.manual_seed(0)
    model = TinyUNet(10, channels=8, hidden=32)
    x = torch.randn(3, 1, 8, 8)
    assert GuidedVelocity(model, 1.0)(x, 0.5, y=torch.tensor([0, 4, 9])).shape == (3, 1, 8, 8)


def test_guided_sample_matches_a_hand_written_euler_loop():
    """guided_sample with Euler = x_{k+1} = x_k + h [(1 + w) u(x_k, t_k, y) - w u(x_k, t_k, none)], written out."""
    model, w, steps = cond_mlp(), 1.5, 6
    labels = torch.tensor([0, 1, 2, 3, 3])
    got = guided_sample(model, labels, w, (2,), steps=steps, method="euler", generator=torch.Generator().manual_seed(3))
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for k in range(steps):
            t = k / steps
            x = x + (1 / steps) * ((1 + w) * model(x, t, y=labels) - w * model(x, t, y=None))
    assert isinstance(got, fm.Solution) and got.nfe == steps and len(got.times) == steps + 1
    torch.testing.assert_close(got.x, x, rtol=1e-5, atol=1e-5)


def test_mixture_oracle_unconditional_is_the_posterior_average():
    """u_t(x | none) = sum_k p_t(k | x) u_t(x | k): the marginal field averages the per-label fields
    with the posterior of the label at time t (from the exact marginal p_t)."""
    mix = fm.GaussianMixture.symmetric_2d(n_modes=K, radius=3.0, std=0.7)
    oracle = ConditionalMixtureOracle(mix, fm.AffineGaussianPath("condot"))
    x, t = torch.randn(50, 2, generator=torch.Generator().manual_seed(0)) * 2, 0.6
    post = oracle.whole.marginal(t).responsibilities(x)
    per_label = torch.stack([oracle(x, t, y=k) for k in range(K)], dim=1)
    torch.testing.assert_close(oracle(x, t), (post[:, :, None] * per_label).sum(1), rtol=1e-4, atol=1e-5)


def test_guided_field_of_exact_fields_tilts_towards_the_asked_mode():
    """With the exact conditional fields, guided samples at w = 0 land in the asked mode as often as
    true samples of that mode do (Bayes assignment); at w = 2 clearly more often."""
    mix = fm.GaussianMixture.symmetric_2d(n_modes=K, radius=2.0, std=1.0)
    oracle = ConditionalMixtureOracle(mix, fm.AffineGaussianPath("condot"))
    labels = torch.zeros(2000, dtype=torch.long)
    frac = []
    for w in (0.0, 2.0):
        x = guided_sample(oracle, labels, w, (2,), steps=40, generator=torch.Generator().manual_seed(0)).x
        frac.append(float((mix.responsibilities(x).argmax(1) == 0).double().mean()))
    x0 = mix.means[0] + torch.randn(20000, 2, generator=torch.Generator().manual_seed(1))
    want = float((mix.responsibilities(x0).argmax(1) == 0).double().mean())
    assert abs(frac[0] - want) < 4 * math.sqrt(want * (1 - want) / 2000) + 0.01
    assert frac[1] > frac[0] + 0.05


@pytest.mark.parametrize("w", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_w_rejected(w):
    with pytest.raises(ValueError, match="w must be a finite number"):
        GuidedVelocity(cond_mlp(), w)


def test_bad_arguments():
    with pytest.raises(TypeError, match="w must be a real number"):
        GuidedVelocity(cond_mlp(), "2")
    with pytest.raises(TypeError, match="num_classes"):
        GuidedVelocity(fm.MLP(2, hidden=8, depth=1), 1.0)
    guided = GuidedVelocity(cond_mlp(), 1.0)
    x, t, _ = batch(3)
    with pytest.raises(ValueError, match="y is required"):
        guided(x, t)
    with pytest.raises(ValueError, match=r"y must hold labels in 0\.\.4"):
        guided(x, t, y=torch.tensor([0, 5, 1]))


class LabelRecorder(nn.Module):
    """A trainable conditional model that remembers every label batch train() feeds it."""

    num_classes = 3

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.seen = []

    def forward(self, x, t, y=None):
        self.seen.append(y.detach().clone())
        return self.lin(x)


@pytest.mark.parametrize("p", [0.0, 0.25])
def test_label_dropout_rate_in_train(p):
    """fm.train(conditional=True, label_dropout=p) feeds the "no label" index num_classes at rate p
    (binomial 5-sigma band); the other labels keep the target's proportions."""
    mix = fm.GaussianMixture(torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]]), 0.5, weights=[0.5, 0.25, 0.25])
    rec = LabelRecorder()
    fm.train(rec, fm.CFMObjective(fm.AffineGaussianPath("condot"), mix, conditional=True, label_dropout=p),
             steps=40, batch_size=250, progress=False, device="cpu")
    y = torch.cat(rec.seen)
    n = y.numel()
    assert n == 40 * 250 and int(y.max()) <= 3
    dropped = float((y == 3).double().mean())
    assert abs(dropped - p) <= 5 * math.sqrt(max(p * (1 - p), 1e-12) / n)
    kept = y[y < 3]
    share = torch.bincount(kept, minlength=3).double() / kept.numel()
    torch.testing.assert_close(share, torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64), atol=0.03, rtol=0)
