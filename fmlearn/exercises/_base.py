"""Shared pieces of the exercise checks: the error type, verdicts, calling learner code safely."""

from __future__ import annotations

import math
import re

import numpy as np
import torch

from ._render import short_traceback


class ExerciseCheckError(AssertionError):
    """A learner's answer failed a check; the message says what was expected and gives a hint."""

    def _render_traceback_(self) -> list[str]:
        """What IPython shows: the message (what / expected / got / hint) and the learner's line, not the
        checker's source (whose other hints and reference code would only confuse)."""
        return short_traceback(self)


SHAPE_HINT = ("print the shapes of your intermediate tensors: a per-sample tensor of shape (n,) meets one of shape "
              "(n, d) only as t[:, None] (shape (n, 1), which broadcasts over the d columns); plain t * x lines t "
              "up with the last axis (d), not with the batch")
INPLACE_HINT = ("`x += ...`, `x[...] = ...` or `x.add_(...)` write into the tensor the caller passed in (and "
                "`x = x0` makes no copy, so the caller's x0 changes too); write `x = x + ...`, which makes a new "
                "tensor, or start from `x0.clone()`")
_SHAPE_ERROR = re.compile(r"size|shape|dimension|broadcast", re.IGNORECASE)


def compose_message(what: str, expected, got, hint: str) -> str:
    return f"{what}\n  expected: {expected}\n  got:      {got}\n  hint: {hint}"


def fail(what: str, expected, got, hint: str):
    raise ExerciseCheckError(compose_message(what, expected, got, hint))


class Passed(int):
    """What a passing check returns: true, so ``assert check_...(...)`` holds, and shown as nothing in a notebook
    (the check has printed its "OK: ..." line; an ``Out[n]: True`` under it would say nothing more). An int (1) so
    that it crosses the grader's channel as a number."""

    def __new__(cls):
        return super().__new__(cls, 1)

    def __repr__(self) -> str:
        return "Passed"

    def _ipython_display_(self) -> None:
        """Nothing to show: IPython then stores no ``Out[n]`` output for the cell."""


def ok(message: str) -> Passed:
    print(f"OK: {message}")
    return Passed()


def as_float64(a) -> torch.Tensor:
    """A float64 copy of a tensor or an array (to compare an argument before and after a call)."""
    return a.detach().to("cpu", torch.float64, copy=True) if isinstance(a, torch.Tensor) else \
        torch.tensor(a, dtype=torch.float64)


def snapshot(args) -> list:
    return [(i, as_float64(a)) for i, a in enumerate(args) if isinstance(a, (torch.Tensor, np.ndarray))]


def call(fn, *args, what: str, shape_hint: str = SHAPE_HINT):
    """``fn(*args)`` with the learner's usual slips turned into check failures with a hint: an unwritten task,
    a shape error from broadcasting (a RuntimeError about sizes), and an argument changed in place. The messages
    name the learner's function by its own name (``what`` for a lambda), as the grader does."""
    name = getattr(fn, "__name__", "")
    what = name if name.isidentifier() else what
    before = snapshot(args)
    try:
        out = fn(*args)
    except NotImplementedError as err:
        unwritten = NotImplementedError(f"{what} is not written yet: replace `raise NotImplementedError()` with your "
                                        "code, then run this check again")
        unwritten._render_traceback_ = lambda: short_traceback(unwritten)  # one line in IPython, as a check's failure
        raise unwritten from err
    except RuntimeError as err:
        if not _SHAPE_ERROR.search(str(err)):
            raise
        shapes = ", ".join(str(tuple(a.shape)) for a in args if isinstance(a, (torch.Tensor, np.ndarray)))
        raise ExerciseCheckError(compose_message(
            f"{what} failed with a shape error", f"tensors whose shapes fit together (the inputs have shapes {shapes})",
            f"RuntimeError: {err}", shape_hint)) from err
    for i, old in before:
        new = as_float64(args[i])
        if new.shape != old.shape or not torch.equal(new, old):
            change = (f"changed by up to {float((new - old).abs().max()):.3g}" if new.shape == old.shape
                      else f"reshaped to {tuple(new.shape)}")
            fail(f"{what} changed its input in place (argument {i + 1}, shape {tuple(old.shape)})",
                  "the arguments left as they were passed in", f"argument {i + 1} {change} after the call",
                  INPLACE_HINT)
    return out


