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
# **Run time:** about 2 minutes on a 2-core laptop CPU at the default budget,
# under a minute in quick mode (`FMLEARN_QUICK=1`), seconds on a GPU. The two
# training cells are the slow ones; they show a progress bar.

# %%
import matplotlib.pyplot as plt
import torch

import fmlearn as fm
from fmlearn.plotting import (plot_density, plot_loss, plot_marginals, plot_mode_fractions,
                              plot_samples, plot_trajectories)

SEED = 0
fm.seed_everything(SEED)
print(fm.describe())

# The budget: every knob that trades time for quality, and the thresholds that go with it.
TRAIN_STEPS = fm.budget(default=6000, quick=1200)
N_SAMPLES = fm.budget(default=5000, quick=2000)
EULER_STEPS = fm.budget(default=100, quick=50)
ED_RATIO_MAX = fm.budget(default=2.0, quick=4.0)        # energy distance / its floor
VELOCITY_ERR_MAX = fm.budget(default=0.10, quick=0.15)  # relative L2 error vs the oracle
NEAR_MODES_MIN = fm.budget(default=0.99, quick=0.98)    # share of samples within 4 std of a mode

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
# converges to the conditional mean, which is exactly $u_t(x)$. (Chapter 2
# checks numerically that $u_t(x)$ really carries $p_t$ along, through the
# continuity equation, and that this loss and the one against $u_t(x)$ have the
# same gradient: they differ by a constant, which for this schedule is in fact
# infinite, see section 7.)
# The loss is three lines:

# %%
model_sqrt = fm.MLP(dim=2, hidden=256, depth=3)

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
# that decays along a cosine. It trains on the GPU when there is one, keeps
# the loss of every step, and stops with a clear message if the loss ever
# becomes NaN or infinite. The model is a 3-layer MLP of width 256 that takes
# $x$ and sinusoidal features of $t$.

# %%
run_sqrt = fm.train(model_sqrt, path_sqrt, target, steps=TRAIN_STEPS, batch_size=256, lr=1e-3, seed=SEED)
print(f"{TRAIN_STEPS} steps in {run_sqrt.seconds:.1f} s on {run_sqrt.device}")
plot_loss(run_sqrt.losses, title="CFM loss, sqrt path")
plt.show()

# %% [markdown]
# The loss does not go to zero, and it should not: the conditional velocity is
# random given $x_t$ (many pairs pass through the same point), and the loss
# keeps that variance. What goes to zero is the distance between $u_\theta$ and
# the marginal velocity, which we measure in section 6.
#
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
# under the contour lines of the *exact* marginal density $p_t$ (black; the
# marginal of a Gaussian mixture along this path is again a Gaussian mixture,
# see `fm.MixtureOracle`). Look for the dots filling the contours at every
# $t$, not only at the end.

# %%
oracle_sqrt = fm.MixtureOracle(target, path_sqrt)
plot_marginals(solution.trajectory.cpu(), solution.times, show_at=(0, 0.25, 0.5, 0.75, 1.0),
               densities=lambda t: oracle_sqrt.marginal(t).log_prob,
               suptitle="learned flow (dots) and the exact marginal $p_t$ (contours), sqrt path")
plt.show()

# %% [markdown]
# ## 6. Checking the result
#
# A picture can hide a lot. Four checks, each against an exact reference:
#
# 1. **Per-mode fractions.** Assign every sample to its most probable mode
#    (the Bayes assignment under the true mixture). Each mode should get
#    $1/11 \approx 9.1\%$, within 3 percentage points.
# 2. **No stranded samples.** At least 99% of samples (98% in quick mode) lie
#    within 4 standard deviations of some mode (for true samples it is
#    99.97%); the Bayes assignment alone would hide samples stuck between modes.
# 3. **Energy distance to true samples, relative to its floor.** Two sets of
#    $n$ samples of the *same* distribution are still at a positive energy
#    distance, $2\,\mathbb E|X - X'|/n$ on average: that is the floor. It is an
#    average, so a perfect model scores about 1 times the floor, sometimes less.
#    We average our distance over 4 fresh sets of true samples and ask for at
#    most twice the floor.
# 4. **Velocity error against the oracle.** For a mixture target the marginal
#    velocity $u_t(x)$ has a closed form. We compare $u_\theta$ with it on
#    samples of $p_t$: relative error $\|u_\theta - u_t\| / \|u_t\|$, at
#    $t = 0.1, 0.5, 0.9$ and, where the sqrt path is hardest, $0.99$.

