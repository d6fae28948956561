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
# # Exercises for chapter 8 — discrete flow matching
#
# Four tasks, the pieces of a discrete flow with a mask source and
# $\kappa_t = t$: a sample of the mixture path, the velocity from a posterior,
# one Euler jump of a continuous-time Markov chain, and the integrand of the
# ELBO. At the end your pieces sample the 32×32 checkerboard with the exact
# posterior and estimate its entropy, 9 bits.
#
# **Prerequisites:** chapter 8. **Run time:** a few seconds.

# %%
import math

import fmlearn as fm  # first: it makes torch's idle CPU threads sleep (README, "Threads")
import torch

from fmlearn import discrete as D
from fmlearn.exercises.checks_discrete import (check_discrete_velocity, check_euler_jump, check_mask_elbo_integrand,
                                               check_mask_path_sample)

_ = fm.seed_everything(0)  # seeds Python, NumPy and torch (it also returns a generator, unused here)

# %% [markdown]
# ## Task 1 — a sample of the mask path (2 points)
#
# With $\kappa_t = t$, each token of $x_t$ is its data value $x_1^i$ with
# probability $t$ and the mask token otherwise, independently. You get the
# data `x1` (integer tokens, shape `(n, L)`), the times `t` (shape `(n,)`), the
# mask token `mask` (an int) and uniform numbers `u` of shape `(n, L)`: token
# $i$ shows its data value where `u < t`. Write `sample_mask_path(x1, t, mask, u)`.

# %% nbgrader={"grade": false, "grade_id": "mask_path", "locked": false, "schema_version": 3, "solution": true, "task": false}
def sample_mask_path(x1, t, mask, u):
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "mask_path_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_mask_path_sample(sample_mask_path)

# %% [markdown]
# ## Task 2 — the velocity from the posterior (3 points)
#
# The network's posterior $p_{1|t}(y \mid x_t)$ over the $V$ data values comes
# as `probs` of shape `(n, L, V)` (for an unmasked token it is already the
# one-hot of that token). The state space has $V + 1$ states, the last one
# (index `mask` $= V$) the mask. Write `velocity(probs, x, t, mask)` returning
# the rates of shape `(n, L, V + 1)`:
#
# $$u_t(y \mid x_t) = \frac{\dot\kappa_t}{1 - \kappa_t}\,\big[p_{1|t}(y \mid x_t) - \delta_{x_t}(y)\big],
#   \qquad \kappa_t = t,$$
#
# where $p_{1|t}(\text{mask} \mid x_t) = 0$. (The checks use $t < 1$.)

# %% nbgrader={"grade": false, "grade_id": "velocity", "locked": false, "schema_version": 3, "solution": true, "task": false}
def velocity(probs, x, t, mask):
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "velocity_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_discrete_velocity(velocity)

# %% [markdown]
# ## Task 3 — one Euler jump (3 points)
#
# For one token in state `x` with rates `rates` (shape `(n, S)`: $u(y \mid x)$,
# the diagonal entry being minus the sum of the others), the Euler step of
# size `h` leaves $x$ with probability $1 - e^{-h\lambda}$, where
# $\lambda = \sum_{y \ne x} u(y \mid x)$, and lands on $y \ne x$ in proportion to
# $u(y \mid x)$. Write `jump_law(x, rates, h)` returning the law of the next
# state, shape `(n, S)` (each row sums to 1). Why not $\delta_x + h\,u$? Try
# a large `h`. A token whose rates are all 0 (in the sampler, every token already
# revealed) has $\lambda = 0$: it stays where it is, with no $0/0$. The rates
# may come in float32, as the sampler's do.

# %% nbgrader={"grade": false, "grade_id": "euler_jump", "locked": false, "schema_version": 3, "solution": true, "task": false}
def jump_law(x, rates, h):
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "euler_jump_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_euler_jump(jump_law)

# %% [markdown]
# ## Task 4 — the ELBO integrand of the mask source (2 points)
#
# For the mask source with $\kappa_t = t$, the generalized KL of an unmasked
# token is 0 and that of a masked token is $\frac{1}{1-t}\,(-\log p^\theta(x_1^i \mid x_t))$.
# Given `logp` (shape `(n, L)`: $\log p^\theta(x_1^i \mid x_t)$ at the data
# values), the boolean `masked` (shape `(n, L)`) and `t` (shape `(n,)`), write
# `elbo_integrand(logp, masked, t)` returning one number per sequence, in nats.
# Its average over $t \sim U[0, 1)$, the data $x_1$ and $x_t$ is the negative ELBO
# (an upper bound on the negative log-likelihood; chapter 8, section 5).

# %% nbgrader={"grade": false, "grade_id": "elbo_integrand", "locked": false, "schema_version": 3, "solution": true, "task": false}
def elbo_integrand(logp, masked, t):
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "elbo_integrand_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_mask_elbo_integrand(elbo_integrand)

# %% [markdown]
# ## Your pieces at work
#
# The checkerboard of chapter 8 and its exact posterior. Your sampler: start
# from all masks, take 64 Euler jumps with your velocity and your jump law,
# then let the masks left at $t = 1$ draw from the posterior. Nearly every
# sample should land on the support (the sampler's error is about
# $1/(2 \cdot 64)$). Then your integrand, averaged over stratified times,
# estimates the negative ELBO, which with the exact posterior is the entropy: 9 bits.
# This is chapter 8's plain estimator, weight $1/(1-t)$ and all: with 20,000 draws it
# resolves about a tenth of a bit; chapter 8's masked rewrite (`estimator="masked"`)
# removes the weight and resolves a hundredth.

# %%
V = 32
support = D.data.checkerboard(V)
path = D.MixturePath(V, "mask")
oracle = D.ExactPosterior(support, path)
gen = torch.Generator().manual_seed(0)
x = torch.full((4000, 2), V)
steps = 64
for k in range(steps):
    t = torch.full((len(x),), k / steps)
    rates = velocity(path.posterior(oracle(x, t), x), x, t, V)
    law = jump_law(x.reshape(-1), rates.reshape(-1, V + 1), 1 / steps)
    assert torch.isfinite(law).all(), f"your jump_law returned NaN at step {k}: run its check above"
    x = D.draw(law, gen).reshape(x.shape)
x = torch.where(x == V, D.draw(path.posterior(oracle(x, 1.0), x), gen), x)
on = torch.zeros(V * V, dtype=torch.bool)
on[D.state_index(support, V)] = True
share = float(on[D.state_index(x, V)].double().mean())
print(f"{share:.1%} of your samples on the support")
assert share > 0.97

n = 20_000
x1 = support[torch.randint(len(support), (n,), generator=gen)]
t = (torch.randperm(n, generator=gen) + torch.rand(n, generator=gen)) / n
xt = sample_mask_path(x1, t, V, torch.rand(n, 2, generator=gen))
logp = path.log_posterior(oracle(xt, t), xt).gather(-1, x1[..., None]).squeeze(-1)
bits = elbo_integrand(logp.double(), xt == V, t.double()) / math.log(2)
print(f"negative ELBO {bits.mean():.3f} ± {bits.std() / math.sqrt(n):.3f} bits (entropy 9)")
assert abs(float(bits.mean()) - 9) < 4 * float(bits.std()) / math.sqrt(n)
