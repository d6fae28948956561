"""Checks for the exercises of chapter 8 (discrete flow matching): the mask path's sample, the velocity from a
posterior, one Euler jump of a CTMC, the ELBO integrand of the mask source.

Each compares the learner's function with :mod:`fmlearn.discrete` (or a formula written out here) on inputs
chosen so that the usual slips give different numbers, and names the slip in its hint.
"""

from __future__ import annotations

import torch

from ..discrete import MixturePath, jump_probabilities
from ._base import _call, _fail, _max_err, _ok, _tensor


def _tokens(shape, high, seed):
    return torch.randint(high, shape, generator=torch.Generator().manual_seed(seed))


def check_mask_path_sample(sample_fn) -> bool:
    """The learner's ``sample_fn(x1, t, mask, u)`` -> x_t (n, L): with kappa_t = t, token i is x1^i where
    u^i < t and the mask otherwise (u: the given uniform numbers, shape (n, L); t: shape (n,))."""
    x1 = _tokens((6, 5), 4, 0)
    u = torch.rand(6, 5, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    want = torch.where(u < t[:, None], x1, torch.full_like(x1, 4))
    got = _call(sample_fn, x1, t, 4, u, what="sample_fn")
    if not isinstance(got, torch.Tensor) or got.shape != want.shape:
        _fail("sample_fn must return a tensor of tokens of x1's shape", f"shape {tuple(want.shape)}",
              f"{type(got).__name__} {tuple(getattr(got, 'shape', ()))}", "use torch.where(condition, x1, mask)")
    if got.is_floating_point():
        _fail("sample_fn must return integer tokens", "dtype torch.int64", str(got.dtype),
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
        _fail("x_t differs from the mask path's sample", want[1].tolist(), got[1].tolist(), hint)
    return _ok("your x_t shows each token's data value with probability t, and the mask otherwise")


def check_discrete_velocity(velocity_fn, tol: float = 1e-5) -> bool:
    """The learner's ``velocity_fn(probs, x, t, mask)`` -> rates (n, L, V + 1): the velocity
    1 / (1 - t) [p_{1|t}(y | x_t) - delta_{x_t}(y)] (kappa_t = t), with p the posterior over the V data values
    padded with 0 for the mask state, against :meth:`fmlearn.discrete.MixturePath.velocity`."""
    v = 5
    path = MixturePath(v, "mask")
    g = torch.Generator().manual_seed(2)
    x = _tokens((4, 3), v + 1, 3)
    x[0] = v
    t = torch.tensor([0.0, 0.3, 0.5, 0.8])
    probs = torch.softmax(torch.randn(4, 3, v, generator=g), -1)
    probs = path.posterior(probs.log(), x)  # unmasked tokens: one-hot at themselves
    want = path.velocity(probs, x, t)
    got = _tensor(_call(velocity_fn, probs, x, t, v, what="velocity_fn"), want.shape, "velocity_fn",
                  "pad probs with a 0 for the mask state, then subtract the one-hot of x_t")
    if _max_err(got, want) > tol:
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
        hint = next((h for w, h in slips if _max_err(got, w) < tol),
                    "u = (p padded with a 0 for the mask - one_hot(x, V + 1)) / (1 - t)[:, None, None]")
        _fail("the velocity differs from 1 / (1 - t) [p_1|t - delta_x]", want[1, 0].tolist(), got[1, 0].tolist(), hint)
    if float(got.sum(-1).abs().max()) > 1e-4:
        _fail("the rows of the velocity must sum to 0", "0 for every token", float(got.sum(-1).abs().max()),
              "subtract delta_{x_t}")
    return _ok("your velocity matches kappa'/(1 - kappa) [p_1|t - delta], and its rows sum to 0")


def check_euler_jump(jump_fn, tol: float = 1e-6) -> bool:
    """The learner's ``jump_fn(x, rates, h)`` -> the law of the next state (n, S): leave x with probability
    1 - exp(-h lambda), lambda = sum_{y != x} rates_y, and land on y != x in proportion to rates_y; against
    :func:`fmlearn.discrete.jump_probabilities`, at a small and at a large step."""
    g = torch.Generator().manual_seed(4)
    x = torch.tensor([0, 1, 2, 3, 1])
    rates = torch.rand(5, 4, generator=g, dtype=torch.float64) * 3
    rates = rates - torch.nn.functional.one_hot(x, 4) * (rates.sum(1, keepdim=True))  # rows sum to 0
    for h in (0.05, 2.0):
        want = jump_probabilities(x, h * rates, 4)
        got = _tensor(_call(jump_fn, x, rates, h, what="jump_fn"), want.shape, "jump_fn")
        if _max_err(got, want) > tol:
            onehot = torch.nn.functional.one_hot(x, 4).double()
            linear = onehot + h * rates
            off = rates * (1 - onehot)
            lam = off.sum(1, keepdim=True)
            slips = (
                (linear, f"you took delta_x + h u, the first-order step: at h = {h} it is not a probability (entries "
                 f"{float(linear.min()):.2f} < 0); leave with probability 1 - exp(-h lambda), not h lambda"),
                (onehot * torch.exp(-h * lam) + (1 - torch.exp(-h * lam)) * rates / lam,
                 "exclude the diagonal: the destination is in proportion to the off-diagonal rates u(y | x), y != x "
                 "(the diagonal entry is minus their sum)"),
                (onehot * torch.exp(-h * lam) + h * off, "the jump probability, 1 - exp(-h lambda), is shared among "
                 "the destinations in proportion to their rates: (1 - exp(-h lambda)) u(y | x) / lambda"),
            )
            hint = next((msg for w, msg in slips if _max_err(got, w) < tol),
                        "P(y) = (1 - exp(-h lambda)) u(y|x) / lambda for y != x, P(x) = exp(-h lambda)")
            _fail(f"the law of the next state at h = {h} is wrong", [round(v, 4) for v in want[0].tolist()],
                  [round(v, 4) for v in got[0].tolist()], hint)
    return _ok("your jump law leaves with probability 1 - exp(-h lambda), in proportion to the rates")


def check_mask_elbo_integrand(integrand_fn, tol: float = 1e-5) -> bool:
    """The learner's ``integrand_fn(logp, masked, t)`` -> (n,): 1 / (1 - t) sum over the masked tokens of
    -log p^theta(x1^i | x_t) (kappa_t = t), with logp (n, L) the log-probabilities of the data values and masked
    (n, L) bool; against the formula written out here."""
    g = torch.Generator().manual_seed(5)
    logp = -torch.rand(6, 4, generator=g, dtype=torch.float64) * 3
    masked = torch.rand(6, 4, generator=g) < 0.5
    masked[0] = True
    t = torch.tensor([0.0, 0.1, 0.3, 0.5, 0.7, 0.9], dtype=torch.float64)
    nll = -(logp * masked).sum(1)
    want = nll / (1 - t)
    got = _tensor(_call(integrand_fn, logp, masked, t, what="integrand_fn"), want.shape, "integrand_fn",
                  "one number per sequence: sum over its tokens")
    if _max_err(got, want) > tol:
        slips = (
            (nll, "weight by kappa'_t / (1 - kappa_t) = 1 / (1 - t): the ELBO integrand is the cross-entropy of the "
             "masked tokens times the jump rate"),
            (-logp.sum(1) / (1 - t), "sum over the masked tokens only: an unmasked token is already its data value, "
             "so its term of the generalized KL is 0"),
            (nll / t.clamp_min(1e-9), "the weight is 1 / (1 - t), the jump rate of a masked token, not 1 / t"),
            (-(logp * masked).mean(1) / (1 - t), "sum over the tokens (the ELBO is per sequence), do not average"),
            ((logp * masked).sum(1) / (1 - t), "the integrand is -log p: a cross-entropy, positive"),
        )
        hint = next((msg for w, msg in slips if _max_err(got, w) < tol),
                    "(-logp * masked).sum(1) / (1 - t)")
        _fail("the ELBO integrand is wrong", [round(v, 4) for v in want.tolist()[:3]],
              [round(v, 4) for v in got.tolist()[:3]], hint)
    return _ok("your integrand is the masked tokens' cross-entropy times 1 / (1 - t)")
