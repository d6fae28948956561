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
# # Chapter 1 — Flow matching on a Gaussian mixture
#
# We teach a neural network to turn Gaussian noise into samples of an
# 11-mode Gaussian mixture, and then we check the result against the exact
# answer: this target is simple enough that the velocity field we are trying
# to learn is known in closed form.
#
# **What you will learn**
# - the conditional probability path $x_t = \alpha_t x_1 + \beta_t x_0$ and its velocity;
# - the conditional flow matching (CFM) loss, and why regressing on conditional
#   velocities teaches the *marginal* velocity;
# - sampling by integrating the learned ODE with Euler steps;
# - how to check a generative model honestly: per-mode fractions, a two-sample
#   distance with its noise floor, and the error of the learned velocity
#   against the exact one.
#
# **Prerequisites:** PyTorch basics, Gaussians, what an ODE is.
#
# **Run time:** about a minute on a 2-core laptop CPU at the default budget,
# under a minute in quick mode (`FMLEARN_QUICK=1`), less on a GPU. The two
# training cells are the slow ones; they show a progress bar. The last cell prints how long your run took.

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
import time

import matplotlib.pyplot as plt
import torch

from fmlearn.plotting import (plot_density, plot_loss, plot_marginals, plot_mode_fractions,
                              plot_samples, plot_trajectories)
from fmlearn.widgets import flow_animation

T_START = time.perf_counter()
SEED = 0
fm.seed_everything(SEED)
print(fm.describe())

# The budget: every knob that trades time for quality, and the thresholds (the same at both budgets).
TRAIN_STEPS = fm.budget(default=5300, quick=2650)
N_SAMPLES = fm.budget(default=5000, quick=2000)
EULER_STEPS = 200                                       # the sample checks see Euler's error at 100
ED_RATIO_MAX = 2.0                                      # mode-matched energy distance / its floor
STRANDED_TOL = 0.03                                     # |share within 2.5 std of a mode - exact 95.6%|
VELOCITY_ERR_MAX = 0.10                                 # relative L2 error vs the oracle

# %% [markdown]
# ## 1. The problem: from noise to a mixture
#
# The **source** is the standard Gaussian $p_0 = \mathcal N(0, I_2)$. The
# **target** is a mixture of 11 equally weighted Gaussians with standard
# deviation 1, their means evenly spaced on a circle of radius 10:
#
# $$p_1(x) = \frac{1}{11}\sum_{k=0}^{10} \mathcal N\big(x;\ m_k, I\big), \qquad m_k = 10\,(\cos\tfrac{2\pi k}{11}, \sin\tfrac{2\pi k}{11}).$$
#
# The modes are far apart (about 5.6 standard deviations between neighbours),
# so a model that drops a mode or leaves samples stranded between modes is
# easy to catch.

# %%
target = fm.GaussianMixture.symmetric_2d(n_modes=11, radius=10.0, std=1.0)
source = fm.Gaussian.standard(2)
gen = torch.Generator().manual_seed(SEED)

fig, axes = plt.subplots(1, 2, figsize=(8.5, 4.2))
plot_samples(source.sample(2000, generator=gen), ax=axes[0], title="source $p_0 = N(0, I)$")
plot_density(target.log_prob, ax=axes[1], title="target $p_1$: 11-mode mixture")
fig.tight_layout()
plt.show()

# %% [markdown]
# Left: where every sample starts. Right: where we want it to end. Nothing
# tells a sample *which* mode to go to; the model has to learn a velocity field
# that splits the source evenly into 11 parts.

# %% [markdown]
# ## 2. A conditional path and its velocity
#
# Flow matching builds the path between the two distributions one data point
# at a time. Pick a data point $x_1$ and a noise sample $x_0$, and move from one
# to the other:
#
# $$x_t = \alpha_t\, x_1 + \beta_t\, x_0, \qquad t \in [0, 1],$$
#
# with $\alpha_0 = 0, \beta_0 = 1$ (pure noise) and $\alpha_1 = 1, \beta_1 = 0$
# (the data point). For a fixed $x_1$ this is the Gaussian
# $p_t(x \mid x_1) = \mathcal N(\alpha_t x_1, \beta_t^2 I)$. We start with the
# schedule of the classic walkthrough, $\alpha_t = t$, $\beta_t = \sqrt{1-t}$.
#
# The point moves with the **conditional velocity**, the time derivative of $x_t$:
#
# $$u_t(x_t \mid x_0, x_1) = \dot\alpha_t\, x_1 + \dot\beta_t\, x_0 = x_1 - \frac{x_0}{2\sqrt{1-t}}.$$
#
# Why condition on both $x_0$ and $x_1$? Given $x_1$ alone, $x_t$ is still
# random; the pair $(x_0, x_1)$ fixes one whole curve $t \mapsto x_t$, so its
# time derivative is a definite vector. Let us write it by hand and compare
# with the package's path object.

# %%
path_sqrt = fm.AffineGaussianPath("sqrt")

x0 = source.sample(5, generator=gen)
x1 = target.sample(5, generator=gen)
t = torch.rand(5, generator=gen)

