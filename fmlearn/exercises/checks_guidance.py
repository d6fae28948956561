"""Checks for the exercises of chapter 6 (conditional generation): label dropout, the guided velocity,
and classifier-free guidance in one batched forward pass."""

from __future__ import annotations

import math

import torch
from torch import nn

from ._base import call, fail, max_err, ok, tensor_of
from .forbidden import guarded_for

_EXERCISE = "ex06_conditional_generation"


class _ToyConditional(nn.Module):
    """A small conditional field u(x, t, y) with labels 0..2 and the "no label" index 3; counts its calls."""

    num_classes = 3
    _grader_side = True  # the grader keeps it and counts the calls it really receives (fmlearn.grading._channel)

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(4, 8)
        self.net = nn.Sequential(nn.Linear(2 + 1 + 8, 16), nn.Tanh(), nn.Linear(16, 2))
        self.calls = 0

    def forward(self, x, t, y):
        self.calls += 1
        t = torch.as_tensor(t, dtype=x.dtype).expand(x.shape[0]) if not torch.is_tensor(t) or t.ndim == 0 else t
        return self.net(torch.cat([x, t[:, None], self.embed(y)], dim=1))


def check_label_dropout(drop) -> bool:
    """The learner's ``drop(y, p, null, generator) -> y'``: each label replaced by ``null`` with probability p,
    independently, the others unchanged: the rate is tested against the binomial law (5 standard deviations)."""
    drop = guarded_for(drop, _EXERCISE, "label_dropout_check")
    y = torch.randint(0, 10, (20000,), generator=torch.Generator().manual_seed(0))
    for p in (0.1, 0.5):
        out = tensor_of(call(drop, y.clone(), p, 10, torch.Generator().manual_seed(1), what="drop"), y.shape, "drop",
                      "return a label tensor of y's shape")
        changed = out != y
        if not bool((out[changed] == 10).all()):
            fail("a dropped label must become the 'no label' index", "only the value null = 10 for dropped labels",
                  sorted(set(out[changed].tolist()))[:5], "use torch.where(mask, null, y), not random labels")
        k, n = int(changed.sum()), y.numel()
        if not abs(k - p * n) <= 5 * math.sqrt(n * p * (1 - p)):
            hint = "you dropped with probability 1 - p: drop where the uniform draw is < p" \
                if abs(k - (1 - p) * n) < 5 * math.sqrt(n * p * (1 - p)) else \
                "draw one uniform number per label (torch.rand(n, generator=generator)) and drop where it is < p"
            fail(f"with p = {p} the fraction of dropped labels is wrong", f"about {p:.2f}", f"{k / n:.4f}", hint)
    return ok("labels are dropped to the null index at the requested rate, the rest untouched")


def check_guided_velocity(guide) -> bool:
    """The learner's ``guide(u_cond, u_uncond, w)`` = (1 + w) u_cond - w u_uncond: w = 0 gives the conditional
    field, w = -1 the unconditional one, and larger w extrapolates linearly."""
    guide = guarded_for(guide, _EXERCISE, "guided_velocity_check")
    g = torch.Generator().manual_seed(2)
    uc, uu = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g)
    for w in (0.0, -1.0, 2.0, 0.5):
        want = (1 + w) * uc - w * uu
        got = tensor_of(call(guide, uc, uu, w, what="guide"), uc.shape, "guide")
        if not max_err(got, want) <= 1e-6:
            other = uu + w * (uc - uu)
            hint = ("that is the other convention, u_none + s (u_y - u_none) with s = 1 + w; here w = 0 must "
                    "give the conditional field" if max_err(got, other) < 1e-6 else
                    "u_w = u_cond + w (u_cond - u_uncond)")
            fail(f"the guided velocity at w = {w:g} is wrong", want[0].tolist(), got[0].tolist(), hint)
    return ok("the guided velocity is (1 + w) u_cond - w u_uncond")


def check_cfg_forward(cfg) -> bool:
    """The learner's ``cfg(model, x, t, y, w)``: the guided velocity from ONE forward pass on the doubled batch
    ([x, x], [t, t], [y, null]) against two separate calls, for a float t and for a (n,) tensor t."""
    cfg = guarded_for(cfg, _EXERCISE, "cfg_forward_check")
    model = _ToyConditional()
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(5, 2, generator=g), torch.randint(0, 3, (5,), generator=g)
    for t in (0.3, torch.rand(5, generator=g)):
        with torch.no_grad():
            want = 3.0 * model(x, t, y) - 2.0 * model(x, t, torch.full_like(y, 3))
        model.calls = 0
        with torch.no_grad():
            got = tensor_of(call(cfg, model, x, t, y, 2.0, what="cfg"), x.shape, "cfg")
        if not max_err(got, want) <= 1e-5:
            cond_only = model(x, t, y)
            hint = ("that is the conditional field alone: the second half of the batch needs the null label "
                    "model.num_classes" if max_err(got, cond_only) < 1e-5 else
                    "split the output in two halves (conditional, unconditional) and combine them as "
                    "(1 + w) u_cond - w u_uncond; for a tensor t, repeat it too")
            fail("the guided velocity differs from two separate calls", want[0].tolist(), got[0].tolist(), hint)
        if model.calls != 1:
            fail("use one forward pass on the doubled batch", "1 call of the model", f"{model.calls} calls",
                  "torch.cat([x, x]) and torch.cat([y, null]): one call costs less than two on a GPU")
    return ok("one batched forward pass gives the guided velocity")
