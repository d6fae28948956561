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
# # Chapter 6 — Conditional generation: guidance, and digits
#
# So far a model drew *some* sample of the data. Now we ask for a particular
# kind: a sample of mode 3, an image of the digit 7. We feed the label to the
# velocity network, train it with the same loss, and then steer it harder with
# **classifier-free guidance**. First on the labelled 11-mode mixture, where
# the best possible classifier is known exactly; then on real images,
# scikit-learn's 8×8 handwritten digits, with a small convolutional network,
# judged by a classifier that never saw the generator's training data.
#
# **What you will learn**
# - conditional flow matching: the label is one more input, the loss does not change;
# - label dropout, which teaches one network both $u_t(x \mid y)$ and $u_t(x)$;
# - classifier guidance, then classifier-free guidance
#   $u_w = (1 + w)\,u(x, t, y) - w\,u(x, t, \varnothing)$: one idea, because the
#   velocity is affine in the score; what it does to the distribution (not
#   the tilted target one might guess), and its price: diversity;
# - a small convolutional U-Net for images, trained with EMA weights (and mixed
#   precision on a GPU);
# - how to judge conditional samples honestly: a held-out classifier for
#   "is it the asked digit", a per-class two-sample distance with its noise
#   floor for "is it as varied as real digits".
#
# **Prerequisites:** chapters 1–3 (the CFM loss, the oracle, ODE sampling).
#
# **Run time:** about 2 minutes on a 2-core laptop CPU at the default budget
# (most of it training the digits network), under half a minute in quick
# mode (`FMLEARN_QUICK=1`), much faster on a GPU; the last cell prints how
# long your run took.

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
import numpy as np
import torch
from IPython.display import Markdown, display

from fmlearn.digits import plot_digits
from fmlearn.plotting import FIRST, SECOND, mode_colours, plot_loss
from fmlearn.widgets import guidance_explorer

T_START = time.perf_counter()
SEED = 0
fm.seed_everything(SEED)
gen = torch.Generator().manual_seed(SEED)
DEVICE = fm.get_device()
AMP = DEVICE.type == "cuda"  # bfloat16 autocast pays on a GPU; on a CPU it would only add casts
print(fm.describe())

MIX_STEPS = fm.budget(default=2000, quick=800)
CLF_STEPS = fm.budget(default=800, quick=300)        # the digits classifier
GEN_STEPS = fm.budget(default=1000, quick=150)       # the digits velocity network
GEN_BATCH = fm.budget(default=256, quick=128)
PER_CLASS = fm.budget(default=120, quick=92)         # generated digits per class (>= 92)
SAMPLE_STEPS = 5                                     # midpoint steps (10 velocity evaluations)
W_DIGITS = 0.25                                      # the guidance weight we assess the digits at
SWEEP = fm.budget(default=(0.0, 0.25, 0.5, 1.0, 2.0, 4.0), quick=(0.0, 0.25, 2.0))
MODE_MIN = 0.99                                      # mixture: share in the asked mode at w = 2
CLF_MIN = fm.budget(default=0.97, quick=0.9)         # classifier accuracy on real digits
ACC_MIN = fm.budget(default=0.97, quick=0.85)        # guided digits classified as asked
RATIO_MAX = fm.budget(default=2.0, quick=3.5)        # per-class distance / floor

# %% [markdown]
# ## 1. A label is one more input
#
# Each data point now comes with a label $y \in \{0, \dots, K - 1\}$: for the mixture
# ($K = 11$ modes $m_k$ on a circle of radius 10, each with standard deviation 1), the mode
# it was drawn from. We keep the CondOT path of chapter 1, $\alpha_t = t$, $\beta_t = 1 - t$.
# Nothing about the path changes — $x_t = \alpha_t x_1 + \beta_t x_0$
# with $(x_1, y)$ drawn together — and the network simply sees $y$ too:
#
# $$\mathcal L(\theta) = \mathbb E_{t,\ (x_1, y),\ x_0}\ \big\| u_\theta(x_t, t, y) - (\dot\alpha_t x_1 + \dot\beta_t x_0) \big\|^2 .$$
#
# The argument of chapter 1 runs label by label: the minimiser is
# $u_\theta(x, t, y) = u_t(x \mid y)$, the marginal velocity of the flow towards
# $p_1(x \mid y)$ alone. Sampling with a fixed $y$ then draws from $p_1(\cdot \mid y)$.
#
# **Label dropout.** With probability $p_{\rm drop}$ (here 0.1) we replace the label by
# an extra "no label" token $\varnothing$ (index $K$, one more row in the
# label embedding). Those examples teach the same network the unconditional
# field $u_\theta(x, t, \varnothing) = u_t(x)$, which guidance needs below.

# %%
mixture = fm.GaussianMixture.symmetric_2d()  # 11 modes on a circle of radius 10, std 1
path = fm.AffineGaussianPath("condot")
x1, labels = mixture.sample(5, generator=gen, return_labels=True)
print("points:", x1.round(decimals=1).tolist(), "\nlabels (modes):", labels.tolist())

