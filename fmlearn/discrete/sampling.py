"""Sampling a posterior model: the discrete Euler sampler, run by the solver core, and a corrector.

The field handed to :func:`fmlearn.odeint` is the velocity of :meth:`MixturePath.velocity` built from the
model's posterior; the token space's step (:class:`~fmlearn.discrete.categorical.Categorical`) jumps with
probability 1 - exp(-h lambda). On the grid t_0 = 0 < ... < t_n = 1 the last step starts at t_{n-1} < 1,
where the rate is finite, so some masks survive it; at t = 1 the rate is infinite (every mask must have
jumped), so the sampler ends with that jump: each token still masked draws its value from the posterior at
t = 1 (one more model evaluation, counted in ``nfe``).

Corrector (mask source). With strength beta >= 0 the field is

    u_t + beta [u_t + r^back_t],     r^back_t(mask | x) = kappa'_t / kappa_t  for each unmasked token,

extra unmasking at beta times the rate plus re-masking of revealed tokens. For one token on the conditional
path the two extra flows balance, beta kappa' (1 - kappa) / (1 - kappa) = beta kappa' kappa / kappa, so the
marginals p_t stay the same (the tests propagate the whole law); the noise lets the sampler revise early
choices.
"""

from __future__ import annotations

from typing import Callable

import torch

from .._checks import check_positive_int, check_real, check_time, expand_time, model_context
from ..schedules import T_EPS
from ..solvers import odeint
from ..stepping import Solution
from .categorical import Categorical, draw
from .paths import MixturePath, check_path, check_tokens

#: A posterior model: model(x_t, t) -> logits (batch, L, V).
PosteriorModel = Callable[..., torch.Tensor]


def corrector_rates(path: MixturePath, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """r^back_t: kappa'_t / kappa_t into the mask state for every unmasked token (kappa_t guarded at t -> 0),
    shape (*x.shape, S); the mask source only."""
    if path.mask is None:
        raise ValueError("the corrector is defined for the mask source only; this path has source='uniform'")
    tt = check_time(t, x, check_values=False).clamp_min(T_EPS)
    back = path.schedule.d_kappa(tt) / path.schedule.kappa(tt)
    rates = torch.zeros(*x.shape, path.num_states, dtype=back.dtype, device=x.device)
    rates[..., path.mask] = expand_time(back, x) * (x != path.mask)
    return rates - rates.sum(-1, keepdim=True) * torch.nn.functional.one_hot(x, path.num_states).to(back.dtype)


def posterior_field(model: PosteriorModel, path: MixturePath, corrector: float = 0.0) -> Callable:
    """The field u(x, t) of a posterior model (plus the corrector, if beta > 0), for :func:`fmlearn.odeint`.
    A model that declares another path than ``path`` is refused (:meth:`MixturePath.check_model`)."""
    check_path(path).check_model(model)
    corrector = check_real("corrector", corrector)
    if corrector < 0:
        raise ValueError(f"corrector must be >= 0, got {corrector}")
    if corrector > 0 and path.mask is None:
        raise ValueError("corrector > 0 needs the mask source; this path has source='uniform'")

    def field(x: torch.Tensor, t: float) -> torch.Tensor:
        u = path.velocity(path.posterior(model(x, t), x), x, t, check=False)
        if corrector:
            u = (1 + corrector) * u + corrector * corrector_rates(path, x, t)
        return u

    return field


def final_jump(model: PosteriorModel, path: MixturePath, x: torch.Tensor,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """The jump at t = 1: every masked token draws its value from the posterior at t = 1 (others unchanged)."""
    if path.mask is None:
        return x
    probs = path.posterior(model(x, 1.0), x)
    return torch.where(x == path.mask, draw(probs, generator), x)


def sample(model: PosteriorModel, path: MixturePath, x0: torch.Tensor, *, steps: int,
           generator: torch.Generator | None = None, corrector: float = 0.0,
           return_trajectory: bool = False) -> Solution:
    """Euler-sample the CTMC of a posterior model from t = 0 to 1 on ``steps`` equal steps.

    Args:
        model: ``model(x_t, t) -> logits (batch, L, V)`` (an nn.Module runs in eval mode without gradients).
        path: the :class:`MixturePath` it was trained on.
        x0: source tokens (batch, L), e.g. ``path.sample_source((n, L))``.
        steps: Euler steps (> 0); generator: seeds the jumps; corrector: beta >= 0 (mask source).

    Returns a :class:`~fmlearn.stepping.Solution` whose x are data tokens (batch, L); its trajectory, if asked
    for, holds the state at each grid time (the last one after the jump at t = 1).

    A model built for another path (its ``vocab_size``, ``num_states``, ``source``) is refused before anything
    runs; a model whose logits turn NaN or infinite (diverged) gives no valid draw, and the sampler raises at
    its end (one check for the whole run, no host sync per step) instead of returning plausible tokens.
    """
    check_positive_int("steps", steps)
    check_path(path).check_model(model)
    check_tokens("x0", x0, path.num_states, f"the path's {path.num_states} states")
    if x0.ndim != 2:
        raise ValueError(f"x0 must be source tokens of shape (batch, L), got shape {tuple(x0.shape)}")
    space = Categorical(path.num_states, generator, deferred=True)
    with model_context(model, x0) as (net, x0):
        field = posterior_field(net, path, corrector)
        sol = odeint(field, x0, steps=steps, space=space, return_trajectory=return_trajectory)
        space.check_draws()
        x = final_jump(net, path, sol.x, generator)
    traj = sol.trajectory
    if traj is not None:
        traj = torch.cat([traj[:-1], x[None]])
    return Solution(x=x, times=sol.times, nfe=sol.nfe + (path.mask is not None), trajectory=traj,
                    accepted_steps=sol.accepted_steps, rejected_steps=0)