by_hand = x1 - x0 / (2 * torch.sqrt(1 - t[:, None]))
from_package = path_sqrt.conditional_velocity(x0, x1, t)
print("max difference:", (by_hand - from_package).abs().max().item())
assert torch.allclose(by_hand, from_package, atol=1e-5)

# %% [markdown]
# The derivative $\dot\beta_t = -1/(2\sqrt{1-t})$ blows up at $t = 1$. The package
# evaluates it at $\min(t, 1 - 10^{-6})$ so it stays finite; training samples
# $t \sim U[0, 1)$, which lands within $10^{-6}$ of 1 about once in a million
# draws. Section 7 shows that times merely *near* 1 already make this schedule
# harder to train.
#
# ## 3. From conditional to marginal: the CFM loss
#
# Averaging the conditional paths over all data points gives the **marginal
# path** $p_t(x) = \mathbb E_{x_1}[p_t(x \mid x_1)]$, which starts at $p_0$ and
# ends at $p_1$. The velocity that moves $p_t$ along is the conditional
# velocity averaged over every pair $(x_0, x_1)$ that passes through $x$:
#
# $$u_t(x) = \mathbb E\big[\, u_t(x_t \mid x_0, x_1) \;\big|\; x_t = x \,\big].$$
#
# We cannot compute this average for real data, but we do not need to: a
# network $u_\theta$ trained by least squares on the *conditional* velocities,
#
# $$\mathcal L_{\rm CFM}(\theta) = \mathbb E_{t, x_0, x_1}\,\big\| u_\theta(x_t, t) - u_t(x_t \mid x_0, x_1) \big\|^2,$$
#
# is pulled towards the conditional mean, which is exactly $u_t(x)$. Two
# claims hide in that sentence; the derivation below proves both, and the
# cells after it check them with numbers.
#
# <details><summary><b>Derivation</b> (click to open): the minimiser is the conditional mean, and the conditional mean carries the marginal path</summary>
#
# *1. Least squares picks the conditional mean.* Fix $t$ and write
# $U = u_t(x_t \mid x_0, x_1)$ for the random target, $X = x_t$ and
# $m(X) = \mathbb E[U \mid X]$. Add and subtract $m(X)$:
#
# $$\mathbb E\|u_\theta(X) - U\|^2 = \mathbb E\|u_\theta(X) - m(X)\|^2 + \mathbb E\|U - m(X)\|^2 + 2\,\mathbb E\big[(u_\theta(X) - m(X))\cdot(m(X) - U)\big].$$
#
# The cross term vanishes: conditioning on $X$, the first factor is fixed and
# $\mathbb E[m(X) - U \mid X] = 0$. So the CFM loss is the **flow matching loss**
# $\mathbb E\|u_\theta(X) - u_t(X)\|^2$ (with $u_t = m$) plus a term that does not
# depend on $\theta$: the conditional variance of the target. Both losses have
# the same gradient in $\theta$ and the same minimiser, $u_\theta = u_t$, at
# every $t$. (Integrated over $t$ that variance term can be infinite, as it is
# for the sqrt path without the clamp, section 7; the part that depends on
# $\theta$ is the same.)
#
# *2. The conditional mean moves the marginal path.* Each conditional path
# $p_t(x \mid z)$, $z = (x_0, x_1)$, is carried by its velocity: it obeys the
# continuity equation $\partial_t p_t(x \mid z) = -\nabla\cdot\big(u_t(x \mid z)\, p_t(x \mid z)\big)$.
# Average over $z$ and move the average inside the divergence:
#
# $$\partial_t p_t(x) = -\nabla\cdot \int u_t(x \mid z)\, p_t(x \mid z)\, p(z)\, dz
#   = -\nabla\cdot\Big(p_t(x)\, \underbrace{\int u_t(x \mid z)\, \frac{p_t(x \mid z)\, p(z)}{p_t(x)}\, dz}_{\mathbb E[U \mid x_t = x] \,=\, u_t(x)}\Big).$$
#
# The fraction is Bayes' rule, the posterior of $z$ given $x_t = x$. So $u_t$
# satisfies the continuity equation of $p_t$: the ODE $\dot x = u_t(x)$ started
# from $p_0$ has $p_t$ as its law at every $t$ and ends at $p_1$.
#
# </details>
#
# **Check 1: the conditional mean, by brute force.** At a point $x$ the
# posterior of the data point is $p(x_1 \mid x_t = x) \propto p_1(x_1)\,\mathcal N(x;\, \alpha_t x_1, \beta_t^2 I)$.
# Draw many $x_1 \sim p_1$, weight each by that Gaussian, solve $x_t = x$ for
# its $x_0$, and average the conditional velocities: a Monte Carlo estimate of
# $\mathbb E[U \mid x_t = x]$. The oracle `fm.MixtureOracle` computes the same
# average in closed form, component by component. They should agree up to
# Monte Carlo noise.

