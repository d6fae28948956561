"""fmlearn.likelihood against references computed another way: full Jacobians from
torch.autograd.functional.jacobian, traces of linear fields, closed-form Gaussian
log-densities (scipy), the exact mixture log_prob, the log-determinant of the RK4
flow map, and the closed-form variance of Hutchinson's estimator."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from fmlearn import (MLP, AffineGaussianPath, Gaussian, GaussianMixture, MixtureOracle, bits_per_dim, divergence_exact,
                     divergence_hutchinson, log_likelihood, odeint)

IMPLS = ["auto", "func", "loop"]


def small_mlp(dim, seed=0):
    torch.manual_seed(seed)
    return MLP(dim, hidden=32, depth=2).double().eval()


class TinyConv(nn.Module):
    """A velocity on (batch, 1, H, W) images: two 3x3 convolutions on [x, t]."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x, t):
        tt = t * torch.ones_like(x) if isinstance(t, float) else t.reshape(-1, 1, 1, 1) * torch.ones_like(x)
        return self.c2(torch.tanh(self.c1(torch.cat([x, tt], dim=1))))


def jacobian_traces(velocity, x, t):
    """tr(dv/dx) per sample from torch.autograd.functional.jacobian of the flattened per-sample map."""
    out = []
    for i in range(x.shape[0]):
        ti = t if isinstance(t, float) else t[i : i + 1]
        f = lambda xi: velocity(xi.reshape(1, *x.shape[1:]), ti).reshape(-1)  # noqa: E731
        out.append(torch.trace(torch.autograd.functional.jacobian(f, x[i].reshape(-1))))
    return torch.stack(out)


def jacobians(velocity, x, t):
    return torch.stack([torch.autograd.functional.jacobian(lambda xi: velocity(xi[None], t)[0], xi) for xi in x])


def oracle(name="condot", target=None):
    return MixtureOracle(target or GaussianMixture.symmetric_2d(), AffineGaussianPath(name))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("t", [0.3, "tensor"])
