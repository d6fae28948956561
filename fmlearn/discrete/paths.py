"""The mixture path of discrete flow matching, token by token, and the velocity that generates it.

Tokens take values in {0, ..., V - 1} (V = ``vocab_size``); a sequence x has shape (batch, L). Given a data
sequence x1 and a source sequence x0, each token follows

    p_t(x^i | x0, x1) = (1 - kappa_t) delta_{x0^i} + kappa_t delta_{x1^i},

i.e. x_t^i = x1^i with probability kappa_t, else x0^i, independently per token, with kappa from a
:class:`~fmlearn.schedules.KappaSchedule` (kappa_0 = 0, kappa_1 = 1). Two sources:

    mask:     x0^i = V, an extra "mask" state (S = V + 1 states per token); a token jumps once, mask -> x1^i.
    uniform:  x0^i uniform on {0, ..., V - 1} (S = V states).

The posterior convention (stated once, used everywhere): **a posterior model returns logits** over the V data
values, ``model(x_t, t) -> (batch, L, V)``, an estimate of p_{1|t}(x1^i | x_t); :meth:`MixturePath.posterior`
is the one place that turns logits into probabilities (for the mask source it also copies every unmasked
token, whose posterior is delta_{x_t^i}: a revealed token already is its data value). The velocity takes
those probabilities:

    u_t(y | x_t)^i = kappa'_t / (1 - kappa_t) [p_{1|t}(y | x_t)^i - delta_{x_t^i}(y)],

whose rows sum to 0; the rate kappa'_t / (1 - kappa_t) is the schedule's :meth:`~fmlearn.schedules.KappaSchedule.rate`,
kept finite at t = 1. Its conditional version, with p_{1|t} replaced by delta_{x1}, generates p_t(. | x0, x1);
averaged over the posterior it generates the marginal path (the tests propagate both exactly).

The path follows the course's path interface (:mod:`fmlearn.paths`): ``space`` (the token space
:class:`~fmlearn.discrete.categorical.Categorical` of its S states), ``sample_source`` and ``sample(x0, x1, t)``,
which returns a :class:`~fmlearn.paths.PathSample` (x0, x1, t, xt). A posterior model declares what it was
built for (``vocab_size``, ``num_states``, ``source``: :class:`~fmlearn.discrete.TokenMLP` does); the sampler,
the ELBO and the training objective read it through :meth:`MixturePath.check_model` and refuse a model of
another path, naming both.
"""

from __future__ import annotations

from typing import Any

import torch

from .._checks import check_positive_int, check_time, check_unit_interval, expand_time
from .._random import draw_device
from ..paths import PathSample
from ..schedules import CondOT, KappaSchedule
from .categorical import Categorical, check_tokens_cheap

SOURCES = ("mask", "uniform")
#: What a posterior model declares about the path it was built for (checked by MixturePath.check_model).
DECLARED = ("vocab_size", "num_states", "source")