# %%
path_sqrt_oracle = fm.MixtureOracle(target, path_sqrt)
x_query, t_query = torch.tensor([[3.0, 1.0], [-6.0, 4.0], [0.5, -8.0]]), 0.6
alpha, beta = path_sqrt.schedule.alpha(torch.tensor(t_query)), path_sqrt.schedule.beta(torch.tensor(t_query))
x1_many = target.sample(400_000, generator=gen).double()
for x in x_query.double():
    log_w = -((x - alpha * x1_many) ** 2).sum(1) / (2 * beta ** 2)   # N(x; alpha x1, beta^2 I), up to a constant
    w = torch.softmax(log_w, dim=0)
    x0_solved = (x - alpha * x1_many) / beta                             # the x0 that puts x_t at x
    u_mc = (w[:, None] * path_sqrt.conditional_velocity(x0_solved, x1_many, torch.tensor(t_query))).sum(0)
    u_exact = path_sqrt_oracle.velocity(x[None].float(), t_query)[0]
    print(f"x = {x.tolist()}: Monte Carlo {u_mc.numpy().round(3)}, oracle {u_exact.numpy().round(3)}, "
          f"effective samples {1 / (w ** 2).sum():.0f}")
    assert torch.allclose(u_mc.float(), u_exact, atol=0.02 * (1 + u_exact.norm()))

# %% [markdown]
# (The second check, that CFM loss minus FM loss is a constant, needs a
# trained model: it comes after training, in section 4.) The loss is three lines:

# %%
model_sqrt = fm.MLP(dim=2, hidden=96, depth=4, activation="gelu", n_freqs=2, max_freq=1.0)

x0, x1 = source.sample(256, generator=gen), target.sample(256, generator=gen)
t = torch.rand(256, generator=gen)
xt = t[:, None] * x1 + torch.sqrt(1 - t[:, None]) * x0          # a point on each conditional path
ut = x1 - x0 / (2 * torch.sqrt(1 - t[:, None]))                   # its conditional velocity
loss_by_hand = ((model_sqrt(xt, t) - ut) ** 2).sum(dim=1).mean()  # squared norm, batch mean

loss_package = fm.cfm_loss(model_sqrt, path_sqrt, x0, x1, t)
print(f"CFM loss by hand {loss_by_hand.item():.4f}, fmlearn.cfm_loss {loss_package.item():.4f}")
assert torch.allclose(loss_by_hand, loss_package, rtol=1e-5)

# %% [markdown]
# ## 4. Training
#
# `fm.train` repeats that loss on fresh batches with Adam and a learning rate
# that decays along a cosine. What it minimises is an *objective*, here
# `fm.CFMObjective(path, target)`: the CFM loss on the path, with its data;
# the loop itself knows nothing of paths (chapter 6 trains its digits
# classifier through the same loop, on a cross-entropy objective). It trains on the GPU when there is one, keeps
# the loss of every step, and stops with a clear message if the loss ever
# becomes NaN or infinite. The model is an MLP of 4 hidden layers of 96 GELU
# units that takes $x$ and two slowly varying sinusoidal features of $t$
# (chapter 4 shows why slow time features help), trained on batches of 1024
# with a learning rate of $3\times10^{-3}$ (chapter 4 also measures what each of these choices buys in a
# second of training).

# %%
run_sqrt = fm.train(model_sqrt, fm.CFMObjective(path_sqrt, target),
                    steps=TRAIN_STEPS, batch_size=1024, lr=3e-3, seed=SEED)
print(f"{TRAIN_STEPS} steps in {run_sqrt.seconds:.1f} s on {run_sqrt.device}")
plot_loss(run_sqrt.losses, title="CFM loss, sqrt path")
plt.show()

# %% [markdown]
# The loss does not go to zero, and it should not: the conditional velocity is
# random given $x_t$ (many pairs pass through the same point), and the loss
# keeps that variance. What goes to zero is the distance between $u_\theta$ and
# the marginal velocity, which we measure in section 6.
#
# **Check 2: CFM loss = FM loss + a constant.** By the derivation above, on the
# same batch, the CFM loss of our network minus the CFM loss of the exact
# velocity $u_t$ (the oracle) should equal the FM loss
# $\mathbb E\|u_\theta(x_t) - u_t(x_t)\|^2$, up to the Monte Carlo noise of the
# cross term. (Times are drawn below 0.95 here, where the sqrt path's targets
# have a finite variance, so that noise is small.)

# %%
n_check = 200_000
x0_c, x1_c = source.sample(n_check, generator=gen), target.sample(n_check, generator=gen)
t_c = 0.95 * torch.rand(n_check, generator=gen)
on_path = path_sqrt.sample(x0_c, x1_c, t_c)
xt_c, ut_c = on_path.xt, on_path.dxt                              # points x_t and their targets
with torch.no_grad():
    u_model = model_sqrt(xt_c.to(run_sqrt.device), t_c.to(run_sqrt.device)).cpu()
u_exact = path_sqrt_oracle.velocity(xt_c, t_c)
gap = ((u_model - ut_c) ** 2).sum(1) - ((u_exact - ut_c) ** 2).sum(1)   # per sample: CFM(model) - CFM(oracle)
fm_loss = ((u_model - u_exact) ** 2).sum(1)
se = (gap - fm_loss).std() / n_check ** 0.5
print(f"CFM(model) - CFM(oracle) = {gap.mean():.4f};  FM loss = {fm_loss.mean():.4f};  "
      f"difference {gap.mean() - fm_loss.mean():+.4f} (standard error {se:.4f})")
