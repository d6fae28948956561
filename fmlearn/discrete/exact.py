"""Exact references on small state spaces: the posterior of a known target (the chapter's oracle), and the
law of a model's chain computed over the whole joint state space instead of sampled.

Joint states: L tokens of S states each, N = S^L of them, numbered n = sum_i x^i S^(L - 1 - i)
(:func:`all_states`). A law is a (batch, N) tensor of probabilities.

* :class:`ExactPosterior`: for a target q on a support s_1..s_M (M, L), p_{1|t}(x1 = s_m | x_t) is proportional to
  q_m prod_j p_t(x_t^j | s_m^j), with p_t(x | x1) = (1 - kappa_t) p_0(x) + kappa_t delta_{x1}(x); its token
  marginals are the posterior. Called as a model: ``oracle(x_t, t)`` returns logits (log-probabilities).
* :func:`generator_matrix`: the N x N rate matrix Q_t of a field (a jump changes one token), whose Kolmogorov
  forward equation d p_t / dt = p_t Q_t :func:`model_law` integrates with :func:`fmlearn.odeint` (RK4) on a grid
  with 1 - kappa_t falling geometrically (the rate grows like 1 / (1 - kappa_t)), then the jump at t = 1.
  Its mass on a data sequence is the model's **exact likelihood**.
* :class:`JointLaw`: a space whose step pushes a law through one Euler step of the sampler (the product over
  tokens of :func:`~fmlearn.discrete.categorical.jump_probabilities`), so :func:`euler_law` is the exact law
  of :func:`fmlearn.discrete.sample`'s output at a number of steps, with no sampling noise.
"""

from __future__ import annotations

import math

import torch

from .._checks import check_positive_int, check_time, check_unit_interval, model_context
from ..solvers import odeint
from .categorical import jump_probabilities
from .paths import MixturePath, check_path, check_tokens
from .sampling import PosteriorModel, posterior_field


def all_states(num_states: int, length: int) -> torch.Tensor:
    """Every sequence of ``length`` tokens in 0..num_states - 1, shape (num_states^length, length), in index order."""
    check_positive_int("num_states", num_states)
    check_positive_int("length", length)
    grids = torch.meshgrid(*[torch.arange(num_states)] * length, indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids], dim=1)


def state_index(x: torch.Tensor, num_states: int, *, check: bool = True) -> torch.Tensor:
    """n = sum_i x^i num_states^(L - 1 - i) for sequences x (batch, L) of tokens in 0..num_states - 1.

    A token outside that range is refused (``check``, one host sync): it would alias another sequence
    ([0, 4] with 4 states is [1, 0]; a negative token counts from the end)."""
    check_positive_int("num_states", num_states)
    if check:
        check_tokens("x", x, num_states, f"the {num_states} states a sequence is indexed by")
        if x.ndim != 2:
            raise ValueError(f"x must be sequences of shape (batch, L), got shape {tuple(x.shape)}")
    powers = num_states ** torch.arange(x.shape[1] - 1, -1, -1, device=x.device)
    return (x * powers).sum(1)


