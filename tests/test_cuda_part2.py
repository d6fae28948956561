"""Part II of the course on a GPU: discrete flow matching (chapter 8), flows on manifolds (chapter 9) and
generator matching (chapter 10), each trained a few steps with fmlearn.train on the device, sampled through
its sampler, and checked there: outputs on the device, finite, of the right shape, and equal (to float32
rounding) to the same computation on the CPU with the same weights.

Every test runs for "cpu" too (the same code with both sides on the CPU: exact agreement), so the checks
themselves are exercised on machines without CUDA; the "cuda" variants are marked ``cuda`` (skipped when
torch sees no GPU). Tiny models and few steps: the whole file takes a few seconds on a CPU.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import fmlearn as fm
from fmlearn import discrete as D
from fmlearn import generators as G
from fmlearn.discrete import data
from fmlearn.manifolds import FlatTorus, ProjectedVelocity, Sphere, Uniform, VonMisesFisherMixture, WrappedNormalMixture
from fmlearn.paths import GeodesicPath

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
SMALL = data.checkerboard(8, block=2)   # 32 cells of an 8 x 8 board: 2 tokens of V = 8 values
TOL = {"rtol": 1e-4, "atol": 1e-4}      # float32 on the GPU against the CPU (TF32 is off for float32 matmuls)


def _on(x: torch.Tensor, device: str) -> torch.Tensor:
    assert isinstance(x, torch.Tensor) and x.device.type == device, (x.device, device)
    return x


def _finite(x: torch.Tensor) -> torch.Tensor:
    assert bool(torch.isfinite(x).all())
    return x


def _trained_on(device, model, objective, steps=25):
    """model trained a few steps on device (a finite loss at every step), and its weights copied to the CPU."""
    run = fm.train(model, objective, steps=steps, batch_size=64, lr=3e-3, seed=0, device=device, progress=False)
    assert run.device.startswith(device) and run.steps_run == steps
    assert np.isfinite(run.losses).all() and len(run.losses) == steps
    assert all(p.device.type == device for p in model.parameters())
    return copy.deepcopy(model).cpu()


# --- chapter 8: discrete flow matching --------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("source, loss", [("mask", "ce"), ("uniform", "gkl")])
def test_discrete_trains_samples_and_scores_on(device, source, loss):
    path = D.MixturePath(8, source)
    torch.manual_seed(0)
    model = D.TokenMLP(path.num_states, 8, 2, embed=8, hidden=32, depth=2)
    twin = _trained_on(device, model, D.DiscreteObjective(path, D.TokenData(SMALL), loss=loss))

    # the posterior network and the sampler's field (with the corrector on the mask source), on both devices
    g = torch.Generator().manual_seed(1)
    t = torch.rand(64, generator=g)
    xt = path.sample_given(D.TokenData(SMALL).sample(64, g), t, g)
    beta = 0.5 if source == "mask" else 0.0
    with torch.no_grad():
        logits = _finite(_on(model(xt.to(device), t.to(device)), device))
        u = _finite(_on(D.posterior_field(model, path, beta)(xt.to(device), 0.5), device))
        u_cpu = D.posterior_field(twin, path, beta)(xt, 0.5)
    assert logits.shape == (64, 2, 8) and u.shape == (64, 2, path.num_states)
    torch.testing.assert_close(logits.cpu(), twin(xt, t).detach(), **TOL)
    torch.testing.assert_close(u.cpu(), u_cpu, **TOL)

    # the Euler sampler with a generator on the device: data tokens only (the jump at t = 1 unmasks the rest)
    gd = torch.Generator(device=device).manual_seed(2)
    sol = D.sample(model, path, path.sample_source((500, 2), gd, device), steps=8, generator=gd, corrector=beta)
    x = _on(sol.x, device)
    assert x.shape == (500, 2) and x.dtype == torch.long and int(x.min()) >= 0 and int(x.max()) < 8
    assert sol.nfe == 8 + (source == "mask")
    # the chapter's way: a CPU generator and CPU source tokens, moved to the model's device
    cg = torch.Generator().manual_seed(3)
    x = _on(D.sample(model, path, path.sample_source((500, 2), cg), steps=4, generator=cg).x, device)
    assert int(x.max()) < 8

    # the ELBO with a CPU generator: the same draws on both devices, so the same bits up to rounding
    e = D.elbo(model, path, SMALL, repeats=2, generator=torch.Generator().manual_seed(4))
    e_cpu = D.elbo(twin, path, SMALL, repeats=2, generator=torch.Generator().manual_seed(4))
    assert np.isfinite(e.bits) and e.bits == pytest.approx(e_cpu.bits, abs=1e-3)

    # the exact laws of the model's chain, computed on the model's device
    law = _finite(_on(D.model_law(model, path, 2, ode_steps=8), device))
    assert law.shape == (64,) and float(law.sum()) == pytest.approx(1.0, abs=1e-3)
    torch.testing.assert_close(law.cpu(), D.model_law(twin, path, 2, ode_steps=8), rtol=1e-4, atol=1e-6)
    euler = _finite(_on(D.euler_law(model, path, 2, steps=4, corrector=beta), device))
    torch.testing.assert_close(euler.cpu(), D.euler_law(twin, path, 2, steps=4, corrector=beta), rtol=1e-4, atol=1e-6)
    assert _finite(D.nll_bits(law, SMALL, 8)).shape == (len(SMALL),)
    table = D.tabulated(model, path.num_states, 2)
    torch.testing.assert_close(table(xt, 0.5).cpu(), twin(xt, 0.5).detach(), **TOL)



@pytest.mark.parametrize("device", DEVICES)
def test_exact_posteriors_take_device_tokens(device):
    """The chapter's oracles (kept on the CPU) answer tokens on the device there, with the CPU's logits."""
    g = torch.Generator().manual_seed(7)
    path = D.MixturePath(8, "mask")
    xt = path.sample_given(D.TokenData(SMALL).sample(32, g), 0.5, g)
    oracle = D.ExactPosterior(SMALL, path)
    torch.testing.assert_close(_on(oracle(xt.to(device), 0.5), device).cpu(), oracle(xt, 0.5), **TOL)
    date_path = D.MixturePath(len(data.DATE_ALPHABET), "mask")
    dates = date_path.sample_given(data.dates("2000-01-01", "2001-12-31")[:32], 0.5, g)
    posterior = data.DatePosterior(date_path, 2000, 2001)
    torch.testing.assert_close(_on(posterior(dates.to(device), 0.5), device).cpu(), posterior(dates, 0.5))

# --- chapter 9: Riemannian flow matching ------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_sphere_flow_trains_samples_and_scores_on(device):
    sphere, target = Sphere(), VonMisesFisherMixture.tetrahedron(50.0)
    torch.manual_seed(0)
    model = ProjectedVelocity(sphere, fm.MLP(3, hidden=32, depth=2, n_freqs=2, max_freq=1.0))
    twin = _trained_on(device, model, fm.CFMObjective(GeodesicPath(sphere), target, source=Uniform(sphere)))

    # the velocity: tangent, and the CPU's
    g = torch.Generator().manual_seed(1)
    x, t = sphere.random_uniform(128, generator=g), torch.rand(128, generator=g)
    with torch.no_grad():
        v = _finite(_on(model(x.to(device), t.to(device)), device))
    assert v.shape == (128, 3) and float((x.to(device) * v).sum(1).abs().max()) < 1e-5
    torch.testing.assert_close(v.cpu(), twin(x, t).detach(), **TOL)

    # sampling with the sphere's step (CPU source points moved to the model): on the sphere, and the CPU's
    sol = fm.sample(model, x, steps=8, method="rk4", space=sphere)
    y = _finite(_on(sol.x, device))
    assert y.shape == (128, 3) and float((y.norm(dim=1) - 1).abs().max()) < 1e-4
    torch.testing.assert_close(y.cpu(), fm.sample(twin, x, steps=8, method="rk4", space=sphere).x, **TOL)

    # the likelihood on the sphere, exact and Hutchinson (CPU-drawn probes: the same on both devices)
    xd = _on(target.sample(64, generator=torch.Generator(device=device).manual_seed(2)), device)
    assert _on(target.log_prob(xd), device).shape == (64,)
    ll = _finite(_on(fm.log_likelihood(model, xd, steps=4, space=sphere), device))
    assert ll.shape == (64,)
    torch.testing.assert_close(ll.cpu(), fm.log_likelihood(twin, xd.cpu(), steps=4, space=sphere), **TOL)
    hutch = dict(steps=4, space=sphere, divergence="hutchinson", probes=2)
    lh = _on(fm.log_likelihood(model, xd, generator=torch.Generator().manual_seed(3), **hutch), device)
    lh_cpu = fm.log_likelihood(twin, xd.cpu(), generator=torch.Generator().manual_seed(3), **hutch)
    torch.testing.assert_close(lh.cpu(), lh_cpu, **TOL)


@pytest.mark.parametrize("device", DEVICES)
def test_torus_flow_trains_samples_and_scores_on(device):
    torus, target = FlatTorus(2), WrappedNormalMixture.product([1.0, 4.0], 0.4, 2)
    torch.manual_seed(0)
    model = ProjectedVelocity(torus, fm.MLP(4, hidden=16, depth=2, n_freqs=2, max_freq=1.0))
    twin = _trained_on(device, model, fm.CFMObjective(GeodesicPath(torus), target, source=Uniform(torus)), steps=15)
    x = torus.random_uniform(64, generator=torch.Generator().manual_seed(1))
    y = _finite(_on(fm.sample(model, x, steps=6, method="rk4", space=torus).x, device))
    assert y.shape == (64, 2) and float(y.min()) >= 0 and float(y.max()) < 2 * np.pi
    torch.testing.assert_close(y.cpu(), fm.sample(twin, x, steps=6, method="rk4", space=torus).x, **TOL)
    ll = _finite(_on(fm.log_likelihood(model, y, steps=4, space=torus), device))
    torch.testing.assert_close(ll.cpu(), fm.log_likelihood(twin, y.cpu(), steps=4, space=torus), **TOL)


# --- chapter 10: generator matching -----------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_jumps_and_superposition_train_and_sample_on(device):
    mix = fm.GaussianMixture(torch.tensor([[-2.0], [2.0]]), stds=0.25)
    torch.manual_seed(0)
    jumps = G.JumpModel(1, torch.linspace(-4, 4, 41), hidden=32, depth=2)
    twin = _trained_on(device, jumps, G.JumpObjective(mix))
    flow = fm.MLP(1, hidden=16, depth=2, n_freqs=2, max_freq=1.0)
    flow_twin = _trained_on(device, flow, fm.CFMObjective(fm.AffineGaussianPath("condot"), mix))

    # the jump model's rates and kernel, and the CPU's
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(256, 1, generator=g), 0.99 * torch.rand(256, generator=g)
    with torch.no_grad():
        log_r = _finite(_on(jumps.scaled_log_rates(x.to(device), t.to(device)), device))
        rates = jumps(x.to(device), 0.5)
    assert log_r.shape == (256, 1, 40)
    torch.testing.assert_close(log_r.cpu(), twin.scaled_log_rates(x, t).detach(), **TOL)
    lam, (edges, probs) = _finite(_on(rates.intensity, device)), rates.bins
    assert lam.shape == (256, 1) and float(lam.min()) >= 0 and _on(edges, device).shape == (41,)
    assert float((_on(probs, device).sum(-1) - 1).abs().max()) < 1e-5
    assert _on(rates.sample(torch.Generator(device=device).manual_seed(5)), device).shape == (256, 1)

    # the jump sampler through fm.simulate with a generator on the device (CPU x0 moved to the model)
    grid = fm.time_grid(10, 0.0, 0.999)
    gd = torch.Generator(device=device).manual_seed(2)
    sol = fm.simulate(G.jump_step(jumps, generator=gd), x, times=grid)
    assert _finite(_on(sol.x, device)).shape == (256, 1) and sol.nfe == 10
    # with a CPU generator both devices draw the same numbers: (nearly) every path ends at the same point
    a = _on(fm.simulate(G.jump_step(jumps, generator=torch.Generator().manual_seed(3)), x, times=grid).x, device)
    b = fm.simulate(G.jump_step(twin, generator=torch.Generator().manual_seed(3)), x, times=grid).x
    assert float(((a.cpu() - b).abs() < 1e-4).float().mean()) >= 0.95

    # the superposition: both steps on the device; at a = 1 it is the flow, and the CPU's flow
    sol = fm.simulate(G.superposition(flow, jumps, 0.5, generator=gd), x, times=fm.time_grid(5, 0.0, 0.999))
    assert _finite(_on(sol.x, device)).shape == (256, 1) and sol.nfe == 10
    sup = _finite(_on(fm.simulate(G.superposition(flow, jumps, 1.0), x, steps=5).x, device))
    torch.testing.assert_close(sup, fm.sample(flow, x, steps=5).x, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(sup.cpu(), fm.sample(flow_twin, x, steps=5).x, **TOL)

    # the exact conditional jumps (no network) on device data, with the chapter's CPU generator
    z = mix.sample(256, generator=torch.Generator(device=device).manual_seed(4))
    cond = fm.simulate(G.jump_step(G.ConditionalJumps(z), generator=torch.Generator().manual_seed(6)),
                       x.to(device), times=grid)
    assert _finite(_on(cond.x, device)).shape == (256, 1)
