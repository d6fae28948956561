# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 9 — Riemannian flow matching on the sphere and the torus
#
# Wind directions, positions on the globe, the angles of a protein's
# backbone: some data live on curved or periodic spaces, not in $\mathbb R^d$.
# Flow matching carries over with three changes: straight lines become
# **geodesics**, velocities live in **tangent spaces**, and the solver's step
# keeps the state **on the manifold**. Everything else, the regression loss,
# the training loop, the ODE solvers and the likelihood, is the machinery of
# Part I, called with a `space=`. We train flows on a mixture of von
# Mises–Fisher distributions on the sphere $S^2$ and on wrapped normals on the
# flat torus, and check them against their exact densities.
#
# **What you will learn**
# - why straight-line interpolation fails on a sphere;
# - tangent spaces, the projection, and the exponential and logarithm maps;
# - geodesic conditional paths and the Riemannian CFM loss;
# - sampling with a step that stays on the manifold;
# - the likelihood on a manifold (the Riemannian divergence) and
#   $\mathrm{KL}(p\,\|\,q)$ against a closed-form density;
# - the flat torus, its seam, and how the KL behaves as the dimension grows.
#
# **Prerequisites:** chapters 1–4 (the CFM loss, ODE solvers, likelihoods and the
# paired KL estimator).
#
# **Run time:** about 2 minutes on a 2-core laptop CPU at the default budget
# (four trainings and four likelihood computations; longer when other work shares
# the CPU), under half a minute in quick mode (`FMLEARN_QUICK=1`), faster on a GPU;
# the last cell prints how long your run took.

# %%
try:  # Colab, VS Code, JupyterHub...: install the course's package where it is missing (README, "Other hosts")
    import fmlearn
except ImportError:
    import os
    source = os.environ.get("FMLEARN_SOURCE") or (".." if os.path.isfile("../fmlearn/__init__.py") else None)
    if source is None:  # a notebook opened alone (Colab): say where the course is, e.g. %env FMLEARN_SOURCE=git+...
        raise ImportError("fmlearn is not installed: set FMLEARN_SOURCE to the course (a git URL, a wheel), rerun")
    get_ipython().run_line_magic("pip", f"install --quiet {source}")

# %%
import fmlearn as fm  # first: it makes torch's idle CPU threads sleep (README, "Threads")
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from fmlearn.manifolds import (FlatTorus, GeodesicPath, ProjectedVelocity, Sphere, Uniform, VonMisesFisherMixture,
                               WrappedNormalMixture, vmf_entropy)
from fmlearn.manifolds import plotting as mplot
from fmlearn.plotting import FIRST, SECOND
from fmlearn.widgets import sphere_flow

T_START = time.perf_counter()
SEED = 0
fm.seed_everything(SEED)
gen = torch.Generator().manual_seed(SEED)
print(fm.describe())

S2_STEPS = fm.budget(default=6000, quick=3000)         # training steps on the sphere
T2_STEPS = fm.budget(default=3000, quick=1500)         # on the torus T^2
TD_STEPS = fm.budget(default=3000, quick=1000)         # on T^d, d = 2 and 5
HIDDEN = fm.budget(default=256, quick=128)             # width of the 3 hidden layers
BATCH = fm.budget(default=512, quick=256)
LR = fm.budget(default=2e-3, quick=3e-3)               # Adam, cosine-decayed
N_EVAL = fm.budget(default=5000, quick=2000)           # samples for the checks and the KL
ODE_STEPS = fm.budget(default=16, quick=12)            # RK4 steps for sampling and likelihoods
KL_S2_MAX = fm.budget(default=0.05, quick=0.15)        # nats
NEAR_MIN = fm.budget(default=0.97, quick=0.93)         # share within 0.5 rad of a mode
SHARE_TOL = fm.budget(default=0.03, quick=0.04)        # each mode's share within this of 1/4
KL_T2_MAX = fm.budget(default=0.07, quick=0.20)        # nats
KL_PER_DIM_MAX = {2: fm.budget(default=0.03, quick=0.10), 5: fm.budget(default=0.06, quick=0.15)}
F64 = torch.float64

sphere = Sphere()

