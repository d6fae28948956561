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
# # Chapter 8 — Discrete flow matching
#
# Part II begins. Text, pixel intensities, amino acids: much data is made of
# tokens, and a token cannot move a little. Flow matching still works: the
# velocity becomes a *rate* of jumping, the probability path mixes a simple
# source with the data token by token, and the network learns, for each token,
# which data value it is heading to. On a small state space we can compute
# everything exactly — the posterior the network should learn, the law of the
# sampler, the model's likelihood — so every claim here is checked against an
# exact reference.
#
# **What you will learn**
# - continuous-time Markov chains (CTMCs): rates, the Kolmogorov forward
#   equation, and the Euler jump $1 - e^{-h\lambda}$;
# - the mixture path $p_t(x^i \mid x_0, x_1) = (1 - \kappa_t)\,\delta_{x_0^i} + \kappa_t\,\delta_{x_1^i}$
#   with a **mask** or a **uniform** source;
# - the posterior parameterization and the velocity
#   $u_t(y \mid x_t) = \frac{\dot\kappa_t}{1 - \kappa_t}\,[p_{1|t}(y \mid x_t) - \delta_{x_t}(y)]$,
#   derived token by token (and why two tokens never jump at the same instant);
# - the cross-entropy and generalized-KL losses; the negative ELBO, derived from
#   the KL between laws of paths, in bits with its standard error, and the
#   model's **exact** negative log-likelihood that it bounds;
# - three data sets: a 32×32 checkerboard (9 bits exactly), scikit-learn's
#   digits as 64 tokens of 17 grey levels, and dates "YYYY-MM-DD" whose
#   validity a program can check.
#
# **Prerequisites:** chapters 1–4 (paths, sampling, likelihood); chapter 6 for the digits.
#
# **Run time:** a few minutes on a 2-core laptop CPU at the default budget
# (several small trainings), under a minute in quick mode (`FMLEARN_QUICK=1`);
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
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import scipy.linalg
import torch
from IPython.display import Markdown, display

from fmlearn import discrete as D
from fmlearn.discrete import baselines, data
from fmlearn.digits import plot_digits
from fmlearn.widgets import token_explorer

T_START = time.perf_counter()
SEED = 0
fm.seed_everything(SEED)
gen = torch.Generator().manual_seed(SEED)
print(fm.describe())

CB_STEPS = fm.budget(default=3000, quick=600)          # checkerboard, mask source
CB_UNIFORM_STEPS = fm.budget(default=4000, quick=800)  # checkerboard, uniform source
ODE_STEPS = fm.budget(default=120, quick=40)           # RK4 steps of the forward equation
ORACLE_SAMPLES = fm.budget(default=100_000, quick=10_000)
N_SAMPLES = 5000
ELBO_REPEATS = fm.budget(default=32, quick=8)
# thresholds of this chapter's checks (quick mode trains several times less)
ELBO_MAX, EXACT_MAX = fm.budget(default=(9.03, 9.02), quick=(9.12, 9.10))
SUPPORT_MIN = fm.budget(default=0.98, quick=0.95)
UNIFORM_SUPPORT_MIN, UNIFORM_EXACT_TOL = fm.budget(default=(0.97, 0.15), quick=(0.90, 0.4))
TV_MAX = fm.budget(default=0.04, quick=0.12)             # the floor of true samples: about 0.03 / 0.09

# %% [markdown]
# ## 1. From a velocity to a rate
#
# A token $x \in \{0, \dots, S - 1\}$ cannot move by $h\,u$. What it can do is
# jump. A **continuous-time Markov chain** is described by rates
# $u_t(y \mid x) \ge 0$ for $y \ne x$: in a short time $h$ it jumps from $x$ to $y$
# with probability $h\,u_t(y \mid x) + o(h)$. Put $u_t(x \mid x) = -\sum_{y \ne x} u_t(y \mid x)$,
# so each row sums to 0, and the law $p_t$ of the chain obeys the
# **Kolmogorov forward equation**, the discrete continuity equation:
#
# $$\frac{d}{dt} p_t(y) = \sum_x p_t(x)\, u_t(y \mid x).$$
#
# The rates play the velocity's role, so the solver core of Part I runs them
# unchanged: `fm.odeint` computes the increment $h\,u$ and hands it to the
# token space, whose step jumps. Our step leaves $x$ with probability
# $1 - e^{-h\lambda(x)}$, $\lambda(x) = \sum_{y\ne x} u_t(y\mid x)$ the total
# rate, and lands on $y$ in proportion to $u_t(y \mid x)$: for small $h$ this is
# $\delta_x + h\,u$, and unlike $\delta_x + h\,u$ it stays a probability for any
# step, however large the rates. With constant rates $Q$ (a matrix, row $x$ holding
# $u(\cdot \mid x)$) the forward equation reads $p_t' = p_t Q$ for the row vector $p_t$,
# whose solution is $p_t = p_0\, e^{tQ}$: started at $x$, the law at time 1 is row $x$ of
# $\exp(Q)$. A check with 20,000 chains of 3 states:

# %%
Q = torch.tensor([[-1.0, 0.7, 0.3], [0.4, -0.9, 0.5], [0.2, 1.3, -1.5]], dtype=torch.float64)
x0 = torch.zeros(20_000, dtype=torch.long)
chains = fm.odeint(lambda x, t: Q[x], x0, steps=200, space=D.Categorical(3, generator=gen)).x
freq = torch.bincount(chains, minlength=3).double() / len(chains)
exact_row = torch.from_numpy(scipy.linalg.expm(Q.numpy())[0])
se = (exact_row * (1 - exact_row) / len(chains)).sqrt()
print("simulated:", np.round(freq.numpy(), 4), " expm(Q)[0]:", np.round(exact_row.numpy(), 4))
assert ((freq - exact_row).abs() < 4 * se + 0.005).all()

# %% [markdown]
# ## 2. The mixture path and its two sources
#
# A sequence has $L$ tokens of $V$ values. Given a source sequence $x_0$ and a
# data sequence $x_1$, the **mixture path** moves each token independently:
#
# $$p_t(x^i \mid x_0, x_1) = (1 - \kappa_t)\,\delta_{x_0^i}(x^i) + \kappa_t\,\delta_{x_1^i}(x^i),$$
#
# so $x_t^i = x_1^i$ with probability $\kappa_t$ and $x_0^i$ otherwise, with
# $\kappa$ one of the course's kappa schedules ($\kappa_0 = 0$, $\kappa_1 = 1$;
# here $\kappa_t = t$). Two sources:
#
# - **mask**: $x_0^i = $ `[M]`, an extra state ($S = V + 1$). A token waits as a
#   mask and jumps once, straight to its data value;
# - **uniform**: $x_0^i$ uniform over the $V$ values ($S = V$). A token starts as
#   noise and jumps to its data value.
#
# The package's `D.MixturePath` samples it; for one token whose data value is
# drawn from $p_1$, the law at time $t$ is $(1 - \kappa_t)\,p_0 + \kappa_t\,p_1$ in
# closed form. A check on 4 values:

# %%
p1 = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
for source in ("mask", "uniform"):
    path = D.MixturePath(4, source)
    x1 = torch.multinomial(p1, 200_000, replacement=True, generator=gen)[:, None]
    xt = path.sample_given(x1, 0.3, generator=gen)
    freq = torch.bincount(xt[:, 0], minlength=path.num_states).double() / len(xt)
    closed = path.token_marginal(p1, 0.3)
    print(f"{source:7s} t = 0.3: simulated {np.round(freq.numpy(), 3)}, closed form {np.round(closed.numpy(), 3)}")
    assert (freq - closed).abs().max() < 0.005

