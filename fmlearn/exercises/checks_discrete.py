"""Checks for the exercises of chapter 8 (discrete flow matching): the mask path's sample, the velocity from a
posterior, one Euler jump of a CTMC, the ELBO integrand of the mask source.

Each compares the learner's function with :mod:`fmlearn.discrete` (or a formula written out here) on inputs
chosen so that the usual slips give different numbers, and names the slip in its hint.
"""

from __future__ import annotations

import torch

from ..discrete import MixturePath, jump_probabilities
from ._base import call, fail, max_err, ok, tensor_of, worst_row
from .forbidden import guarded_for

_EXERCISE = "ex08_discrete_flow_matching"


def _tokens(shape, high, seed):
    return torch.randint(high, shape, generator=torch.Generator().manual_seed(seed))


def check_mask_path_sample(sample_fn) -> bool:
    """The learner's ``sample_fn(x1, t, mask, u)`` -> x_t (n, L): with kappa_t = t, token i is x1^i where
    u^i < t and the mask otherwise (u: the given uniform numbers, shape (n, L); t: shape (n,))."""
    sample_fn = guarded_for(sample_fn, _EXERCISE, "mask_path_check")
    x1 = _tokens((6, 5), 4, 0)
    u = torch.rand(6, 5, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    want = torch.where(u < t[:, None], x1, torch.full_like(x1, 4))
    got = call(sample_fn, x1, t, 4, u, what="sample_fn")
    if not isinstance(got, torch.Tensor) or got.shape != want.shape:
        fail("sample_fn must return a tensor of tokens of x1's shape", f"shape {tuple(want.shape)}",
              f"{type(got).__name__} {tuple(getattr(got, 'shape', ()))}", "use torch.where(condition, x1, mask)")
    if got.is_floating_point():
        fail("sample_fn must return integer tokens", "dtype torch.int64", str(got.dtype),
              "torch.where(cond, x1, torch.full_like(x1, mask)) keeps x1's integer dtype")
    if not torch.equal(got, want):
        swapped = torch.where(u < t[:, None], torch.full_like(x1, 4), x1)
        if torch.equal(got, swapped) or torch.equal(got, torch.where(u < 1 - t[:, None], x1, torch.full_like(x1, 4))):
            hint = ("the roles are swapped: at t = 0 every token is a mask (the source) and at t = 1 every token is "
                    "x1; a token shows its data value with probability kappa_t = t, i.e. where u < t")
        elif torch.equal(got, torch.where(u[:, :1] < t[:, None], x1, torch.full_like(x1, 4))):
            hint = "draw each token on its own: compare u (shape (n, L)) with t[:, None], not one number per row"
        else:
            hint = "x_t = x1 where u < t[:, None] (t per row, broadcast over the L tokens), the mask elsewhere"
        fail("x_t differs from the mask path's sample", *worst_row(want, got), hint)
    return ok("your x_t shows each token's data value with probability t, and the mask otherwise")


def check_discrete_velocity(velocity_fn, tol: float = 1e-5) -> bool:
    """The learner's ``velocity_fn(probs, x, t, mask)`` -> rates (n, L, V + 1): the velocity
    1 / (1 - t) [p_{1|t}(y | x_t) - delta_{x_t}(y)] (kappa_t = t), with p the posterior over the V data values
    padded with 0 for the mask state, against :meth:`fmlearn.discrete.MixturePath.velocity`."""
    velocity_fn = guarded_for(velocity_fn, _EXERCISE, "velocity_check")
    v = 5
    path = MixturePath(v, "mask")
    g = torch.Generator().manual_seed(2)
    x = _tokens((4, 3), v + 1, 3)
    x[0] = v
    t = torch.tensor([0.0, 0.3, 0.5, 0.8])
    probs = torch.softmax(torch.randn(4, 3, v, generator=g), -1)
    probs = path.posterior(probs.log(), x)  # unmasked tokens: one-hot at themselves
    want = path.velocity(probs, x, t)
    got = tensor_of(call(velocity_fn, probs, x, t, v, what="velocity_fn"), want.shape, "velocity_fn",
                  "pad probs with a 0 for the mask state, then subtract the one-hot of x_t")
    if not max_err(got, want) <= tol:
        onehot = torch.nn.functional.one_hot(x, v + 1).float()
        padded = torch.nn.functional.pad(probs, (0, 1))
        slips = (
            (padded - onehot, "you left out the rate 1 / (1 - t): kappa'_t / (1 - kappa_t) with kappa_t = t"),
            ((padded - onehot) / t.clamp_min(1e-6)[:, None, None], "the rate is 1 / (1 - t), not 1 / t: the mass "
             "still to move, 1 - kappa_t, shrinks to 0 as t -> 1"),
            (padded / (1 - t)[:, None, None], "subtract delta_{x_t}(y): each row of a rate matrix sums to 0 "
             "(the rate of staying is minus the rate of leaving)"),
            ((onehot - padded) / (1 - t)[:, None, None], "the sign is flipped: the rate towards y is p(y) - delta"),
        )
        hint = next((h for w, h in slips if max_err(got, w) < tol),
                    "u = (p padded with a 0 for the mask - one_hot(x, V + 1)) / (1 - t)[:, None, None]")
        fail("the velocity differs from 1 / (1 - t) [p_1|t - delta_x]", *worst_row(want, got), hint)
    if not float(got.sum(-1).abs().max()) <= 1e-4:
        fail("the rows of the velocity must sum to 0", "0 for every token", float(got.sum(-1).abs().max()),
              "subtract delta_{x_t}")
    return ok("your velocity matches kappa'/(1 - kappa) [p_1|t - delta], and its rows sum to 0")


def _zero_rate_hint(got: torch.Tensor, lam: torch.Tensor, dtype: torch.dtype) -> str:
    """Why a jump law came back NaN: 0 / 0 in a row that cannot leave (lambda = 0), or something else."""
    bad = ~torch.isfinite(got).all(-1)
    if not bool((lam[bad] == 0).all()):
        return "P(y) = (1 - exp(-h lambda)) u(y|x) / lambda for y != x, P(x) = exp(-h lambda)"
    rows = ", ".join(str(i) for i in bad.nonzero().flatten().tolist())
    guard = ("; in float32 a guard such as clamp_min(1e-300) rounds to 0 and guards nothing"
             if dtype == torch.float32 else "")
    return (f"row {rows} has no rate to leave (all its rates are 0, as for every revealed token in the sampler), so "
            f"lambda = 0 and (1 - exp(-h lambda)) / lambda is 0 / 0 = NaN{guard}: such a token stays where it is "
            "with probability 1; guard the division, e.g. torch.where(lam > 0, (1 - torch.exp(-h * lam)) / lam, 0)")


def check_euler_jump(jump_fn, tol: float = 1e-6) -> bool:
    """The learner's ``jump_fn(x, rates, h)`` -> the law of the next state (n, S): leave x with probability
    1 - exp(-h lambda), lambda = sum_{y != x} rates_y, and land on y != x in proportion to rates_y; against
    :func:`fmlearn.discrete.jump_probabilities`, at a small and at a large step, with a row of zero rates (a token
    that cannot leave, as every revealed token in the sampler: no 0 / 0 there) and with float32 rates (the
    sampler's)."""
    jump_fn = guarded_for(jump_fn, _EXERCISE, "euler_jump_check")
    g = torch.Generator().manual_seed(4)
    every = torch.tensor([0, 1, 2, 3, 1, 2])
    rates = torch.rand(6, 4, generator=g, dtype=torch.float64) * 3
    rates[5] = 0.0  # a token that cannot leave, tried after the others (so that a slip is named on them first)
    rates = rates - torch.nn.functional.one_hot(every, 4) * (rates.sum(1, keepdim=True))  # rows sum to 0
    for h, dtype, rows in ((0.05, torch.float64, 5), (2.0, torch.float64, 5), (0.05, torch.float64, 6),
                           (0.05, torch.float32, 6)):
        x, r = every[:rows], rates[:rows]
        onehot = torch.nn.functional.one_hot(x, 4).double()
        off = r * (1 - onehot)
        lam = off.sum(1, keepdim=True)
        want = jump_probabilities(x, h * r, 4)
        out = call(jump_fn, x, r.to(dtype), h, what="jump_fn")
        if isinstance(out, torch.Tensor) and out.shape == want.shape and not bool(torch.isfinite(out).all()):
            fail(f"the law of the next state at h = {h} ({str(dtype)[6:]}) has NaN or inf", *worst_row(want, out),
                  _zero_rate_hint(out, lam[:, 0], dtype))
        got = tensor_of(out, want.shape, "jump_fn")
        if not max_err(got, want) <= (tol if dtype == torch.float64 else 1e-5):
            linear = onehot + h * r
            low = float(linear.min())
            linear_hint = (f"you took delta_x + h u, the first-order step: at h = {h} it is not even a probability "
                           f"(entries down to {low:.2f})" if low < 0 else
                           "you took delta_x + h u, the first-order step: it stays with probability 1 - h lambda "
                           f"instead of exp(-h lambda) (off by up to {max_err(linear, want):.2g} at h = {h}, an "
                           "error of order h^2), and at a large h its entries go negative")
            slips = (
                (linear, linear_hint + "; leave with probability 1 - exp(-h lambda), not h lambda"),
                (onehot * torch.exp(-h * lam) + (1 - torch.exp(-h * lam)) * r / lam,
                 "exclude the diagonal: the destination is in proportion to the off-diagonal rates u(y | x), y != x "
                 "(the diagonal entry is minus their sum)"),
                (onehot * torch.exp(-h * lam) + h * off, "the jump probability, 1 - exp(-h lambda), is shared among "
                 "the destinations in proportion to their rates: (1 - exp(-h lambda)) u(y | x) / lambda"),
            )
            hint = next((msg for w, msg in slips if max_err(got, w) < 1e-5),
                        "P(y) = (1 - exp(-h lambda)) u(y|x) / lambda for y != x, P(x) = exp(-h lambda)")
            fail(f"the law of the next state at h = {h} ({str(dtype)[6:]}) is wrong", *worst_row(want, got), hint)
    return ok("your jump law leaves with probability 1 - exp(-h lambda), in proportion to the rates, and stays put "
               "where no rate leaves, in float64 and float32")


def check_mask_elbo_integrand(integrand_fn, tol: float = 1e-5) -> bool:
    """The learner's ``integrand_fn(logp, masked, t)`` -> (n,): 1 / (1 - t) sum over the masked tokens of
    -log p^theta(x1^i | x_t) (kappa_t = t), with logp (n, L) the log-probabilities of the data values and masked
    (n, L) bool; against the formula written out here."""
    integrand_fn = guarded_for(integrand_fn, _EXERCISE, "elbo_integrand_check")
    g = torch.Generator().manual_seed(5)
    logp = -torch.rand(6, 4, generator=g, dtype=torch.float64) * 3
    masked = torch.rand(6, 4, generator=g) < 0.5
    masked[0] = True
    t = torch.tensor([0.0, 0.1, 0.3, 0.5, 0.7, 0.9], dtype=torch.float64)
    nll = -(logp * masked).sum(1)
    want = nll / (1 - t)
    got = tensor_of(call(integrand_fn, logp, masked, t, what="integrand_fn"), want.shape, "integrand_fn",
                  "one number per sequence: sum over its tokens")
    if not max_err(got, want) <= tol:
        slips = (
            (nll, "weight by kappa'_t / (1 - kappa_t) = 1 / (1 - t): the ELBO integrand is the cross-entropy of the "
             "masked tokens times the jump rate"),
            (-logp.sum(1) / (1 - t), "sum over the masked tokens only: an unmasked token is already its data value, "
             "so its term of the generalized KL is 0"),
            (nll / t.clamp_min(1e-9), "the weight is 1 / (1 - t), the jump rate of a masked token, not 1 / t"),
            (-(logp * masked).mean(1) / (1 - t), "sum over the tokens (the ELBO is per sequence), do not average"),
            ((logp * masked).sum(1) / (1 - t), "the integrand is -log p: a cross-entropy, positive"),
        )
        hint = next((msg for w, msg in slips if max_err(got, w) < tol),
                    "(-logp * masked).sum(1) / (1 - t)")
        fail("the ELBO integrand is wrong", *worst_row(want, got), hint)
    return ok("your integrand is the masked tokens' cross-entropy times 1 / (1 - t)")
