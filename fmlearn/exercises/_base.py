"""Shared pieces of the exercise checks: the error type, verdicts, calling learner code safely."""

from __future__ import annotations

import torch


class ExerciseCheckError(AssertionError):
    """A learner's answer failed a check; the message says what was expected and gives a hint."""


def _fail(what: str, expected, got, hint: str):
    raise ExerciseCheckError(f"{what}\n  expected: {expected}\n  got:      {got}\n  hint: {hint}")


def _ok(message: str) -> bool:
    print(f"OK: {message}")
    return True


def _call(fn, *args, what: str):
    try:
        out = fn(*args)
    except NotImplementedError:
        raise NotImplementedError(f"{what} is not written yet: replace `raise NotImplementedError()` "
                                  "with your code, then run this check again") from None
    return out


def _tensor(out, shape, what: str, hint: str = "return a torch tensor") -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        _fail(f"{what} must return a tensor", f"a torch.Tensor of shape {tuple(shape)}", type(out).__name__, hint)
    if tuple(out.shape) != tuple(shape):
        _fail(f"{what} returned the wrong shape", tuple(shape), tuple(out.shape),
              "keep the batch dimension first; operate elementwise, do not reduce over the batch")
    if not torch.isfinite(out).all():
        _fail(f"{what} returned NaN or inf", "finite values", out, "look for a division by zero at t = 0 or t = 1")
    return out


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b.detach().double()).abs().max())