# %% [markdown]
# ## 3. The velocity from the posterior
#
# **The conditional velocity.** For one token with a fixed $x_1$, the rate
# $u_t(y \mid x, x_1) = \frac{\dot\kappa_t}{1 - \kappa_t}\,[\delta_{x_1}(y) - \delta_x(y)]$
# generates the conditional path.
#
# <details><summary>Derivation (click)</summary>
#
# A token still at its source value jumps to $x_1$ at rate
# $r_t = \dot\kappa_t / (1 - \kappa_t)$ and never leaves $x_1$. So the mass not yet at
# $x_1$, $1 - \kappa_t$, decays as $\frac{d}{dt}(1 - \kappa_t) = -r_t\,(1 - \kappa_t)$, which
# is $-\dot\kappa_t$: exactly the conditional path's. The same in one line, for
# either source, with the path given $x_1$ alone,
# $p_t(\cdot \mid x_1) = (1 - \kappa_t)\,p_0 + \kappa_t\,\delta_{x_1}$: the forward equation's
# right side is $\sum_x p_t(x \mid x_1)\, r_t[\delta_{x_1}(y) - \delta_x(y)] = r_t[\delta_{x_1}(y) - p_t(y \mid x_1)]
# = \dot\kappa_t\,[\delta_{x_1}(y) - p_0(y)] = \partial_t p_t(y \mid x_1)$.
# </details>
#
# **From one token to a sequence.** The marginal velocity used below is
#
# $$u_t(y \mid x_t)^i = \frac{\dot\kappa_t}{1-\kappa_t}\,\big[p_{1|t}(y \mid x_t)^i - \delta_{x_t^i}(y)\big],$$
#
# the rate at which token $i$ jumps to the value $y$, with $p_{1|t}(\cdot \mid x_t)^i$
# the **posterior** of token $i$'s data value given the whole current sequence.
# Three steps give it.
#
# 1. *The joint rate is a sum of single-token rates.* Given $x_1$ the tokens are
#    independent chains, token $i$ with rates $u^i_t(\cdot \mid x^i, x_1^i)$ and total
#    rate $\lambda^i$. In a time $h$ token $i$ jumps with probability $h\lambda^i + o(h)$,
#    independently of the others, so two or more tokens jump with probability at
#    most $\sum_{i<j} h\lambda^i\, h\lambda^j = O(h^2)$. Divided by $h$, that vanishes:
#    the joint chain's rate to a sequence $y$ that differs from $x$ in two or more
#    tokens is 0, and its rate to a $y$ that differs only in token $i$ is token $i$'s:
#    $u_t(y \mid x, x_1) = \sum_i \delta_{x^{\bar i}}(y^{\bar i})\, u^i_t(y^i \mid x^i, x_1^i)$, where
#    $x^{\bar i}$ is every token but the $i$-th. **This is why two tokens never jump at the same
#    instant**, in the conditional chain and in the marginal one below. (A sampler
#    with a step $h$ does let two tokens jump in one step: that is the $O(h)$
#    error of section 4.)
# 2. *Average over the posterior* (the marginalization trick of chapter 2).
#    Define $p_t(x)\,u_t(y \mid x) = \sum_{x_1} p_1(x_1)\, p_t(x \mid x_1)\, u_t(y \mid x, x_1)$.
#    Each conditional law obeys its forward equation, $\frac{d}{dt}p_t(y \mid x_1)
#    = \sum_x p_t(x \mid x_1)\, u_t(y \mid x, x_1)$; multiply by $p_1(x_1)$ and sum over
#    $x_1$: the left side becomes $\frac{d}{dt}p_t(y)$ and the right side
#    $\sum_x p_t(x)\,u_t(y \mid x)$, so these rates generate the marginal path (the
#    equation is linear in the pair $(p, p\,u)$). Dividing by $p_t(x)$:
#    $u_t(y \mid x) = \mathbb E_{x_1 \sim p_{1|t}(\cdot \mid x)}[u_t(y \mid x, x_1)]
#    = \sum_i \delta_{x^{\bar i}}(y^{\bar i})\, \mathbb E[u^i_t(y^i \mid x^i, x_1^i) \mid x_t = x]$.
#    The sum over tokens survives the average (it is linear), and the $i$-th term
#    depends on $x_1$ only through $x_1^i$, so it needs only the **per-token
#    posterior** $p_{1|t}(v \mid x)^i = \sum_{x_1:\,x_1^i = v} p_{1|t}(x_1 \mid x)$, the joint
#    posterior's marginal on token $i$, still conditioned on the whole sequence $x$.
# 3. *Insert the conditional rate:* $\mathbb E[r_t(\delta_{x_1^i}(y) - \delta_{x^i}(y)) \mid x]
#    = r_t\,[p_{1|t}(y \mid x)^i - \delta_{x^i}(y)]$, the formula above.
#
# So the network need not output a rate for each of the $V^L$ sequences, only
# $L$ posteriors over $V$ values, and the tokens talk to each other only
# through the $x_t$ that every posterior is conditioned on.
#
# The network therefore learns a posterior, a classification problem: a model that
# returns **logits** over the $V$ data values for every token,
# `model(x_t, t) -> (batch, L, V)`. That convention holds everywhere in
# `fmlearn.discrete`; one function, `path.posterior(logits, x)`, turns logits into
# probabilities (with the mask source it also sets an unmasked token's
# posterior to itself: a revealed token already is its data value), and the
# velocity takes probabilities, refusing logits. The rate
# $\dot\kappa_t / (1 - \kappa_t)$ is infinite at $t = 1$ — every remaining token
# must jump — so the schedule evaluates it at $\min(t, 1 - 10^{-6})$.
#
# ### The checkerboard, and its exact posterior
#
# Our first data set: two tokens of 32 values, uniform over the 512 cells of a
# 32×32 checkerboard with 4×4 squares. Its entropy is exactly
# $\log_2 512 = 9$ bits. For a target uniform on a known support
# $s_1, \dots, s_M$ the posterior is exact: $p(x_1 = s_m \mid x_t) \propto \prod_j p_t(x_t^j \mid s_m^j)$,
# with the per-token path $p_t(x^j \mid s^j) = (1 - \kappa_t)\,p_0(x^j) + \kappa_t\,\delta_{s^j}(x^j)$.
# `D.ExactPosterior` computes it and is called like a model: it is this
# chapter's **oracle**. First checks: the rows of the velocity sum to 0, the
# velocity refuses logits, and the forward equation driven by the oracle's
# velocity over all $33^2$ joint states (mask source; $32^2$ for the uniform one) reproduces the closed-form marginal
# path at $t = 0.5$.

# %%
V = 32
support = data.checkerboard(V, block=4)
on_support = torch.zeros(V * V, dtype=torch.bool)
on_support[D.state_index(support, V)] = True
print(f"{len(support)} cells: entropy {math.log2(len(support)):.3f} bits")
mask_path, uniform_path = D.MixturePath(V, "mask"), D.MixturePath(V, "uniform")
oracle = {"mask": D.ExactPosterior(support, mask_path), "uniform": D.ExactPosterior(support, uniform_path)}

xt = mask_path.sample_given(support[:6], 0.4, generator=gen)
u = mask_path.velocity(mask_path.posterior(oracle["mask"](xt, 0.4), xt), xt, 0.4)
print("largest |row sum| of the velocity:", float(u.sum(-1).abs().max()))
assert float(u.sum(-1).abs().max()) < 1e-5
try:
    mask_path.velocity(oracle["mask"](xt, 0.4), xt, 0.4)  # logits where probabilities are expected
except ValueError as err:
    print("refused:", str(err)[:110], "...")