# %%
def sample_checks(samples):
    fractions = fm.mode_fractions(target, samples)
    near = fm.fraction_near_modes(target, samples, n_std=4.0)
    ed = fm.energy_distance_to(target, samples, repeats=4, generator=gen)
    floor = fm.energy_distance_floor(target, samples.shape[0], generator=gen)
    return fractions, near, ed / floor


def velocity_errors(model, oracle, times=(0.1, 0.5, 0.9, 0.99)):
    return {t: fm.velocity_error(model, oracle, t, n=4000, generator=gen)[0] for t in times}


def report(label, fractions, near, ratio, errors=None):
    line = (f"{label}: modes {100 * fractions.min():.1f}%..{100 * fractions.max():.1f}%, "
            f"{100 * near:.2f}% near a mode, energy distance {ratio:.2f} x floor")
    if errors:
        line += "; velocity error " + ", ".join(f"t={t}: {e:.3f}" for t, e in errors.items())
    print(line)

# %% [markdown]
# Do these checks catch a bad model? Before trusting them, try them on two
# sample sets whose answer we know: true samples of the target (a perfect
# model) and samples of the same mixture with mode 0 missing.

# %%
perfect = target.sample(N_SAMPLES, generator=gen)
one_mode_dropped = fm.GaussianMixture(target.means[1:], 1.0).sample(N_SAMPLES, generator=gen)
controls = {"perfect": sample_checks(perfect), "mode 0 dropped": sample_checks(one_mode_dropped)}
for label, (fractions, near, ratio) in controls.items():
    report(label, fractions, near, ratio)

fr, near, ratio = controls["perfect"]
assert (fr - 1 / 11).abs().max() <= 0.03 and near >= NEAR_MODES_MIN and ratio <= ED_RATIO_MAX
fr, near, ratio = controls["mode 0 dropped"]
assert (fr - 1 / 11).abs().max() > 0.03 and ratio > ED_RATIO_MAX

# %% [markdown]
# The set with a missing mode fails the mode fractions and lands far above
# the energy-distance floor. Note that even the perfect set scatters: with a
# few thousand samples one mode can hold 7% or 11%, and its energy distance
# can reach twice the floor (it does so in about 2% of draws). The thresholds
# leave room for that scatter, and no more. Now our model:

# %%
fractions_sqrt, near_sqrt, ratio_sqrt = sample_checks(samples_sqrt)
oracle_sqrt_errors = velocity_errors(model_sqrt, oracle_sqrt)
report("sqrt path", fractions_sqrt, near_sqrt, ratio_sqrt, oracle_sqrt_errors)
plot_mode_fractions(fractions_sqrt, title="share of samples per mode, sqrt path")
plt.show()

# %% [markdown]
# **Check yourself.** These asserts are the chapter's promise. In quick mode
# the model trains for a fraction of the steps, so the energy-distance and
# velocity thresholds are looser; the mode fractions and the near-mode share
# must hold at both budgets.

# %%
assert (fractions_sqrt - 1 / 11).abs().max() <= 0.03, fractions_sqrt
assert near_sqrt >= NEAR_MODES_MIN, near_sqrt
assert ratio_sqrt <= ED_RATIO_MAX, ratio_sqrt
assert max(oracle_sqrt_errors.values()) <= VELOCITY_ERR_MAX, oracle_sqrt_errors

# %% [markdown]
# ## 7. A better-behaved path: CondOT
#
# Nothing forces $\beta_t = \sqrt{1-t}$. The **conditional optimal-transport**
# (CondOT) schedule $\alpha_t = t$, $\beta_t = 1 - t$ moves each point in a
# straight line at constant speed, $u_t(x_t \mid x_0, x_1) = x_1 - x_0$.
#
# Why would that matter? Look at the regression targets. Given $x_t$, the
# conditional velocity is still random (through $x_0$), and the CFM loss can
# never go below its variance. Near $t = 1$, $x_t \approx x_1$ says almost
# nothing about $x_0$, so for the sqrt path that variance is about
# $\dot\beta_t^2 = 1 / (4(1 - t))$ per coordinate, and its integral over
# $t \in [0, 1)$ diverges: without the clamp, the loss has *infinite
# expectation*. With the clamp its mean is finite, but its batch values stay
# heavy-tailed. For CondOT the same variance is $1 / (t^2 + (1-t)^2) \le 2$:
# bounded at every $t$. Same model, same budget, one word changed:

# %%
path_ot = fm.AffineGaussianPath("condot")
model_ot = fm.MLP(dim=2, hidden=256, depth=3)
run_ot = fm.train(model_ot, path_ot, target, steps=TRAIN_STEPS, batch_size=256, lr=1e-3, seed=SEED)
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
# carries each source point along a nearly straight ray to a mode. Right: the
# mean speed of the samples along both learned flows. They are nearly the
# same: slow for the first few hundredths of time, while the symmetric start
# splits into 11 directions, then about 10 units per unit time, the radius of
# the circle. Both paths pass the checks here; they differ in how noisy they
# are to train.

# %%
def mean_speed(solution):
    steps = solution.trajectory.diff(dim=0).norm(dim=-1).mean(dim=1)  # mean |x_{k+1} - x_k|
    return solution.times[:-1].numpy(), (steps / solution.times.diff().to(steps)).cpu().numpy()


fig, axes = plt.subplots(1, 3, figsize=(13, 4.3))
plot_loss(run_sqrt.losses, ax=axes[0], label="sqrt", title="CFM loss of the two paths")
plot_loss(run_ot.losses, ax=axes[0], label="CondOT", color="C1", title="CFM loss of the two paths")
plot_trajectories(solution_ot.trajectory.cpu(), ax=axes[1], n=150, title="trajectories, CondOT path")
for sol, label in ((solution, "sqrt"), (solution_ot, "CondOT")):
    axes[2].plot(*mean_speed(sol), label=label)
axes[2].set(title="mean speed along the learned flow", xlabel="t", ylabel=r"mean $|\dot x|$")
axes[2].legend()
fig.tight_layout()
plt.show()

# %%
assert (fractions_ot - 1 / 11).abs().max() <= 0.03, fractions_ot
assert near_ot >= NEAR_MODES_MIN, near_ot
assert ratio_ot <= ED_RATIO_MAX, ratio_ot
assert max(oracle_ot_errors.values()) <= VELOCITY_ERR_MAX, oracle_ot_errors

# %% [markdown]
# ## Summary
#
# | | sqrt path | CondOT path |
# |---|---|---|
# | conditional velocity | $x_1 - x_0 / (2\sqrt{1-t})$ | $x_1 - x_0$ |
# | at $t = 1$ | diverges (clamped to stay finite) | finite |
# | variance of the target given $x_t$ | grows like $1/(4(1-t))$: heavy-tailed loss | at most 2 |
# | learned flow | rays to the modes, about 10 units per unit time | the same |
#
# The measured checks for both paths are printed by the last cell.
#
# - A **conditional path** $x_t = \alpha_t x_1 + \beta_t x_0$ connects each noise
#   sample to a data point; its velocity is $\dot\alpha_t x_1 + \dot\beta_t x_0$.
# - The **CFM loss** regresses a network on these conditional velocities; its
#   minimiser is the marginal velocity, which carries $p_0$ to $p_1$.
# - **Sampling** integrates $\dot x = u_\theta(x, t)$; Euler with a hundred
#   steps passes every check here (chapter 3 measures how the error falls
#   with the number of steps).
# - **Checks** that can fail (and do, on a model with a missing mode): mode
#   fractions, samples near a mode, a two-sample distance *relative to its
#   floor*, and the velocity against the exact oracle.
#
# Next: chapter 2 looks at the paths themselves: other schedules, the
# continuity equation, and why the CFM and FM losses have the same gradient.
# The exercise notebook of this chapter (ex01) is planned with the course's
# exercise set; it is not written yet.

# %%
for label, fr, near, ratio, errs, run in (
        ("sqrt", fractions_sqrt, near_sqrt, ratio_sqrt, oracle_sqrt_errors, run_sqrt),
        ("CondOT", fractions_ot, near_ot, ratio_ot, oracle_ot_errors, run_ot)):
    print(f"{label:7s} modes {100 * fr.min():.1f}%..{100 * fr.max():.1f}% | {100 * near:.2f}% near a mode | "
          f"energy distance {ratio:.2f} x floor | max velocity error {max(errs.values()):.3f} | "
          f"trained {run.seconds:.0f} s")