def tensor_of(out, shape, what: str, hint: str = "return a torch tensor",
            nan_hint: str = "look for a division by zero at t = 0 or t = 1") -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        fail(f"{what} must return a tensor", f"a torch.Tensor of shape {tuple(shape)}", type(out).__name__, hint)
    if tuple(out.shape) != tuple(shape):
        fail(f"{what} returned the wrong shape", tuple(shape), tuple(out.shape),
              "keep the batch dimension first; operate elementwise, do not reduce over the batch")
    if not torch.isfinite(out).all():
        fail(f"{what} returned NaN or inf", "finite values", brief(out), nan_hint)
    return out


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest |a - b|; infinite when a difference is NaN or inf, so that ``max_err(...) > tol`` fails on a
    NaN answer (``nan > tol`` is False) and ``max_err(...) < tol`` never matches one."""
    d = (a.detach().double() - b.detach().double()).abs()
    if d.numel() == 0:
        return 0.0
    return float(d.max()) if bool(torch.isfinite(d).all()) else math.inf


def finite(value, what: str, hint: str) -> float:
    """A number the learner returned (a float, or a one-element tensor or array), as a float; NaN or inf fails (a
    comparison with NaN is always False)."""
    try:
        out = float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError, RuntimeError):
        fail(f"{what} must be a number", "a float", type(value).__name__, hint)
    if not math.isfinite(out):
        fail(f"{what} is NaN or inf", "a finite number", out, hint)
    return out


def show(v: torch.Tensor) -> str:
    return str([round(x, 6) for x in v.reshape(-1)[:8].tolist()])


def worst_row(want: torch.Tensor, got: torch.Tensor) -> tuple[str, str]:
    """The expected / got lines of a failure: a short vector whole, else the row (along the last axis) where they
    differ most, a NaN counting as the largest difference, so that the row shown is one that is wrong."""
    if want.ndim <= 1:
        return show(want), show(got)
    diff = (got.double() - want.double()).abs().nan_to_num(nan=math.inf).reshape(-1, want.shape[-1])
    index = tuple(int(i) for i in torch.unravel_index(diff.amax(1).argmax(), want.shape[:-1]))
    row = f"row {index[0]}" if len(index) == 1 else f"row {list(index)}"
    where = f" ({row} of a {tuple(want.shape)} tensor, where they differ most)"
    return show(want[index]) + where, show(got[index]) + where


def brief(x) -> str:
    """A short printable form of a tensor: all of it when small, else its first row and its shape."""
    if x.numel() <= 6:
        return str([round(v, 6) for v in x.flatten().tolist()]) if x.ndim else f"{float(x):.6g}"
    first = x.reshape(x.shape[0], -1)[0][:4]
    return f"{[round(v, 6) for v in first.tolist()]}... (first row of a {tuple(x.shape)} tensor)"


def expect_close(what: str, got, want, hint: str, atol: float = 1e-6, rtol: float = 1e-5) -> None:
    """An assertion for hidden tests that fails like a check: ExerciseCheckError with expected / got / hint.

    ``got`` and ``want`` are tensors, arrays or numbers of the same shape (no broadcasting)."""
    try:
        got_t = torch.as_tensor(got.detach() if isinstance(got, torch.Tensor) else got, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        fail(what, "a tensor or a number", type(got).__name__, hint)
    want_t = torch.as_tensor(want.detach() if isinstance(want, torch.Tensor) else want, dtype=torch.float64)
    if got_t.shape != want_t.shape:
        fail(what, f"shape {tuple(want_t.shape)}", f"shape {tuple(got_t.shape)}", hint)
    if bool(torch.isfinite(want_t).all()) and not bool(torch.isfinite(got_t).all()):
        fail(what, brief(want_t), f"{brief(got_t)}: NaN or inf", hint)
    if not torch.allclose(got_t, want_t, atol=atol, rtol=rtol):
        fail(what, brief(want_t), brief(got_t), hint)