for source, path in (("mask", mask_path), ("uniform", uniform_path)):
    field = D.posterior_field(oracle[source], path)
    states = D.all_states(path.num_states, 2)
    law = fm.odeint(lambda p, t: p @ D.generator_matrix(field(states, t).double()), D.source_law(path, 2),
                    method="rk4", times=torch.linspace(0, 0.5, 11)).x
    err = float((law - D.marginal_law(path, support, 0.5)).abs().max())
    print(f"{source:7s}: forward equation vs closed-form p_0.5, max difference {err:.1e}")
    assert err < 1e-5

# %% [markdown]
# ## 4. Sampling with the exact posterior: the error is the sampler's
#
# The discrete Euler sampler is `fm.odeint` with the model's velocity and the
# token space: `D.sample(model, path, x0, steps=n)`. Its last step starts at
# $t = 1 - 1/n$, where the rate is finite, so a few masks survive it; at $t = 1$
# the rate is infinite, and the sampler ends with that jump (each remaining mask
# draws from the posterior at $t = 1$).
#
# With the oracle, the only error left is the sampler's: within one step every
# token jumps independently, so two masks that jump in the same step draw
# their values from their *separate* posteriors — on the checkerboard, each
# uniform over 32 values, a pair that lands off the support half the time.
# Two tokens jump in the same step with probability about $h = 1/n$, so the
# mass off the support should fall like $1/n$. `D.euler_law` pushes the
# whole distribution over the $33^2$ (mask) or $32^2$ (uniform) joint states through the sampler's own
# steps (the same `odeint`, with a space whose step is the transition matrix),
# so these numbers are exact, without sampling noise:

# %%
STEP_COUNTS = fm.budget(default=(4, 8, 16, 32, 64), quick=(4, 8, 32))
off = {src: [1 - float(D.euler_law(oracle[src], p, 2, steps=n)[on_support].sum()) for n in STEP_COUNTS]
       for src, p in (("mask", mask_path), ("uniform", uniform_path))}
slope = {src: np.polyfit(np.log(STEP_COUNTS), np.log(v), 1)[0] for src, v in off.items()}
for src in off:
    print(f"{src:7s} off-support mass at {STEP_COUNTS} steps: {np.round(off[src], 4)}; log-log slope {slope[src]:.2f}")
assert all(-1.15 < s < -0.85 for s in slope.values()) and off["mask"][-1] < 0.6 / STEP_COUNTS[-1]

fig, ax = plt.subplots(figsize=(6, 3.8))
for src, v in off.items():
    ax.loglog(STEP_COUNTS, v, "o-", label=f"{src} source (slope {slope[src]:.2f})")
ax.loglog(STEP_COUNTS, [0.5 / n for n in STEP_COUNTS], "k--", label="1 / (2 steps)")
ax.set(title="Exact-posterior sampler: mass off the checkerboard", xlabel="Euler steps", ylabel="mass off the support")
ax.set_xticks(list(STEP_COUNTS), [str(n) for n in STEP_COUNTS], minor=False)
ax.xaxis.set_minor_formatter(plt.NullFormatter())
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Both lines are parallel to the dashed $1/(2n)$ line: the sampler is first order,
# like Euler in $\mathbb R^d$. (For the mask source the error is close to
# $1/(2n)$, the estimate above.) Now draw samples from the oracle sampler at 64
# steps and compare their histogram with the truth, in total variation; the
# floor is the total variation of as many independent draws from the truth itself.

# %%
fast_oracle = D.tabulated(oracle["mask"], mask_path.num_states, 2)  # one evaluation per joint state per step
x_or = D.sample(fast_oracle, mask_path, mask_path.sample_source((ORACLE_SAMPLES, 2)), steps=64, generator=gen).x


def tv_to_truth(x):
    hist = torch.bincount(D.state_index(x, V), minlength=V * V).double() / len(x)
    return 0.5 * float((hist - on_support.double() / len(support)).abs().sum())


tv = tv_to_truth(x_or)
tv_floor = tv_to_truth(support[torch.randint(len(support), (ORACLE_SAMPLES,), generator=gen)])
print(f"{ORACLE_SAMPLES:,} oracle samples at 64 steps: TV to the truth {tv:.4f} (floor of true samples {tv_floor:.4f}; "
      f"threshold {TV_MAX})")
assert tv <= TV_MAX

# %% [markdown]
# ### A corrector
#
# Noise can be added without changing the marginals: with strength $\beta$, add
# $\beta$ times the forward rates plus re-masking of each revealed token at
# rate $\beta\,\dot\kappa_t/\kappa_t$. On one token of the conditional path the
# two extra flows balance — $\beta\dot\kappa_t$ of mass unmasked per unit time,
# and $\beta\dot\kappa_t$ re-masked — so every $p_t$ is unchanged, while the
# sampler may now revise a token it revealed (`D.sample(..., corrector=beta)`).
# The forward equation confirms the marginals; the sampler's exact law shows
# what the extra jumps cost at a fixed number of steps when, as here, the
# posterior is exact and there is nothing to revise.

# %%
BETAS = (0.0, 0.5, 2.0)
field_c = D.posterior_field(oracle["mask"], mask_path, corrector=2.0)
states = D.all_states(mask_path.num_states, 2)
law = fm.odeint(lambda p, t: p @ D.generator_matrix(field_c(states, t).double()), D.source_law(mask_path, 2),
                method="rk4", times=torch.linspace(0, 0.5, 21)).x
err_c = float((law - D.marginal_law(mask_path, support, 0.5)).abs().max())
off_c = {b: 1 - float(D.euler_law(oracle["mask"], mask_path, 2, steps=32, corrector=b)[on_support].sum())
         for b in BETAS}
print(f"corrector beta = 2: forward equation vs closed-form p_0.5, max difference {err_c:.1e}")
print("off-support mass at 32 steps:", {b: round(v, 4) for b, v in off_c.items()})
assert err_c < 1e-4 and off_c[2.0] > off_c[0.0]

# %% [markdown]
# The jump process itself: the first token of a few sequences over time, for
# both sources. Look at how they move: a masked token waits and jumps once, to
# its final value; a uniform-source token starts on a random value and may jump
# more than once, since the posterior it follows changes as the other token
# jumps.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True)
for ax, (src, path) in zip(axes, (("mask", mask_path), ("uniform", uniform_path))):
    sol = D.sample(oracle[src], path, path.sample_source((6, 2), gen), steps=64, generator=gen, return_trajectory=True)
    for k in range(6):
        ax.step(sol.times, sol.trajectory[:, k, 0], where="post", lw=1.5)
    ax.set(title=f"{src} source", xlabel="t", ylabel="value of token 1")