mix_model = fm.ConditionalMLP(2, num_classes=11, hidden=128, depth=3)
mix_run = fm.train(mix_model, fm.CFMObjective(path, mixture, conditional=True, label_dropout=0.1),
                   steps=MIX_STEPS, batch_size=256, lr=2e-3, seed=SEED, device=DEVICE)

# %% [markdown]
# For this target both fields are known exactly: $u_t(x \mid y = k)$ is the
# velocity towards the single Gaussian $\mathcal N(m_k, I)$ and $u_t(x)$ the
# mixture oracle of chapter 2 (`fm.ConditionalMixtureOracle` bundles them).
# **Check yourself:** the learned fields, with and without a label, against
# the exact ones on points of the path at $t = 0.7$.

# %%
exact = fm.ConditionalMixtureOracle(mixture, path)
x1, y1 = mixture.sample(4000, generator=gen, return_labels=True)
xt = path.sample(torch.randn(x1.shape, generator=gen), x1, 0.7).xt
for name, lab in (("u(x, t, y)   ", y1), ("u(x, t, none)", None)):
    with torch.no_grad():
        learned = mix_model(xt.to(DEVICE), 0.7, y=None if lab is None else lab.to(DEVICE)).cpu()
    ref = exact(xt, 0.7, y=lab)
    err = ((learned - ref).norm() / ref.norm()).item()
    print(f"{name}: relative L2 error {err:.3f}")
    assert err < 0.1

# %% [markdown]
# ## 2. Guidance: with a classifier, then without one
#
# A word on notation first. $u_t(x \mid y)$ is the marginal velocity of the
# flow towards $p_1(\cdot \mid y)$: an average over all the data points of
# label $y$. It is not chapter 2's conditional velocity $u_t(x \mid x_1)$,
# which heads for one data point $x_1$; here $u_t(x \mid y) =
# \mathbb E[u_t(x \mid x_1) \mid x_t = x,\ y]$, and the unconditional field
# $u_t(x)$ averages over $y$ as well.
#
# **The velocity is affine in the score.** Write $\hat x_1, \hat x_0$ for the
# posterior means $\mathbb E[x_1 \mid x_t = x]$, $\mathbb E[x_0 \mid x_t = x]$
# (conditioning on $y$ too, if there is a label). Then
# $x = \alpha_t \hat x_1 + \beta_t \hat x_0$, $u = \dot\alpha_t \hat x_1 + \dot\beta_t \hat x_0$,
# and the score is $s = \nabla \log p_t = -\hat x_0 / \beta_t$ (Tweedie's formula; chapter 7 uses it
# at length). One line: $p_t(x) = \int p_1(x_1)\, \mathcal N(x;\, \alpha_t x_1, \beta_t^2 I)\, dx_1$, so
# $\nabla p_t(x) = \int p_1(x_1)\, \mathcal N(\cdots)\, \frac{-(x - \alpha_t x_1)}{\beta_t^2}\, dx_1$; divide by $p_t(x)$
# and the integral becomes the posterior mean of $-(x - \alpha_t x_1)/\beta_t^2 = -x_0/\beta_t$.
# Eliminate $\hat x_1 = (x - \beta_t \hat x_0)/\alpha_t$:
#
# $$u = \frac{\dot\alpha_t}{\alpha_t}\,x - \Big(\frac{\dot\alpha_t \beta_t}{\alpha_t} - \dot\beta_t\Big)\hat x_0
#     = a_t\, x + b_t\, s, \qquad a_t = \frac{\dot\alpha_t}{\alpha_t},\quad
#     b_t = \frac{\beta_t D_t}{\alpha_t},\quad D_t = \dot\alpha_t \beta_t - \alpha_t \dot\beta_t ,$$
#
# chapter 7's conversion. Nothing in it depends on the data, so the same $a_t, b_t$
# serve $u_t(x \mid y)$ with $\nabla \log p_t(x \mid y)$ and $u_t(x)$ with
# $\nabla \log p_t(x)$. (CondOT: $a_t = 1/t$, $b_t = (1 - t)/t$.) Any change
# of score is a change of velocity, $\Delta u = b_t\, \Delta s$.
#
# **Classifier guidance** (Dhariwal & Nichol 2021). Bayes' rule, with $p_t(y)$
# constant in $x$: $\nabla \log p_t(x \mid y) = \nabla \log p_t(x) + \nabla \log p_t(y \mid x)$,
# where $p_t(y \mid x)$ is the *noisy* classifier: how sure one can be of the
# label from the noisy point $x_t = x$. Dhariwal and Nichol trained such a
# classifier on noisy images and sharpened sampling by weighting its gradient
# more, using the score $\nabla \log p_t(x \mid y) + w\, \nabla \log p_t(y \mid x)$,
# that is the velocity $u_t(x \mid y) + w\, b_t \nabla \log p_t(y \mid x)$.
#
# **Classifier-free guidance** (Ho & Salimans 2022) needs no classifier:
# Bayes' rule again says $\nabla \log p_t(y \mid x) = \nabla \log p_t(x \mid y) - \nabla \log p_t(x)$,
# and both scores are, through $a_t, b_t$, the two fields one network
# learned with label dropout. Since $b_t\big[\nabla\log p_t(x \mid y) - \nabla\log p_t(x)\big] = u_t(x \mid y) - u_t(x)$
# (the $a_t x$ terms cancel), classifier guidance becomes
#
# $$u_w(x, t, y) = u(x, t, y) + w\,\big[u(x, t, y) - u(x, t, \varnothing)\big] = (1 + w)\, u(x, t, y) - w\, u(x, t, \varnothing).$$
#
# $w = 0$ is the conditional field, $w = -1$ the unconditional one. (Some
# libraries write $u_\varnothing + \gamma\,(u_y - u_\varnothing)$ with a guidance
# *scale* $\gamma = 1 + w$: the same field.) The weights $1 + w$ and $-w$ sum to
# one, which is what keeps $a_t x$ intact.
#
# What distribution does this sample? At every single $t$ the guided score is
# that of $p_t(x \mid y)\, p_t(y \mid x)^w$, so it is tempting to say the
# samples follow the tilted target $p_1(x \mid y)\, p_1(y \mid x)^w$. They do
# not: the tilted densities at different $t$ are not one probability path
# (they are not the noisings of one another), and the mixture below shows
# how far off that guess is. The formula $u = a_t x + b_t \nabla \log q_t$ carries
# samples along a family $q_t$ only when $q_t$ is the law of $\alpha_t X_1 + \beta_t X_0$
# for one $X_1$ (that is how it was derived above); for the tilted family no such
# $X_1$ exists, so the guided flow follows the continuity equation of *another* path,
# and its end point need not be the tilted target (Chidambaram et al. 2024, section 2b).
#
# Written out by hand, and compared with the package's `GuidedVelocity`, which
# evaluates both fields in *one* forward pass on the doubled batch
# $[x; x]$ with labels $[y; \varnothing]$ (valid because these networks treat each
# row on its own; a network with batch normalisation would mix the two halves):

