"""Objectives separate from the loop (issue 11, item 1; item 7, proof 1): a categorical objective and a path
that is not an AffineGaussianPath train through the same fmlearn.train, against known optima."""

import math

import pytest
import torch
from torch import nn

import fmlearn as fm
from fmlearn.paths import FlowPathSample, PathSample

P = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25], [0.05, 0.15, 0.3, 0.5]])  # p(y | x), rows x


class TokenPairs:
    """Two positions of tokens x in {0, 1, 2}, uniform, each with its own y ~ P[x] in {0, ..., 3}."""

    def sample(self, n, generator=None, device=None, return_labels=False):
        x = torch.randint(3, (n, 2), generator=generator, device=device)
        y = torch.multinomial(P.to(device)[x.reshape(-1)], 1, generator=generator).reshape(n, 2)
        return (x, y) if return_labels else x


def test_cross_entropy_reaches_the_known_posterior():
    """A table of logits (one row per token) trained on cross-entropy through fm.train: its softmax is p(y | x)
    to 0.02, and the final loss is the conditional entropy H(Y | X) = mean_x H(P[x]) to 0.02 nats."""
    torch.manual_seed(0)
    model = nn.Embedding(3, 4)
    run = fm.train(model, fm.CrossEntropyObjective(TokenPairs()), steps=400, batch_size=512, lr=0.05, seed=0,
                   device="cpu", progress=False)
    got = torch.softmax(model.weight.detach(), dim=1)
    assert float((got - P).abs().max()) < 0.02, got
    entropy = float(-(P * P.log()).sum(1).mean())
    assert abs(run.losses[-50:].mean() - entropy) < 0.02, (run.losses[-50:].mean(), entropy)


def test_cross_entropy_refuses_float_targets_and_bad_logits():
    class FloatLabels:
        def sample(self, n, generator=None, device=None, return_labels=False):
            return torch.zeros(n, 2, dtype=torch.long), torch.zeros(n, 2)

    with pytest.raises(TypeError, match="integer classes or tokens"):
        fm.train(nn.Embedding(3, 4), fm.CrossEntropyObjective(FloatLabels()), steps=1, device="cpu", progress=False)
    with pytest.raises(ValueError, match=r"logits of shape \(\*y.shape, K\)"):
        fm.train(nn.Sequential(nn.Embedding(3, 4), nn.Flatten()), fm.CrossEntropyObjective(TokenPairs()), steps=1,
                 device="cpu", progress=False)


class LinePath:
    """A path by the declared interface only (fmlearn.paths.FlowPath, not an AffineGaussianPath):
    x_t = (1 - t) x0 + t x1, dx_t = x1 - x0, on R^d from N(0, I)."""

    space = fm.Euclidean()

    def sample_source(self, shape, generator=None, device=None):
        return torch.randn(shape, generator=generator, device=device)

    def sample(self, x0, x1, t, *, check=True):
        s = t[:, None]
        return FlowPathSample(x0, x1, t, (1 - s) * x0 + s * x1, x1 - x0)


class OldStylePath:
    """The undeclared contract of earlier versions: sample(x0, x1, t) alone, no space, no source."""

    def sample(self, x0, x1, t):
        return LinePath().sample(x0, x1, t)


class TokenStylePath(LinePath):
    """A path whose samples carry no velocity (a PathSample, as a token path's): no regression target."""

    def sample(self, x0, x1, t, *, check=True):
        return PathSample(x0, x1, t, x1)


def test_a_path_must_declare_the_interface():
    with pytest.raises(TypeError, match=r"path must be a flow's conditional path .*got OldStylePath"):
        fm.CFMObjective(OldStylePath(), fm.Moons())
    with pytest.raises(TypeError, match=r"path.sample must return a FlowPathSample .*got PathSample"):
        fm.train(fm.MLP(2), fm.CFMObjective(TokenStylePath(), fm.Moons()), steps=1, device="cpu", progress=False)


def test_a_protocol_path_trains_like_condot():
    """CFMObjective on LinePath gives the same run, bit for bit, as on AffineGaussianPath('condot')."""
    runs = []
    for path in (LinePath(), fm.AffineGaussianPath("condot")):
        torch.manual_seed(0)
        model = fm.MLP(2, hidden=16, depth=2)
        runs.append(fm.train(model, fm.CFMObjective(path, fm.Moons()), steps=20, batch_size=32, device="cpu",
                             progress=False).losses)
    assert math.isclose(runs[0][-1], runs[1][-1], rel_tol=1e-6) and (abs(runs[0] - runs[1]) < 1e-5).all()


def test_train_refuses_what_is_no_objective():
    with pytest.raises(TypeError, match=r"objective must have draw\(n, generator, device\) and loss\(model, batch\)"):
        fm.train(fm.MLP(2), fm.AffineGaussianPath("condot"), steps=1)


def test_conditional_objective_needs_num_classes():
    with pytest.raises(TypeError, match="num_classes"):
        fm.train(fm.MLP(2), fm.CFMObjective(fm.AffineGaussianPath(), fm.GaussianMixture.symmetric_2d(),
                                            conditional=True), steps=1, device="cpu", progress=False)


class NaNData:
    def sample(self, n, generator=None, device=None):
        return torch.full((n, 2), float("nan"))


@pytest.mark.parametrize("objective, err, match", [
    (lambda: fm.CFMObjective(fm.AffineGaussianPath(), NaNData()), ValueError,
     r"x1 \(from data=NaNData\) must be finite.*needs points of Euclidean\(\)"),
    (lambda: fm.CFMObjective(fm.AffineGaussianPath(), fm.Moons(), source=fm.Gaussian([0.0, 0.0, 0.0], 1.0)),
     ValueError, r"x0 and the data's x1 must have one shape .*\(32, 3\) from source=Gaussian\(dim=3\) and \(32, 2\) "
                 r"from data=Moons"),
    (lambda: fm.CFMObjective(fm.AffineGaussianPath(), fm.Moons(), time_sampler=lambda n, g, d: 2 * torch.rand(n)),
     ValueError, r"t \(from time_sampler\) must lie in \[0, 1\]"),
    (lambda: fm.CFMObjective(fm.AffineGaussianPath(), fm.Moons(), time_sampler=lambda n, g, d: torch.rand(n, 1)),
     ValueError, r"t \(from time_sampler\) must be a float or a tensor of shape \(batch,\) = \(32,\)"),
])
def test_the_first_batch_is_checked(objective, err, match):
    """A careless data set, source or time sampler is refused at the first step, naming which (before: a NaN loss,
    a torch broadcasting error or a silently wrong time)."""
    with pytest.raises(err, match=match):
        fm.train(fm.MLP(2), objective(), steps=1, batch_size=32, device="cpu", progress=False)
