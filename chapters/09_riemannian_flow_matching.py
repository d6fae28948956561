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
# flat torus, and check them against their exact densities; then on an
# ellipsoid, whose geodesics have no closed form, with a path built from a
# premetric instead.
#
# **What you will learn**
# - why straight-line interpolation fails on a sphere;
# - tangent spaces, the projection, and the exponential and logarithm maps;
# - geodesic conditional paths and the Riemannian CFM loss;
# - sampling with a step that stays on the manifold;
# - the likelihood on a manifold (the Riemannian divergence) and
#   $\mathrm{KL}(p\,\|\,q)$ against a closed-form density;
# - the Riemannian continuity equation, and why the conditional loss has the
#   marginal loss's gradient (the Riemannian CFM theorem);
# - the flat torus, its seam, and how the KL behaves as the dimension grows;
# - the premetric construction of Chen & Lipman, for a surface without
#   closed-form geodesics: an ellipsoid, its path integrated by the solvers.
#
# **Prerequisites:** chapters 1–4 (the CFM loss, ODE solvers, likelihoods and the
# paired KL estimator).
#
# **Run time:** about 3 minutes on a 2-core laptop CPU at the default budget
# (five trainings and six likelihood computations; longer when other work shares
# the CPU), under a minute in quick mode (`FMLEARN_QUICK=1`), faster on a GPU;
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