# %%
def guided_by_hand(model, w, x, t, y):
    return (1 + w) * model(x, t, y=y) - w * model(x, t, y=None)


xs, ys = torch.randn(6, 2, device=DEVICE), torch.arange(6, device=DEVICE)
with torch.no_grad():
    torch.testing.assert_close(fm.GuidedVelocity(mix_model, 2.0)(xs, 0.4, y=ys),
                               guided_by_hand(mix_model, 2.0, xs, 0.4, ys), rtol=1e-4, atol=1e-4)

# %% [markdown]
# Because the modes are far apart, the Bayes classifier $p(k \mid x)$ of the
# mixture (`mixture.responsibilities`) is exact and nearly always right on
# true samples. We ask for every mode equally often, sample with and without
# guidance, and count how many samples land in the asked mode. The same
# experiment with the exact fields is the reference.

# %%
asked = torch.arange(11).repeat_interleave(200)
outward = mixture.means[asked] / mixture.means[asked].norm(dim=1, keepdim=True)  # unit vector of the asked mode
sideways = torch.stack([-outward[:, 1], outward[:, 0]], dim=1)


def mode_hits(model, w):
    x = fm.guided_sample(model, asked, w, (2,), steps=20, method="midpoint",
                         generator=torch.Generator().manual_seed(1)).x.cpu()
    hit = (mixture.responsibilities(x).argmax(1) == asked).double().mean().item()
    offset = x - mixture.means[asked]
    return x, hit, (offset * outward).sum(1).mean().item(), (offset * sideways).sum(1).std().item()