assert abs(gap.mean() - fm_loss.mean()) < 4 * se

# %% [markdown]
# ## 5. Sampling: integrate the learned ODE
#
# A sample is a source point carried along $\dot x = u_\theta(x, t)$ from
# $t = 0$ to $t = 1$. The simplest integrator is Euler's method,
# $x_{t+h} = x_t + h\, u_\theta(x_t, t)$. Here it is by hand, next to the
# package's sampler:

# %%
x0 = source.sample(N_SAMPLES, generator=gen)   # kept: section 7 starts from the same points
h = 1.0 / EULER_STEPS
x = x0.to(next(model_sqrt.parameters()).device)  # the model's device (the GPU, if training used one)
with torch.no_grad():
    for i in range(EULER_STEPS):
        x = x + h * model_sqrt(x, i * h)

solution = fm.sample(model_sqrt, x0, steps=EULER_STEPS, method="euler", return_trajectory=True)
print(f"max difference hand vs package: {(x - solution.x).abs().max().item():.2e}; "
      f"{solution.nfe} velocity evaluations")
assert torch.allclose(x, solution.x, atol=1e-4)
samples_sqrt = solution.x.cpu()

# %% [markdown]
# Now the whole flow. Each panel shows the samples at one time (blue dots)
# over thin grey contour lines of the *exact* marginal density $p_t$ (the
# marginal of a Gaussian mixture along this path is again a Gaussian mixture,
# see `fm.MixtureOracle`). Look for the dots filling the contours at every
# $t$, not only at the end. (The axes are the two coordinates of a point;
# $x_0$ and $x_1$ name the noise and the data point, not coordinates.)

# %%
oracle_sqrt = path_sqrt_oracle
plot_marginals(solution.trajectory.cpu(), solution.times, show_at=(0, 0.2, 0.5, 0.8, 1.0),
               densities=lambda t: oracle_sqrt.marginal(t).log_prob,
               suptitle="learned flow (dots) and the exact marginal $p_t$ (contours), sqrt path")
plt.show()

# %% [markdown]
# The same trajectory as an animation: a slider over $t$ with a play button,
# the exact $p_t$ as contours, the 11 mode centres as crosses, and each sample
# coloured by the mode it *ends* in. The ODE is deterministic, so a sample's
# starting point already decides its mode: the first frame shows how the
# learned flow cuts the source into 11 parts. For the exact flow these parts
# are wedges. The rays from the centre halfway between neighbouring modes lie
# on mirror lines of source and target, and the centre itself never moves (the
# symmetry forces $u_t = 0$ there), so the exact flow keeps each of these rays
# in place and no path crosses them: each mode receives exactly the starting
# points whose direction is nearer to its own than to any other's. The cell
# prints how many of our samples end in the mode their starting direction
# points to.
# **What to look at:** the colours are sorted into wedges from the first
# frame, and each wedge stretches out into its mode.

# %%
end_mode = target.responsibilities(samples_sqrt).argmax(1)
start_mode = torch.round(torch.atan2(x0[:, 1], x0[:, 0]) / (2 * torch.pi / 11)).long() % 11   # mode k at 2 pi k / 11
in_wedge = (end_mode == start_mode).float().mean().item()
print(f"{in_wedge:.1%} of the samples end in the mode their starting direction points to")
assert in_wedge > 0.9, in_wedge
flow_animation(solution.trajectory, solution.times, centres=target.means,
               density=lambda t: oracle_sqrt.marginal(t).log_prob, title="learned flow, sqrt path",
               look="press play: the colours (each sample's final mode) are sorted into wedges from the first "
                    "frame, and each wedge stretches out into its mode")

# %% [markdown]
# ## 6. Checking the result
#
# A picture can hide a lot. Four checks, each against an exact reference:
#
# 1. **Per-mode fractions.** Assign every sample to its most probable mode
#    (the Bayes assignment under the true mixture). Each mode should get
#    $1/11 \approx 9.1\%$, within 3 percentage points. This catches a dropped mode.
# 2. **No stranded samples.** Neighbouring modes are only 5.6 standard
#    deviations apart, so a point halfway between two of them is still within
#    4 std of both: "within 4 std of a mode" cannot see samples stranded in the
#    gaps. Within **2.5 std** it can: a standard 2-D Gaussian puts
#    $P(\chi^2_2 \le 2.5^2) = 1 - e^{-2.5^2/2} = 95.6\%$ of its mass there, and
#    a gap point is 2.8 std from both modes. We ask for the sample's share to be
#    within 3 percentage points of that exact value.
# 3. **Energy distance to true samples, relative to its floor.** The energy
#    distance between two distributions $P$ and $Q$ is
#
#    $$\mathcal E(P, Q) = 2\,\mathbb E|X - Y| - \mathbb E|X - X'| - \mathbb E|Y - Y'|,$$
#
#    with $X, X' \sim P$ and $Y, Y' \sim Q$ all independent and $|\cdot|$ the
#    Euclidean length. It is never negative, and zero only when $P = Q$
#    (Székely's theorem; Rizzo and Székely 2016 review it). On two sample sets,
#    `fm.energy_distance` replaces each expectation by the mean over all pairs of
#    points (each set with itself for the last two terms). Two sets of
#    $n$ samples of the *same* distribution are still at a positive energy
#    distance: that is the floor. On a mixture of separated modes most of that
#    noise comes from how the $n$ points happen to split among the modes, so we
#    draw the true samples with **the same number of points in each mode as the
#    model's** (the split is judged by check 1). What remains measures the
#    shape of the modes, and its floor is tight: a perfect model scores about 1
#    times it. We ask for at most twice the floor.
# 4. **Velocity error against the oracle.** For a mixture target the marginal
#    velocity $u_t(x)$ has a closed form. We compare $u_\theta$ with it on
#    samples of $p_t$: relative error $\|u_\theta - u_t\| / \|u_t\|$, at
#    $t = 0.1, 0.5, 0.9$ and, where the sqrt path is hardest, $0.99$.