def check_tokens(name: str, x: torch.Tensor, num_states: int, what: str = "") -> torch.Tensor:
    """x must be an integer tensor with values in {0, ..., num_states - 1} (one host sync); ``what`` says what
    the range is (e.g. "the vocabulary"), for the message."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a tensor of integer tokens, got {type(x).__name__}")
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer tokens, got dtype {x.dtype}")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= num_states):
        raise ValueError(f"{name} must hold tokens in 0..{num_states - 1}{f' ({what})' if what else ''}, got "
                         f"values from {int(x.min())} to {int(x.max())}")
    return x


def check_path(path: Any, name: str = "path") -> "MixturePath":
    """path must be a :class:`MixturePath` (a TypeError names what was given)."""
    if not isinstance(path, MixturePath):
        raise TypeError(f"{name} must be a fmlearn.discrete.MixturePath, got {type(path).__name__}")
    return path


def check_probabilities(name: str, p: torch.Tensor, tol: float = 1e-4) -> torch.Tensor:
    """p must be floating, nonnegative, and sum to 1 over its last axis (within tol): probabilities, not logits."""
    if not isinstance(p, torch.Tensor) or not p.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor of probabilities, got "
                        f"{p.dtype if isinstance(p, torch.Tensor) else type(p).__name__}")
    sums = p.sum(-1)
    if p.numel() and (float(p.min()) < -tol or float((sums - 1).abs().max()) > tol):
        raise ValueError(f"{name} must hold probabilities (nonnegative, summing to 1 over the last axis), got "
                         f"entries from {float(p.min()):.3g} to {float(p.max()):.3g} and sums from "
                         f"{float(sums.min()):.4g} to {float(sums.max()):.4g}; a model returns logits: turn them "
                         f"into probabilities with MixturePath.posterior(logits, x)")
    return p


class MixturePath:
    """The per-token mixture path with a ``"mask"`` or ``"uniform"`` source on a kappa schedule (default kappa_t = t).

    Attributes: vocab_size V, num_states S (V + 1 with a mask, V without), mask (the mask token V, or None),
    source, schedule, space (the token space of the S states, :class:`Categorical`).
    """

    def __init__(self, vocab_size: int, source: str = "mask", schedule: KappaSchedule | None = None):
        check_positive_int("vocab_size", vocab_size)
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be at least 2, got {vocab_size}")
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        schedule = CondOT() if schedule is None else schedule
        if not isinstance(schedule, KappaSchedule):
            raise TypeError(f"schedule must be a KappaSchedule (kappa_t from 0 to 1, e.g. fmlearn.CondOT() or "
                            f"fmlearn.Polynomial(2)), got {type(schedule).__name__}")
        grid = torch.linspace(0, 1, 201, dtype=torch.float64)
        k = schedule.kappa(grid)
        if float(k.min()) < 0 or float(k.max()) > 1 or bool((k[1:] < k[:-1]).any()):
            raise ValueError(f"the schedule's kappa must rise from 0 to 1 and stay in [0, 1], got values from "
                             f"{float(k.min()):.4g} to {float(k.max()):.4g}")
        self.vocab_size, self.source, self.schedule = vocab_size, source, schedule
        self.mask = vocab_size if source == "mask" else None
        self.num_states = vocab_size + 1 if source == "mask" else vocab_size
        self.space = Categorical(self.num_states)

    def _states(self) -> str:
        mask = f"the {self.vocab_size} data values and the mask {self.mask}" if self.mask is not None else \
            f"the {self.vocab_size} data values"
        return f"{self.num_states} states ({mask})"

    def check_model(self, model: Any, name: str = "model") -> Any:
        """Refuse a posterior model built for another path: its declared ``vocab_size``, ``num_states`` and
        ``source`` (a :class:`~fmlearn.discrete.TokenMLP` declares them; a plain function declares none and is
        only checked by the shape of its logits) must be this path's. The message names both sides."""
        declared = {key: value for key, value in ((k, getattr(model, k, None)) for k in DECLARED)
                    if value is not None}
        mine = {"vocab_size": self.vocab_size, "num_states": self.num_states, "source": self.source}
        differ = [f"{key}={declared[key]!r} (the path's: {mine[key]!r})" for key in declared
                  if declared[key] != mine[key]]
        if differ:
            hint = ""
            if declared.get("num_states") == self.vocab_size and self.mask is not None:
                hint = (f"; the mask path's tokens take {self._states()}: build the model with "
                        f"num_states=path.num_states = {self.num_states} (the +1 is the mask)")
            raise ValueError(f"{name} was built for another path than {self!r}: {', '.join(differ)}{hint}")
        return model

    def sample_source(self, shape: tuple[int, ...], generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> torch.Tensor:
        """x0 of the given shape: all masks, or uniform tokens."""
        if not isinstance(shape, (tuple, list, torch.Size)) or not all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
            raise TypeError(f"shape must be a tuple of nonnegative ints such as (batch, L), got "
                            f"{type(shape).__name__} {shape!r}")
        if self.mask is not None:
            return torch.full(shape, self.mask, dtype=torch.long, device=device)
        return torch.randint(self.vocab_size, shape, generator=generator,
                             device=draw_device(generator, device)).to(device)

    def sample(self, x0: torch.Tensor, x1: torch.Tensor, t: float | torch.Tensor,
               generator: torch.Generator | None = None, *, check: bool = True) -> PathSample:
        """x_t: each token is x1^i with probability kappa_t and x0^i otherwise, as a
        :class:`~fmlearn.paths.PathSample` (x0, x1, t (batch,), xt).

        x0: source tokens in 0..S - 1 and x1: data tokens in 0..V - 1, one shape (batch, L); t a float or a
        (batch,) tensor in [0, 1]. ``check=False`` skips the checks (no host sync: the training loop's use,
        after the first batch)."""
        if check:
            x1 = check_tokens("x1", x1, self.vocab_size, "the data values of the vocabulary")
            x0 = check_tokens("x0", x0, self.num_states, f"the path's {self._states()}")
            if x0.shape != x1.shape or x1.ndim < 1:
                raise ValueError(f"x0 and x1 must have one shape (batch, L), got {tuple(x0.shape)} and "
                                 f"{tuple(x1.shape)} (tokens are not broadcast: draw x0 with "
                                 "path.sample_source(x1.shape))")
        t = check_time(t, x1, check_values=check)
        u = torch.rand(x1.shape, generator=generator, device=draw_device(generator, x1.device)).to(x1.device)
        keep = u < expand_time(self.schedule.kappa(t), x1)
        return PathSample(x0=x0, x1=x1, t=t, xt=torch.where(keep, x1, x0.to(x1.device)))

    def sample_given(self, x1: torch.Tensor, t: float | torch.Tensor,
                     generator: torch.Generator | None = None, *, check: bool = True) -> torch.Tensor:
        """x_t ~ p_t(. | x1): a source draw, then :meth:`sample` (its xt)."""
        if check:
            check_tokens("x1", x1, self.vocab_size, "the data values of the vocabulary")
        x0 = self.sample_source(tuple(x1.shape), generator, x1.device)
        return self.sample(x0, x1, t, generator, check=check).xt

    def posterior(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """p_{1|t}(. | x_t) = softmax(logits) over the V data values, shape (*x.shape, V); for the mask source
        every unmasked token gets delta_{x_t^i}. x's values are checked on the CPU only (no host sync per step)."""
        self._check_logits(logits, check_tokens_cheap("x", x, self.num_states))
        probs = torch.softmax(logits.float(), -1)
        if self.mask is None:
            return probs
        revealed = (x != self.mask).unsqueeze(-1)
        onehot = torch.nn.functional.one_hot(x.clamp_max(self.vocab_size - 1), self.vocab_size).to(probs.dtype)
        return torch.where(revealed, onehot, probs)

    def log_posterior(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p_{1|t}(. | x_t) as :meth:`posterior` (log_softmax; 0 and -inf on unmasked tokens of the mask source)."""
        self._check_logits(logits, check_tokens_cheap("x", x, self.num_states))
        logp = torch.log_softmax(logits.float(), -1)
        if self.mask is None:
            return logp
        onehot = torch.nn.functional.one_hot(x.clamp_max(self.vocab_size - 1), self.vocab_size).bool()
        return torch.where((x != self.mask).unsqueeze(-1), torch.where(onehot, 0.0, -torch.inf), logp)

    def rate(self, t: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """kappa'_t / (1 - kappa_t) as a (batch,) tensor (finite at t = 1: the schedule's guard)."""
        return self.schedule.rate(check_time(t, x, check_values=False))

    def velocity(self, probs: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor,
                 check: bool = True) -> torch.Tensor:
        """u_t(y | x_t) = kappa'_t / (1 - kappa_t) [p_{1|t}(y | x_t) - delta_{x_t}(y)], shape (*x.shape, S).

        ``probs``: posterior probabilities (*x.shape, V) (see :meth:`posterior`); ``check`` verifies that they are
        probabilities (a host sync; the sampler skips it)."""
        if check:
            check_tokens("x", x, self.num_states)
            check_time(t, x)
            check_probabilities("probs", probs)
            if tuple(probs.shape) != (*x.shape, self.vocab_size):
                raise ValueError(f"probs must have shape (*x.shape, vocab_size) = {(*x.shape, self.vocab_size)}, "
                                 f"got {tuple(probs.shape)}")
        target = self.pad(probs)
        onehot = torch.nn.functional.one_hot(x, self.num_states).to(target.dtype)
        off = target * (1 - onehot)  # the diagonal as minus the rest: rows sum to 0 to rounding, even at rate 1e6
        return expand_time(self.rate(t, x), target) * (off - onehot * off.sum(-1, keepdim=True))

    def conditional_velocity(self, x: torch.Tensor, x1: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """u_t(y | x_t, x1) = kappa'_t / (1 - kappa_t) [delta_{x1}(y) - delta_{x_t}(y)]: it generates p_t(. | x0, x1)."""
        check_tokens("x1", x1, self.vocab_size, "the data values of the vocabulary")
        check_tokens("x", x, self.num_states, f"the path's {self._states()}")
        if x.shape != x1.shape:
            raise ValueError(f"x and x1 must have one shape, got {tuple(x.shape)} and {tuple(x1.shape)}")
        check_time(t, x)
        onehot = torch.nn.functional.one_hot(x1, self.vocab_size).float()
        return self.velocity(onehot, x, t, check=False)

    def pad(self, probs: torch.Tensor) -> torch.Tensor:
        """Probabilities over the V data values as probabilities over the S states (a 0 for the mask)."""
        if self.mask is None:
            return probs
        return torch.nn.functional.pad(probs, (0, 1))

    def source_probs(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """p_0 of one token over the S states, shape (S,)."""
        if self.mask is not None:
            return torch.nn.functional.one_hot(torch.tensor(self.mask), self.num_states).to(dtype)
        return torch.full((self.num_states,), 1.0 / self.num_states, dtype=dtype)

    def token_marginal(self, p1: torch.Tensor, t: float) -> torch.Tensor:
        """The law of one token at time t when x1 ~ p1 (shape (V,)): (1 - kappa_t) p_0 + kappa_t p1 over S states."""
        check_probabilities("p1", p1)
        if p1.shape != (self.vocab_size,):
            raise ValueError(f"p1 must be the law of one data token, shape (vocab_size,) = ({self.vocab_size},), "
                             f"got {tuple(p1.shape)}")
        t = check_unit_interval("t", float(t) if isinstance(t, torch.Tensor) and t.numel() == 1 else t)
        k = float(self.schedule.kappa(torch.tensor(float(t), dtype=torch.float64)))
        return (1 - k) * self.source_probs(p1.dtype) + k * self.pad(p1)

    def _check_logits(self, logits: torch.Tensor, x: torch.Tensor) -> None:
        if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (*x.shape, self.vocab_size):
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(f"a posterior model must return logits of shape (*x.shape, vocab_size) = "
                             f"{(*x.shape, self.vocab_size)}, got {got}")

    def __repr__(self) -> str:
        return f"MixturePath(vocab_size={self.vocab_size}, source={self.source!r}, schedule={self.schedule!r})"