# %% [markdown]
# ## 1. Why straight lines fail
#
# The CondOT path of Part I, $x_t = (1-t)\,x_0 + t\,x_1$, is a chord: for two
# points of the unit sphere at angle $\theta$ it cuts through the inside, and at
# $t = 1/2$ its norm is $\cos(\theta/2)$. For antipodal points it passes through
# the centre, where no direction on the sphere is defined. A flow whose
# intermediate states are not points of the space cannot be fed to a network
# that expects points of the space, and its density would live in $\mathbb R^3$,
# not on the sphere. The replacement is the great circle, the shortest path *on*
# the sphere (left, orange); the right panel shows how far the chord strays.

# %%
x0 = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
ts = torch.linspace(0, 1, 101, dtype=torch.float64)[:, None]
fig = plt.figure(figsize=(10, 4))
ax = mplot.sphere_axes(fig.add_subplot(1, 2, 1, projection="3d"), "chord (blue) and great circle (orange), 150°")
x1 = torch.tensor([[math.cos(math.radians(150)), math.sin(math.radians(150)), 0.0]], dtype=torch.float64)
ax.plot(*((1 - ts) * x0 + ts * x1).T.numpy(), color=FIRST)
ax.plot(*sphere.geodesic(x0.expand(101, 3), x1.expand(101, 3), ts)[0].T.numpy(), color=SECOND, linewidth=2)
ax2 = fig.add_subplot(1, 2, 2)
for deg in (30, 90, 150, 180):
    y = torch.tensor([[math.cos(math.radians(deg)), math.sin(math.radians(deg)), 0.0]], dtype=torch.float64)
    ax2.plot(ts.squeeze(), ((1 - ts) * x0 + ts * y).norm(dim=1), label=f"θ = {deg}°")
ax2.set(title="norm of the straight-line interpolant", xlabel="t", ylabel="|x_t|")
ax2.legend(fontsize=8)
plt.show()

# %%
for deg in (90, 150, 180):
    y = torch.tensor([[math.cos(math.radians(deg)), math.sin(math.radians(deg)), 0.0]], dtype=torch.float64)
    mid = (0.5 * x0 + 0.5 * y).norm().item()
    print(f"θ = {deg:3d}°: |x_1/2| = {mid:.4f}, cos(θ/2) = {math.cos(math.radians(deg) / 2):.4f}")
    assert abs(mid - math.cos(math.radians(deg) / 2)) < 1e-12

# %% [markdown]
# ## 2. Tangent spaces, exp and log
#
# At a point $x$ of the sphere, the velocities that keep a curve on the sphere
# are the vectors orthogonal to $x$: the **tangent space**
# $T_xS^2 = \{v : \langle x, v\rangle = 0\}$. Any vector of $\mathbb R^3$ is
# brought into it by the **projection**
#
# $$P(x)\,v = v - \frac{\langle x, v\rangle}{|x|^2}\, x .$$
#
# (The division by $|x|^2$, which is 1 on the sphere, matters for the
# likelihood: section 5.) Two maps connect points and tangent vectors.
# The **exponential map** walks from $x$ along the great circle in the direction
# $v$ for a length $|v|$; the **logarithm** is its inverse, the tangent vector at
# $x$ that points to $y$ with length the great-circle distance $\theta$:
#
# $$\exp_x(v) = \cos(|v|)\,x + \sin(|v|)\,\frac{v}{|v|}, \qquad
#   \log_x(y) = \theta\,\frac{y - \cos\theta\, x}{|y - \cos\theta\, x|}, \quad \cos\theta = \langle x, y\rangle .$$
#
# Written here, then compared with the package's (which also handles $v = 0$
# and the antipode $y = -x$, where every great circle through $x$ leads to $y$):

# %%
def exp_map(x, v):
    n = v.norm(dim=1, keepdim=True)
    return torch.cos(n) * x + torch.sin(n) * v / n


def log_map(x, y):
    w = y - (x * y).sum(1, keepdim=True) * x
    return torch.arccos((x * y).sum(1, keepdim=True).clamp(-1, 1)) * w / w.norm(dim=1, keepdim=True)


xa, xb = sphere.random_uniform(1000, generator=gen, dtype=F64), sphere.random_uniform(1000, generator=gen, dtype=F64)
print("max |exp(x, log(x, y)) - y|:", (exp_map(xa, log_map(xa, xb)) - xb).abs().max().item())
print("max |ours - package| for log:", (log_map(xa, xb) - sphere.log(xa, xb)).abs().max().item())
print("log at the antipode (package):", sphere.log(xa[:1], -xa[:1]).norm().item(), "= pi")
assert (exp_map(xa, log_map(xa, xb)) - xb).abs().max() < 1e-6 and torch.allclose(log_map(xa, xb), sphere.log(xa, xb))