# %%
NEAR_EXACT = fm.fraction_near_modes_exact(target, n_std=2.5)
ED_FLOOR = fm.energy_distance_mode_matched_floor(target, N_SAMPLES, generator=gen)
print(f"exact share within 2.5 std of a mode: {NEAR_EXACT:.1%}; mode-matched energy-distance floor "
      f"for {N_SAMPLES} samples: {ED_FLOOR:.5f}")


def sample_checks(samples):
    fractions = fm.mode_fractions(target, samples)
    near = fm.fraction_near_modes(target, samples, n_std=2.5)
    ratio = fm.energy_distance_mode_matched(target, samples, generator=gen) / ED_FLOOR
    return fractions, near, ratio


def passes(fractions, near, ratio):
    return {"mode shares": bool((fractions - 1 / 11).abs().max() <= 0.03),
            "not stranded": abs(near - NEAR_EXACT) <= STRANDED_TOL,
            "energy distance": ratio <= ED_RATIO_MAX}


def velocity_errors(model, oracle, times=(0.1, 0.5, 0.9, 0.99)):
    return {t: fm.velocity_error(model, oracle, t, n=4000, generator=gen)[0] for t in times}


def report(label, fractions, near, ratio, errors=None):
    line = (f"{label:16s} modes {100 * fractions.min():4.1f}%..{100 * fractions.max():4.1f}% | "
            f"{100 * near:5.1f}% within 2.5 std | energy distance {ratio:5.2f} x floor")
    if errors:
        line += " | velocity error " + ", ".join(f"t={t}: {e:.3f}" for t, e in errors.items())
    failed = [name for name, ok in passes(fractions, near, ratio).items() if not ok]
    print(line + (f" | FAILS: {', '.join(failed)}" if failed else " | passes"))
    return failed

# %% [markdown]
# Do these checks catch a bad model? Before trusting them, try them on sample
# sets whose answer we know: true samples of the target (a perfect model), the
# mixture with mode 0 missing, a **ring** of radius 10 with no modes at all,
# true samples of which 10% sit stranded in the gaps between neighbouring modes,
# and true samples with every mode **shifted** outwards by 0.3 std (each point
# moved 0.3 along its mode's direction from the centre).

# %%
def ring(n):
    angle = 2 * torch.pi * torch.rand(n, generator=gen)
    radius = 10 + torch.randn(n, generator=gen)
    return torch.stack([radius * angle.cos(), radius * angle.sin()], dim=1)


def stranded(n, share=0.10):
    x = target.sample(n, generator=gen)
    k = torch.randint(0, 11, (int(share * n),), generator=gen)
    gaps = (target.means[k] + target.means[(k + 1) % 11]) / 2
    x[:len(k)] = gaps + 0.5 * torch.randn(len(k), 2, generator=gen)
    return x


def shifted(n, shift=0.3):
    x = target.sample(n, generator=gen)
    k = target.responsibilities(x).argmax(1)
    return x + shift * target.means[k] / target.means[k].norm(dim=1, keepdim=True)   # each mode 0.3 std outwards


controls = {"perfect": target.sample(N_SAMPLES, generator=gen),
            "mode 0 dropped": fm.GaussianMixture(target.means[1:], 1.0).sample(N_SAMPLES, generator=gen),
            "ring, no modes": ring(N_SAMPLES), "10% stranded": stranded(N_SAMPLES),
            "shifted 0.3 std": shifted(N_SAMPLES)}
verdicts = {label: report(label, *sample_checks(x)) for label, x in controls.items()}
caught_by = {check: [label for label, failed in verdicts.items() if check in failed]
             for check in ("mode shares", "not stranded", "energy distance")}
only_by = {check: [label for label in caught if verdicts[label] == [check]] for check, caught in caught_by.items()}
for check in caught_by:
    print(f"{check:>16} catches: {', '.join(caught_by[check]) or 'none'}; "
          f"the only check to catch: {', '.join(only_by[check]) or 'none'}")
assert verdicts["perfect"] == [], verdicts["perfect"]
assert all(verdicts[label] for label in controls if label != "perfect"), verdicts
assert only_by["mode shares"] == ["mode 0 dropped"] and "shifted 0.3 std" in only_by["energy distance"], only_by
assert "10% stranded" in caught_by["not stranded"], caught_by