def test_divergence_exact_mlp_vs_full_jacobian(impl, t):
    """MLP on flat 3-D data: div vs the trace of autograd.functional.jacobian; v vs model(x, t); under no_grad."""
    model = small_mlp(3)
    x = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    t = torch.linspace(0, 1, 6, dtype=torch.float64) if t == "tensor" else t
    with torch.no_grad():
        v, div = divergence_exact(model, x, t, impl=impl)
        v_ref = model(x, t)
    torch.testing.assert_close(div, jacobian_traces(model, x, t), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(v, v_ref, rtol=1e-12, atol=1e-12)
    assert div.shape == (6,) and not div.requires_grad


@pytest.mark.parametrize("impl", IMPLS)
def test_divergence_exact_conv_images_vs_full_jacobian(impl):
    """A small conv net on (batch, 1, 4, 4) images: div vs the trace of the 16 x 16 per-sample Jacobian."""
    torch.manual_seed(0)
    model = TinyConv().double()
    x = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    v, div = divergence_exact(model, x, t, impl=impl)
    assert v.shape == x.shape and div.shape == (3,)
    torch.testing.assert_close(div, jacobian_traces(model, x, t), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", [(4, 6), (4, 2, 3)])
def test_divergence_exact_linear_field_is_trace(impl, shape):
    """v = A x (on the flattened data) has div = tr A at every point."""
    A = torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    field = lambda x, t: (x.reshape(x.shape[0], -1) @ A.T).reshape(x.shape)  # noqa: E731
    x = torch.randn(shape, dtype=torch.float64)
    _, div = divergence_exact(field, x, 0.5, impl=impl)
    torch.testing.assert_close(div, torch.full((4,), float(np.trace(A.numpy())), dtype=torch.float64))


@pytest.mark.parametrize("impl", IMPLS)
def test_divergence_exact_oracle_vs_full_jacobian(impl):
    """The mixture oracle (it checks its input for NaN, a host sync): div vs the Jacobian trace."""
    orc, x = oracle(), torch.randn(5, 2, dtype=torch.float64) * 5
    _, div = divergence_exact(orc, x, 0.4, impl=impl)
    torch.testing.assert_close(div, jacobian_traces(orc, x, 0.4), rtol=1e-10, atol=1e-10)


class Cube(torch.autograd.Function):
    """x -> x^3 with a hand-written backward and no setup_context: torch.func cannot transform it."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 3 * x**2 * grad


def test_divergence_exact_falls_back_to_the_loop():
    """v = x^3 through an old-style autograd.Function: "func" raises, "auto" runs the loop; div = sum 3 x^2."""
    field = lambda x, t: Cube.apply(x)  # noqa: E731
    x = torch.randn(4, 1, 2, 2, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="setup_context"):
        divergence_exact(field, x, 0.5, impl="func")
    _, div = divergence_exact(field, x, 0.5)
    torch.testing.assert_close(div, torch.tensor([3 * float((xi**2).sum()) for xi in x], dtype=torch.float64))


@pytest.mark.parametrize("impl", IMPLS)
def test_create_graph_differentiates_the_divergence(impl):
    """With create_graph, d(sum_b div_b)/dA for v = A x is batch * I (div = tr A); Hutchinson's
    eps^T A eps has gradient mean_j sum_b eps_jb eps_jb^T."""
    A = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    x = torch.randn(5, 3, dtype=torch.float64)
    _, div = divergence_exact(lambda x, t: x @ A.T, x, 0.0, create_graph=True, impl=impl)
    (gA,) = torch.autograd.grad(div.sum(), A)
    torch.testing.assert_close(gA, 5 * torch.eye(3, dtype=torch.float64))
    noise = torch.randn(4, 5, 3, dtype=torch.float64)
    _, est = divergence_hutchinson(lambda x, t: x @ A.T, x, 0.0, probes=4, noise=noise, create_graph=True)
    (gA,) = torch.autograd.grad(est.sum(), A)
    torch.testing.assert_close(gA, torch.einsum("jbi,jbk->ik", noise, noise) / 4)


def test_hutchinson_with_given_noise_is_the_quadratic_form():
    """Given probes eps_j: the estimate is mean_j eps_j^T J eps_j, J from autograd.functional.jacobian."""
    model = small_mlp(3)
    x = torch.randn(5, 3, dtype=torch.float64)
    noise = torch.randn(7, 5, 3, dtype=torch.float64)
    v, est = divergence_hutchinson(model, x, 0.7, probes=7, noise=noise)
    ref = torch.einsum("jbi,bik,jbk->b", noise, jacobians(model, x, 0.7), noise) / 7
    torch.testing.assert_close(est, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(v, model(x, 0.7))


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased(kind):
    """4000 one-probe estimates at each of 3 points (copies of the point in one batch): their mean is
    within 4 standard errors (estimated from the probes) of the exact divergence."""
    model = small_mlp(4)
    pts = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    n = 4000
    _, est = divergence_hutchinson(model, pts.repeat_interleave(n, 0), 0.5, probes=1, kind=kind,
                                   generator=torch.Generator().manual_seed(4))
    est = est.reshape(3, n)
    se = est.std(1) / math.sqrt(n)
    exact = jacobian_traces(model, pts, 0.5)
    assert bool((se > 0).all())
    assert bool(((est.mean(1) - exact).abs() < 4 * se).all()), (est.mean(1), exact, se)


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_hutchinson_variance_scales_as_one_over_probes(kind):
    """v = A x, 8000 independent estimates (one per row): Var(k = 1) / Var(k = 16) is ~16, and Var(k = 1)
    matches the closed form (Gaussian: 2 |S|_F^2; Rademacher: 2 sum_{i != j} S_ij^2; S = (A + A^T) / 2)."""
    A = torch.randn(4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    S = (A + A.T) / 2
    closed = 2 * float((S**2).sum()) if kind == "gaussian" else 2 * float((S**2).sum() - (S.diag() ** 2).sum())
    x = torch.zeros(8000, 4, dtype=torch.float64)
    gen = torch.Generator().manual_seed(6)
    var = {k: float(divergence_hutchinson(lambda x, t: x @ A.T, x, 0.0, probes=k, kind=kind, generator=gen)[1].var())
           for k in (1, 16)}
    assert 16 / 1.25 < var[1] / var[16] < 16 * 1.25, var
    assert abs(var[1] / closed - 1) < 0.2, (var, closed)


def test_hutchinson_seeded():
    """The same seed gives the same estimate; another seed another one."""
    model, x = small_mlp(3), torch.randn(4, 3, dtype=torch.float64)
    gen = lambda seed: torch.Generator().manual_seed(seed)  # noqa: E731
    run = lambda seed: divergence_hutchinson(model, x, 0.2, probes=3, generator=gen(seed))[1]  # noqa: E731
    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))


def gaussian_logpdf(x, mean, std):
    """log N(x; mean, diag(std^2)) summed over dims, with scipy."""
    return torch.tensor(stats.norm(mean.numpy(), std.numpy()).logpdf(x.numpy()).sum(1))


def test_log_likelihood_affine_flow_closed_form():
    """One-Gaussian target under CondOT: the flow maps N(0, I) to N(mu, s^2) affinely, so log p_1 is
    log N(x; mu, s^2) (scipy) and x_0 = (x - mu) / s. Measured error 1.0e-6 nats at 32 RK4 steps."""
    target = GaussianMixture([[1.0, -2.0, 0.5]], torch.tensor([[0.5, 2.0, 1.3]]))
    mu, s = target.means[0].double(), target.stds[0].double()
    x = mu + 1.5 * s * torch.randn(200, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    seen = []

    def standard_normal(x0):  # a callable source sees the x_0 the backward solve reaches
        seen.append(x0)
        return -0.5 * (x0**2).sum(1) - 1.5 * math.log(2 * math.pi)

    ll = log_likelihood(oracle(target=target), x, steps=32, source=standard_normal)
    assert float((ll - gaussian_logpdf(x, mu, s)).abs().max()) < 1e-5
    assert float((seen[0] - (x - mu) / s).abs().max()) < 1e-5


def test_log_likelihood_image_shaped_data():
    """(batch, 1, 2, 2) data through the oracle of a 4-D Gaussian (flattened): closed form as above."""
    target = GaussianMixture([[0.5, -1.0, 2.0, 0.0]], torch.tensor([[1.5, 0.7, 1.0, 2.0]]))
    orc = oracle(target=target)
    field = lambda x, t: orc(x.flatten(1), t).reshape(x.shape)  # noqa: E731
    x = target.sample(50, generator=torch.Generator().manual_seed(8)).double()
    ll = log_likelihood(field, x.reshape(50, 1, 2, 2), steps=32)
    assert ll.shape == (50,)
    assert float((ll - gaussian_logpdf(x, target.means[0].double(), target.stds[0].double())).abs().max()) < 1e-5


def test_log_likelihood_mixture_oracle():
    """11-mode mixture, exact CondOT velocity: only RK4 error remains. Measured max error over 300 target
    samples: 4.2e-4 at 32 steps, 1.9e-5 at 64 (a 4th-order drop); the test asks < 1e-4 at 64 steps and
    a drop of more than 8x from 32 to 64 steps."""
    target = GaussianMixture.symmetric_2d()
    x = target.sample(300, generator=torch.Generator().manual_seed(0)).double()
    ref = target.log_prob(x)
    errs = {n: float((log_likelihood(oracle(), x, steps=n) - ref).abs().max()) for n in (32, 64)}
    assert errs[64] < 1e-4 and errs[32] > 8 * errs[64], errs


def test_log_likelihood_mlp_vs_log_det_of_the_flow_map():
    """A (nonlinear, untrained) MLP: log p_1(x) = log N(Phi(x); 0, I) + log|det dPhi/dx|, Phi the RK4 map
    from t = 1 to 0 and its Jacobian by autograd.functional.jacobian; equal up to discretization."""
    model = small_mlp(2, seed=3)
    x = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    times = torch.linspace(1, 0, 33, dtype=torch.float64)
    phi = lambda xi: odeint(model, xi[None], times=times, method="rk4").x[0]  # noqa: E731
    ref = torch.stack([gaussian_logpdf(phi(xi).detach()[None], torch.zeros(2), torch.ones(2))[0]
                       + torch.linalg.slogdet(torch.autograd.functional.jacobian(phi, xi))[1] for xi in x])
    assert float((log_likelihood(model, x, steps=32) - ref).abs().max()) < 1e-6


def test_log_likelihood_hutchinson_vs_exact():
    """10 Rademacher probes, reused along each path: the mean over 200 samples of (hutchinson - exact) is
    within 4 standard errors (from the samples) of 0; seeded runs repeat."""
    target = GaussianMixture.symmetric_2d()
    x = target.sample(200, generator=torch.Generator().manual_seed(10)).double()
    exact = log_likelihood(oracle(), x, steps=16)
    run = lambda: log_likelihood(oracle(), x, steps=16, divergence="hutchinson", probes=10,  # noqa: E731
                                 generator=torch.Generator().manual_seed(11))
    hutch = run()
    diff = hutch - exact
    se = float(diff.std()) / math.sqrt(len(diff))
    assert se > 0 and abs(float(diff.mean())) < 4 * se, (float(diff.mean()), se)
    assert torch.equal(hutch, run())


@pytest.mark.parametrize("name", ["sqrt", "condot"])
def test_finite_at_both_endpoints(name):
    """The grid includes t = 0 and t = 1: the sqrt-path oracle is finite there, and so are the divergence
    and the log-likelihood (vs target.log_prob; measured max error at 32 steps: 1.3e-4 sqrt, 2.9e-4 CondOT)."""
    target, orc = GaussianMixture.symmetric_2d(), oracle(name)
    x = target.sample(100, generator=torch.Generator().manual_seed(12)).double()
    for t in (0.0, 1.0):
        v, div = divergence_exact(orc, x, t)
        assert bool(torch.isfinite(v).all() and torch.isfinite(div).all())
    assert float((log_likelihood(orc, x, steps=32) - target.log_prob(x)).abs().max()) < 2e-3


class DropoutVelocity(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net, self.drop = net, nn.Dropout(0.5)

    def forward(self, x, t):
        return self.drop(self.net(x, t))


def test_log_likelihood_runs_in_eval_mode():
    """Dropout is off inside (so the result equals that of the bare MLP) and training mode is restored."""
    net = MLP(2, hidden=32, depth=2)
    model = DropoutVelocity(net).train()
    x = torch.randn(20, 2)
    ll = log_likelihood(model, x, steps=8)
    assert model.training
    torch.testing.assert_close(ll, log_likelihood(net, x, steps=8))


def test_source_log_prob_and_bits_per_dim():
    """Zero velocity: log p_1 = log p_0. With a Gaussian source (scipy), and the default N(0, I) at
    x = 0, whose bits per dim are log2(2 pi) / 2."""
    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731
    x = torch.randn(10, 3, dtype=torch.float64)
    mean, std = torch.tensor([1.0, 0.0, -1.0]), torch.tensor([2.0, 0.5, 1.0])
    ll = log_likelihood(zero, x, steps=2, source=Gaussian(mean, std))
    torch.testing.assert_close(ll, gaussian_logpdf(x, mean.double(), std.double()))
    ll0 = log_likelihood(zero, torch.zeros(4, 1, 4, 4), steps=1)
    torch.testing.assert_close(bits_per_dim(ll0, (1, 4, 4)), torch.full((4,), math.log2(2 * math.pi) / 2))


def test_bits_per_dim_hand_formula():
    ll = torch.tensor([-3.0, 0.0, 12.5])
    for d in (2, (1, 4, 4), [3, 5]):
        n = int(np.prod(d))
        torch.testing.assert_close(bits_per_dim(ll, d), torch.tensor([-v / (n * math.log(2)) for v in ll.tolist()]))


X2 = torch.zeros(3, 2)


@pytest.mark.parametrize("call, err, match", [
    (lambda: log_likelihood(MLP(2), X2, steps=0), ValueError, "steps must be a positive int, got 0"),
    (lambda: log_likelihood(MLP(2), X2, steps=2.5), TypeError, "steps must be a positive int, got float 2.5"),
    (lambda: log_likelihood(MLP(2), X2, divergence="trace"), ValueError, r"divergence must be one of .*'trace'"),
    (lambda: log_likelihood(MLP(2), X2, divergence="hutchinson", probes=0), ValueError, "probes must be a positive int"),
    (lambda: log_likelihood(MLP(2), X2, method="rk5"), ValueError, r"method must be one of .*'rk5'"),
    (lambda: log_likelihood(MLP(2), X2, source=3), TypeError, "source must have a log_prob"),
    (lambda: log_likelihood(MLP(2), torch.zeros(3)), ValueError, r"x must have shape \(batch, \*data\).*\(3,\)"),
    (lambda: log_likelihood(MLP(2), X2 + float("nan")), ValueError, "x must be finite"),
    (lambda: log_likelihood("mlp", X2), TypeError, "model must be callable.*str"),
    (lambda: divergence_hutchinson(None, X2, 0.5), TypeError, "velocity must be callable.*NoneType"),
    (lambda: divergence_exact(lambda x, t: x[:, :1], X2, 0.5), ValueError, r"velocity must return .*\(3, 2\).*\(3, 1\)"),
    (lambda: divergence_exact(MLP(2), X2, 0.5, impl="jvp"), ValueError, "impl must be one of .*'jvp'"),
    (lambda: divergence_exact(MLP(2), [[0.0, 1.0]], 0.5), TypeError, "x must be a tensor.*list"),
    (lambda: divergence_hutchinson(MLP(2), X2, 0.5, kind="uniform"), ValueError, "kind must be one of .*'uniform'"),
    (lambda: divergence_hutchinson(MLP(2), X2, 0.5, probes=2, noise=torch.zeros(3, 3, 2)), ValueError,
     r"noise must be a tensor of shape .*\(2, 3, 2\), got \(3, 3, 2\)"),
    (lambda: bits_per_dim(torch.zeros(3), 0), ValueError, "data_shape_or_dim must be a positive int.*got 0"),
    (lambda: bits_per_dim(torch.zeros(3), (1, -4)), ValueError, r"data_shape_or_dim .*\(1, -4\)"),
])
def test_bad_arguments(call, err, match):
    with pytest.raises(err, match=match):
        call()


@pytest.mark.cuda
def test_runs_on_the_model_device():
    """A CUDA model gets CPU data moved over; the result matches the CPU computation."""
    model, x = MLP(2, hidden=32, depth=2), torch.randn(50, 2)
    ll_cpu = log_likelihood(model, x, steps=8)
    ll = log_likelihood(model.cuda(), x, steps=8)
    assert ll.device.type == "cuda"
    torch.testing.assert_close(ll.cpu(), ll_cpu, rtol=1e-4, atol=1e-4)


def test_cpu_generator_gives_the_same_probes_for_any_device():
    """A CPU generator is accepted whatever x's device: the probes equal those drawn directly with
    torch.randint on the CPU (and, when CUDA exists, the same probes arrive on CUDA)."""
    from fmlearn.likelihood import _draw_probes
    x = torch.zeros(3, 2)
    a = _draw_probes(x, 4, "rademacher", torch.Generator().manual_seed(5))
    b = torch.randint(0, 2, (4, 3, 2), generator=torch.Generator().manual_seed(5)).float() * 2 - 1
    assert torch.equal(a, b)
    if torch.cuda.is_available():
        c = _draw_probes(x.cuda(), 4, "rademacher", torch.Generator().manual_seed(5))
        assert c.device.type == "cuda" and torch.equal(c.cpu(), b)


def test_log_likelihood_dopri5():
    """method='dopri5' chooses its own steps (before: a misleading '33 time points' error): the 11-mode mixture's
    exact log-density through its oracle to the tolerance, and steps= refused beside it."""
    target = GaussianMixture.symmetric_2d()
    x = target.sample(200, generator=torch.Generator().manual_seed(0)).double()
    errs = {tol: float((log_likelihood(oracle(), x, method="dopri5", rtol=tol, atol=tol) - target.log_prob(x))
                       .abs().max()) for tol in (1e-5, 1e-8)}
    assert errs[1e-8] < 1e-6 and errs[1e-8] < errs[1e-5], errs
    with pytest.raises(ValueError, match="steps sets a fixed grid, but method='dopri5' chooses its own steps"):
        log_likelihood(oracle(), x, method="dopri5", steps=32)
    with pytest.raises(ValueError, match="rtol, atol and first_step control method='dopri5', not method='rk4'"):
        log_likelihood(oracle(), x, rtol=1e-3)