# %% [markdown]
# A picture: the tangent plane at $x$ (grey), the vector $v = \log_x(y)$ in it
# (blue), and the great circle $s \mapsto \exp_x(s\,v)$, $s \in [0, 1]$, which
# leaves $x$ in the direction $v$ and arrives at $y$ (orange). The plane touches
# the sphere only at $x$: a step of Euler's method along $v$ would leave the
# sphere, which is why the solver projects back after each step (section 4).

# %%
x, y = torch.tensor([[0.3, -0.5, 0.81]], dtype=torch.float64), torch.tensor([[0.9, 0.4, 0.1]], dtype=torch.float64)
x, y = x / x.norm(), y / y.norm()
v = sphere.log(x, y)
a = torch.linspace(-0.6, 0.6, 2, dtype=torch.float64)
e1 = v / v.norm()
e2 = torch.linalg.cross(x, e1)
plane = x[0] + a[:, None, None] * e1[0] + a[None, :, None] * e2[0]
ax = mplot.sphere_axes(title="tangent plane, log and exp at x")
ax.plot_surface(*plane.permute(2, 0, 1).numpy(), color="0.5", alpha=0.3)
ax.quiver(*x[0].numpy(), *v[0].numpy(), color=FIRST, linewidth=2)
ax.plot(*sphere.exp(x.expand(50, 3), torch.linspace(0, 1, 50, dtype=torch.float64)[:, None] * v).T.numpy(),
        color=SECOND, linewidth=2)
ax.scatter(*torch.cat([x, y]).T.numpy(), color="black", s=20)
plt.show()

# %% [markdown]
# ## 3. Geodesic paths and the loss
#
# Riemannian flow matching (Chen & Lipman, 2023) keeps the recipe of chapter 1
# and replaces the chord by the geodesic. For a source point $x_0$ (uniform on
# the sphere) and a data point $x_1$,
#
# $$x_t = \exp_{x_0}\!\big(t \log_{x_0}(x_1)\big), \qquad
#   u_t(x_t \mid x_0, x_1) = \frac{d x_t}{dt} = \frac{\log_{x_t}(x_1)}{1 - t}.$$
#
# On the sphere this is slerp, $x_t = \frac{\sin((1-t)\theta)}{\sin\theta}x_0 +
# \frac{\sin(t\theta)}{\sin\theta}x_1$, moving at the constant speed
# $\theta = d(x_0, x_1)$ (here $\theta$ is an angle; the network's parameters are $\phi$). The form $\log_{x_t}(x_1)/(1-t)$ divides by zero at
# $t = 1$; the package uses the closed form of the velocity, the parallel
# transport of $\log_{x_0}(x_1)$ to $x_t$, which is exact up to $t = 1$. The loss
# is the CFM regression with the Riemannian norm, which for tangent vectors of
# the sphere in ambient coordinates is the Euclidean one:
#
# $$\mathcal L(\phi) = \mathbb E_{t, x_0, x_1}\,\big\|u^\phi_t(x_t) - u_t(x_t \mid x_0, x_1)\big\|^2 .$$
#
# Check the path: on the sphere, moving at speed $\theta$, velocity equal to the
# derivative (central differences), and the $1/(1-t)$ form where it is defined,
# between uniform points and points of the chapter's target (four von
# Mises–Fisher bumps, introduced in the next section).

# %%
path = GeodesicPath(sphere)
target = VonMisesFisherMixture.tetrahedron(kappa=50.0)
xs0 = sphere.random_uniform(500, generator=gen, dtype=F64)
xs1 = target.sample(500, generator=gen, dtype=F64)
ps, h = path.sample(xs0, xs1, 0.7), 1e-6
fd = (path.sample(xs0, xs1, 0.7 + h).xt - path.sample(xs0, xs1, 0.7 - h).xt) / (2 * h)
checks = {"| |x_t| - 1 |": (ps.xt.norm(dim=1) - 1).abs().max().item(),
          "| |u_t| - d(x0, x1) |": (ps.dxt.norm(dim=1) - sphere.dist(xs0, xs1)).abs().max().item(),
          "| u_t - finite difference |": (ps.dxt - fd).abs().max().item(),
          "| u_t - log_xt(x1) / (1 - t) |": (ps.dxt - sphere.log(ps.xt, xs1) / 0.3).abs().max().item()}
for name, err in checks.items():
    print(f"max {name:32s} {err:.1e}")