# %%
fig, axes = plt.subplots(1, 5, figsize=(17, 3.6))
for ax, (label, x) in zip(axes, controls.items()):
    plot_samples(x, ax=ax, title=f"{label}: " + ("passes" if not verdicts[label] else "fails"), s=1.0)
fig.tight_layout()
plt.show()

# %% [markdown]
# The perfect set passes all three checks, and each bad set fails at least one
# (the lines above say which). The checks overlap: the ring, whose shares look
# fine, fails both the 2.5-std share (many of its points lie in the gaps)
# and the energy distance. Two of the checks see something no other one does.
# Only the mode shares see the dropped mode: the energy distance is blind to
# it by construction, since its reference has as many points per mode as the
# samples, and the ten modes left are perfect. Only the energy distance sees
# the shifted modes: a shift of 0.3 std moves few points across the 2.5-std
# circle, too few for that check. The stranded samples fail the 2.5-std share;
# whether they also fail the energy distance depends on the number of samples:
# its floor falls like $1/n$, while the excess due to a tenth of the points in
# the gaps does not, so with enough samples it sees them too (the line "not
# stranded catches" above says whether the 2.5-std share was the only one in
# this run). What the 2.5-std share adds is *where* the lost mass is.
# Now our model:

# %%
fractions_sqrt, near_sqrt, ratio_sqrt = sample_checks(samples_sqrt)
oracle_sqrt_errors = velocity_errors(model_sqrt, oracle_sqrt)
report("sqrt path", fractions_sqrt, near_sqrt, ratio_sqrt, oracle_sqrt_errors)
plot_mode_fractions(fractions_sqrt, title="share of samples per mode, sqrt path")
plt.show()

# %% [markdown]
# **Check yourself.** These asserts are the chapter's promise, with the
# thresholds printed below: the same at both budgets (quick mode trains for
# half the steps and checks 2,000 samples instead of 5,000).

# %%
print(f"thresholds: mode shares within 3 points, share within 2.5 std within {STRANDED_TOL:.3f} of "
      f"{NEAR_EXACT:.3f}, energy distance <= {ED_RATIO_MAX} x floor, velocity error <= {VELOCITY_ERR_MAX}")
assert passes(fractions_sqrt, near_sqrt, ratio_sqrt) == dict.fromkeys(passes(fractions_sqrt, near_sqrt, ratio_sqrt), True)
assert max(oracle_sqrt_errors.values()) <= VELOCITY_ERR_MAX, oracle_sqrt_errors

# %% [markdown]
# How much of what remains is the network's, and how much the solver's? The
# same checks on the *exact* velocity (the oracle), integrated from the same
# starting points with Euler's method, at half and at our number of steps:

# %%
for steps in (EULER_STEPS // 2, EULER_STEPS):
    report(f"exact, Euler {steps}", *sample_checks(fm.sample(oracle_sqrt, x0, steps=steps, method="euler").x))

# %% [markdown]
# ## 7. A better-behaved path: CondOT
#
# Nothing forces $\beta_t = \sqrt{1-t}$. The **conditional optimal-transport**
# (CondOT) schedule $\alpha_t = t$, $\beta_t = 1 - t$ moves each point in a
# straight line at constant speed, $u_t(x_t \mid x_0, x_1) = x_1 - x_0$.
#
# Why would that matter? Look at the regression targets. Given $x_t$, the
# conditional velocity is still random (through $x_0$), and the CFM loss can
# never go below its variance (the constant of section 3). How large is it?
# Take the simplest case: we know $x_t$ **and which mode** $x_1$ came from,
# $x_1 = m + \varepsilon_1$ with $\varepsilon_1, x_0 \sim \mathcal N(0, I)$
# independent. (Not knowing the mode only adds the spread between modes.)
#
# <details><summary><b>Derivation</b> (click to open): the variance of the target given x<sub>t</sub> and the mode</summary>
#
# Per coordinate, $x_t = \alpha m + \alpha\varepsilon_1 + \beta x_0$ fixes
# $r = \alpha\varepsilon_1 + \beta x_0$, and the target is
# $u = \dot\alpha m + \dot\alpha\varepsilon_1 + \dot\beta x_0$. For two
# independent standard normals, the variance of $a\varepsilon_1 + b x_0$ given
# $\alpha\varepsilon_1 + \beta x_0$ is what is left after regressing on it:
#
# $$\operatorname{Var}(u \mid x_t, m) = a^2 + b^2 - \frac{(a\alpha + b\beta)^2}{\alpha^2 + \beta^2}
#   = \frac{(a\beta - b\alpha)^2}{\alpha^2 + \beta^2}, \qquad a = \dot\alpha_t,\ b = \dot\beta_t .$$
#
# *CondOT* ($\alpha = t$, $\beta = 1 - t$, $a = 1$, $b = -1$): $\;1 / \big(t^2 + (1-t)^2\big)$,
# Its denominator is $t^2 + (1-t)^2 = \tfrac12 + 2\,(t - \tfrac12)^2$, largest (1) at the
# ends and smallest ($\tfrac12$) in the middle, so the variance is 1 at $t = 0$ and
# $t = 1$ and at most 2, reached at $t = \tfrac12$ (the table below prints 2.000 there).
# *sqrt* ($\alpha = t$, $\beta = \sqrt{1-t}$, $a = 1$, $b = -1/(2\sqrt{1-t})$):
# $\;(2 - t)^2 / \big(4 (1 - t)(t^2 - t + 1)\big)$, which grows like $1 / (4(1 - t))$ as $t \to 1$.
#
# </details>
#
# So for the sqrt path the variance per coordinate grows like $1/(4(1-t))$ and
# its integral over $t \in [0, 1)$ diverges: without the clamp, the loss has
# *infinite expectation*. With the clamp its mean is finite, but its batch
# values stay heavy-tailed. For CondOT it is bounded at every $t$. A Monte Carlo
# check of both formulas: draw many pairs from one mode, regress $u$ on $x_t$,
# and measure what the regression leaves.

# %%
def target_variance_given_xt(path, t, n=400_000):
    """Residual variance per coordinate of u after a least-squares fit on x_t (mode 0 fixed)."""
    x1 = target.means[0] + torch.randn(n, 2, generator=gen, dtype=torch.float64)
    x0 = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    tt = torch.full((n,), t, dtype=torch.float64)
    xt, u = path.sample(x0, x1, tt).xt, path.conditional_velocity(x0, x1, tt)
    design = torch.cat([xt, torch.ones(n, 1, dtype=torch.float64)], dim=1)
    residual = u - design @ torch.linalg.lstsq(design, u).solution
    return float(residual.var(dim=0).mean())


formulas = {"sqrt": lambda t: (2 - t) ** 2 / (4 * (1 - t) * (t * t - t + 1)), "condot": lambda t: 1 / (t * t + (1 - t) ** 2)}
for name, formula in formulas.items():
    for t in (0.1, 0.5, 0.9, 0.99):
        measured = target_variance_given_xt(fm.AffineGaussianPath(name), t)
        print(f"{name:6s} t = {t:4}: formula {formula(t):7.3f}, Monte Carlo {measured:7.3f}")
        assert abs(measured - formula(t)) < 0.02 * formula(t)

# %% [markdown]
# Same model, same budget, one word changed:

# %%
path_ot = fm.AffineGaussianPath("condot")
model_ot = fm.MLP(dim=2, hidden=96, depth=4, activation="gelu", n_freqs=2, max_freq=1.0)
run_ot = fm.train(model_ot, fm.CFMObjective(path_ot, target),
                  steps=TRAIN_STEPS, batch_size=1024, lr=3e-3, seed=SEED)
solution_ot = fm.sample(model_ot, x0, steps=EULER_STEPS, method="euler", return_trajectory=True)
samples_ot = solution_ot.x.cpu()
oracle_ot = fm.MixtureOracle(target, path_ot)
fractions_ot, near_ot, ratio_ot = sample_checks(samples_ot)
oracle_ot_errors = velocity_errors(model_ot, oracle_ot)
report("CondOT path", fractions_ot, near_ot, ratio_ot, oracle_ot_errors)

# %% [markdown]
# Left: the two loss curves (faint: every step; solid: a running median).
# Look at the spikes of the sqrt path's curve, batches that drew a $t$ close
# to 1, against CondOT's steady one. A lower curve does not mean a better
# model: each path has its own irreducible variance. Middle: the CondOT flow
# carries each source point along a nearly straight ray to a mode (grey: true
# samples of the target). Right: the mean speed of the samples along both
# learned flows, with the exact flow's speed (the oracle integrated from the
# same points) dashed. Look at the ramp. At $t = 0$ the exact speed is
# $|\mathbb E[x_1 - x_0 \mid x_0]| = |x_0|$, about 1.2 on average: the posterior
# over the 11 modes is still uniform and their pulls cancel. The speed climbs
# while each sample commits to one mode (by $t \approx 0.3$), then levels off
# near 10 units per unit time, the radius of the circle. The learned flows
# follow the exact one closely except at the very start, where they are
# slower (the network is least accurate where $u_t$ is smallest, as section 6's
# velocity errors at $t = 0.1$ show). The table below prints the speeds of this run.

# %%
def mean_speed(solution):
    steps = solution.trajectory.diff(dim=0).norm(dim=-1).mean(dim=1)  # mean |x_{k+1} - x_k|
    return solution.times[:-1].numpy(), (steps / solution.times.diff().to(steps)).cpu().numpy()


fig, axes = plt.subplots(1, 3, figsize=(13, 4.3))
plot_loss(run_sqrt.losses, ax=axes[0], label="sqrt", title="CFM loss of the two paths")
plot_loss(run_ot.losses, ax=axes[0], label="CondOT", color="C1", title="CFM loss of the two paths")
plot_samples(target.sample(2000, generator=gen), ax=axes[1], color="0.6", s=1.0)
plot_trajectories(solution_ot.trajectory.cpu(), ax=axes[1], n=150, title="trajectories, CondOT path")
exact_ot = fm.sample(oracle_ot, x0, steps=EULER_STEPS, method="euler", return_trajectory=True)
for sol, label, style in ((solution, "sqrt", "-"), (solution_ot, "CondOT", "-"), (exact_ot, "CondOT, exact", "--")):
    axes[2].plot(*mean_speed(sol), style, label=label)
axes[2].set(title="mean speed along the flow", xlabel="t", ylabel=r"mean $|\dot x|$")
axes[2].legend()
fig.tight_layout()
plt.show()
for sol, label in ((solution, "sqrt"), (solution_ot, "CondOT"), (exact_ot, "CondOT, exact")):
    times, speed = mean_speed(sol)
    print(f"{label:14s} mean speed at t = " + ", ".join(f"{t:.2f}: {speed[(abs(times - t)).argmin()]:.1f}"
                                                       for t in (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.9)))

# %%
assert passes(fractions_ot, near_ot, ratio_ot) == dict.fromkeys(passes(fractions_ot, near_ot, ratio_ot), True)
assert max(oracle_ot_errors.values()) <= VELOCITY_ERR_MAX, oracle_ot_errors

# %% [markdown]
# ## Summary
#
# | | sqrt path | CondOT path |
# |---|---|---|
# | conditional velocity | $x_1 - x_0 / (2\sqrt{1-t})$ | $x_1 - x_0$ |
# | at $t = 1$ | diverges (clamped to stay finite) | finite |
# | variance of the target given $x_t$ and the mode | grows like $1/(4(1-t))$: heavy-tailed loss | 1 at both ends, at most 2 (at $t = 1/2$) |
# | learned flow | rays to the modes, speed ramping up to about 10 units per unit time | the same |
#
# The measured checks for both paths are printed by the last cell.
#
# - A **conditional path** $x_t = \alpha_t x_1 + \beta_t x_0$ connects each noise
#   sample to a data point; its velocity is $\dot\alpha_t x_1 + \dot\beta_t x_0$.
# - The **CFM loss** regresses a network on these conditional velocities; it is
#   the FM loss plus a constant, so its minimiser is the marginal velocity
#   (the conditional mean), which carries $p_0$ to $p_1$ (section 3's derivation
#   and its two checks).
# - **Sampling** integrates $\dot x = u_\theta(x, t)$; Euler with 200 steps
#   passes every check here. The checks are sharp enough to see Euler's own
#   error (section 6 integrates the exact velocity with 100 and 200 steps;
#   chapter 3 measures how the error falls with the number of steps).
# - **Checks** that can fail, and do on the controls: mode shares (the only
#   one to see a dropped mode), the share within 2.5 std against its exact
#   value (samples stranded between modes, and the ring), the mode-matched
#   energy distance *relative to its floor* (the only one to see modes shifted
#   by 0.3 std; it fails the ring too), and the velocity against the exact oracle.
#
# Next: chapter 2 looks at the paths themselves: other schedules, the
# continuity equation on a grid, and the FM/CFM gradients side by side.
# Practise this chapter in its exercise notebook,
# [exercises/ex01_gaussian_mixture_cfm.ipynb](../exercises/ex01_gaussian_mixture_cfm.ipynb):
# a schedule and its derivative, the straight-line path and its Gaussian
# marginal, the CFM loss and an Euler sampler, each with a check.

# %%
for label, fr, near, ratio, errs, run in (
        ("sqrt", fractions_sqrt, near_sqrt, ratio_sqrt, oracle_sqrt_errors, run_sqrt),
        ("CondOT", fractions_ot, near_ot, ratio_ot, oracle_ot_errors, run_ot)):
    print(f"{label:7s} modes {100 * fr.min():.1f}%..{100 * fr.max():.1f}% | {100 * near:.1f}% within 2.5 std | "
          f"energy distance {ratio:.2f} x floor | max velocity error {max(errs.values()):.3f} | "
          f"trained {run.seconds:.0f} s")
print(fm.config.run_time(T_START))

# %% [markdown]
# ## Further reading
#
# The papers this chapter follows, and what to read each one for. Full entries are on the
# [references page](../book/references.md) (from `book/references.bib`).
#
# - [Lipman2024] Lipman et al. 2024, *Flow Matching Guide and Code* (arXiv 2412.06264): the framework this
#   course follows, with its PyTorch library; read its quick tour and the flow matching chapter beside this
#   one.
# - [Lipman2023] Lipman et al. 2023, *Flow Matching for Generative Modeling* (arXiv 2210.02747): the CFM loss,
#   the theorem that it has the marginal loss's gradient, and the Gaussian conditional paths of sections 2–3.
# - [Tong2024] Tong et al. 2024, *Improving and Generalizing Flow-Based Generative Models with Minibatch
#   Optimal Transport* (arXiv 2302.00482): conditional flow matching for paths built from pairs $(x_0, x_1)$,
#   as in section 7.
# - [Liu2023] Liu et al. 2023, *Flow Straight and Fast* (arXiv 2209.03003): the straight-line (CondOT) path of
#   section 7 as rectified flow.
# - [Albergo2023] Albergo and Vanden-Eijnden 2023, *Building Normalizing Flows with Stochastic Interpolants*
#   (arXiv 2209.15571): the same path as an interpolant between two samples.
# - [RizzoSzekely2016] Rizzo and Székely 2016, *Energy Distance* (WIREs Computational Statistics): the
#   energy distance of section 6, why it is zero only for equal distributions, and its two-sample tests.