runs = {(who, w): mode_hits(m, w) for who, m in (("learned", mix_model), ("exact", exact)) for w in (0.0, 2.0)}
for (who, w), (_, hit, out, side) in runs.items():
    print(f"{who:7s} w = {w}: {hit:.2%} in the asked mode; mean shift outwards {out:+.2f}, sideways std {side:.2f}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 4.6))
for ax, key in zip(axes, [("learned", 0.0), ("learned", 2.0), ("exact", 2.0)]):
    x = runs[key][0]
    ax.scatter(x[:, 0], x[:, 1], c=mode_colours(asked), s=2)  # neighbouring modes differ
    ax.scatter(*mixture.means.T, marker="+", color="black", s=60)
    ax.set(xlabel="coordinate 1", ylabel="coordinate 2", aspect="equal", xlim=(-15, 15), ylim=(-15, 15))
    ax.set_title(f"{key[0]} fields, w = {key[1]:g}: {runs[key][1]:.1%} in the asked mode", fontsize=10)
fig.suptitle("samples coloured by the asked mode (+: the means): guidance pushes them away from the other modes")
fig.tight_layout()
plt.show()

# %% [markdown]
# (The modes' colours cycle through three of the Okabe–Ito colour-blind-safe
# colours so that neighbours differ; the course's tests check each pair under
# simulated deuteranopia and protanopia, with the model of Machado et al. 2009.)
#
# Guidance did not simply tighten each mode. Every sample of mode $k$ moved
# *away from the other modes*: outwards, off the circle (with the exact
# fields at $w = 2$, by almost two standard deviations), and sideways it
# narrowed to about a fifth of the data's spread (the printed shift and
# sideways std). The learned model shows the same push (its own
# shift and spread are printed beside the exact fields': at $w = 0$ it is not yet
# as tight as the exact field, a training error, not guidance). Fidelity, measured by the
# classifier, went up; but the samples no longer follow $\mathcal N(m_k, I)$:
# guidance trades the distribution for confidence. Section 2b asks where
# that push comes from.
#
# **Check yourself.** At $w = 2$ at least 99% of the learned model's samples
# fall in the asked mode, as with the exact fields; its outward shift and
# sideways spread match the exact guided ones; with the exact fields at
# $w = 0$ the samples sit on the modes (no shift, spread 1).

# %%
learned, exact_w2, exact_w0 = runs[("learned", 2.0)], runs[("exact", 2.0)], runs[("exact", 0.0)]
assert learned[1] >= MODE_MIN and exact_w2[1] >= MODE_MIN
assert abs(learned[2] - exact_w2[2]) < 0.25 and abs(learned[3] - exact_w2[3]) < 0.1
assert abs(exact_w0[2]) < 0.05 and abs(exact_w0[3] - 1) < 0.05
assert exact_w2[2] > 1.0 and exact_w2[3] < 0.5

# %% [markdown]
# ## 2b. Not the tilted target: the noisy classifier did it
#
# The guess of section 2 would have the samples of mode $k$ follow
# $\pi_k(x) \propto \mathcal N(x;\, m_k, I)\; p_1(k \mid x)^w$. For this mixture
# that density can be computed, by two independent methods:
#
# - **a grid**: evaluate $\pi_k$ on a fine grid of the plane around $m_k$ and
#   integrate its moments numerically (a Riemann sum);
# - **importance weighting**: draw $x \sim \mathcal N(m_k, I)$ and weigh each
#   draw by $p_1(k \mid x)^w$, self-normalised; resampling draws in
#   proportion to their weights gives samples of $\pi_k$ for the figure.
#
# Both are written in the mode's own frame, (outward, sideways) offsets from
# $m_k$; by symmetry every mode gives the same numbers, so we take mode 0.
# With $w = 0$ the tilt disappears and the grid must return shift 0 and
# std 1, a check of the code itself.

# %%
W_MIX = 2.0
out0, side0 = mixture.means[0].double() / mixture.means[0].norm(), torch.tensor([0.0, 1.0], dtype=torch.float64)


def tilt_log_weight(offsets, w):
    """log p_1(0 | x)^w at x = m_0 + offsets[:, 0] * outward + offsets[:, 1] * sideways."""
    x = mixture.means[0].double() + offsets[:, :1] * out0 + offsets[:, 1:] * side0
    return w * torch.log_softmax(mixture.component_log_probs(x), dim=-1)[:, 0]


def grid_moments(w, half=7.0, n=701):
    g = torch.linspace(-half, half, n, dtype=torch.float64)
    o, sd = torch.meshgrid(g, g, indexing="ij")
    z = torch.stack([o.flatten(), sd.flatten()], 1)
    dens = torch.exp(-0.5 * (z ** 2).sum(1) + tilt_log_weight(z, w))
    dens = dens / dens.sum()
    shift = (dens * z[:, 0]).sum()
    return shift.item(), (dens * z[:, 1] ** 2).sum().sqrt().item()  # sideways mean is 0 by symmetry


z_is = torch.randn(400_000, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
logw = tilt_log_weight(z_is, W_MIX)
weights = torch.softmax(logw, 0)
is_shift, is_side = (weights * z_is[:, 0]).sum().item(), (weights * z_is[:, 1] ** 2).sum().sqrt().item()
grid_shift, grid_side = grid_moments(W_MIX)
grid0 = grid_moments(0.0)
ess = 1 / (weights ** 2).sum().item()
print(f"tilted target, w = {W_MIX:g}: grid shift outwards {grid_shift:+.3f}, sideways std {grid_side:.3f}; "
      f"importance weights {is_shift:+.3f}, {is_side:.3f} (effective sample size {ess:,.0f} of {len(z_is):,})")
print(f"grid with w = 0 (no tilt): shift {grid0[0]:+.3f}, sideways std {grid0[1]:.3f}")
print(f"exact guided samples, w = {W_MIX:g}: shift outwards {exact_w2[2]:+.2f}, sideways std {exact_w2[3]:.2f}")

# %% [markdown]
# The tilted target is almost the untilted mode $\mathcal N(m_k, I)$: shifted
# outwards by +0.01 and a little narrower sideways (std 0.97, the printed
# figures). At $t = 1$ the modes are so far apart that $p_1(k \mid x) \approx 1$
# wherever $\mathcal N(m_k, I)$ has mass, and raising 1 to any power changes
# almost nothing; only the far flanks, towards the neighbours, are trimmed.
# The guided samples, shifted by almost two standard deviations and squeezed
# to a fifth of the width, are something else. The figure puts the two side
# by side: samples of the tilted target (resampled from the importance
# weights, one per asked label) and the exact guided samples, each in the
# frame of its mode. (Here the two colours mean the two distributions, no
# longer the modes.)

# %%
pick = torch.multinomial(weights, len(asked), replacement=True, generator=torch.Generator().manual_seed(5))
tilted = mixture.means[asked] + z_is[pick, :1].float() * outward + z_is[pick, 1:].float() * sideways
frame = {name: torch.stack([((x - mixture.means[asked]) * v).sum(1) for v in (outward, sideways)], 1)
         for name, x in (("tilted target", tilted), ("exact guided samples", exact_w2[0]))}
fig, axes = plt.subplots(1, 2, figsize=(12, 5))
for (name, z), colour in zip(frame.items(), (FIRST, SECOND)):
    x = tilted if name == "tilted target" else exact_w2[0]
    axes[0].scatter(x[:, 0], x[:, 1], s=2, color=colour, alpha=0.5, label=name)
    axes[1].scatter(z[:, 1], z[:, 0], s=2, color=colour, alpha=0.5,
                    label=f"{name} (these draws): shift {z[:, 0].mean():+.2f}, sideways std {z[:, 1].std():.2f}")
axes[0].scatter(*mixture.means.T, marker="+", color="black", s=60)
axes[0].set(xlabel="coordinate 1", ylabel="coordinate 2", aspect="equal", xlim=(-15, 15), ylim=(-15, 15),
            title=f"the plane: tilted target (blue) and guided samples (orange), w = {W_MIX:g}")
axes[1].set(xlabel="sideways offset from the asked mean", ylabel="outward offset from the asked mean",
            aspect="equal", xlim=(-4, 4), ylim=(-4, 5), title="all modes in their own frame")
axes[1].legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=8, markerscale=4)  # below: no draws hidden
axes[0].legend(loc="upper right", fontsize=8, markerscale=4)
fig.suptitle("tilted target p1(x|y) p1(y|x)^w (blue) is the round unit mode; guided samples (orange) sit outside it")
fig.tight_layout()
plt.show()

# %% [markdown]
# Where the push comes from is the noisy classifier $p_t(y \mid x)$ at
# intermediate times (Chidambaram et al. 2024; Bradley & Nakkiran 2024). Noised,
# mode $k$ is $\mathcal N(\alpha_t m_k, \sigma_t^2 I)$ with $\sigma_t^2 = \alpha_t^2 + \beta_t^2$;
# early on, neighbouring modes overlap, the classifier is unsure, and its
# gradient $\nabla \log p_t(k \mid x) = \sum_j p_t(j \mid x)\,\alpha_t (m_k - m_j)/\sigma_t^2$
# points away from the neighbours: outwards and towards the middle of the
# mode's slice of the circle. Guidance adds $w\, b_t$ times it to the velocity
# (section 2), with $b_t = (1 - t)/t$ large early. The table gives that
# extra velocity's outward component at the centre $\alpha_t m_k$ of the
# noised mode: large while the modes overlap, vanishing by the time they
# separate (by $t = 0.5$), long before $t = 1$ where the tilted target is defined. A
# sample pushed outwards early lands outside the mode, and the late fields,
# which no longer guide, do not bring it back.
#
# The same formula, checked: the exact guided field is
# $a_t x + b_t[\nabla \log p_t(x \mid y) + w \nabla \log p_t(y \mid x)]$
# with the scores of the noised mixture.

# %%
print("   t   p_t(k | centre)   outward extra velocity w b_t d/d(out) log p_t(k | x)")
push = {}
for t in (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9):
    noised = fm.GaussianMixture(t * mixture.means, stds=(t ** 2 + (1 - t) ** 2) ** 0.5)
    centre = t * mixture.means[:1]
    r = noised.responsibilities(centre)[0]
    grad = (r[:, None] * t * (mixture.means[0] - mixture.means)).sum(0) / (t ** 2 + (1 - t) ** 2)
    push[t] = W_MIX * (1 - t) / t * (grad @ out0.float()).item()
    print(f"{t:4.2f}   {r[0].item():15.3f}   {push[t]:+12.3f}")

t, y = 0.3, asked[::50]
xs = torch.randn(len(y), 2, generator=torch.Generator().manual_seed(6)) * 3 + t * mixture.means[y]
noised = fm.GaussianMixture(t * mixture.means, stds=(t ** 2 + (1 - t) ** 2) ** 0.5)
score_y = -(xs - t * mixture.means[y]) / (t ** 2 + (1 - t) ** 2)
by_formula = xs / t + (1 - t) / t * (score_y + W_MIX * (score_y - noised.score(xs)))
guided_exact = fm.GuidedVelocity(exact, W_MIX)(xs, t, y=y)
affine_err = ((by_formula - guided_exact).norm() / guided_exact.norm()).item()
print(f"a_t x + b_t (score + w grad log p_t(y|x)) vs the exact guided field at t = {t}: relative error {affine_err:.1e}")

# %% [markdown]
# **Check yourself.** The two estimates of the tilted target agree (to 0.01);
# the grid returns $\mathcal N(m_k, I)$ when $w = 0$; the tilted target's shift
# is below 0.05 and its sideways std within 0.05 of 1; the guidance push is
# strongest early (at $t \le 0.3$) and has fallen below a hundredth of its
# peak by $t = 0.9$; the affine formula reproduces the exact guided field. And
# a control that must fail: the claim "the guided samples follow the tilted
# target" — their sideways std and shift are nowhere near its.

# %%
assert abs(grid_shift - is_shift) < 0.01 and abs(grid_side - is_side) < 0.01
assert abs(grid0[0]) < 1e-6 and abs(grid0[1] - 1) < 1e-3
assert abs(grid_shift) < 0.05 and abs(grid_side - 1) < 0.05
peak = max(push, key=lambda t: abs(push[t]))
assert peak <= 0.3 and abs(push[0.9]) < 0.01 * abs(push[peak]), push
assert affine_err < 1e-4, affine_err
follows_tilt = abs(exact_w2[3] - grid_side) < 0.1 and abs(exact_w2[2] - grid_shift) < 0.25
assert not follows_tilt, "the guided samples should NOT follow the tilted target"

# %% [markdown]
# ## 3. Digits, and a judge that never saw the generator's data
#
# scikit-learn ships 1797 handwritten digits of 8×8 pixels, grey levels
# 0–16, which `fm.load_digits` scales to $[-1, 1]$ and shapes
# $(n, 1, 8, 8)$. It splits every digit class in two halves, deterministically:
#
# - the **generator half** trains the velocity network, and nothing else;
# - the **held-out half** trains the classifier that will judge the generated
#   digits, and is the real reference for the two-sample distance.
#
# The classifier's own accuracy is then measured on the generator half: real
# digits that the classifier never saw, drawn from exactly the distribution
# the generator imitates. So no image is ever judged by a model that trained
# on it, and each half is used in full (about 900 images each; splitting the
# held-out half again into a training and a test part would leave the
# classifier about 450 training images and a noisy test).
# `fm.train_classifier` trains it with the same `fm.train` as every flow of the
# course, on a cross-entropy objective (`fm.CrossEntropyObjective`) instead of
# the CFM one.

# %%
train_set, held_set = fm.load_digits()
print("generator half:", train_set, "\nheld-out half: ", held_set)
first = torch.stack([train_set.of_class(c)[i] for i in range(4) for c in range(10)])
plot_digits(first, title="real digits (generator half), four per class")
plt.show()

clf = fm.train_classifier(held_set, steps=CLF_STEPS, device=DEVICE, seed=SEED)
clf_acc = clf.accuracy(train_set.images, train_set.labels)
print(f"classifier accuracy on {len(train_set)} real digits it never saw: {clf_acc:.2%}")
assert clf_acc >= CLF_MIN

# %% [markdown]
# ## 4. A small convolutional velocity network
#
# `fm.TinyUNet` works at two resolutions, 8×8 with 16 channels and 4×4 with
# 32: a residual block on the way down and one on the way up at each, a skip
# connection between the two 8×8 stages, and in the middle a dense layer that
# sees the whole 4×4 map at once. Time and label enter every block by FiLM:
# a conditioning vector $c = \mathrm{MLP}(\text{embed}(t)) + \text{embed}(y)$
# scales and shifts the normalised features. The label embedding has 11 rows,
# the last one for "no label".
#
# Training is `fm.train` as before, on an objective with `conditional=True` and label dropout,
# plus two habits of image models:
#
# - **EMA weights**: keep $\bar\theta \leftarrow \lambda \bar\theta + (1 - \lambda)\theta$
#   after every step and sample with $\bar\theta$, less noisy than the last
#   step's weights. We set $\lambda = 1 - 5/\text{steps}$; `fm.train` warms the
#   decay up, $\lambda_k = \min(\lambda, (1 + k)/(10 + k))$ at step $k$, so the
#   random initial weights leave the average within the first steps (with a
#   constant 0.999 and only 1000 steps they would keep a share $0.999^{1000}$ = 37%).
# - **mixed precision** on a GPU: the forward pass in bfloat16 under autocast
#   (`amp=True`); off on a CPU, where it does not pay.
#
# The next cell is the slow one of the chapter: a minute or two on a 2-core
# CPU at the default budget (a progress bar shows how far it is, and the cell
# prints how long it took).

# %%
unet = fm.TinyUNet(num_classes=10)
dense = sum(p.numel() for name, p in unet.named_parameters() if name.startswith("bottleneck"))
print(f"TinyUNet: {sum(p.numel() for p in unet.parameters()):,} parameters, {dense:,} of them in the dense "
      "bottleneck: small as convolutional nets go, and mostly one dense layer in the middle")
run = fm.train(unet, fm.CFMObjective(path, train_set, conditional=True, label_dropout=0.1),
               steps=GEN_STEPS, batch_size=GEN_BATCH, lr=2e-3, seed=SEED, device=DEVICE, ema=1 - 5 / GEN_STEPS,
               amp=AMP)
print(f"{GEN_STEPS} steps in {run.seconds:.0f} s on {run.device}: {GEN_STEPS * GEN_BATCH / run.seconds:,.0f} images/s")
plot_loss(run.losses, window=50, title="digits: CFM loss of the TinyUNet")
plt.show()

# %% [markdown]
# ## 5. Guided digits: the asked digit, and real variety
#
# We draw the same number of digits of every class with a light guidance
# weight, $w = 0.25$ (section 6 shows why not more), integrating with 5
# midpoint steps, 10 evaluations of the guided field (raise `SAMPLE_STEPS` to
# see whether more steps would change the two measures), and ask two
# questions.
#
# 1. **Is it the asked digit?** The held-out classifier's verdict.
# 2. **Is it as varied as real digits of that class?** For each digit,
#    the energy distance (chapter 1) between generated and real held-out
#    images in pixel space, against its floor: the same distance between two
#    random halves of the real images, at the same sample size. A perfect
#    generator scores the floor on average; one that draws the same few
#    prototypes scores well above it (`fm.class_energy_distances` averages
#    over random halves, see its docstring).

# %%
def assess(w):
    labels = torch.arange(10).repeat_interleave(PER_CLASS)
    x = fm.guided_sample(unet, labels, w, (1, 8, 8), steps=SAMPLE_STEPS, method="midpoint",
                         generator=torch.Generator().manual_seed(2)).x.clamp(-1, 1).cpu()
    acc = clf.accuracy(x, labels)
    dist, floor = fm.class_energy_distances(x, labels, held_set, repeats=10, generator=torch.Generator().manual_seed(3))
    return x, acc, dist / floor


sweep = {w: assess(w) for w in sorted(set(SWEEP) | {W_DIGITS})}
x_main, acc_main, ratio_main = sweep[W_DIGITS]
print(f"w = {W_DIGITS}: {acc_main:.2%} classified as the asked digit (classifier on real digits: {clf_acc:.2%})")
print("distance / floor per digit:", np.round(ratio_main.numpy(), 2))

# %%
plot_digits(torch.cat([x_main[c * PER_CLASS:c * PER_CLASS + 10] for c in range(10)]),
            title=f"generated digits, w = {W_DIGITS}: one row per asked digit, 0 to 9")
plt.show()

# %% [markdown]
# **Check yourself.** At $w = 0.25$ at least 97% of the generated digits are
# classified as the asked one, and no class collapses: every per-class
# distance is within twice its real-vs-real floor. (Quick mode trains the
# network 150 steps instead of 1000 and the classifier 300 instead of 800, and
# checks looser thresholds: 85% and 3.5 times the floor.)

# %%
print(f"this budget's checks: accuracy {acc_main:.2%} >= {ACC_MIN:.0%}; worst distance / floor "
      f"{ratio_main.max():.2f} <= {RATIO_MAX}")
assert acc_main >= ACC_MIN, acc_main
assert (ratio_main <= RATIO_MAX).all(), ratio_main

# %% [markdown]
# ## 6. The price of guidance
#
# The same two measures over a range of guidance weights. Accuracy rises
# with $w$ and saturates; the distance to real digits grows. On the mixture we
# saw why (section 2: samples pushed away from the other modes and narrowed
# sideways); on digits we have not measured the spread within a class, so read
# that as the likely cause, not a measured one (bolder strokes, clamped to the
# pixel range, could add to it).

# %%
ws = sorted(sweep)
acc = [sweep[w][1] for w in ws]
worst = [sweep[w][2].max().item() for w in ws]
mean = [sweep[w][2].mean().item() for w in ws]
for w, a, hi, mu in zip(ws, acc, worst, mean):
    print(f"w = {w:4}: accuracy {a:.2%}; distance / floor: worst digit {hi:.2f}, mean {mu:.2f}")
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
ax1.plot(ws, acc, "o-")
ax1.axhline(0.97, color="gray", ls=":", label="97%")
ax1.set(title="fidelity: classified as the asked digit", xlabel="guidance weight w", ylabel="accuracy")
ax1.legend()
ax2.plot(ws, worst, "o-", label="worst digit")
ax2.plot(ws, mean, "s--", label="mean over digits")
ax2.axhline(2.0, color="gray", ls=":", label="2 × floor")
ax2.set(title="diversity: distance to real digits / floor", xlabel="guidance weight w", ylabel="ratio")
ax2.legend()
fig.tight_layout()
plt.show()
strong = sweep[max(ws)][0]
plot_digits(torch.cat([x_main[:10], strong[:10]]),
            title=f"ten generated zeros: w = {W_DIGITS} (top), w = {max(ws)} (bottom)")
plt.show()

# %% [markdown]
# What this run measured, in words (the sentence is written from the numbers
# above, so it holds at either budget):

# %%
over = [w for w in ws if sweep[w][2].max() > 2.0]  # weights whose worst digit is beyond twice its floor
if not over:
    crossing = "stays within twice its floor over the whole sweep"
elif over[0] == ws[0]:
    crossing = "is beyond twice its floor already without guidance"
else:
    crossing = f"crosses twice its floor between $w = {ws[ws.index(over[0]) - 1]:g}$ and $w = {over[0]:g}$"
display(Markdown(f"The accuracy climbs from {acc[0]:.1%} at $w = 0$ to {sweep[W_DIGITS][1]:.1%} at "
                 f"$w = {W_DIGITS:g}$ and {acc[-1]:.1%} at $w = {ws[-1]:g}$, while the worst digit's distance "
                 f"{crossing}; at $w = {ws[-1]:g}$ it is {worst[-1]:.1f} times its floor."))
ACC_TEST, RATIO_TEST = 0.97, 2.0  # the default budget's two tests (the dotted lines of the figure)
fails = ([f"accuracy {acc_main:.1%} < {ACC_TEST:.0%}"] if acc_main < ACC_TEST else []) + \
        ([f"worst distance / floor {ratio_main.max():.2f} > {RATIO_TEST:g}"] if ratio_main.max() > RATIO_TEST else [])
passing = [f"{w:g}" for w, a, hi in zip(ws, acc, worst) if a >= ACC_TEST and hi <= RATIO_TEST]
display(Markdown(f"At $w = {W_DIGITS:g}$ this run "
                 + ("passes both tests" if not fails else "fails: " + " and ".join(fails))
                 + f" (accuracy ≥ {ACC_TEST:.0%}, worst distance ≤ {RATIO_TEST:g} × floor); weights of the sweep "
                 + f"that pass both: {', '.join(passing) if passing else 'none'}."))

# %% [markdown]
# The two rows of zeros start from the same noise: with strong
# guidance the strokes get bolder and the zeros more alike, each a "very good
# zero", together a poor sample of zeros. Where to sit on this curve depends
# on what the samples are for; the line printed above says whether, in this
# run, the light touch $w = 0.25$ passes both of the default budget's tests.
#
# **Check yourself.** Strong guidance buys fidelity and costs diversity: at
# the largest $w$ the accuracy is at least that without guidance, and the mean
# distance ratio at least 1.5 times as large.

# %%
assert sweep[max(ws)][1] >= sweep[0.0][1]
assert sweep[max(ws)][2].mean() > 1.5 * sweep[0.0][2].mean()

# %% [markdown]
# **Explorer.** The whole sweep on one slider: for each $w$ the first eight
# generated digits of every class, one row per asked digit, with that $w$'s
# accuracy and worst-digit distance ratio (the numbers of the table above) in
# the title. The samples are those the sweep drew and measured, not new ones,
# and every $w$ started from the same noise, so one place in the grid is one
# starting point followed across $w$. The line above the frames is written
# from the same numbers: how each measure moves from the smallest to the
# largest $w$, and whether it moves the same way at every step.

# %%
guidance_explorer(ws, [sweep[w][0] for w in ws], torch.arange(10).repeat_interleave(PER_CLASS),
                  accuracies=acc, worst_ratios=worst, start=W_DIGITS)

# %% [markdown]
# ## Summary
#
# - A conditional flow is trained with the same CFM loss; the label is one
#   more input, and the learned field is $u_t(x \mid y)$.
# - Label dropout teaches the same network the unconditional field; then
#   classifier-free guidance $u_w = (1 + w) u(x, t, y) - w u(x, t, \varnothing)$
#   adds $w\, b_t \nabla \log p_t(y \mid x)$ to the velocity (the velocity is
#   affine in the score), as classifier guidance does with a trained noisy
#   classifier, at the cost of diversity.
# - The guided samples do not follow $p_1(x \mid y)\, p_1(y \mid x)^w$: for the
#   mixture that is nearly $\mathcal N(m_k, I)$, while the samples sit almost two
#   standard deviations outside it; the push comes from the noisy classifier
#   at intermediate times, when the modes still overlap.
# - Judge conditional samples twice: with a classifier that never saw the
#   generator's data (fidelity) and with a per-class two-sample distance
#   against its real-vs-real floor (diversity).
# - The same code trains a small convolutional U-Net on a GPU with EMA
#   weights and bfloat16 autocast; `benchmarks/digits_throughput.py` measures
#   its images per second.
#
# **Exercises:** [ex06_conditional_generation.ipynb](../exercises/ex06_conditional_generation.ipynb),
# graded tasks on this chapter, each followed by a check that gives a hint.
#
# Next, chapter 7: diffusion models as a special case of flow matching.

# %%
print(fm.config.run_time(T_START))

# %% [markdown]
# ## Further reading
#
# The papers this chapter follows, and what to read each one for. Full entries are on the
# [references page](../book/references.md) (from `book/references.bib`).
#
# - [Lipman2024] Lipman et al. 2024, *Flow Matching Guide and Code* (arXiv 2412.06264): conditioning a flow
#   model and guidance, in flow-matching notation.
# - [Dhariwal2021] Dhariwal and Nichol 2021, *Diffusion Models Beat GANs on Image Synthesis*
#   (arXiv 2105.05233): classifier guidance, a noisy classifier's gradient added to the score.
# - [HoSalimans2022] Ho and Salimans 2022, *Classifier-Free Diffusion Guidance* (arXiv 2207.12598): one
#   network trained with and without the label, and the guided combination.
# - [Chidambaram2024] Chidambaram et al. 2024, *What Does Guidance Do?* (arXiv 2409.13074): a proof that
#   guidance does not sample the tilted target, worked out on Gaussian mixtures like this chapter's.
# - [Bradley2024] Bradley and Nakkiran 2024, *Classifier-Free Guidance is a Predictor-Corrector*
#   (arXiv 2408.09000): what guidance does sample, through the noisy classifier at intermediate times.
# - [Machado2009] Machado et al. 2009, *A Physiologically-based Model for Simulation of Color Vision
#   Deficiency*: the model behind the palette checks for the ring's mode colours.