assert max(checks.values()) < 1e-7

# %% [markdown]
# Some conditional paths, from uniform source points to samples of the target
# (four von Mises–Fisher bumps, next section): each is a piece of a great circle.

# %%
ts = torch.linspace(0, 1, 40, dtype=torch.float64)
curves = torch.stack([path.sample(xs0[:30], xs1[:30], float(t)).xt for t in ts])
ax = mplot.sphere_axes(title="geodesic conditional paths x0 (dot) -> x1")
for k in range(30):
    ax.plot(*curves[:, k].T.numpy(), color=f"C{k % 10}", linewidth=1)
ax.scatter(*xs0[:30].T.numpy(), color="black", s=8)
plt.show()

# %% [markdown]
# ## 4. Training on a mixture of von Mises–Fisher distributions
#
# The **von Mises–Fisher** distribution is the sphere's analogue of an isotropic
# Gaussian: with mean direction $\mu$ and concentration $\kappa$,
#
# $$p(x) = C(\kappa)\, e^{\kappa\, \mu^\top x}, \qquad C(\kappa) = \frac{\kappa}{4\pi\sinh\kappa},$$
#
# with angular spread about $1/\sqrt\kappa$ radians. Our target puts four of them,
# $\kappa = 50$, at the corners of a regular tetrahedron. It can be sampled
# exactly ($w = \mu^\top x$ by the inverse of its CDF, then a uniform azimuth)
# and its density is known in closed form, so we can score the model exactly.
#
# The model is an MLP of chapter 1 wrapped by `ProjectedVelocity`, which
# projects its output onto the tangent space, $u^\phi_t(x) = P(x)\,\mathrm{MLP}(x, t)$.
# Training is `fm.train` on a `CFMObjective` whose path is the geodesic one and
# whose source is the uniform distribution: the same loop as every other chapter.
# (As in chapter 4, the network gets slow time features, which helps the
# likelihood solve of section 5.)

# %%
fm.seed_everything(SEED)
model = ProjectedVelocity(sphere, fm.MLP(3, hidden=HIDDEN, depth=3, n_freqs=2, max_freq=1.0))
objective = fm.CFMObjective(path, target, source=Uniform(sphere))
run = fm.train(model, objective, steps=S2_STEPS, batch_size=BATCH, lr=LR, seed=SEED)
print(f"trained {S2_STEPS} steps in {run.seconds:.0f} s on {run.device}")

# %% [markdown]
# **Sampling** integrates $\dot x = u^\phi_t(x)$ from uniform points with the
# solvers of chapter 3 and `space=sphere`: each step computes its increment
# $\Delta x$ as in $\mathbb R^3$ and the sphere applies it as
# $(x + \Delta x)/|x + \Delta x|$, back onto the sphere. RK4 keeps its order this
# way, and no error can carry the state off the sphere.

# %%
x_src = sphere.random_uniform(N_EVAL, generator=gen)
sol = fm.sample(model, x_src, steps=ODE_STEPS, method="rk4", space=sphere, return_trajectory=True)
x_model, x_true = sol.x.cpu(), target.sample(N_EVAL, generator=gen)
fig = plt.figure(figsize=(10, 4.2))
mplot.plot_sphere(x_true, fig.add_subplot(1, 2, 1, projection="3d"), "target (exact samples)")
mplot.plot_sphere(x_model, fig.add_subplot(1, 2, 2, projection="3d"), "model samples", color=SECOND)
plt.show()

# %% [markdown]
# A sphere in 3-D hides its back; an equal-area map (Mollweide) shows all of it
# at once, with areas, and so densities of points, preserved. Two modes sit in
# each hemisphere (their coordinates are printed below): look for the same four
# clusters in both maps, the same spread, and no points in between.

# %%
lon, lat = mplot.lonlat(target.means)
print("modes (longitude, latitude) in degrees:", [(round(a), round(b)) for a, b in zip(np.degrees(lon),
                                                                                         np.degrees(lat))])
fig = plt.figure(figsize=(11, 3.3))
mplot.plot_map(x_true, mplot.map_axes(fig, 121, "target"), color=FIRST)
mplot.plot_map(x_model, mplot.map_axes(fig, 122, "model"), color=SECOND)
plt.show()