from fmlearn.manifolds import (Ellipsoid, FlatTorus, GeodesicPath, PathBankObjective, PremetricPath, ProjectedVelocity,
                               RadialImage, RadialPremetric, Sphere, Uniform, VonMisesFisherMixture,
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
E_STEPS = fm.budget(default=6000, quick=1500)          # training steps on the ellipsoid
BANK = fm.budget(default=262144, quick=32768)          # its bank of solved path samples
ED_MAX = fm.budget(default=1.5, quick=3.0)             # energy distance, in floors
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
# Riemannian flow matching (Chen & Lipman, ICLR 2024; arXiv 2023) keeps the recipe of chapter 1
# and replaces the chord by the geodesic. For a source point $x_0$ (uniform on
# the sphere) and a data point $x_1$,
#
# $$x_t = \exp_{x_0}\!\big(t \log_{x_0}(x_1)\big), \qquad
#   u_t(x_t \mid x_0, x_1) = \frac{d x_t}{dt} = \frac{\log_{x_t}(x_1)}{1 - t}.$$
#
# On the sphere this is slerp, $x_t = \frac{\sin((1-t)\theta)}{\sin\theta}x_0 +
# \frac{\sin(t\theta)}{\sin\theta}x_1$, moving at the constant speed
# $\theta = d(x_0, x_1)$ (here $\theta$ is an angle; the network's parameters are $\phi$). The form $\log_{x_t}(x_1)/(1-t)$ divides by zero at
# $t = 1$. Why $\log_{x_t}(x_1)/(1-t)$: the rest of the geodesic, from $x_t$ to $x_1$, has
# length $(1-t)\theta$ and leaves $x_t$ along $\dot x_t$, so $\log_{x_t}(x_1) = (1-t)\,\dot x_t$. The
# package uses the closed form of the velocity, $\dot x_t = \theta\,(\cos(t\theta)\, v - \sin(t\theta)\, x_0)$
# with $v = \log_{x_0}(x_1)/\theta$ the unit tangent at $x_0$ (a geodesic's velocity is the parallel
# transport of its initial velocity), which is exact up to $t = 1$. The loss
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
# ### The continuity equation on a manifold, and why the conditional loss is enough
#
# A velocity field $u_t$ on a manifold $M$ moves a density $p_t$ (a density with
# respect to the Riemannian volume $dV$: area, on a surface) according to the
# **Riemannian continuity equation**
#
# $$\partial_t p_t + \operatorname{div}_g(p_t\, u_t) = 0 ,$$
#
# where $\operatorname{div}_g$ is the divergence of the metric $g$ (section 5
# computes it on the sphere).
#
# <details><summary><b>Derivation of the continuity equation</b> (click)</summary>
#
# Take a smooth test function $f$ on $M$ and follow the points, $\dot x_t = u_t(x_t)$.
# The chain rule gives $\frac{d}{dt} f(x_t) = \langle \operatorname{grad} f, u_t\rangle_g$,
# so, averaging over $x_t \sim p_t$,
#
# $$\frac{d}{dt}\int_M f\, p_t\, dV = \int_M \langle \operatorname{grad} f, u_t\rangle_g\, p_t\, dV
#   = -\int_M f\, \operatorname{div}_g(p_t\, u_t)\, dV .$$
#
# The second equality is the product rule
# $\operatorname{div}_g(f X) = f\operatorname{div}_g X + \langle \operatorname{grad} f, X\rangle_g$
# for $X = p_t u_t$, integrated over $M$: the sphere, the torus and the ellipsoid of
# section 8 have no boundary, so the divergence theorem gives $\int_M \operatorname{div}_g(fX)\, dV = 0$.
# The left side is $\int_M f\, \partial_t p_t\, dV$. Both sides agree for every $f$, so
# $\partial_t p_t = -\operatorname{div}_g(p_t u_t)$. In $\mathbb R^d$ this is chapter 2's
# equation; only the divergence changed.
# </details>
#
# **The marginal field.** Each conditional path $p_t(x \mid x_1)$ with its velocity
# $u_t(x \mid x_1)$ solves this equation. Average over the data $q$:
# $p_t(x) = \int p_t(x \mid x_1)\, q(x_1)\, dx_1$, and
#
# $$u_t(x) = \int u_t(x \mid x_1)\, \frac{p_t(x \mid x_1)\, q(x_1)}{p_t(x)}\, dx_1
#   = \mathbb E\big[u_t(x_t \mid x_1) \,\big|\, x_t = x\big] .$$
#
# Every $u_t(x \mid x_1)$ in the integral is a tangent vector at the same point $x$,
# so their average is one too. Then
# $p_t u_t = \int p_t(x \mid x_1)\, u_t(x \mid x_1)\, q(x_1)\, dx_1$, the divergence is
# linear, and $\operatorname{div}_g(p_t u_t) = -\int \partial_t p_t(x \mid x_1)\, q(x_1)\, dx_1
# = -\partial_t p_t$: the marginal field moves the source ($t = 0$) to the data
# ($t = 1$). (The geodesic path conditions on the pair $(x_0, x_1)$; the same lines
# hold with $q(x_0, x_1)$ in place of $q(x_1)$.)
#
# **The Riemannian CFM theorem.** We cannot regress on $u_t(x)$, an integral over the
# whole data distribution, but we can regress on $u_t(x \mid x_1)$, and that is enough:
#
# $$\mathcal L_{\mathrm{CFM}}(\phi) = \mathbb E_{t,\, x_1,\, x \sim p_t(\cdot \mid x_1)}
#   \big\|u^\phi_t(x) - u_t(x \mid x_1)\big\|_g^2
#   = \mathbb E_{t,\, x \sim p_t} \big\|u^\phi_t(x) - u_t(x)\big\|_g^2 + C ,$$
#
# with $C$ independent of $\phi$, so both losses have the same gradient in $\phi$.
#
# <details><summary><b>Proof sketch</b> (click)</summary>
#
# Expand each square in the tangent space at $x$:
# $\|a - b\|_g^2 = \|a\|_g^2 - 2\langle a, b\rangle_g + \|b\|_g^2$.
# The terms $\|u^\phi_t(x)\|_g^2$ have the same expectation in both losses, since in
# both $x$ has the marginal $p_t$. The cross terms agree because the inner product at
# $x$ is linear in its second argument (tower rule):
# $\mathbb E\,\langle u^\phi_t(x), u_t(x \mid x_1)\rangle_g
#  = \mathbb E_{x \sim p_t}\langle u^\phi_t(x), \mathbb E[u_t(x \mid x_1) \mid x]\rangle_g
#  = \mathbb E_{x \sim p_t}\langle u^\phi_t(x), u_t(x)\rangle_g$.
# The remaining terms, $\|u_t(x \mid x_1)\|_g^2$ and $\|u_t(x)\|_g^2$, do not involve
# $\phi$: their difference is $C$. On the sphere, in ambient coordinates, $\|v\|_g$ of
# a tangent vector is its Euclidean norm, which is why the loss above is chapter 1's.
# </details>
#
# **The cut locus.** The geodesic path needs $\log_{x_0}(x_1)$, which is not unique
# where $x_1$ lies in the cut locus of $x_0$ (on the sphere, the antipode $-x_0$, which
# every great circle from $x_0$ reaches); that set has measure zero, so source and
# target draw it with probability 0 (the package picks a fixed direction there), and
# the premetric paths of section 8 likewise need $\operatorname{grad} d \neq 0$ only
# away from $x_1$ and such a set.

# %% [markdown]
# ## 4. Training on a mixture of von Mises–Fisher distributions
#
# The **von Mises–Fisher** distribution is the sphere's analogue of an isotropic
# Gaussian: with mean direction $\mu$ and concentration $\kappa$,
#
# $$p(x) = C(\kappa)\, e^{\kappa\, \mu^\top x}, \qquad C(\kappa) = \frac{\kappa}{4\pi\sinh\kappa},$$
#
# with angular spread about $1/\sqrt\kappa$ radians (near the mean,
# $e^{\kappa\cos\theta} \approx e^{\kappa} e^{-\kappa\theta^2/2}$: a Gaussian of variance $1/\kappa$ in each tangent direction). Our target puts four of them,
# $\kappa = 50$, at the corners of a regular tetrahedron. It can be sampled
# exactly ($w = \mu^\top x$ by the inverse of its CDF, then a uniform azimuth)
# and its density is known in closed form, so we can score the model exactly.
#
# The model is an MLP of chapter 1 wrapped by `ProjectedVelocity`, which
# projects its output onto the tangent space, $u^\phi_t(x) = P(x)\,\mathrm{MLP}(x, t)$.
# Training is `fm.train` on a `CFMObjective` whose path is the geodesic one and
# whose source is the uniform distribution: the same loop as every other chapter.
# (As in chapter 4, the network gets slow time features, a smooth dependence on
# $t$ that keeps the likelihood solve of section 5 cheap at a fixed number of steps.)

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
# clusters in both maps, the same spread, and few points in between (how few: the
# share within 0.5 rad of a mode, printed below, against the target's).

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
# **Riemannian divergence** and densities with respect to area. Along a path
# $\dot x_t = u_t(x_t)$, the continuity equation and the product rule give
# $\frac{d}{dt}\log q_t(x_t) = \frac{\partial_t q_t + \langle \operatorname{grad} q_t, u_t\rangle_g}{q_t}
# = \frac{-\operatorname{div}_g(q_t u_t) + \langle \operatorname{grad} q_t, u_t\rangle_g}{q_t} = -\operatorname{div}_g u_t$; integrate:
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
# your run (with its standard errors: a ratio near 1 may be noise). A reason it
# might: with $2^d$ modes to place and the same number of training steps, the
# network may have a harder job per dimension, even though each angle alone is as
# easy as before; that is a guess, not something this chapter measures. Nothing about the geometry changed: the
# torus stays flat, the divergence stays the ordinary one, and the cost of the
# exact divergence grows only like $d$.

# %% [markdown]
# ## 8. A surface without closed-form geodesics: the ellipsoid
#
# On the sphere and the torus, $\exp$ and $\log$ are formulas, so $x_t$ is one too. On the ellipsoid
#
# $$M = \{x \in \mathbb R^3 : F(x) = 1\}, \qquad F(x) = \frac{(x^1)^2}{a^2} + \frac{(x^2)^2}{b^2} + \frac{(x^3)^2}{c^2},
#   \qquad (a, b, c) = (1.5,\ 1,\ 0.6),$$
#
# a geodesic solves a second-order ODE with no closed form, and finding the one that
# joins $x_0$ to $x_1$ is a boundary-value problem: far too slow to solve for every
# training pair. Chen & Lipman's way out is that the path need not be a geodesic: any
# flow that shrinks some "distance" to $x_1$ at a set pace will do.
#
# ### The premetric construction
#
# A **premetric** is a function $d(x, y) \ge 0$ with $d(x, y) = 0$ only at $x = y$,
# whose gradient $\operatorname{grad}_x d(x, y)$ is nonzero for $x \ne y$ (outside a
# set of measure zero). Given one and an increasing, differentiable schedule $\kappa_t$ ($\kappa_0 = 0$,
# $\kappa_1 = 1$; Chen & Lipman write $\kappa(t)$ for our $1 - \kappa_t$), set
#
# $$u_t(x \mid x_1) = -\frac{\dot\kappa_t}{1 - \kappa_t}\; d(x, x_1)\,
#   \frac{\operatorname{grad} d(x, x_1)}{\|\operatorname{grad} d(x, x_1)\|_g^2} .$$
#
# **Why it works, in one line.** Along $\dot x_t = u_t(x_t \mid x_1)$ the chain rule gives
#
# $$\frac{d}{dt}\, d(x_t, x_1) = \langle \operatorname{grad} d, u_t\rangle_g
#   = -\frac{\dot\kappa_t}{1 - \kappa_t}\, d(x_t, x_1)\,
#     \frac{\|\operatorname{grad} d\|_g^2}{\|\operatorname{grad} d\|_g^2}
#   = -\frac{\dot\kappa_t}{1 - \kappa_t}\, d(x_t, x_1),$$
#
# a linear ODE for the number $d(x_t, x_1)$, solved by
# $d(x_t, x_1) = (1 - \kappa_t)\, d(x_0, x_1)$ (its derivative is
# $-\dot\kappa_t\, d(x_0, x_1)$, which is the right side). At $t = 1$ the premetric is
# 0, so $x_t$ has reached $x_1$. Of all fields that shrink $d$ at this pace, this one
# is the shortest: the pace fixes $\langle \operatorname{grad} d, u\rangle_g = r$, and
# Cauchy–Schwarz gives $\|u\|_g \ge |r| / \|\operatorname{grad} d\|_g$, with equality
# only for $u$ along $\operatorname{grad} d$.
#
# **The geodesic distance gives the geodesic.** If $d$ is the geodesic distance, then
# $\|\operatorname{grad} d\|_g = 1$ (a distance function grows at unit rate along the
# shortest geodesic; Gauss's lemma) and $-\operatorname{grad} d(x, x_1)$ is the unit
# tangent at $x$ of the shortest geodesic to $x_1$ (away from the cut locus). So $x_t$
# runs along that geodesic, at speed $\frac{\dot\kappa_t}{1-\kappa_t}(1-\kappa_t)\,d(x_0,x_1)
# = \dot\kappa_t\, d(x_0, x_1)$: it is section 3's path. The check below runs the
# premetric construction on the unit sphere and compares it with the closed form.
#
# **Computing $x_t$.** There is no formula now: $x_t$ comes from integrating the ODE
# from $x_0$. Write $\sigma(t) = -\log(1 - \kappa_t)$, so that
# $\dot\sigma = \dot\kappa_t / (1 - \kappa_t)$ and $u_t = \dot\sigma(t)\, V(x)$ with the
# time-independent **descent field**
#
# $$V(x) = -d(x, x_1)\, \frac{\operatorname{grad} d(x, x_1)}{\|\operatorname{grad} d(x, x_1)\|_g^2} .$$
#
# So $x_t$ is the flow of $V$ run for a time $\sigma(t)$, along which
# $\frac{d}{d\sigma} d = \langle \operatorname{grad} d, V\rangle_g = -d$, i.e. $d = e^{-\sigma} d(x_0, x_1)$:
# the same statement. $V$ has no $1/(1-t)$ in it and vanishes at $x_1$ ($d \to 0$ there,
# while $\|\operatorname{grad} d\|_g$ stays away from 0 near $x_1$, as shown below). `PremetricPath`
# integrates $V$ with `fm.odeint` (rk4, and the surface's own step), each pair for its
# own $\sigma$, in one batched solve. For the regression target, the path has
# $d(x_t, x_1) / (1 - \kappa_t) = d(x_0, x_1)$, so the velocity is written without that ratio,
#
# $$u_t(x_t \mid x_0, x_1) = -\dot\kappa_t\, d(x_0, x_1)\,
#   \frac{\operatorname{grad} d(x_t, x_1)}{\|\operatorname{grad} d(x_t, x_1)\|_g^2},$$
#
# equal to the field above on the path and finite for every $t < 1$.
#
# ### The ellipsoid as a space, and a premetric on it
#
# The unit normal is $n(x) = \nabla F / |\nabla F|$, with $\nabla F = 2\,(x^1/a^2,\ x^2/b^2,\ x^3/c^2)$ (superscripts: coordinates; $x_1$ stays the data point);
# the tangent projection is $P(x)\,v = v - \langle n, v\rangle\, n$. With the metric
# that $\mathbb R^3$ induces, $\|v\|_g$ of a tangent vector is its Euclidean norm, and
# the gradient of a function on $M$ is $P(x)$ applied to the ambient gradient of any
# extension. A solver step ends with the **radial retraction**
# $y \mapsto y / \rho(y)$, $\rho(y) = \sqrt{F(y)}$: the point of $M$ on the ray from the
# centre through $y$ ($M$ is star-shaped: each ray meets it once). It fixes the points
# of $M$, so, as on the sphere, a step whose increment is accurate to $O(h^5)$ lands
# $O(h^5)$ from the exact point and rk4 keeps its order.
#
# The premetric: the **angle between $x$ and $y$ seen from the centre**,
#
# $$d(x, y) = \arccos\langle \pi(x), \pi(y)\rangle, \qquad \pi(x) = x / |x| ,$$
#
# the sphere's great-circle distance after the radial map $\pi$, which is a bijection
# from $M$ onto $S^2$ (its inverse is $p \mapsto p/\rho(p)$). Is it valid?
#
# - $d \ge 0$, and $d(x, y) = 0 \Leftrightarrow \pi(x) = \pi(y) \Leftrightarrow x = y$, because $\pi$ is one-to-one on $M$.
# - Its gradient. Extend $d$ to $\mathbb R^3$ by the same formula; with $p = \pi(x)$,
#   $q = \pi(y)$ and $\theta = d(x, y)$, the ambient gradient is
#   $\tilde g = -\log_p(q) / (\theta\, |x|)$: the chain rule through $x \mapsto x/|x|$, whose
#   Jacobian $(I - pp^\top)/|x|$ keeps the sphere's gradient $-\log_p(q)/\theta$ (a unit
#   vector orthogonal to $p$) and divides it by $|x|$. Then $\operatorname{grad} d = P(x)\,\tilde g$.
# - It never vanishes for $0 < \theta < \pi$. Write $n = \cos\alpha\; p + \sin\alpha\; e$ with
#   $e \perp p$ a unit vector. As $\tilde g \perp p$,
#   $\langle n, \tilde g\rangle = \sin\alpha\,\langle e, \tilde g\rangle$, so
#   $\|P\tilde g\|^2 = |\tilde g|^2 - \langle n, \tilde g\rangle^2 \ge (1 - \sin^2\alpha)\,|\tilde g|^2$, i.e.
#
# $$\|\operatorname{grad} d\|_g \ge \frac{\langle n, p\rangle}{|x|}, \qquad
#   \langle n, p\rangle = \frac{\langle \nabla F(x), x\rangle}{|\nabla F(x)|\,|x|}
#   = \frac{2F(x)}{|\nabla F(x)|\,|x|} > 0 .$$
#
#   So the gradient never vanishes where it is defined; it is undefined only where
#   $\theta \in \{0, \pi\}$: at $y$, and at the one point of $M$ opposite $y$
#   ($\pi(x) = -\pi(y)$), this premetric's cut point, a set of measure zero.
#
# The checks, at random points in float64: the gradient against central differences
# along random tangent directions $v$ (moving along $M$ by the retraction), the lower
# bound, and $d(x, x) = 0$.

# %%
ell = Ellipsoid((1.5, 1.0, 0.6))
premetric = RadialPremetric(ell)
xe, ye = ell.random_uniform(2000, generator=gen, dtype=F64), ell.random_uniform(2000, generator=gen, dtype=F64)
d_e, grad_e = premetric.value_and_grad(xe, ye)
v = ell.proj(xe, torch.randn(2000, 3, generator=gen, dtype=F64))
h = 1e-6
fd = (premetric(ell.retract(xe + h * v), ye) - premetric(ell.retract(xe - h * v), ye)) / (2 * h)
bound = (ell.normal(xe) * ell.to_sphere(xe)).sum(1) / xe.norm(dim=1)
checks = {"max |<grad d, v> - finite difference|": ((grad_e * v).sum(1) - fd).abs().max().item(),
          "max |<grad d, n>| (tangent)": (grad_e * ell.normal(xe)).sum(1).abs().max().item(),
          "max |d(x, x)|": premetric(xe, xe).abs().max().item()}
for name, err in checks.items():
    print(f"{name:40s} {err:.1e}")
ratio_e = (grad_e.norm(dim=1) / bound).min().item()
print(f"min |grad d| / bound = {ratio_e:.4f} (>= 1); the bound <n, p>/|x| is at least {bound.min().item():.3f}")
assert max(checks.values()) < 1e-8 and ratio_e >= 1 - 1e-12 and bound.min() > 0

# %% [markdown]
# ### The path, checked
#
# The target on the ellipsoid: section 4's four von Mises–Fisher bumps carried
# radially onto it, $x = p / \rho(p)$ with $p$ drawn from the sphere's mixture
# (`RadialImage`), so $\pi(x)$ follows the sphere's mixture exactly; the source is
# uniform in area. For 2,000 pairs at random times $t \in [0, 0.999)$ the checks are:
# $x_t$ on the surface; $d(x_t, x_1) = (1 - t)\, d(x_0, x_1)$ (CondOT, $\kappa_t = t$),
# with the rk4 steps in $\sigma$ at most 0.25, then at most 0.125, whose ratio of
# median errors shows the solver's order (16 for order 4); and, on the unit sphere,
# the premetric path (steps at most 0.125) against section 3's closed-form geodesic path;
# and the end point: at $t = 1 - 10^{-6}$, $d(x_t, x_1)$ must be nearly 0. We expect the
# largest errors from pairs far apart: a step $h$ in $\sigma$ moves $x$ by
# $h\, d(x, x_1) / \|\operatorname{grad} d\|_g$ along the surface, so where $d$ is near
# $\pi$ the steps are longest in space.

# %%
target_e = RadialImage(ell, target)
x0e, x1e = ell.random_uniform(2000, generator=gen, dtype=F64), target_e.sample(2000, generator=gen, dtype=F64)
te, d0e = torch.rand(2000, generator=gen, dtype=F64) * 0.999, premetric(x0e, x1e)
path_e = PremetricPath(premetric)                                    # rk4 steps of at most 0.25 in sigma
path_fine = PremetricPath(premetric, max_step=0.125, min_steps=8)
errs = {}
for name, pth in (("steps <= 0.25", path_e), ("steps <= 0.125", path_fine)):
    xt_e = pth.sample(x0e, x1e, te).xt
    err = (premetric(xt_e, x1e) - (1 - te) * d0e).abs()
    errs[name] = (err.median().item(), err.max().item())
    print(f"{name}: max |rho(x_t) - 1| = {(ell.gauge(xt_e) - 1).abs().max().item():.1e}; "
          f"|d(x_t, x1) - (1 - t) d(x0, x1)|: median {errs[name][0]:.1e}, max {errs[name][1]:.1e}")
order_ratio = errs["steps <= 0.25"][0] / errs["steps <= 0.125"][0]
unit_path = PremetricPath(RadialPremetric(Ellipsoid((1, 1, 1))), max_step=0.125, min_steps=8)
unit = unit_path.sample(xs0, xs1, te[:500])
geo = path.sample(xs0, xs1, te[:500])
sphere_err = max((unit.xt - geo.xt).abs().max().item(), (unit.dxt - geo.dxt).abs().max().item())
print(f"ratio of the median errors {order_ratio:.1f}; unit sphere: max |premetric path - geodesic path| = "
      f"{sphere_err:.1e} (x_t and u_t)")
end_e = premetric(path_e.sample(x0e, x1e, 1 - 1e-6).xt, x1e).max().item()
print(f"at t = 1 - 1e-6: max d(x_t, x1) = {end_e:.1e} rad (the paths end at x1)")
assert errs["steps <= 0.125"][1] < 1e-3 and order_ratio > 10 and sphere_err < 1e-3 and end_e < 1e-5

# %% [markdown]
# **The control that must fail: the chord.** The straight line
# $x_t = (1 - t)\,x_0 + t\,x_1$ of Part I, between the same pairs and at the same times,
# fails both checks above: it leaves the surface (it cuts through the inside), and its
# premetric does not shrink at the pace $1 - t$.

# %%
chord = (1 - te[:, None]) * x0e + te[:, None] * x1e
chord_off = (ell.gauge(chord) - 1).abs().max().item()
chord_err = (premetric(chord, x1e) - (1 - te) * d0e).abs().max().item()
print(f"chord: max |rho(x_t) - 1| = {chord_off:.2f}, max |d(x_t, x1) - (1 - t) d(x0, x1)| = {chord_err:.2f}")
assert chord_off > 1e-2 and chord_err > 10 * errs["steps <= 0.25"][1]

# %% [markdown]
# Some conditional paths from uniform points (dots) to the target, and for five of the
# pairs the chord (dashed), which dives inside. The paths are not the ellipsoid's
# geodesics: they cross the cones of constant angle to $x_1$ as steeply as the
# surface allows (along $-\operatorname{grad} d$).

# %%
def ellipsoid_axes(ax, title):
    u, w = np.meshgrid(np.linspace(0, 2 * np.pi, 37), np.linspace(0, np.pi, 19))
    a, b, c = ell.axes
    ax.plot_wireframe(a * np.cos(u) * np.sin(w), b * np.sin(u) * np.sin(w), c * np.cos(w), color="0.8", linewidth=0.4)
    ax.set_box_aspect(ell.axes)
    ax.set(xlim=(-a, a), ylim=(-b, b), zlim=(-c, c), xticks=[], yticks=[], zticks=[], title=title)
    return ax


k, tt = 30, torch.linspace(0, 0.999, 40, dtype=F64)
curves_e = path_e.sample(x0e[:k].repeat(40, 1), x1e[:k].repeat(40, 1), tt.repeat_interleave(k)).xt.reshape(40, k, 3)
ax = ellipsoid_axes(plt.figure(figsize=(6, 4.5)).add_subplot(projection="3d"), "premetric paths x0 (dot) -> x1")
for i in range(k):
    ax.plot(*curves_e[:, i].T.numpy(), color=f"C{i % 10}", linewidth=1)
for i in range(5):
    ax.plot(*((1 - tt[:, None]) * x0e[i] + tt[:, None] * x1e[i]).T.numpy(), color="black", linestyle="--", linewidth=1)
ax.scatter(*x0e[:k].T.numpy(), color="black", s=8)
plt.show()

# %% [markdown]
# ### Training and checking the flow
#
# Training is `fm.train` as before, on a **bank**: `PathBankObjective` draws
# (x0, x1, t) triples once, solves their $x_t$ and $u_t$ in one batched solve (the
# path above), and each training step regresses on a random subset of the bank. The
# model is the sphere's `ProjectedVelocity`, now projecting onto the ellipsoid's
# tangent planes, and sampling steps with the ellipsoid's retraction.

# %%
fm.seed_everything(SEED)
ell_model = ProjectedVelocity(ell, fm.MLP(3, hidden=HIDDEN, depth=3, n_freqs=2, max_freq=1.0))
t_bank = time.perf_counter()
bank = PathBankObjective(path_e, target_e, size=BANK, generator=gen)
t_bank = time.perf_counter() - t_bank
run_e = fm.train(ell_model, bank, steps=E_STEPS, batch_size=BATCH, lr=LR, seed=SEED)
# no space= needed: ProjectedVelocity declares its space (the ellipsoid), and fm.sample steps in it
x_ell = fm.sample(ell_model, ell.random_uniform(N_EVAL, generator=gen), steps=ODE_STEPS, method="rk4").x.cpu()
print(f"bank of {BANK:,} path samples solved in {t_bank:.1f} s; trained {E_STEPS} steps in {run_e.seconds:.0f} s")

# %%
fig = plt.figure(figsize=(10, 4.2))
for i, (pts, title, color) in enumerate(((target_e.sample(N_EVAL, generator=gen), "target (exact samples)", FIRST),
                                         (x_ell, "model samples", SECOND))):
    ax = ellipsoid_axes(fig.add_subplot(1, 2, i + 1, projection="3d"), title)
    ax.scatter(*pts.T.numpy(), s=2, alpha=0.5, color=color, depthshade=False, linewidths=0)
plt.show()

# %% [markdown]
# **Check yourself**, as on the sphere: (a) the samples on the surface to rounding
# (the solver's steps end with the retraction); (b) the energy distance to fresh target
# samples (chapter 1, Euclidean distances in $\mathbb R^3$), against its floor, the
# distance between two independent target sample sets of the same size; (c) each mode's
# share, read on the sphere through $\pi$, where the target is section 4's mixture.
# The control for (b): uniform points on the ellipsoid must fail it (asserted).

# %%
off_ell = (ell.gauge(x_ell.double()) - 1).abs().max().item()
ed_model = fm.energy_distance_to(target_e, x_ell, generator=gen)
ed_floor = fm.energy_distance_floor(target_e, N_EVAL, generator=gen)
ed_uniform = fm.energy_distance_to(target_e, ell.random_uniform(N_EVAL, generator=gen), generator=gen)
shares_e = target.mode_fractions(ell.to_sphere(x_ell))
print(f"max |rho(x) - 1| = {off_ell:.1e}")
print(f"energy distance: model {ed_model:.2e} = {ed_model / ed_floor:.2f} x the floor {ed_floor:.2e} "
      f"(threshold {ED_MAX} x); uniform points {ed_uniform / ed_floor:.0f} x")
print("mode shares:", [f"{s:.3f}" for s in shares_e.tolist()], f"(each within {SHARE_TOL} of 0.25)")
assert off_ell < 1e-5 and ed_model <= ED_MAX * ed_floor and (shares_e - 0.25).abs().max() <= SHARE_TOL
assert ed_uniform > ED_MAX * ed_floor

# %% [markdown]
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
# - Any path whose conditional velocities solve the **Riemannian continuity
#   equation** trains the marginal field: the conditional and marginal losses
#   differ by a constant (the tangent vectors at one point average to the
#   marginal velocity).
# - Without closed-form geodesics, a **premetric** $d$ and the field
#   $-\frac{\dot\kappa_t}{1-\kappa_t}\, d\, \operatorname{grad} d / \|\operatorname{grad} d\|_g^2$
#   give a path with $d(x_t, x_1) = (1 - \kappa_t)\, d(x_0, x_1)$; on the ellipsoid,
#   with the angle seen from the centre as $d$, $x_t$ comes from the solver, and the
#   run checks the path identity, the unit sphere's geodesics, the chord's failure,
#   and the trained samples' energy distance against its floor.
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
#   Riemannian flow matching and its loss (the theorem of section 3), the premetric construction of
#   section 8 and why it yields the geodesic for the geodesic distance, the sphere and the torus, and
#   spectral premetrics for meshes and manifolds where geodesics have no closed form.