class ExactPosterior:
    """The exact posterior of a target on a known support (the oracle): ``oracle(x_t, t) -> logits (batch, L, V)``.

    Args: support (M, L) data tokens; path; probs (M,) the target's probabilities (default uniform);
    chunk: at most this many sequences of x_t per block, and fewer for a large support (a block holds at most
    2^24 likelihoods, chunk x M, in float64)."""

    def __init__(self, support: torch.Tensor, path: MixturePath, probs: torch.Tensor | None = None,
                 chunk: int = 2048):
        check_tokens("support", support, check_path(path).vocab_size, "the data values of the vocabulary")
        if support.ndim != 2 or support.shape[0] < 1:
            raise ValueError(f"support must be sequences of shape (M, L) with M >= 1, got {tuple(support.shape)}")
        self.vocab_size, self.num_states, self.source = path.vocab_size, path.num_states, path.source
        m = support.shape[0]
        self.support, self.path, self.chunk = support.long(), path, max(1, min(chunk, 2**24 // m))
        self.q = torch.full((m,), 1.0 / m, dtype=torch.float64) if probs is None else probs.double()
        self.onehot = torch.nn.functional.one_hot(self.support, path.vocab_size).float()

    def __call__(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        check_tokens("x", x, self.num_states, f"the path's {self.num_states} states")
        if x.ndim != 2 or x.shape[1] != self.support.shape[1]:
            raise ValueError(f"x must be sequences of shape (batch, {self.support.shape[1]}), got "
                             f"{tuple(x.shape)}")
        t = check_time(t, x, check_values=False).float()
        return torch.cat([self._logits(x[i:i + self.chunk], t[i:i + self.chunk])
                          for i in range(0, len(x), self.chunk)])

    def _logits(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        k = self.path.schedule.kappa(t.double()).clamp_max(1 - 1e-6)[:, None]  # the limit t -> 1 (masks possible)
        miss = (1 - k) * self.path.source_probs().to(x.device)[x]            # p_t(x_t^j | s^j), s^j != x_t^j: (b, L)
        support = self.support.to(x.device)
        lik = torch.ones(x.shape[0], support.shape[0], dtype=torch.float64, device=x.device)
        for j in range(x.shape[1]):                                          # times p_t(x_t^j | s_m^j), (b, M)
            hit = torch.nn.functional.one_hot(x[:, j], self.path.num_states).double()[:, support[:, j]]
            lik = lik * (miss[:, j, None] + k * hit)
        w = lik * self.q.to(x.device)
        total = w.sum(1, keepdim=True)
        w = torch.where(total > 0, w / total.clamp_min(1e-300), self.q.to(x.device))  # x_t impossible: the prior
        probs = torch.einsum("bm,mlv->blv", w.float(), self.onehot.to(x.device))
        return probs.clamp_min(1e-30).log()


def generator_matrix(rates: torch.Tensor) -> torch.Tensor:
    """Q (N, N) from per-token rates (N, L, S) at every joint state (in :func:`all_states` order): Q[n, n'] is the
    rate of the jump of one token that takes n to n'; each row sums to 0."""
    if not isinstance(rates, torch.Tensor) or rates.ndim != 3 or not rates.is_floating_point() or \
            rates.shape[0] != rates.shape[2] ** rates.shape[1]:
        got = f"shape {tuple(rates.shape)}, dtype {rates.dtype}" if isinstance(rates, torch.Tensor) else \
            type(rates).__name__
        want = f" = ({rates.shape[2] ** rates.shape[1]}, {rates.shape[1]}, {rates.shape[2]})" \
            if isinstance(rates, torch.Tensor) and rates.ndim == 3 else ""
        raise ValueError(f"rates must be floating per-token rates at every joint state, shape (S^L, L, S){want}, "
                         f"got {got}")
    n, length, s = rates.shape
    states, target = _jump_targets(s, length, rates.device)
    off = rates * (1 - torch.nn.functional.one_hot(states, s).to(rates.dtype))
    q = torch.zeros(n, n, dtype=rates.dtype, device=rates.device)
    q.scatter_add_(1, target, off.reshape(n, -1))
    q.diagonal().sub_(q.sum(1))
    return q


_TARGETS: dict = {}


def _jump_targets(s: int, length: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(all states (N, L), the index of the state reached by setting token i to y, (N, L * S)), cached."""
    key = (s, length, str(device))
    if key not in _TARGETS:
        states = all_states(s, length).to(device)
        stride = s ** torch.arange(length - 1, -1, -1, device=device)
        target = (torch.arange(len(states), device=device)[:, None, None]
                  + (torch.arange(s, device=device)[None, None] - states[:, :, None]) * stride[None, :, None])
        _TARGETS[key] = (states, target.reshape(len(states), -1))
    return _TARGETS[key]


class JointLaw:
    """A space whose state is a law p (batch, N) over the joint states and whose increment is the per-token
    h u at every joint state (N, L, S): step(p, dx) = p T, T[n, n'] = prod_i P_i(n'^i | n) with P_i the
    token's one-step law (:func:`jump_probabilities`), the law of :class:`Categorical`'s draw."""

    def __init__(self, num_states: int, length: int, device: torch.device | str | None = None):
        self.num_states, self.length = num_states, length
        self.states = all_states(num_states, length).to(device)

    def transition(self, probs: torch.Tensor) -> torch.Tensor:
        """T (N, N) from the per-token laws of the next state (N, L, S), tokens jumping independently."""
        t = probs[:, 0]
        for i in range(1, self.length):  # the outer product over tokens, in the index order of all_states
            t = (t[:, :, None] * probs[:, i, None, :]).reshape(probs.shape[0], -1)
        return t

    def step(self, p: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
        return p @ self.transition(jump_probabilities(self.states.to(dx.device), dx, self.num_states).to(p.dtype))

    def check_field(self, v: torch.Tensor, x: torch.Tensor, name: str = "velocity") -> torch.Tensor:
        want = (self.states.shape[0], self.length, self.num_states)
        if not isinstance(v, torch.Tensor) or tuple(v.shape) != want:
            raise ValueError(f"{name} must give the rates at every joint state, shape {want}, got "
                             f"{tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__}")
        return v


def source_law(path: MixturePath, length: int) -> torch.Tensor:
    """The law (1, N) of x_0: every token from the source, independently."""
    states = all_states(path.num_states, length)
    return path.source_probs()[states].prod(1)[None]


def marginal_law(path: MixturePath, support: torch.Tensor, t: float, probs: torch.Tensor | None = None) -> torch.Tensor:
    """The closed form of the marginal path at time t, (1, N): sum_m q_m prod_i p_t(x^i | s_m^i)."""
    t = check_unit_interval("t", float(t) if isinstance(t, torch.Tensor) and t.numel() == 1 else t)
    check_tokens("support", support, path.vocab_size, "the data values of the vocabulary")
    if support.ndim != 2:
        raise ValueError(f"support must be data sequences of shape (M, L), got {tuple(support.shape)}")
    states = all_states(path.num_states, support.shape[1])
    k = float(path.schedule.kappa(torch.tensor(float(t), dtype=torch.float64)))
    p0 = path.source_probs()
    per = (1 - k) * p0[states][:, None] + k * (states[:, None] == support[None]).double()   # (N, M, L)
    q = torch.full((support.shape[0],), 1.0 / support.shape[0], dtype=torch.float64) if probs is None else probs.double()
    return (per.prod(-1) * q).sum(1)[None]


def _final_jump_transition(model, path: MixturePath, law: JointLaw) -> torch.Tensor:
    states = law.states
    if path.mask is None:
        return torch.eye(states.shape[0], dtype=torch.float64, device=states.device)
    probs = path.pad(path.posterior(model(states, 1.0), states)).double()
    stay = torch.nn.functional.one_hot(states, path.num_states).double()
    return law.transition(torch.where((states == path.mask)[..., None], probs, stay))


def _on_data(p: torch.Tensor, path: MixturePath, length: int) -> torch.Tensor:
    """The law restricted to sequences of data values, in the index order of V^L."""
    return p[0, state_index(all_states(path.vocab_size, length).to(p.device), path.num_states, check=False)]


def euler_law(model: PosteriorModel, path: MixturePath, length: int, *, steps: int,
              corrector: float = 0.0) -> torch.Tensor:
    """The exact law over the V^L data sequences of :func:`fmlearn.discrete.sample` with ``steps`` steps (computed
    on the model's device)."""
    check_positive_int("steps", steps)
    check_positive_int("length", length)
    check_path(path).check_model(model)
    with model_context(model, all_states(path.num_states, length)) as (net, states):
        law = JointLaw(path.num_states, length, states.device)
        field = posterior_field(net, path, corrector)
        p = odeint(lambda p, t: field(law.states, t).double(), source_law(path, length).to(states.device),
                   steps=steps, space=law).x
        return _on_data(p @ _final_jump_transition(net, path, law), path, length)


def model_law(model: PosteriorModel, path: MixturePath, length: int, *, ode_steps: int = 120, s_max: float = 12.0,
              corrector: float = 0.0) -> torch.Tensor:
    """The exact law over the V^L data sequences of the model's continuous-time chain: the forward equation
    d p / dt = p Q_t by RK4 from 0 to t_end, where 1 - kappa falls to exp(-s_max) in ``ode_steps`` equal steps of
    log(1 - kappa), then the jump at t = 1 (mass still masked, about exp(-s_max) per token, draws from the
    posterior). Computed on the model's device."""
    check_positive_int("ode_steps", ode_steps)
    check_positive_int("length", length)
    check_path(path).check_model(model)
    target = 1 - torch.exp(-torch.linspace(0, s_max, ode_steps + 1, dtype=torch.float64))
    lo, hi = torch.zeros_like(target), torch.ones_like(target)
    for _ in range(60):  # t_i = kappa^-1(target_i) by bisection (kappa is nondecreasing)
        mid = (lo + hi) / 2
        below = path.schedule.kappa(mid) < target
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    grid = torch.cat([torch.zeros(1, dtype=torch.float64), hi[1:]])
    grid = torch.cummax(grid, 0).values + torch.arange(len(grid), dtype=torch.float64) * 1e-15
    with model_context(model, all_states(path.num_states, length)) as (net, states):
        field = posterior_field(net, path, corrector)
        p = odeint(lambda p, t: p @ generator_matrix(field(states, t).double()),
                   source_law(path, length).to(states.device), method="rk4", times=grid).x
        return _on_data(p @ _final_jump_transition(net, path, JointLaw(path.num_states, length, states.device)),
                        path, length)


def nll_bits(law: torch.Tensor, x1: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """-log2 law(x1) for each sequence x1 (batch, L) of data tokens in 0..V - 1, from a law over the V^L data
    sequences (shape (V^L,)); a token outside the vocabulary is refused (it would read another sequence's bits)."""
    check_positive_int("vocab_size", vocab_size)
    check_tokens("x1", x1, vocab_size, "the data values of the vocabulary")
    if x1.ndim != 2:
        raise ValueError(f"x1 must be sequences of shape (batch, L), got shape {tuple(x1.shape)}")
    if not isinstance(law, torch.Tensor) or tuple(law.shape) != (vocab_size ** x1.shape[1],):
        got = tuple(law.shape) if isinstance(law, torch.Tensor) else type(law).__name__
        raise ValueError(f"law must be a law over the V^L = {vocab_size}^{x1.shape[1]} data sequences, shape "
                         f"({vocab_size ** x1.shape[1]},), got {got}")
    return -torch.log2(law[state_index(x1.to(law.device), vocab_size, check=False)])


class Tabulated:
    """A posterior model evaluated once per call on all N joint states and read by index (see :func:`tabulated`);
    it declares the path of the model it tabulates (``vocab_size``, ``num_states``, ``source``, when it does)."""

    def __init__(self, model: PosteriorModel, num_states: int, length: int):
        self.model, self.num_states, self.length = model, check_positive_int("num_states", num_states), \
            check_positive_int("length", length)
        declared = getattr(model, "num_states", None)
        if declared is not None and declared != num_states:
            raise ValueError(f"num_states={num_states} contradicts the model's own num_states={declared}")
        self.vocab_size, self.source = getattr(model, "vocab_size", None), getattr(model, "source", None)
        self.states = all_states(num_states, length)

    def __call__(self, x: torch.Tensor, t: float) -> torch.Tensor:
        if not isinstance(t, float):
            raise TypeError(f"a tabulated model takes one time for the whole batch, a Python float, got "
                            f"{type(t).__name__}")
        check_tokens("x", x, self.num_states, f"the {self.num_states} states of the table")
        if x.ndim != 2 or x.shape[1] != self.length:
            raise ValueError(f"x must be sequences of shape (batch, {self.length}), got shape {tuple(x.shape)}")
        # evaluated where a module lives, else (a plain function) where x is; the states kept there
        with model_context(self.model, self.states.to(x.device)) as (net, self.states):
            logits = net(self.states, t)
        return logits[state_index(x.to(logits.device), self.num_states, check=False)].to(x.device)


def tabulated(model: PosteriorModel, num_states: int, length: int) -> Tabulated:
    """``model`` evaluated once per call on all N joint states and read by index: the same logits for any batch, at
    the cost of N rows instead of the batch (fast sampling of many sequences on a small state space; t a float).
    Tokens outside 0..num_states - 1 are refused (one host sync per call), not read as another sequence's."""
    return Tabulated(model, num_states, length)