# %% [markdown]
# ### Watch the flow
#
# The samples at a few times along the flow (the static figure), then the
# same flow as an animation: a $t$ slider with a play button (an HTML slider
# with its frames embedded, in JupyterLab as on the web page). What to look at: the uniform
# cloud gathers into four clusters, and by $t = 1$ almost every point sits in
# one of them (the check below counts how many). Only the *conditional* paths
# are great circles; the learned flow moves a point along the average of many
# of them, which bends, as the marginal paths of chapter 3 bend in the plane.

# %%
fig = mplot.flow_snapshots(sol.trajectory.cpu(), sol.times)
plt.show()

# %%
sphere_flow(sol.trajectory.cpu(), sol.times)

# %% [markdown]
# **Check yourself.** Samples on the sphere; the share within 0.5 rad of a mode
# against the target's own; each mode's share near 1/4. Each check must fail on
# the failure it names: uniform points fail the second (the share near a
# mode), and a sampler that dropped a mode fails the third (the mode shares;
# both asserted below).

# %%
near_model, near_true = target.fraction_near_modes(x_model, 0.5), target.fraction_near_modes(x_true, 0.5)
shares = target.mode_fractions(x_model)
off_sphere = (x_model.double().norm(dim=1) - 1).abs().max().item()
print(f"max | |x| - 1 | = {off_sphere:.1e}")
print(f"within 0.5 rad of a mode: model {near_model:.2%}, target {near_true:.2%} (threshold {NEAR_MIN:.0%})")
print("mode shares:", [f"{s:.3f}" for s in shares.tolist()], f"(each within {SHARE_TOL} of 0.25)")
uniform_near = target.fraction_near_modes(sphere.random_uniform(N_EVAL, generator=gen), 0.5)
x_lab, labels = target.sample(N_EVAL, generator=gen, return_labels=True)
dropped = target.mode_fractions(x_lab[labels != 0])
print(f"uniform points: {uniform_near:.2%} near a mode; a sampler without the first mode (index 0): shares "
      f"{[round(s, 3) for s in dropped.tolist()]}")
assert off_sphere < 1e-4 and near_model >= NEAR_MIN and (shares - 0.25).abs().max() <= SHARE_TOL
assert uniform_near < NEAR_MIN and (dropped - 0.25).abs().max() > SHARE_TOL

# %% [markdown]
# ## 5. The likelihood on the manifold
#
# Chapter 4's instantaneous change of variables holds on a manifold with the
# **Riemannian divergence** and densities with respect to area:
#
# $$\log q_1(x_1) = \log q_0(x_0) - \int_0^1 \operatorname{div}_{S^2} u_t(x_t)\,dt,
#   \qquad q_0 = \frac{1}{4\pi}.$$
#
# For a tangent field of the sphere, written in ambient coordinates with
# Jacobian $J$, the divergence is the trace over tangent directions only,
# $\operatorname{div}_{S^2} u = \operatorname{tr}(P J P) = \sum_i (Pe_i)^\top J\,(Pe_i)$
# (the three projected basis vectors are not orthonormal, but
# $\sum_i (Pe_i)(Pe_i)^\top = P^2 = P$, so the sum is the trace of $J$ over any
# orthonormal basis of the tangent plane):
# `fm.log_likelihood(..., space=sphere)` projects the basis vectors (or
# Hutchinson's probes) before each vector–Jacobian product, and steps with the
# sphere's step.
#
# <details><summary><b>Derivation: when the ambient divergence is the right one</b> (click)</summary>
#
# The ambient trace $\operatorname{tr} J = \operatorname{tr}(PJP) + n^\top J n$,
# $n = x/|x|$, adds the radial derivative of the field's radial part. For
# $w(x) = P(x)\,v$ with $P(x) = I - xx^\top/|x|^2$, $w \cdot n = 0$ at every
# $x$, so that term vanishes and the ambient divergence is the intrinsic one.
# With $I - xx^\top$ instead, $w\cdot x = (1 - |x|^2)(v\cdot x)$, whose radial
# derivative at $|x| = 1$ is $-2\,x\cdot v$: the ambient divergence is off by
# exactly that. The example: $u = P(x)\,e_z$ has intrinsic divergence $-2z$.
# </details>
#
# The check, in float64 at random points:

