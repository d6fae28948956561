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
# # Exercises for chapter 6 — conditional generation
#
# Three tasks: label dropout (how one network learns both the conditional
# and the unconditional field), the guided velocity of classifier-free
# guidance, and guidance in one batched forward pass. At the end your
# guidance steers exact mixture flows into the mode you ask for.
#
# **Prerequisites:** chapter 6. **Run time:** a few seconds.

# %%
import fmlearn as fm  # first: it makes torch's idle CPU threads sleep (README, "Threads")
import torch

from fmlearn.exercises import check_cfg_forward, check_guided_velocity, check_label_dropout

_ = fm.seed_everything(0)  # seeds Python, NumPy and torch (it also returns a generator, unused here)

# %% [markdown]
# ## Task 1 — label dropout (2 points)
#
# During training, each label is replaced by the extra "no label" index
# `null` (the model's `num_classes`) with probability `p`, independently.
# Write `drop_labels(y, p, null, generator)` for a label tensor `y`; draw
# the uniform numbers with `torch.rand(..., generator=generator)`.

# %% nbgrader={"grade": false, "grade_id": "label_dropout", "locked": false, "schema_version": 3, "solution": true, "task": false}
def drop_labels(y, p, null, generator):
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "label_dropout_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_label_dropout(drop_labels)

# %% [markdown]
# ## Task 2 — the guided velocity (2 points)
#
# With the conditional velocity $u(x, t, y)$ and the unconditional one
# $u(x, t, \varnothing)$ from the same network, classifier-free guidance
# follows $u_w = (1 + w)\, u(x, t, y) - w\, u(x, t, \varnothing)$:
# $w = 0$ is the conditional field, larger $w$ pushes away from the
# unconditional one. Write `guide(u_cond, u_uncond, w)`.

# %% nbgrader={"grade": false, "grade_id": "guided_velocity", "locked": false, "schema_version": 3, "solution": true, "task": false}
def guide(u_cond, u_uncond, w):
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "guided_velocity_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_guided_velocity(guide)

# %% [markdown]
# ## Task 3 — guidance in one forward pass (3 points)
#
# Two calls of the network per step (one with `y`, one with the null label)
# cost twice the launches on a GPU. Instead, double the batch: inputs
# `[x, x]`, times `[t, t]` (when `t` is a tensor), labels `[y, null]`; call
# the model once as `model(x, t, y)`, split the output in halves and combine
# them with your `guide`. Write `cfg(model, x, t, y, w)`; the null label is
# `model.num_classes`.

# %% nbgrader={"grade": false, "grade_id": "cfg_forward", "locked": false, "schema_version": 3, "solution": true, "task": false}
def cfg(model, x, t, y, w):
    # YOUR CODE HERE
    raise NotImplementedError()


# %% nbgrader={"grade": true, "grade_id": "cfg_forward_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_cfg_forward(cfg)

# %% [markdown]
# ## Your guidance on exact flows
#
# For chapter 1's 11-mode mixture with the mode as the label, both fields are
# exact: the conditional one is the oracle of a single Gaussian (the asked
# mode), the unconditional one the oracle of the whole mixture. A model
# exposing them as `model(x, t, y)` with label 11 meaning "no label" lets
# your `cfg` drive the sampler. At $w = 2$ nearly every sample should land
# in the asked mode.

# %%
class ExactMixtureFlow(torch.nn.Module):
    """u(x, t, y): the oracle velocity of mode y, or of the whole mixture for y = num_classes."""

    def __init__(self, mixture):
        super().__init__()
        self.num_classes = mixture.n_components
        path = fm.AffineGaussianPath("condot")
        self.fields = [fm.MixtureOracle(fm.GaussianMixture(mixture.means[k:k + 1], mixture.stds[k:k + 1]), path)
                       for k in range(self.num_classes)] + [fm.MixtureOracle(mixture, path)]

    def forward(self, x, t, y):
        out = torch.empty_like(x)
        for k in y.unique().tolist():
            rows = y == k
            t_k = t[rows] if torch.is_tensor(t) and t.ndim else t
            out[rows] = self.fields[k].velocity(x[rows], t_k).to(x.dtype)
        return out


target = fm.GaussianMixture.symmetric_2d()
flow = ExactMixtureFlow(target)
labels = torch.arange(11).repeat(100)
x = torch.randn(len(labels), 2)
samples = fm.odeint(lambda x, t: cfg(flow, x, t, labels, 2.0), x, steps=40, method="rk4").x
in_mode = (target.responsibilities(samples).argmax(1) == labels).double().mean().item()
print(f"{in_mode:.1%} of the guided samples (w = 2) are in the asked mode")
assert in_mode >= 0.99