axes[0].axhline(V, color="grey", lw=0.5)
axes[0].text(0.01, V - 2.5, "mask", fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 5. Training: cross-entropy, and the ELBO
#
# The posterior is learned by classification. The **cross-entropy** loss
#
# $$\mathcal L_{\rm CE} = \mathbb E_{t, x_1, x_t}\Big[-\sum_i \log p^\theta_{1|t}(x_1^i \mid x_t)\Big]$$
#
# is minimised by the true posterior: for each $(x_t, t)$ and token $i$, the expected
# term is $\mathbb E_{x_1 \sim p_{1|t}}[-\log q(x_1^i)] = H(p^i) + \mathrm{KL}(p^i \,\|\, q)$, with
# $p^i = p_{1|t}(\cdot \mid x_t)^i$ and $q = p^\theta_{1|t}(\cdot \mid x_t)^i$, and the KL is $\ge 0$
# with equality only at $q = p^i$ (Gibbs' inequality). It is an objective like Part I's CFM
# regression, so `fm.train` trains it: `D.DiscreteObjective(path, data, loss="ce")`
# draws $(x_t, x_1, t)$ and returns the loss. The model is `D.TokenMLP`: an
# embedding per token, sinusoidal features of $t$, an MLP, logits per token.
#
# How good is the model as a density? Its likelihood $p^\theta_1(x_1)$ sums over
# every trajectory of its chain, which we cannot do on large state spaces, but
# it has a computable bound. Two pieces.
#
# **The generalized KL.** For two vectors of non-negative *rates* $a, b$ (they
# need not sum to 1),
#
# $$D(a, b) = \sum_y \Big[a_y \log\frac{a_y}{b_y} - a_y + b_y\Big] \;\ge\; 0,$$
#
# with equality only at $a = b$ (each term is $b_y\,g(a_y / b_y)$ with
# $g(s) = s\log s - s + 1 \ge 0$, zero only at $s = 1$). On probability vectors the
# last two terms cancel and it is the KL; on rates they are needed, since the
# plain $\sum a\log(a/b)$ is negative whenever $b$ is a larger multiple of $a$.
# (It is the Bregman divergence of $\Phi(a) = \sum a \log a$: chapter 10.)
#
# **The bound** (a sketch). Let $\mathbb P$ be the law of the conditional chain's
# trajectories given $x_1$ (all of them end at $x_1$) and $\mathbb P^\theta$ the law of the
# model chain's, both started from the source. Since
# $p^\theta_1(x_1) = \sum_{\omega \text{ ends at } x_1} \mathbb P^\theta(\omega)$, Jensen's inequality gives
# $\log p^\theta_1(x_1) \ge \mathbb E_{\omega \sim \mathbb P}[\log \mathbb P^\theta(\omega) - \log \mathbb P(\omega)]
# = -\mathrm{KL}(\mathbb P \,\|\, \mathbb P^\theta)$, so $-\log p^\theta_1(x_1) \le \mathrm{KL}(\mathbb P\,\|\,\mathbb P^\theta)$: the
# KL between laws of whole paths bounds the negative log-likelihood. The gap is exact:
# on paths ending at $x_1$, $\mathbb P^\theta(\omega) = p^\theta_1(x_1)\,\mathbb P^\theta(\omega \mid \text{ends at } x_1)$, so
# $\mathrm{KL}(\mathbb P\,\|\,\mathbb P^\theta) = -\log p^\theta_1(x_1) + \mathrm{KL}(\mathbb P\,\|\,\mathbb P^\theta(\cdot \mid \text{ends at } x_1))$.
# That KL is
# a sum over small steps $h$. From the state $x$, $\mathbb P$ jumps to $y$ with
# probability $h\,a_y$ and $\mathbb P^\theta$ with $h\,b_y$ ($a$, $b$ the two rate vectors); they
# stay with probabilities $1 - h\sum a$ and $1 - h\sum b$. The expected log-ratio of
# one step is $\sum_y h a_y\log(a_y/b_y) + (1 - h\sum a)\log\frac{1 - h\sum a}{1 - h\sum b} = h\,D(a, b) + O(h^2)$
# (expand the logarithm: the second term is $h\sum(b - a) + O(h^2)$), and summing the steps,
# $\mathrm{KL}(\mathbb P\,\|\,\mathbb P^\theta) = \int_0^1 \mathbb E_{x_t \sim P}\, D\big(u_t(\cdot \mid x_t, x_1),\, u^\theta_t(\cdot \mid x_t)\big)\,dt$.
# With the per-token rates of section 3, $a = r_t\,\delta_{x_1^i}$ and
# $b = r_t\,p^\theta(\cdot \mid x_t)^i$ off the current value $x_t^i$, the generalized KL
# of token $i$ is $r_t[-\log p^\theta(x_1^i \mid x_t) - 1 + 1 - p^\theta(x_t^i \mid x_t)]$ if
# $x_t^i \ne x_1^i$ and $r_t[1 - p^\theta(x_t^i \mid x_t)]$ (only the $+b$ terms) if not:
#
# $$-\log p^\theta_1(x_1) \le \int_0^1 \mathbb E_{x_t}\sum_i \frac{\dot\kappa_t}{1-\kappa_t}
#   \begin{cases} -\log p^\theta(x_1^i \mid x_t) - p^\theta(x_t^i \mid x_t) & x_t^i \ne x_1^i \\
#   1 - p^\theta(x_t^i \mid x_t) & x_t^i = x_1^i\end{cases}\; dt .$$
#
# The right side, averaged over the data, is what the printouts call the
# **negative ELBO** (the ELBO itself, a lower bound on $\log p$, is its negative):
# an upper bound on the negative log-likelihood (NLL), in bits. Its integrand is
# the generalized KL, which can also be trained directly (`loss="gkl"`, the
# other objective). The printouts say "negative ELBO"; the prose, like the
# papers, shortens it to "the ELBO" where no sign is at stake.
#
# For the mask source it is $\int \frac{\dot\kappa_t}{1-\kappa_t}\,\mathbb E\,[\text{cross-entropy of the masked tokens}]\,dt$.
# `D.elbo` estimates it in bits with stratified times and reports a standard
# error from repeated passes. The weight $1/(1 - t)$ makes the plain Monte
# Carlo estimate very noisy: a token is masked with probability $1 - t$ and
# then weighted by $1/(1 - t)$, so the estimate's second moment grows like
# $\int dt/(1 - t)$, finite here only because the schedule caps the rate near
# $t = 1$. Its rare large terms are mostly missed, so it tends to read low,
# and its own standard error understates its spread. For the mask source an
# exact rewrite removes the weight. With a mask source only masked tokens
# count (the model never predicts the mask, and a revealed token's posterior
# is 1 on itself, so both other terms vanish), and a token is masked with
# probability $1 - \kappa_t$, so
# $\mathbb E[\frac{\dot\kappa_t}{1-\kappa_t} 1_{\text{masked}}\,f] = \dot\kappa_t\,\mathbb E[f \mid \text{masked}]$
# — mask each position in turn and drop the weight (`estimator="masked"`).
# With the oracle, the bound must equal the entropy, 9 bits. By the gap above it is
# tight when $\mathbb P = \mathbb P^\theta(\cdot \mid \text{ends at } x_1)$. With a mask source a
# trajectory is the reveal times and the values revealed. Given $x_1$, every masked
# token is revealed at rate $r_t$ whatever $x_1$ is, and to $x_1^i$: $\mathbb P(\omega) = T(\text{times})$,
# the same law of reveal times for every $x_1$. The exact marginal chain reveals at
# the same rates and draws each revealed value from the posterior given what is
# revealed so far. So $\mathbb P^\theta(\omega) = T(\text{times})\,p_1(x_1)$ by the chain rule,
# whatever the reveal order, and conditioning on the end point leaves $T(\text{times})$:
# the gap is 0 and the bound is $-\log p_1(x_1)$, whose average is the entropy.

# %%
e_masked = D.elbo(oracle["mask"], mask_path, support, repeats=ELBO_REPEATS, generator=gen)
e_plain = D.elbo(oracle["mask"], mask_path, support, repeats=ELBO_REPEATS, estimator="plain", generator=gen)
print(f"oracle, mask source: negative ELBO {e_masked} (masked estimator), {e_plain} (plain); entropy 9")
assert abs(e_masked.bits - 9) < 3 * e_masked.se + 0.005 and e_masked.se < e_plain.se

# %%
display(Markdown(
    f"The rewrite is {e_masked.bits - 9:+.4f} bits from 9, {abs(e_masked.bits - 9) / e_masked.se:.1f} of its standard "
    f"errors; the plain estimate is {e_plain.bits - 9:+.3f} bits off, {abs(e_plain.bits - 9) / e_plain.se:.1f} of its "
    f"own, which are {e_plain.se / e_masked.se:.0f} times larger (and, as said above, untrustworthy: the plain "
    "estimate may sit below the entropy it bounds). The rewrite spends L = 2 model evaluations per sequence "
    "where the plain one spends 1, a price its far smaller error repays many times over."))

# %% [markdown]
# We train with the cross-entropy: it has the same minimiser as the
# generalized KL (the true posterior) without the weight that grows like
# $1/(1-t)$, so its per-sample values, and with them its gradients, are far
# less noisy (measured after training). Now train the mask model, in chunks
# so that we can measure its ELBO along the way (the checkpoint makes the chunks one run:
# Adam's state and the data stream carry over).

# %%
fm.seed_everything(SEED)
model_mask = D.TokenMLP(mask_path.num_states, V, 2, embed=32, hidden=128, depth=3)
objective = D.DiscreteObjective(mask_path, D.TokenData(support), loss="ce")
curve, seconds = [], 0.0
with tempfile.TemporaryDirectory() as tmp:
    for steps in np.linspace(0, CB_STEPS, fm.budget(default=7, quick=4))[1:].astype(int):
        run = fm.train(model_mask, objective, steps=int(steps), batch_size=512, lr=2e-3, seed=SEED,
                       cosine_decay=False, checkpoint=Path(tmp) / "cb.pt")
        seconds += run.seconds
        curve.append((seconds, D.elbo(model_mask, mask_path, support, repeats=4, generator=gen)))
print(f"trained {CB_STEPS} steps in {seconds:.0f} s")
with torch.no_grad():
    device = next(model_mask.parameters()).device  # fm.train put the model on the GPU, if there is one
    x_b, x1_b, t_b = (v.to(device) for v in objective.draw(4096, gen, "cpu"))
    logits_b = model_mask(x_b, t_b)
    spread = {name: float(D.token_losses(mask_path, logits_b, x_b, x1_b, t_b, name).sum(1).std())
              for name in ("ce", "gkl")}
print(f"per-sequence loss on one batch: std {spread['ce']:.2f} nats (cross-entropy), "
      f"{spread['gkl']:.2f} (generalized KL)")
assert spread["gkl"] > 2 * spread["ce"]
fig, ax = plt.subplots(figsize=(6, 3.4))
ax.errorbar([s for s, _ in curve], [e.bits for _, e in curve], [2 * e.se for _, e in curve], fmt="o-",
            label="negative ELBO (± 2 s.e.)")
ax.axhline(9, color="black", ls="--", label="entropy, 9 bits")
ax.set(title="Checkerboard, mask source: negative ELBO during training", xlabel="training time (s)", ylabel="bits")
ax.legend()
plt.show()

# %% [markdown]
# The ELBO approaches the 9-bit floor and stays above it within its error
# bars, as a bound on the negative log-likelihood of a data set whose entropy
# is 9 bits must.
#
# ### The exact likelihood the ELBO bounds
#
# On $33^2 = 1089$ joint states we need not bound anything: integrate the
# forward equation of the *model's* chain, $\frac{d}{dt} p_t = p_t Q_t$, with
# $Q_t$ built from the model's rates at every joint state, by RK4 through
# `fm.odeint` (`D.model_law`; its grid shrinks towards $t = 1$, where the rates
# grow like $1/(1 - t)$). The mass it puts on each cell is the model's exact
# likelihood.

# %%
def assess(model, path):
    """ELBO, exact NLL (bits) and the share of 5,000 samples (64 steps) on the support."""
    elbo = D.elbo(model, path, support, repeats=ELBO_REPEATS * (1 if path.mask is not None else 4), generator=gen)
    exact = float(D.nll_bits(D.model_law(model, path, 2, ode_steps=ODE_STEPS), support, V).mean())
    x = D.sample(model, path, path.sample_source((N_SAMPLES, 2), gen), steps=64, generator=gen).x.cpu()
    return elbo, exact, float(on_support[D.state_index(x, V)].double().mean()), x


elbo_mask, exact_mask, support_mask, x_mask = assess(model_mask, mask_path)
print(f"mask source: negative ELBO {elbo_mask}, exact {exact_mask:.4f} bits, entropy 9; "
      f"on the support {support_mask:.1%}")
assert elbo_mask.bits <= ELBO_MAX and exact_mask <= EXACT_MAX and support_mask >= SUPPORT_MIN
assert exact_mask >= 9 - 1e-3 and elbo_mask.bits >= exact_mask - 3 * elbo_mask.se

# %% [markdown]
# **Check yourself.** The order must be entropy ≤ exact ≤ ELBO: the exact
# likelihood cannot beat the entropy of the data (that is Gibbs' inequality),
# and the ELBO cannot beat the exact likelihood (up to its standard error).
# The controls below make sure the checks can fail: uniform cells land on the
# support half the time, and an untrained network's ELBO is far above the threshold.

# %%
uniform_cells = torch.randint(V, (N_SAMPLES, 2), generator=gen)
control = float(on_support[D.state_index(uniform_cells, V)].double().mean())
torch.manual_seed(SEED)
untrained = D.TokenMLP(mask_path.num_states, V, 2, embed=32, hidden=128, depth=3)
elbo_untrained = D.elbo(untrained, mask_path, support, repeats=4, generator=gen)
print(f"control: uniform cells on the support {control:.1%} (threshold {SUPPORT_MIN:.0%}); an untrained network's "
      f"negative ELBO {elbo_untrained} (threshold {ELBO_MAX})")
assert control < SUPPORT_MIN and elbo_untrained.bits > ELBO_MAX

# %% [markdown]
# ### The other objective
#
# The generalized KL is the ELBO's own integrand, so training on it minimises
# the bound directly. Two fresh runs of the same network and recipe, one per
# loss, compared by their ELBO:

# %%
CMP_STEPS = fm.budget(default=3000, quick=400)
elbo_by_loss = {}
for loss in ("ce", "gkl"):
    fm.seed_everything(SEED)
    net = D.TokenMLP(mask_path.num_states, V, 2, embed=32, hidden=128, depth=3)
    fm.train(net, D.DiscreteObjective(mask_path, D.TokenData(support), loss=loss), steps=CMP_STEPS, batch_size=512,
             lr=2e-3, seed=SEED)
    elbo_by_loss[loss] = D.elbo(net, mask_path, support, repeats=ELBO_REPEATS, generator=gen)
print(f"{CMP_STEPS} steps: negative ELBO {elbo_by_loss['ce']} trained on cross-entropy, {elbo_by_loss['gkl']} on the "
      f"generalized KL")
assert all(9 - 3 * e.se < e.bits <= ELBO_MAX for e in elbo_by_loss.values())

# %%
diff = elbo_by_loss["gkl"].bits - elbo_by_loss["ce"].bits
diff_se = math.hypot(elbo_by_loss["gkl"].se, elbo_by_loss["ce"].se)
display(Markdown(
    f"Both objectives train the posterior: the two ELBOs differ by {diff:+.4f} ± {diff_se:.4f} bits "
    f"(generalized KL minus cross-entropy). "
    + ("The cross-entropy run is ahead by more than two standard errors: at equal steps, its less noisy "
       "gradients win even on the generalized KL's own measure." if diff > 2 * diff_se else
       "At this budget the difference is within two standard errors.")))

# %% [markdown]
# ## 6. The uniform source, and why its bound is loose
#
# Same data, same network, the uniform source. Its posterior depends on $t$
# (how much of $x_t$ is still noise), so it needs longer training. The mask
# source's does not: $p_t(x_t \mid x_1) = \kappa_t^{\#\text{revealed}}(1 - \kappa_t)^{\#\text{masked}}$ if the
# revealed tokens agree with $x_1$ and 0 if not, so in Bayes' rule the powers of
# $\kappa_t$ cancel: the posterior is $p_1$ restricted to the data that agree with
# what is revealed, the same at every $t$.

# %%
fm.seed_everything(SEED)
model_uniform = D.TokenMLP(uniform_path.num_states, V, 2, embed=32, hidden=128, depth=3)
run_u = fm.train(model_uniform, D.DiscreteObjective(uniform_path, D.TokenData(support)), steps=CB_UNIFORM_STEPS,
                 batch_size=512, lr=2e-3, seed=SEED)
elbo_u, exact_u, support_u, x_uniform = assess(model_uniform, uniform_path)
elbo_u_oracle = D.elbo(oracle["uniform"], uniform_path, support, repeats=4 * ELBO_REPEATS, generator=gen)
print(f"uniform source ({run_u.seconds:.0f} s of training): negative ELBO {elbo_u}, exact {exact_u:.4f} bits; "
      f"on the support {support_u:.1%}")
print(f"uniform source, the oracle's negative ELBO: {elbo_u_oracle}")
assert support_u >= UNIFORM_SUPPORT_MIN and abs(exact_u - 9) <= UNIFORM_EXACT_TOL
assert elbo_u.bits - exact_u > 1.5 and elbo_u_oracle.bits - 9 > 1.5

# %%
display(Markdown(
    f"The model's exact likelihood is {exact_u:.3f} bits, {exact_u - 9:.3f} from the entropy, but its ELBO is "
    f"{elbo_u.bits:.2f} bits, and even the oracle's ELBO is {elbo_u_oracle.bits:.2f}: the gap, "
    f"{elbo_u_oracle.bits - 9:.1f} bits, is not the network's fault."))

# %% [markdown]
# **Why.** The ELBO is a KL divergence between laws of whole *trajectories*:
# the conditional path's (given $x_1$) and the model's chain. Its gap to
# $-\log p^\theta_1(x_1)$ is $\mathrm{KL}(\mathbb P\,\|\,\mathbb P^\theta(\cdot \mid \text{ends at } x_1))$ (section 5):
# how differently the two chains reach the same end point.
# With a mask source, a trajectory is "when each token was revealed", and
# the reveal times are independent of $x_1$: with the exact posterior the two laws
# agree and the bound is tight (section 5; the
# oracle's ELBO there is the entropy, within its standard error). With a
# uniform source, the conditional trajectory of a token
# given $x_1$ sits on a random value and jumps *once*, straight to $x_1^i$;
# the marginal chain (the best any model can be) jumps from noise to a
# plausible value and possibly on to another as the other token changes.
# The two trajectory laws differ even though every marginal $p_t$ agrees, and
# the bound pays their KL (the gap printed above) on top of the likelihood.
# The likelihood itself, computed exactly, is fine.
#
# The sample histograms: the oracle sampler, the mask model, the uniform model.

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
for ax, (name, x) in zip(axes, (("oracle (64 steps)", x_or[:N_SAMPLES]), ("mask model", x_mask),
                                ("uniform model", x_uniform))):
    ax.hist2d(x[:, 0].numpy(), x[:, 1].numpy(), bins=V, range=[[0, V], [0, V]], cmap="Greys")
    share = float(on_support[D.state_index(x, V)].double().mean())
    ax.set(title=f"{name}: {share:.1%} on support", xlabel="token 1", ylabel="token 2", aspect="equal")
plt.tight_layout()
plt.show()

# %% [markdown]
# Look for grey dots in the white squares: those samples are off the support.
# For the exact posterior they come only from two tokens that jumped in the
# same step; for a trained model its own errors add to them (compare each
# model's share on the support, printed above, with the exact posterior's
# sampler error at 64 steps).

# %% [markdown]
# ## 7. Digits as tokens
#
# scikit-learn's 8×8 digits store each pixel as an integer 0..16: 64 tokens
# of 17 grey levels. We train on the first half of the 1,797 images (in the
# order they ship) and measure on the second half, which the model never
# sees. A network suited to images shares its weights across positions:
# `D.TokenConvNet` embeds each token as channels and applies 3×3 convolutions
# with a time-dependent bias (five of them: each output sees the inputs within 5
# pixels in either direction, so the central pixels see the whole image and a
# corner the 6×6 block next to it, 36 of the 64 pixels). Two classical baselines, fitted here on the same training half:
# a categorical per pixel, and a mixture of 10 products of per-pixel
# categoricals fitted by EM (`D.baselines`). All report held-out bits per pixel.
# With 64 tokens the masked estimator would cost 64 evaluations per image, so
# `D.elbo(..., positions=k)` masks $k$ positions drawn at random in each pass and
# scales their sum by $64/k$: an unbiased estimate of the same sum over all positions,
# with a larger standard error, which the printout includes.

# %%
DIGIT_STEPS, DIGIT_BATCH = fm.budget(default=(1200, 128), quick=(300, 64))
DIGIT_ELBO_MAX = fm.budget(default=2.20, quick=2.45)
train_tok, train_lab, held_tok, held_lab = data.digits_tokens()
per_pixel = baselines.PerPosition(17).fit(train_tok)
em = baselines.ProductMixture(17, components=10, iters=100, seed=SEED).fit(train_tok)
bits_pp, bits_em = float(per_pixel.bits(held_tok).mean()) / 64, float(em.bits(held_tok).mean()) / 64
print(f"{len(train_tok)} training and {len(held_tok)} held-out digits")
print(f"held-out bits per pixel: per-pixel categorical {bits_pp:.3f}, EM mixture of 10 products {bits_em:.3f}")

digit_path = D.MixturePath(17, "mask")
fm.seed_everything(SEED)
digit_model = D.TokenConvNet(digit_path.num_states, 17, side=8, embed=16, channels=32, depth=5)
run_d = fm.train(digit_model, D.DiscreteObjective(digit_path, D.TokenData(train_tok)), steps=DIGIT_STEPS,
                 batch_size=DIGIT_BATCH, lr=3e-3, seed=SEED)
elbo_d = D.elbo(digit_model, digit_path, held_tok, repeats=fm.budget(default=8, quick=4),
                positions=fm.budget(default=16, quick=4), generator=gen)
print(f"trained {DIGIT_STEPS} steps in {run_d.seconds:.0f} s; held-out negative ELBO {elbo_d.bits / 64:.3f} ± "
      f"{elbo_d.se / 64:.3f} bits per pixel (threshold {DIGIT_ELBO_MAX})")
assert elbo_d.bits / 64 <= DIGIT_ELBO_MAX and bits_em < bits_pp
if not fm.is_quick():
    assert elbo_d.bits / 64 < bits_em

# %%
beaten = [name for name, b in (("the per-pixel categorical", bits_pp), ("the EM mixture", bits_em))
          if elbo_d.bits / 64 < b]
display(Markdown(
    f"The negative ELBO is an upper bound on the model's held-out negative log-likelihood, so the model is at "
    f"least as good as the {elbo_d.bits / 64:.3f} bits per pixel printed: better than "
    f"{' and '.join(beaten) or 'neither baseline'}"
    f"{' (quick mode trains briefly)' if fm.is_quick() and len(beaten) < 2 else ''}."))

# %% [markdown]
# Do its samples look like digits, all ten of them? A classifier (chapter 6's
# small CNN) trained on the *held-out* half judges the samples.

# %%
CLF_STEPS = fm.budget(default=800, quick=200)
N_DIGITS, DIGIT_SAMPLER_STEPS = fm.budget(default=(1000, 64), quick=(300, 32))
COVER_MIN, TV_DIGITS_MAX = fm.budget(default=(0.03, 0.2), quick=(0.005, 0.5))


def as_images(tokens):
    return tokens.float().reshape(-1, 1, 8, 8) / 8 - 1   # chapter 6's scale, [-1, 1]


classifier = fm.train_classifier(fm.Digits(as_images(held_tok), held_lab), steps=CLF_STEPS, seed=SEED)
print(f"classifier accuracy on the training half (unseen by it): {classifier.accuracy(as_images(train_tok), train_lab):.1%}")
sol_dig = D.sample(digit_model, digit_path, digit_path.sample_source((N_DIGITS, 64), gen), steps=DIGIT_SAMPLER_STEPS,
                   generator=gen, return_trajectory=True)  # the trajectory is replayed below
x_dig = sol_dig.x
share = torch.bincount(classifier.predict(as_images(x_dig)), minlength=10).double() / N_DIGITS
tv_digits = 0.5 * float((share - 0.1).abs().sum())
print("share of each digit among the samples:", np.round(share.numpy(), 3), f"TV to uniform {tv_digits:.3f}")
assert float(share.min()) >= COVER_MIN and tv_digits <= TV_DIGITS_MAX
ones = torch.bincount(classifier.predict(as_images(held_tok[held_lab == 1])), minlength=10).double()
control_tv = 0.5 * float((ones / ones.sum() - 0.1).abs().sum())
print(f"control: real digits of one class only, TV to uniform {control_tv:.2f}")
assert control_tv > TV_DIGITS_MAX and float((ones / ones.sum()).min()) < COVER_MIN

fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
plot_digits(as_images(x_dig[:40]), ncols=10, ax=axes[0], title=f"samples (mask source, {DIGIT_SAMPLER_STEPS} steps)")
plot_digits(as_images(held_tok[:40]), ncols=10, ax=axes[1], title="held-out digits")
plt.show()

# %%
display(Markdown(
    f"Compare the two grids: strokes of the same thickness and grey levels. The rarest digit among the samples "
    f"makes {float(share.min()):.1%} of them and the commonest {float(share.max()):.1%} (a tenth each would be "
    f"perfect; {'the short quick-mode training leaves them uneven' if fm.is_quick() else 'all ten are there'}). "
    f"The samples are rougher than real digits: about {64 / DIGIT_SAMPLER_STEPS:.0f} of the 64 pixels are revealed "
    f"per step ({DIGIT_SAMPLER_STEPS} steps), and pixels revealed in the same step are drawn independently, the "
    "sampler's error of section 4."))

# %% [markdown]
# ### Watching the sampler
#
# The explorer below replays the sampler's run for the first 24 of these
# samples: a slider over the grid times, from $t = 0$, every pixel masked
# (orange), to $t = 1$, the samples above (press play to animate it). Two things
# follow from section 3's velocity, and the cell checks both on the whole run
# first. *When* a pixel is revealed does not depend on the model: a masked
# token leaves the mask at the total rate
# $\frac{\dot\kappa_t}{1-\kappa_t}\sum_{y} p_{1|t}(y \mid x_t) = \frac{\dot\kappa_t}{1-\kappa_t}$,
# since the posterior puts no mass on the mask, so every masked pixel is
# equally likely to go next and the share still masked at time $t$ is about
# $1 - \kappa_t = 1 - t$. The model only chooses the grey level a pixel gets.
# And a revealed pixel's posterior is itself, so its rate is zero: it never
# changes again.

# %%
traj, masked = sol_dig.trajectory, sol_dig.trajectory == digit_path.mask
rejumps = int(((traj[1:] != traj[:-1]) & ~masked[:-1]).sum())  # revealed pixels that changed afterwards
mid = DIGIT_SAMPLER_STEPS // 2
t_mid, share_mid = float(sol_dig.times[mid]), float(masked[mid].double().mean())
print(f"t = {t_mid:.2f}: {share_mid:.1%} of the {N_DIGITS} samples' pixels still masked (1 - t = {1 - t_mid:.1%}); "
      f"revealed pixels that changed afterwards: {rejumps}")
assert rejumps == 0 and abs(share_mid - (1 - t_mid)) < 0.03
token_explorer(traj[:, :24], sol_dig.times, levels=17, side=8, mask=digit_path.mask)

# %% [markdown]
#
# ## 8. Text you can check: dates
#
# Ten characters "YYYY-MM-DD" over the alphabet `0123456789-`, uniform over every
# valid date from 1900-01-01 to 2099-12-31. A program decides whether a sample
# is valid (`datetime.date.fromisoformat`), and the entropy is known exactly.
# The baseline draws each position from its own categorical.

# %%
DATE_STEPS, DATE_BATCH = fm.budget(default=(2500, 512), quick=(400, 256))
DATE_GAP_MAX = fm.budget(default=0.06, quick=0.3)   # bits above the entropy
all_dates = data.dates()
H_DATES = math.log2(len(all_dates))
date_baseline = baselines.PerPosition(11, alpha=1e-3).fit(all_dates)
base_bits = float(date_baseline.bits(all_dates).mean())
base_valid = float(data.valid_dates(date_baseline.sample(N_SAMPLES, gen)).double().mean())
print(f"{len(all_dates):,} dates, entropy {H_DATES:.3f} bits; per-position baseline {base_bits:.2f} bits, "
      f"{base_valid:.1%} of its samples valid")

date_path = D.MixturePath(11, "mask")
fm.seed_everything(SEED)
date_model = D.TokenMLP(date_path.num_states, 11, 10, embed=32, hidden=384, depth=3)
run_dates = fm.train(date_model, D.DiscreteObjective(date_path, D.TokenData(all_dates)), steps=DATE_STEPS,
                     batch_size=DATE_BATCH, lr=2e-3, seed=SEED)
eval_dates = all_dates[torch.randperm(len(all_dates), generator=gen)[:fm.budget(default=10_000, quick=4000)]]
elbo_dates = D.elbo(date_model, date_path, eval_dates, repeats=fm.budget(default=8, quick=4), generator=gen)
print(f"trained {DATE_STEPS} steps in {run_dates.seconds:.0f} s; negative ELBO {elbo_dates} "
      f"({elbo_dates.bits - H_DATES:+.3f} from the entropy; threshold {DATE_GAP_MAX})")
assert -3 * elbo_dates.se < elbo_dates.bits - H_DATES <= DATE_GAP_MAX

# %%
elbo_dates_plain = D.elbo(date_model, date_path, eval_dates, repeats=fm.budget(default=8, quick=4), estimator="plain",
                          generator=gen)
display(Markdown(
    f"The ELBO is {elbo_dates.bits - H_DATES:.3f} bits above the entropy, with a standard error of "
    f"{elbo_dates.se:.4f} bits from the masked estimator. The plain estimator on the same dates and passes gives "
    f"{elbo_dates_plain} ({elbo_dates_plain.bits - H_DATES:+.3f} from the entropy), a standard error "
    f"{elbo_dates_plain.se / elbo_dates.se:.0f} times larger: too coarse to resolve gaps of a few hundredths of a "
    "bit, which is why the rewrite matters. "
    + ("It even reads below the entropy, which no bound can: as section 5 said, the plain estimator misses its "
       "rare large terms and tends to read low." if elbo_dates_plain.bits < H_DATES else
       "(Section 5 warned that it tends to read low: its rare large terms are mostly missed.)")))

# %% [markdown]
# How many samples are real
# dates, and how does that depend on the number of sampler steps? Within a
# step, tokens jump independently, so a coarse sampler can pick a month from
# one date and a day from another: "02-31".

# %%
DATE_STEP_COUNTS = fm.budget(default=(2, 4, 10, 16, 32, 64), quick=(4, 10, 64))
N_DATES = fm.budget(default=N_SAMPLES, quick=600)
VALID_64_MIN, VALID_10_MIN = fm.budget(default=(0.97, 0.90), quick=(0.85, 0.75))
date_oracle = data.DatePosterior(date_path)  # the exact posterior, in closed form for whole years of dates
validity, validity_oracle = {}, {}
x_model = {}
for n in DATE_STEP_COUNTS:
    for table, posterior in ((validity, date_model), (validity_oracle, date_oracle)):
        x = D.sample(posterior, date_path, date_path.sample_source((N_DATES, 10)), steps=n, generator=gen).x
        table[n] = float(data.valid_dates(x).double().mean())
        if posterior is date_model:
            x_model[n] = x
print("valid samples, model:        ", {n: f"{v:.1%}" for n, v in validity.items()})
print("valid samples, exact posterior:", {n: f"{v:.1%}" for n, v in validity_oracle.items()},
      f"(per-position baseline {base_valid:.1%})")
print("a few of the model's samples at 64 steps:", data.decode(x_model[64][:6]))
assert validity[64] >= VALID_64_MIN and validity[10] >= VALID_10_MIN and validity[10] > 2 * base_valid
assert base_valid < VALID_10_MIN  # the control: the baseline fails the check

fig, ax = plt.subplots(figsize=(6, 3.6))
ax.semilogx(list(validity), list(validity.values()), "o-", label="discrete flow (mask source)")
ax.semilogx(list(validity_oracle), list(validity_oracle.values()), "k:", marker="x", label="exact posterior")
ax.set_xticks(list(DATE_STEP_COUNTS), [str(n) for n in DATE_STEP_COUNTS])
ax.xaxis.set_minor_formatter(plt.NullFormatter())
ax.axhline(base_valid, color="grey", ls="--", label="per-position baseline")
ax.set(title="Dates: valid samples against sampler steps", xlabel="Euler steps", ylabel="share valid", ylim=(0, 1.02))
ax.legend()
plt.show()

# %%
gap = max(abs(validity[n] - validity_oracle[n]) for n in DATE_STEP_COUNTS)
display(Markdown(
    f"Validity climbs with the number of steps, far above the baseline's line, and the exact posterior, run "
    f"through the same sampler, climbs the same way ({validity_oracle[10]:.1%} at 10 steps, "
    f"{validity_oracle[64]:.1%} at 64; the model is at most {gap:.1%} from it at any step count, where a share "
    f"from {N_DATES:,} samples has a standard error of at most {0.5 / math.sqrt(N_DATES):.1%}). So the invalid "
    "dates come from the sampler's independent jumps, not from the model: only more steps remove them."
    if gap < 0.03 else
    f"Validity climbs with the number of steps, far above the baseline's line. The exact posterior through the "
    f"same sampler reaches {validity_oracle[10]:.1%} at 10 steps and {validity_oracle[64]:.1%} at 64; the model "
    f"differs from it by up to {gap:.1%}: part of the errors are the sampler's, part the model's."))

# %% [markdown]
# A harder question: does the model know that 29 February exists only in leap
# years? With a mask source we can ask it directly: start from "????-02-29"
# (only the year masked) and let the sampler fill in the year. A model that
# ignored the day would give a leap year about a quarter of the time
# (49 of the 200 years); the truth is always.

# %%
leap_years = sum(1 for y in range(1900, 2100) if y % 4 == 0 and (y % 100 != 0 or y % 400 == 0))
start = data.encode(["0000-02-29"]).repeat(fm.budget(default=2000, quick=300), 1)
start[:, :4] = date_path.mask
feb29 = data.decode(D.sample(date_model, date_path, start, steps=64, generator=gen).x)
leap_share = float(data.valid_dates(data.encode(feb29)).double().mean())  # a valid 29 February is in a leap year
print(f"years filled in for 29 February: {leap_share:.1%} leap years (a year-blind model: {leap_years / 200:.1%}); "
      f"e.g. {feb29[:5]}")
assert all(s.endswith("-02-29") for s in feb29)  # the sampler never touches an unmasked token
# what knowing it is worth: the truth gives a 29 February's year probability 1/49, a year-blind model 1/200
feb29_share = leap_years / len(all_dates)
worth = feb29_share * math.log2(200 / leap_years)
print(f"knowing it is worth {worth:.4f} bits per date (29 February is {feb29_share:.2%} of the dates)")

# %%
display(Markdown(
    f"The model gives a leap year {leap_share:.0%} of the time; a year-blind model would give "
    f"{leap_years / 200:.0%}, the truth 100%: "
    f"{'it has learned the rule' if leap_share > 0.9 else 'it has not learned the rule'}. The likelihood hardly "
    f"pushes it to: 29 February is {feb29_share:.2%} of the dates, so knowing its years are leap years is worth "
    f"{worth:.4f} bits per date, {'below' if worth < elbo_dates.se else 'about'} the ELBO's standard error "
    f"({elbo_dates.se:.4f}). A model learns what its "
    "loss can see; a rule this rare needs more data on it, or a model told about it."))

# %% [markdown]
# ## Summary
#
# - On tokens, a velocity is a matrix of jump rates; the Kolmogorov forward
#   equation replaces the continuity equation, and the Euler step jumps with
#   probability $1 - e^{-h\lambda}$. The solver core of Part I runs it unchanged.
# - The mixture path needs one learned object, the posterior
#   $p_{1|t}(x_1^i \mid x_t)$, trained by cross-entropy; the velocity follows from it.
# - With the exact posterior the sampler's error falls like $1/n$: it comes from
#   tokens that jump in the same step.
# - The negative ELBO (the time integral of the generalized KL along the
#   path) bounds the negative log-likelihood. With a mask source and the exact posterior it is
#   tight (section 5); for a trained model the gap is the KL between the two chains' ways of
#   reaching $x_1$, small for the checkerboard model (its printed ELBO and exact likelihood), so it
#   measures the model;
#   with a uniform source it stays bits above the exact likelihood, which on a
#   small state space we computed by integrating the forward equation.
# - On digits the bound is compared with two classical baselines (at the
#   default budget it beats both); on dates a program checks every sample.
#
# **Exercises:** [ex08_discrete_flow_matching.ipynb](../exercises/ex08_discrete_flow_matching.ipynb),
# graded tasks on this chapter (the mixture path, the velocity, the Euler jump,
# the ELBO's integrand), each followed by a check that gives a hint.
#
# Next, chapter 9: flows on curved spaces.

# %%
print(fm.config.run_time(T_START))

# %% [markdown]
# ## Further reading
#
# The papers this chapter follows, and what to read each one for. Full entries are on the
# [references page](../book/references.md) (from `book/references.bib`).
#
# - [Lipman2024] Lipman et al. 2024, *Flow Matching Guide and Code* (arXiv 2412.06264): continuous-time Markov
#   chains and discrete flow matching, with the factorized velocities used here.
# - [Gat2024] Gat et al. 2024, *Discrete Flow Matching* (arXiv 2407.15595): the mixture path, the velocity
#   from the learned posterior, and the per-token (factorized) sampler.
# - [Campbell2024] Campbell et al. 2024, *Generative Flows on Discrete State-Spaces* (arXiv 2402.04997):
#   discrete flow models as CTMCs, rates from the posterior, and the masked and uniform sources compared in
#   section 6.