# %%
xp = sphere.random_uniform(200, generator=gen, dtype=F64)
ez = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(200, 3)
no_division = lambda y, t: ez - (y * ez).sum(1, keepdim=True) * y  # noqa: E731  (I - x x^T) e_z
projected = lambda y, t: sphere.proj(y, ez)  # noqa: E731  P(x) e_z, P = I - x x^T / |x|^2
contract = {"tangent trace, space=sphere": fm.divergence_exact(projected, xp, 0.0, space=sphere)[1],
            "ambient trace, P = I - xx^T/|x|^2": fm.divergence_exact(projected, xp, 0.0)[1],
            "ambient trace, P = I - xx^T": fm.divergence_exact(no_division, xp, 0.0)[1]}
for name, div in contract.items():
    print(f"{name:36s} max |div - (-2z)| = {(div + 2 * xp[:, 2]).abs().max().item():.1e}")
assert (contract["ambient trace, P = I - xx^T"] + 4 * xp[:, 2]).abs().max() < 1e-12
assert all((d + 2 * xp[:, 2]).abs().max() < 1e-12 for k, d in contract.items() if "xx^T/" in k or "tangent" in k)

# %% [markdown]
# Now the trained model: $\log q(x)$ for exact samples $x \sim p$, and the
# paired estimate of $\mathrm{KL}(p\,\|\,q)$ of chapter 4, against the closed-form
# $\log p$. For scale, the uniform density scores
# $\mathrm{KL}(p\,\|\,\text{uniform}) = \log 4\pi - H(p)$ (printed below).

# %%
x_data = target.sample(N_EVAL, generator=gen, dtype=F64)
log_q = fm.log_likelihood(model, x_data, steps=ODE_STEPS, method="rk4", space=sphere).cpu()
log_p = target.log_prob(x_data)
diff = log_p - log_q
kl, kl_se = diff.mean().item(), (diff.std() / math.sqrt(N_EVAL)).item()
kl_uniform = (log_p + math.log(4 * math.pi)).mean().item()
print(f"KL(p || model) = {kl:.4f} ± {kl_se:.4f} nats on {N_EVAL:,} samples (threshold {KL_S2_MAX})")
print(f"KL(p || uniform) = {kl_uniform:.3f} nats")
assert kl_uniform > KL_S2_MAX  # the KL check fails a model that learned nothing

# %% [markdown]
# Two more checks. The target's entropy by Monte Carlo against the closed
# form: one vMF at $\kappa = 50$ has $H = -\log C(\kappa) - \kappa\coth\kappa + 1$; four
# nearly disjoint ones add $\log 4$. And the backward solve: with twice the
# steps, the log-likelihoods must barely move compared with the KL.

# %%
h_mc, h_se = target.entropy_mc(50_000, generator=gen)
h_one = vmf_entropy(50.0)
print(f"one vMF, kappa = 50: H = {h_one:.4f} nats (closed form)")
print(f"mixture: H = {h_mc:.4f} ± {h_se:.4f} (Monte Carlo); log 4 + H_one = {math.log(4) + h_one:.4f}")
log_q_fine = fm.log_likelihood(model, x_data[:500], steps=2 * ODE_STEPS, space=sphere).cpu()
solve_err = (log_q_fine - log_q[:500]).abs().mean().item()
print(f"RK4 at {ODE_STEPS} vs {2 * ODE_STEPS} steps: mean |difference| {solve_err:.1e} nats per point")
assert abs(h_one + 1.074) < 1e-3 and abs(h_mc - (math.log(4) + h_one)) < 0.01
assert solve_err < 0.25 * max(kl, kl_se) and kl <= KL_S2_MAX and kl > -3 * kl_se

# %% [markdown]
# The log-densities on the map, model beside truth, on one colour scale (on a
# grid, with half the solver steps, for speed). Look
# at the shape of each bump and at the floor between them: that is where
# $\mathrm{KL}(p\,\|\,q)$ does not look (it weights by $p$), and where a model's
# density is least constrained.

# %%
LON, LAT, grid = mplot.lonlat_grid(*fm.budget(default=(96, 48), quick=(48, 24)))
log_q_grid = fm.log_likelihood(model, grid, steps=ODE_STEPS // 2, space=sphere).cpu()
log_p_grid = target.log_prob(grid)
fig = plt.figure(figsize=(11, 3.6))
for i, (z, title) in enumerate(((log_p_grid, "true log-density"), (log_q_grid, "model log-density"))):
    mesh = mplot.plot_map_density(z.clamp(min=-15), LON, LAT, mplot.map_axes(fig, 121 + i, title), vmin=-15,
                                  vmax=log_p_grid.max().item())
fig.colorbar(mesh, ax=fig.axes, shrink=0.8, label="log-density per unit area (clipped at -15)")
plt.show()

# %% [markdown]
# ## 6. The flat torus
#
# The torus $T^2 = [0, 2\pi)^2$ with opposite edges glued is the space of two
# angles (e.g. a protein's dihedral angles). It is **flat**: in angle coordinates
# the metric is the identity, so exp is $x + v$ wrapped into $[0, 2\pi)$, the
# divergence is the ordinary one, and the only new ingredient is the
# **wrapped difference**,
#
# $$\log_x(y) = \big((y - x + \pi) \bmod 2\pi\big) - \pi ,$$
#
# the short way round. Geodesic paths are straight lines that may leave through
# one edge and come back through the opposite one. The network sees each angle
# through $(\cos x, \sin x)$, so its velocity is periodic: the same point must
# get the same velocity on both sides of the seam: it sees $(\cos x, \sin x) \in \mathbb R^4$,
# and `ProjectedVelocity` turns its 4-D output $(a, b)$ into the tangent
# velocity $-\sin x \cdot a + \cos x \cdot b$ of each circle, a 2-D velocity in
# angles (the torus is flat, so the divergence is the ordinary one).
#
# The target: four **wrapped normals**, $p(x) = \sum_{k\in\mathbb Z^2}\mathcal N(x + 2\pi k;\, \mu, \sigma^2 I)$
# with $\sigma = 0.4$, one of them centred on the seam at first angle $x^1 = 0$, so half of its mass shows on
# the left edge of the square and half on the right.

# %%
torus = FlatTorus(2)
torus_target = WrappedNormalMixture([[0.0, 1.5], [2.0, 4.5], [3.5, 1.0], [4.6, 3.6]], 0.4)
seam = torus.log(torch.tensor([[0.1]], dtype=F64), torch.tensor([[2 * math.pi - 0.1]], dtype=F64))
print(f"log(0.1, 2 pi - 0.1) = {seam.item():.4f}")
fm.seed_everything(SEED)
torus_model = ProjectedVelocity(torus, fm.MLP(4, hidden=HIDDEN, depth=3, n_freqs=2, max_freq=1.0))
run_t = fm.train(torus_model, fm.CFMObjective(GeodesicPath(torus), torus_target, source=Uniform(torus)),
                 steps=T2_STEPS, batch_size=BATCH, lr=LR, seed=SEED)
xt_model = fm.sample(torus_model, torus.random_uniform(N_EVAL, generator=gen), steps=ODE_STEPS, method="rk4",
                     space=torus).x.cpu()
print(f"trained {T2_STEPS} steps in {run_t.seconds:.0f} s")

# %% [markdown]
# The square (left: the true density in grey, the model's samples in colour;
# dashed: the glued edges) and the same samples on a torus in 3-D (right), where
# the seam disappears: the mode at first angle $x^1 = 0$ is one bump.

# %%
g = (torch.arange(100, dtype=torch.float64) + 0.5) * 2 * math.pi / 100
GX, GY = torch.meshgrid(g, g, indexing="xy")
dens = torus_target.log_prob(torch.stack([GX.reshape(-1), GY.reshape(-1)], 1)).exp().reshape(100, 100)
fig = plt.figure(figsize=(10, 4.5))
mplot.plot_torus_square(xt_model, fig.add_subplot(1, 2, 1), "model samples on the true density", color=SECOND,
                        density=(GX.numpy(), GY.numpy(), dens.numpy()))
mplot.plot_torus_3d(xt_model, fig.add_subplot(1, 2, 2, projection="3d"), "the same samples on the torus", color=SECOND)
plt.show()

# %% [markdown]
# **Check yourself.** Every mode's share, the seam mode's included, and the KL
# against the exact density (paired, as on the sphere).

# %%
xt_data = torus_target.sample(N_EVAL, generator=gen, dtype=F64)
diff_t = torus_target.log_prob(xt_data) - fm.log_likelihood(torus_model, xt_data, steps=ODE_STEPS, space=torus).cpu()
kl_t, kl_t_se = diff_t.mean().item(), (diff_t.std() / math.sqrt(N_EVAL)).item()
shares_t = torus_target.mode_fractions(xt_model)
print("mode shares:", [f"{s:.3f}" for s in shares_t.tolist()], "(the first is the seam mode)")
print(f"KL(p || model) on T² = {kl_t:.4f} ± {kl_t_se:.4f} nats (threshold {KL_T2_MAX})")
assert (shares_t - 0.25).abs().max() <= SHARE_TOL and kl_t <= KL_T2_MAX and kl_t > -3 * kl_t_se

# %% [markdown]
# ## 7. Higher dimensions: the torus Tᵈ
#
# Does the same budget keep up as the dimension grows? On $T^d$ take the product
# of one 1-D mixture of two wrapped normals (one on the seam at 0, one at $\pi$,
# $\sigma = 0.5$) over the $d$ angles: $2^d$ modes, an entropy $d$ times the 1-D
# one, and a KL that we report **per dimension**. Same network, same training
# steps, for $d = 2$ and $d = 5$ (32 modes).

# %%
kl_per_dim = {}
for d in (2, 5):
    td, td_target = FlatTorus(d), WrappedNormalMixture.product([0.0, math.pi], 0.5, d)
    fm.seed_everything(SEED)
    td_model = ProjectedVelocity(td, fm.MLP(2 * d, hidden=HIDDEN, depth=3, n_freqs=2, max_freq=1.0))
    fm.train(td_model, fm.CFMObjective(GeodesicPath(td), td_target, source=Uniform(td)), steps=TD_STEPS,
             batch_size=BATCH, lr=LR, seed=SEED)
    xd = td_target.sample(N_EVAL, generator=gen, dtype=F64)
    dd = td_target.log_prob(xd) - fm.log_likelihood(td_model, xd, steps=ODE_STEPS, space=td).cpu()
    kl_per_dim[d] = (dd.mean().item() / d, dd.std().item() / math.sqrt(N_EVAL) / d)
    h, _ = td_target.entropy_mc(20_000, generator=gen)
    print(f"d = {d}: {td_target.n_components:2d} modes, entropy {h:.3f} nats; KL per dimension "
          f"{kl_per_dim[d][0]:.4f} ± {kl_per_dim[d][1]:.4f} (threshold {KL_PER_DIM_MAX[d]})")
ratio = kl_per_dim[5][0] / kl_per_dim[2][0]
print(f"KL per dimension, d = 5 over d = 2: {ratio:.1f} ({'grows' if ratio > 1 else 'does not grow'} with d)")
assert all(kl_per_dim[d][0] <= KL_PER_DIM_MAX[d] for d in (2, 5))

# %% [markdown]
# Does the KL per dimension grow with $d$? The ratio printed above answers for
# your run. Expect it to: with $2^d$ modes to place and the same number of
# training steps, the network has a harder job per dimension, even though each
# angle alone is as easy as before. Nothing about the geometry changed: the
# torus stays flat, the divergence stays the ordinary one, and the cost of the
# exact divergence grows only like $d$.
#
# ## Summary
#
# - On a manifold, flow matching swaps straight lines for **geodesics**
#   $x_t = \exp_{x_0}(t\log_{x_0}x_1)$, velocities for **tangent vectors** (a
#   network's output projected by $P(x)$), and the Euclidean step for one that
#   stays **on the manifold**; the loss, the training loop and the solvers are
#   those of Part I.
# - The likelihood needs the **Riemannian divergence**, $\operatorname{tr}(PJP)$ on
#   the sphere; the ambient trace agrees only for $P = I - xx^\top/|x|^2$.
# - Closed-form densities (von Mises–Fisher, wrapped normals) let us measure the
#   model with the paired KL, as in chapter 4.
# - The flat torus needs only the wrapped difference and a periodic network.
#
# **Exercises:** [ex09_riemannian_flow_matching.ipynb](../exercises/ex09_riemannian_flow_matching.ipynb),
# graded tasks on this chapter (exp and log maps, the geodesic velocity, the
# tangent projection, the wrapped difference), each followed by a check that
# gives a hint.
#
# Next, chapter 10: generator matching, one framework for flows, diffusions and jumps.

# %%
print(fm.config.run_time(T_START))

# %% [markdown]
# ## Further reading
#
# The papers this chapter follows, and what to read each one for. Full entries are on the
# [references page](../book/references.md) (from `book/references.bib`).
#
# - [Lipman2024] Lipman et al. 2024, *Flow Matching Guide and Code* (arXiv 2412.06264): flow matching on
#   manifolds: tangent spaces, exp and log maps, and geodesic conditional flows.
# - [ChenLipman2024] Chen and Lipman 2024, *Flow Matching on General Geometries* (arXiv 2302.03660):
#   Riemannian flow matching, premetrics, the sphere and the torus, and spectral premetrics where geodesics
#   have no closed form.
