"""The careless-input probe of issue 21: small calls a newcomer (or a hurried instructor) makes with bad or
careless inputs, each with the outcome it must have.

A case is one zero-argument call and its expected outcome:

    error   it raises a clear error: an exception raised by a ``raise`` statement in fmlearn's own code (the
            last traceback frame is in fmlearn/, on a line that raises), whose message names the argument and
            what was given (``words``: every item must occur in the message, case-insensitively; an item
            that is a tuple is satisfied by any of its alternatives). A Python TypeError of the call itself
            (a missing or unexpected argument: the signature names it) also counts.
    right   it returns the right answer: ``check(result)`` compares it with a reference computed another way
            (by hand, numpy, a closed form) and returns True.

What a call can do instead is classified by :func:`classify`:

    right    handled right (the check passed)
    error    a clear error (as above)
    silent   returned, but a bad input was accepted or the answer is wrong: silently wrong
    raw      an exception from torch or Python deep inside (IndexError: index out of range in self, a
             broadcast RuntimeError...), or from an fmlearn line that does not raise it on purpose
    vague    raised on purpose by fmlearn, but the message does not name the argument or the bad value

The probe lives in tests/ (test_careless_inputs.py runs each case; benchmarks/careless_inputs.py counts
them). ``BROKEN`` lists the cases whose fix has not landed, with the file and function to fix: the test marks
them strict xfail, so a fix flips them to a failure and the fixer removes them from the list.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import fmlearn as fm  # first: it sets OMP_WAIT_POLICY before torch loads OpenMP
import fmlearn.discrete as D
import fmlearn.generators as G
import fmlearn.manifolds as M
import numpy as np
import torch

FMLEARN_DIR = str(Path(fm.__file__).resolve().parent)
HERE = str(Path(__file__).resolve())


@dataclass
class Case:
    id: str
    expect: str                       # "error" or "right"
    run: Callable[[], Any]
    words: tuple = ()                 # error: what the message must name
    check: Callable[[Any], bool] | None = None   # right: the reference comparison
    also: tuple = ()                  # other acceptable outcomes (e.g. a list converted and handled right)
    owner: str = ""                   # where the behaviour lives (file: function)

    @property
    def ok(self) -> tuple:
        return (self.expect, *self.also)


CASES: list[Case] = []


def E(id: str, run: Callable[[], Any], *words, owner: str = "", check=None, also: tuple = ()) -> None:
    """A case that must raise a clear error naming ``words`` (a right answer is also fine when ``check`` is
    given: a list or an array converted and computed right)."""
    if check is not None:
        also = (*also, "right")
    CASES.append(Case(id, "error", run, tuple(words), check, also, owner))


def R(id: str, run: Callable[[], Any], check: Callable[[Any], bool], owner: str = "", also: tuple = ()) -> None:
    """A case that must return the right answer (``check`` compares it with a reference)."""
    CASES.append(Case(id, "right", run, (), check, also, owner))


def shape(*dims: int) -> tuple:
    """A shape as a message may write it: (4, 1), [4, 1] or torch.Size([4, 1])."""
    inner = ", ".join(map(str, dims)) + ("," if len(dims) == 1 else "")
    return (f"({inner})", f"[{', '.join(map(str, dims))}]")


_BINDING = re.compile(r"(missing \d+ required|unexpected keyword argument|takes \d+ positional|"
                      r"got multiple values|takes from \d+ to \d+ positional|required keyword-only)")


def _raised_on_purpose(exc: BaseException) -> tuple[bool, str]:
    """(whether fmlearn raised it on purpose, where): the last frame in fmlearn/ on a line that raises."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return False, "?"
    last = frames[-1]
    where = f"{os.path.relpath(last.filename, os.path.dirname(FMLEARN_DIR))}:{last.lineno} {last.name}"
    if str(Path(last.filename).resolve()) == HERE and isinstance(exc, TypeError) and _BINDING.search(str(exc)):
        return True, "the call's signature"
    if not str(Path(last.filename).resolve()).startswith(FMLEARN_DIR):
        return False, where
    lines = (last.line or "").strip()
    if not lines.startswith("raise"):
        # a raise statement written over several lines reports its first line; anything else was not raised
        # on purpose (an IndexError of a torch call on this line, an AttributeError of a missing method...)
        try:
            src = Path(last.filename).read_text().splitlines()
            start = last.lineno - 1
            lines = src[start].strip()
        except (OSError, IndexError):
            pass
    return lines.startswith("raise"), where


def _mentions(message: str, words: tuple) -> list:
    msg = message.lower()
    missing = []
    for w in words:
        alts = w if isinstance(w, tuple) else (w,)
        if not any(str(a).lower() in msg for a in alts):
            missing.append(w)
    return missing


def classify(case: Case) -> tuple[str, str]:
    """(outcome, detail): outcome one of right, error, silent, raw, vague (see the module docstring)."""
    torch.manual_seed(0)
    try:
        result = case.run()
    except Exception as exc:  # noqa: BLE001  (classifying every exception is the point)
        on_purpose, where = _raised_on_purpose(exc)
        text = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        if not on_purpose:
            return "raw", f"{text}  [at {where}]"
        missing = _mentions(str(exc), case.words) if case.expect == "error" else []
        if missing:
            return "vague", f"{text}  [at {where}; the message lacks {missing}]"
        return "error", f"{text}  [at {where}]"
    if case.check is None:
        return "silent", f"accepted and returned {_short(result)}"
    try:
        good = bool(case.check(result))
    except Exception as exc:  # noqa: BLE001
        good, why = False, f"(the check failed: {type(exc).__name__}: {exc})"
    else:
        why = ""
    if good:
        return "right", ""
    return "silent", f"returned a wrong answer {_short(result)} {why}".strip()


def _short(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"tensor{tuple(x.shape)} {x.dtype}" + (f" = {x.tolist()}" if x.numel() <= 6 else "")
    if isinstance(x, tuple):
        return "(" + ", ".join(_short(v) for v in x) + ")"
    if hasattr(x, "x") and isinstance(getattr(x, "x"), torch.Tensor):
        return f"{type(x).__name__}(x={_short(x.x)})"
    if hasattr(x, "xt") and isinstance(getattr(x, "xt"), torch.Tensor):
        return f"{type(x).__name__}(xt={_short(x.xt)})"
    text = " ".join(repr(x).split())
    return text if len(text) < 120 else text[:117] + "..."


def xt_of(r: Any) -> torch.Tensor:
    """x_t of a path's sample: the tensor itself, or the xt of a PathSample."""
    return r.xt if hasattr(r, "xt") else r


# --------------------------------------------------------------------------------------------------------------
# Fixtures: small, seeded, built fresh inside each call.

def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def pts(n: int = 4, d: int = 2, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(n, d, generator=gen(seed), dtype=dtype)


def unit(n: int = 4, d: int = 3, seed: int = 0) -> torch.Tensor:
    x = pts(n, d, seed)
    return x / x.norm(dim=1, keepdim=True)


def angles(n: int = 4, d: int = 2, seed: int = 0) -> torch.Tensor:
    return 2 * math.pi * torch.rand(n, d, generator=gen(seed))


def mlp(d: int = 2) -> torch.nn.Module:
    torch.manual_seed(0)
    return fm.MLP(d, hidden=16, depth=2, n_freqs=2, max_freq=1.0)


def sphere_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return M.ProjectedVelocity(M.Sphere(), fm.MLP(3, hidden=16, depth=2, n_freqs=2, max_freq=1.0))


def torus_model(d: int = 2) -> torch.nn.Module:
    torch.manual_seed(0)
    return M.ProjectedVelocity(M.FlatTorus(d), fm.MLP(2 * d, hidden=16, depth=2, n_freqs=2, max_freq=1.0))


def zero_field(x, t, **kw):
    return torch.zeros_like(x)


def decay(x, t):
    return -x


def close(a, b, tol: float = 1e-5) -> bool:
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    return a.shape == b.shape and bool(torch.allclose(a, b, atol=tol, rtol=tol))


def geodesic_path(space, schedule="condot"):
    """GeodesicPath wherever it lives (issue 21 moves it next to the manifolds)."""
    cls = getattr(fm, "GeodesicPath", None) or getattr(M, "GeodesicPath")
    return cls(space, schedule)


def draw_x0(objective, n: int = 64):
    """The source points of one training batch of a CFM objective."""
    batch = objective.draw(n, gen(1), "cpu")
    ps = batch[0] if isinstance(batch, tuple) else batch
    return ps.x0


def tokens(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.long)


V, L = 4, 2


def mask_path():
    return D.MixturePath(V, "mask")


def uniform_path():
    return D.MixturePath(V, "uniform")


def token_mlp(num_states: int = V + 1, vocab: int = V, length: int = L) -> torch.nn.Module:
    torch.manual_seed(0)
    return D.TokenMLP(num_states, vocab, length, embed=4, hidden=16, depth=2)


def x1_tokens(n: int = 8) -> torch.Tensor:
    return torch.randint(V, (n, L), generator=gen(3))


class ConstLogits(torch.nn.Module):
    """A posterior 'model' returning one fixed logit value everywhere (a diverged network)."""

    def __init__(self, value: float, vocab: int = V, num_states: int = V + 1):
        super().__init__()
        self.value, self.vocab_size, self.num_states = value, vocab, num_states
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t):
        return torch.full((*x.shape, self.vocab_size), self.value) + 0 * self.w


class BadData:
    """A data 'distribution' that returns whatever it was given."""

    def __init__(self, fn):
        self.fn = fn

    def sample(self, n, generator=None, device=None, **kw):
        return self.fn(n)


def train_quiet(model, objective, **kw):
    kw.setdefault("steps", 2)
    kw.setdefault("batch_size", 8)
    return fm.train(model, objective, progress=False, **kw)


def cfm(data=None, **kw):
    return fm.CFMObjective(fm.AffineGaussianPath("condot"), data or fm.Gaussian.standard(2), **kw)



# ==============================================================================================================
# Part I: the core
# ==============================================================================================================

# --- distributions --------------------------------------------------------------------------------------------
OWN = "fmlearn/distributions.py"
E("dist.gaussian_std_zero", lambda: fm.Gaussian([0.0, 0.0], 0.0), "std", "0", owner=OWN)
E("dist.gaussian_std_negative", lambda: fm.Gaussian([0.0, 0.0], [1.0, -2.0]), "std", "-2", owner=OWN)
E("dist.gaussian_mean_nan", lambda: fm.Gaussian([float("nan"), 0.0], 1.0), "mean", ("nan", "finite"), owner=OWN)
E("dist.gaussian_std_shape", lambda: fm.Gaussian([0.0, 0.0], [1.0, 1.0, 1.0]), "std", shape(3), owner=OWN)
E("dist.gaussian_mean_string", lambda: fm.Gaussian("0, 0", 1.0), "mean", "str", owner=OWN)
E("dist.standard_dim0", lambda: fm.Gaussian.standard(0), "dim", "0", owner=OWN)
E("dist.standard_dim_float", lambda: fm.Gaussian.standard(2.0), "dim", "2.0", owner=OWN)
E("dist.sample_n0", lambda: fm.Gaussian.standard(2).sample(0), "n", "0", owner=OWN)
E("dist.sample_n_negative", lambda: fm.Gaussian.standard(2).sample(-5), "n", "-5", owner=OWN)
E("dist.sample_n_float", lambda: fm.Gaussian.standard(2).sample(3.5), "n", "3.5", owner=OWN)
E("dist.log_prob_wrong_dim", lambda: fm.Gaussian.standard(2).log_prob(pts(4, 3)), "x", shape(4, 3), owner=OWN)
E("dist.log_prob_1d", lambda: fm.Gaussian.standard(2).log_prob(torch.zeros(2)), "x", shape(2), owner=OWN)
E("dist.log_prob_int", lambda: fm.Gaussian.standard(2).log_prob(torch.zeros(4, 2, dtype=torch.long)), "x",
  "int", owner=OWN)
E("dist.log_prob_nan", lambda: fm.Gaussian.standard(2).log_prob(torch.tensor([[float("nan"), 0.0]])), "x",
  ("nan", "finite"), owner=OWN)
R("dist.log_prob_list", lambda: fm.Gaussian.standard(2).log_prob([[0.0, 0.0]]),
  lambda r: close(r, [-math.log(2 * math.pi)]), owner=OWN, also=("error",))
R("dist.log_prob_numpy", lambda: fm.Gaussian.standard(2).log_prob(np.zeros((1, 2))),
  lambda r: close(r, [-math.log(2 * math.pi)]), owner=OWN, also=("error",))


def _gauss_ref():
    x = pts(5, 2, 1).double().numpy()
    m, s = np.array([1.0, 2.0]), np.array([2.0, 0.5])
    return (-0.5 * (((x - m) / s) ** 2).sum(1) - np.log(s).sum() - np.log(2 * np.pi))


R("dist.gaussian_log_prob", lambda: fm.Gaussian([1.0, 2.0], [2.0, 0.5]).log_prob(pts(5, 2, 1)),
  lambda r: close(r, _gauss_ref(), 1e-4), owner=OWN)
MEANS2 = [[0.0, 0.0], [3.0, 0.0]]
E("mix.weights_sum", lambda: fm.GaussianMixture(MEANS2, 1.0, [0.5, 0.6]), "weights", "1.1", owner=OWN)
E("mix.weights_negative", lambda: fm.GaussianMixture(MEANS2, 1.0, [-0.5, 1.5]), "weights", "-0.5", owner=OWN)
E("mix.weights_shape", lambda: fm.GaussianMixture(MEANS2, 1.0, [1.0]), "weights", shape(1), owner=OWN)
E("mix.means_1d", lambda: fm.GaussianMixture([0.0, 1.0]), "means", shape(2), owner=OWN)
E("mix.stds_negative", lambda: fm.GaussianMixture(MEANS2, -1.0), "stds", "-1", owner=OWN)
E("mix.stds_shape", lambda: fm.GaussianMixture(MEANS2, [1.0, 1.0, 1.0]), "stds", shape(3), owner=OWN)
E("mix.symmetric_radius0", lambda: fm.GaussianMixture.symmetric_2d(radius=0.0), "radius", "0", owner=OWN)
E("mix.symmetric_modes0", lambda: fm.GaussianMixture.symmetric_2d(0), "n_modes", "0", owner=OWN)
E("mix.log_prob_wrong_dim", lambda: fm.GaussianMixture(MEANS2).log_prob(pts(4, 3)), "x", shape(4, 3), owner=OWN)


def _mix_ref():
    x = pts(6, 2, 2).double().numpy()
    comps = [np.log(w) - 0.5 * ((x - np.array(m)) ** 2).sum(1) - np.log(2 * np.pi)
             for w, m in zip((0.25, 0.75), MEANS2)]
    return np.logaddexp(*comps)


R("mix.log_prob", lambda: fm.GaussianMixture(MEANS2, 1.0, [0.25, 0.75]).log_prob(pts(6, 2, 2)),
  lambda r: close(r, _mix_ref(), 1e-4), owner=OWN)


def _mix_score_fd():
    mix = fm.GaussianMixture(MEANS2, 1.0, [0.25, 0.75])
    x = pts(3, 2, 4).double()
    h = 1e-4
    fd = torch.stack([(mix.log_prob(x + h * e) - mix.log_prob(x - h * e)).double() / (2 * h)
                      for e in torch.eye(2, dtype=torch.float64)], 1)
    return mix.score(x), fd


R("mix.score_fd", _mix_score_fd, lambda r: close(r[0], r[1], 2e-2), owner=OWN)
E("mix.sample_n0", lambda: fm.GaussianMixture(MEANS2).sample(0, return_labels=True), "n", "0", owner=OWN)
E("paired.mismatch", lambda: fm.PairedData(pts(4, 2), pts(5, 2)), "x1", shape(5, 2), owner=OWN)
E("paired.nan", lambda: fm.PairedData(pts(4, 2), torch.full((4, 2), float("nan"))), "x1", ("nan", "finite"),
  owner=OWN)
E("toys.moons_n0", lambda: fm.Moons().sample(0), "n", "0", owner="fmlearn/toys.py")
E("toys.checkerboard_n_float", lambda: fm.Checkerboard().sample(2.5), "n", "2.5", owner="fmlearn/toys.py")

# --- schedules ------------------------------------------------------------------------------------------------
OWN = "fmlearn/schedules.py"
E("sched.unknown_name", lambda: fm.get_schedule("linear"), "linear", owner=OWN)
E("sched.not_a_schedule", lambda: fm.get_schedule(3), "3", owner=OWN)
E("sched.polynomial_n0", lambda: fm.Polynomial(0.0), "n", "0", owner=OWN)
E("sched.polynomial_negative", lambda: fm.Polynomial(-1.0), "n", "-1", owner=OWN)
E("sched.vp_negative", lambda: fm.VP(rate_min=-0.1), "rate_min", "-0.1", owner=OWN)
E("sched.ve_inverted", lambda: fm.VE(sigma_min=10.0, sigma_max=1.0), "sigma", "10", owner=OWN)


def _schedule_fd(name):
    s = fm.get_schedule(name)
    t = torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64)
    h = 1e-6
    da = (s.alpha(t + h) - s.alpha(t - h)) / (2 * h)
    db = (s.beta(t + h) - s.beta(t - h)) / (2 * h)
    return s.d_alpha(t), da, s.d_beta(t), db


for _name in ("condot", "sqrt", "cosine", "vp", "polynomial"):
    R(f"sched.derivatives_fd_{_name}", (lambda n=_name: _schedule_fd(n)),
      lambda r: close(r[0], r[1], 1e-4) and close(r[2], r[3], 1e-4), owner=OWN)
R("sched.condot_values", lambda: (fm.CondOT().alpha(torch.tensor([0.0, 0.25, 1.0])),
                                  fm.CondOT().beta(torch.tensor([0.0, 0.25, 1.0]))),
  lambda r: close(r[0], [0.0, 0.25, 1.0]) and close(r[1], [1.0, 0.75, 0.0]), owner=OWN)

# --- paths ----------------------------------------------------------------------------------------------------
OWN = "fmlearn/paths.py: AffineGaussianPath.sample"


def _ps(x0=None, x1=None, t=0.5, schedule="condot"):
    return fm.AffineGaussianPath(schedule).sample(pts(4, 2, 0) if x0 is None else x0,
                                                  pts(4, 2, 1) if x1 is None else x1, t)


E("path.unknown_schedule", lambda: fm.AffineGaussianPath("linear"), "linear", owner="fmlearn/schedules.py")
E("path.t_above_1", lambda: _ps(t=1.5), "t", "1.5", owner=OWN)
E("path.t_negative", lambda: _ps(t=-0.1), "t", "-0.1", owner=OWN)
E("path.t_nan", lambda: _ps(t=float("nan")), "t", "nan", owner=OWN)
E("path.t_tensor_above_1", lambda: _ps(t=torch.full((4,), 1.5)), "t", "1.5", owner=OWN)
E("path.t_column", lambda: _ps(t=torch.rand(4, 1)), "t", shape(4, 1), owner=OWN)
E("path.t_batch_mismatch", lambda: _ps(t=torch.rand(3)), "t", shape(3), owner=OWN)
E("path.t_int_tensor", lambda: _ps(t=torch.tensor([0, 1, 0, 1])), "t", "int", owner=OWN)
E("path.t_string", lambda: _ps(t="0.5"), "t", "str", owner=OWN)
E("path.x1_other_dim", lambda: _ps(x1=pts(4, 3)), "x1", shape(4, 3), owner=OWN)
E("path.x1_other_batch", lambda: _ps(x1=pts(5, 2)), "x1", shape(5, 2), owner=OWN)
E("path.x0_1d", lambda: _ps(x0=torch.zeros(4), x1=torch.zeros(4)), "x0", shape(4), owner=OWN)
E("path.x0_int", lambda: _ps(x0=torch.zeros(4, 2, dtype=torch.long)), "x0", "int", owner=OWN)
E("path.x1_nan", lambda: _ps(x1=torch.full((4, 2), float("nan"))), "x1", ("nan", "finite"), owner=OWN)
E("path.x0_inf", lambda: _ps(x0=torch.full((4, 2), float("inf"))), "x0", ("inf", "finite"), owner=OWN)
R("path.list_inputs", lambda: fm.AffineGaussianPath().sample([[0.0, 2.0]], [[2.0, 4.0]], 0.5).xt,
  lambda r: close(r, [[1.0, 3.0]]), owner=OWN, also=("error",))
R("path.numpy_inputs", lambda: fm.AffineGaussianPath().sample(np.zeros((1, 2)), np.ones((1, 2)), 0.25).xt,
  lambda r: close(r, [[0.25, 0.25]]), owner=OWN, also=("error",))
R("path.condot_velocity", lambda: _ps(t=0.3).dxt, lambda r: close(r, pts(4, 2, 1) - pts(4, 2, 0)), owner=OWN)
R("path.sqrt_xt", lambda: _ps(t=0.36, schedule="sqrt").xt,
  lambda r: close(r, 0.36 * pts(4, 2, 1) + 0.8 * pts(4, 2, 0), 1e-5), owner=OWN)
OWN = "fmlearn/paths.py: AffineGaussianPath conversions"
_P = fm.AffineGaussianPath
E("conv.score_at_t1", lambda: _P().score_from_velocity(pts(), pts(seed=1), 1.0), "t", "1", owner=OWN)
E("conv.velocity_from_x1_at_t1", lambda: _P().velocity_from_x1(pts(), pts(seed=1), 1.0), "t", "1", owner=OWN)
E("conv.velocity_from_score_at_t0", lambda: _P().velocity_from_score(pts(), pts(seed=1), 0.0), "t", "0",
  owner=OWN)
E("conv.shape_mismatch", lambda: _P().score_from_velocity(pts(4, 3), pts(4, 2), 0.5), "u", shape(4, 3),
  owner=OWN)
E("conv.t_above_1", lambda: _P().x1_from_velocity(pts(), pts(seed=1), 2.0), "t", "2", owner=OWN)


def _x1_hat():
    x0, x1, t = pts(4, 2, 0), pts(4, 2, 1), 0.3
    return _P().x1_from_velocity(x1 - x0, t * x1 + (1 - t) * x0, t), x1


R("conv.x1_from_pair_velocity", _x1_hat, lambda r: close(r[0], r[1], 1e-5), owner=OWN)
R("conv.score_roundtrip", lambda: _P("cosine").score_from_velocity(
    _P("cosine").velocity_from_score(pts(), pts(seed=1), 0.4), pts(seed=1), 0.4),
  lambda r: close(r, pts(), 1e-4), owner=OWN)

# --- geodesic paths -------------------------------------------------------------------------------------------
OWN = "fmlearn/paths.py (moving to manifolds): GeodesicPath"
E("geo.space_string", lambda: geodesic_path("sphere"), "space", "str", owner=OWN)
E("geo.schedule_not_convex", lambda: geodesic_path(M.Sphere(), "cosine"), "schedule", "cosine", owner=OWN)
E("geo.x0_off_sphere", lambda: geodesic_path(M.Sphere()).sample(2 * unit(), unit(seed=1), 0.5), "x0",
  ("sphere", "norm", "|x|"), owner=OWN)
E("geo.x0_wrong_dim", lambda: geodesic_path(M.Sphere()).sample(unit(4, 2), unit(4, 2, 1), 0.5), "x0",
  shape(4, 2), owner=OWN)
E("geo.torus_out_of_range", lambda: geodesic_path(M.FlatTorus(2)).sample(angles() + 10, angles(seed=1), 0.5),
  "x0", ("angle", "[0, 2"), owner=OWN)
E("geo.t_above_1", lambda: geodesic_path(M.Sphere()).sample(unit(), unit(seed=1), 1.5), "t", "1.5", owner=OWN)


def _sphere_mid():
    e1, e2 = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 1.0, 0.0]])
    return geodesic_path(M.Sphere()).sample(e1, e2, 0.5)


R("geo.sphere_midpoint", _sphere_mid,
  lambda ps: close(ps.xt, [[2 ** -0.5, 2 ** -0.5, 0.0]], 1e-6)
  and close(ps.dxt, [[-math.pi / 2 * 2 ** -0.5, math.pi / 2 * 2 ** -0.5, 0.0]], 1e-5), owner=OWN)


def _torus_seam():
    return geodesic_path(M.FlatTorus(1)).sample(torch.tensor([[0.1]]), torch.tensor([[2 * math.pi - 0.1]]), 0.25)


R("geo.torus_across_seam", _torus_seam,
  lambda ps: close(ps.xt, [[0.05]], 1e-5) and close(ps.dxt, [[-0.2]], 1e-5), owner=OWN)
R("geo.euclidean_is_condot", lambda: (geodesic_path(fm.Euclidean()).sample(pts(), pts(seed=1), 0.3).xt,
                                      _ps(t=0.3).xt), lambda r: close(r[0], r[1], 1e-5), owner=OWN)

# --- objectives -----------------------------------------------------------------------------------------------
OWN = "fmlearn/objectives.py: CFMObjective"
R("obj.sphere_default_source_on_sphere",
  lambda: draw_x0(fm.CFMObjective(geodesic_path(M.Sphere()), M.VonMisesFisherMixture.tetrahedron())),
  lambda x0: float((x0.norm(dim=1) - 1).abs().max()) < 1e-5, owner=OWN)
R("obj.torus_default_source_uniform",
  lambda: draw_x0(fm.CFMObjective(geodesic_path(M.FlatTorus(2)),
                                  M.WrappedNormalMixture([[1.0, 1.0], [4.0, 4.0]], 0.3)), 2000),
  lambda x0: float(x0.min()) >= 0 and float(x0.max()) < 2 * math.pi and abs(float(x0.mean()) - math.pi) < 0.15,
  owner=OWN)
E("obj.data_off_sphere",
  lambda: draw_x0(fm.CFMObjective(geodesic_path(M.Sphere()), fm.Gaussian.standard(3),
                                  source=M.Uniform(M.Sphere()))),
  ("data", "x1"), ("sphere", "norm", "|x|"), owner=OWN)
E("obj.data_off_sphere_train",
  lambda: train_quiet(sphere_model(), fm.CFMObjective(geodesic_path(M.Sphere()), fm.Gaussian.standard(3),
                                                      source=M.Uniform(M.Sphere()))),
  ("data", "x1"), ("sphere", "norm", "|x|"), owner=OWN)
E("obj.data_off_torus",
  lambda: draw_x0(fm.CFMObjective(geodesic_path(M.FlatTorus(2)), fm.Gaussian([-3.0, -3.0], 0.5),
                                  source=M.Uniform(M.FlatTorus(2)))),
  ("data", "x1"), ("angle", "[0, 2", "wrap"), owner=OWN)
E("obj.euclidean_source_on_sphere",
  lambda: draw_x0(fm.CFMObjective(geodesic_path(M.Sphere()), M.VonMisesFisherMixture.tetrahedron(),
                                  source=fm.Gaussian.standard(3))),
  ("source", "x0"), ("sphere", "norm", "|x|", "Gaussian"), owner=OWN)
E("obj.torus_source_on_sphere",
  lambda: draw_x0(fm.CFMObjective(geodesic_path(M.Sphere()), M.VonMisesFisherMixture.tetrahedron(),
                                  source=M.Uniform(M.FlatTorus(3)))),
  ("source", "x0"), ("sphere", "torus", "norm"), owner=OWN)
E("obj.source_other_dim", lambda: draw_x0(cfm(source=fm.Gaussian.standard(3))), ("source", "x0"),
  ("(64, 3)", "[64, 3]", "dim 3", "3 dim"), owner=OWN)
E("obj.data_not_sampleable", lambda: cfm(data=[1.0, 2.0, 3.0]), "data", "list", owner=OWN)
E("obj.path_string", lambda: fm.CFMObjective("condot", fm.Gaussian.standard(2)), "path", "str", owner=OWN)
E("obj.coupling_not_callable", lambda: cfm(coupling=3), "coupling", "int", owner=OWN)
E("obj.time_sampler_number", lambda: cfm(time_sampler=0.5), "time_sampler", "float", owner=OWN)
E("obj.label_dropout_one", lambda: cfm(conditional=True, label_dropout=1.0), "label_dropout", "1.0", owner=OWN)
E("obj.label_dropout_bool", lambda: cfm(conditional=True, label_dropout=True), "label_dropout", "bool",
  owner=OWN)
E("obj.dropout_without_conditional", lambda: cfm(label_dropout=0.1), "label_dropout", "conditional", owner=OWN)
E("obj.conditional_model_without_classes", lambda: cfm(fm.GaussianMixture(MEANS2), conditional=True).bind(mlp()),
  "num_classes", "MLP", owner=OWN)
E("obj.time_sampler_above_1", lambda: draw_x0(cfm(time_sampler=lambda n, g, d: torch.full((n,), 1.5))),
  ("t", "time_sampler"), "1.5", owner=OWN)
E("obj.cfm_loss_shapes", lambda: fm.cfm_loss(mlp(), fm.AffineGaussianPath(), pts(4, 2), pts(4, 3), torch.rand(4)),
  "x1", shape(4, 3), owner="fmlearn/objectives.py: cfm_loss")


def _cfm_zero():
    x0, x1 = pts(4, 2, 0), pts(4, 2, 1)
    return fm.cfm_loss(zero_field, fm.AffineGaussianPath(), x0, x1, torch.rand(4, generator=gen())), \
        ((x1 - x0) ** 2).sum(1).mean()


R("obj.cfm_loss_zero_model", _cfm_zero, lambda r: close(r[0], r[1], 1e-5), owner="fmlearn/objectives.py: cfm_loss")
OWN = "fmlearn/objectives.py: logit_normal_time"
E("obj.logit_normal_std0", lambda: fm.logit_normal_time(std=0.0), "std", "0", owner=OWN)
E("obj.logit_normal_mean_nan", lambda: fm.logit_normal_time(mean=float("nan")), "mean", "nan", owner=OWN)
R("obj.logit_normal_median", lambda: fm.logit_normal_time(0.0, 1.0)(20000, gen(), "cpu"),
  lambda t: float(t.min()) > 0 and float(t.max()) < 1 and abs(float(t.median()) - 0.5) < 0.02, owner=OWN)
E("obj.cross_entropy_data", lambda: fm.CrossEntropyObjective(3), "data", "int",
  owner="fmlearn/objectives.py: CrossEntropyObjective")

# --- train ----------------------------------------------------------------------------------------------------
OWN = "fmlearn/training.py: train"
E("train.steps0", lambda: train_quiet(mlp(), cfm(), steps=0), "steps", "0", owner=OWN)
E("train.steps_negative", lambda: train_quiet(mlp(), cfm(), steps=-1), "steps", "-1", owner=OWN)
E("train.steps_float", lambda: train_quiet(mlp(), cfm(), steps=2.5), "steps", "2.5", owner=OWN)
E("train.batch_size0", lambda: train_quiet(mlp(), cfm(), batch_size=0), "batch_size", "0", owner=OWN)
E("train.lr0", lambda: train_quiet(mlp(), cfm(), lr=0.0), "lr", "0", owner=OWN)
E("train.lr_negative", lambda: train_quiet(mlp(), cfm(), lr=-1e-3), "lr", "-0.001", owner=OWN)
E("train.lr_nan", lambda: train_quiet(mlp(), cfm(), lr=float("nan")), "lr", "nan", owner=OWN)
E("train.lr_string", lambda: train_quiet(mlp(), cfm(), lr="1e-3"), "lr", "str", owner=OWN)
E("train.seed_float", lambda: train_quiet(mlp(), cfm(), seed=1.5), "seed", "1.5", owner=OWN)
E("train.ema_one", lambda: train_quiet(mlp(), cfm(), ema=1.0), "ema", "1.0", owner=OWN)
E("train.ema_bool", lambda: train_quiet(mlp(), cfm(), ema=True), "ema", "bool", owner=OWN)
E("train.log_every0", lambda: train_quiet(mlp(), cfm(), log_every=0), "log_every", "0", owner=OWN)
E("train.checkpoint_every0", lambda: train_quiet(mlp(), cfm(), checkpoint_every=0), "checkpoint_every", "0",
  owner=OWN)
E("train.model_function", lambda: train_quiet(zero_field, cfm()), "model", "function", owner=OWN)
E("train.objective_none", lambda: train_quiet(mlp(), None), "objective", "NoneType", owner=OWN)
E("train.objective_is_path", lambda: train_quiet(mlp(), fm.AffineGaussianPath()), "objective",
  "AffineGaussianPath", owner=OWN)
E("train.device_unknown", lambda: train_quiet(mlp(), cfm(), device="gpu7"), "device", "gpu7",
  owner="fmlearn/config.py: get_device")
E("train.model_other_dim", lambda: train_quiet(mlp(3), cfm()), ("model", "x", "data"),
  ("(8, 2)", "[8, 2]", "dim 2", "dimension 2", "dim=2"), owner=OWN)
E("train.data_nan", lambda: train_quiet(mlp(), cfm(BadData(lambda n: torch.full((n, 2), float("nan"))))),
  ("loss", "x1", "data"), ("nan", "finite"), owner=OWN)


def _resume(first, second, model_fn=mlp, **kw):
    with tempfile.TemporaryDirectory() as tmp:
        ck = os.path.join(tmp, "run.pt")
        train_quiet(model_fn(), first, steps=2, cosine_decay=False, checkpoint=ck, **kw)
        return train_quiet(model_fn(), second, steps=4, cosine_decay=False, checkpoint=ck, **kw)


E("train.resume_other_target",
  lambda: _resume(cfm(fm.Gaussian.standard(2)), cfm(fm.GaussianMixture(MEANS2))),
  "checkpoint", ("objective", "target", "data"), owner=OWN)
E("train.resume_other_schedule",
  lambda: _resume(cfm(), fm.CFMObjective(fm.AffineGaussianPath("cosine"), fm.Gaussian.standard(2))),
  "checkpoint", ("objective", "path", "schedule"), owner=OWN)
def _resume_batch():
    with tempfile.TemporaryDirectory() as tmp:
        ck = os.path.join(tmp, "run.pt")
        train_quiet(mlp(), cfm(), steps=2, cosine_decay=False, checkpoint=ck)
        return train_quiet(mlp(), cfm(), steps=4, batch_size=16, cosine_decay=False, checkpoint=ck)


E("train.resume_other_batch_size", _resume_batch, "checkpoint", "batch_size", owner=OWN)


def _resume_beyond():
    with tempfile.TemporaryDirectory() as tmp:
        ck = os.path.join(tmp, "run.pt")
        train_quiet(mlp(), cfm(), steps=4, cosine_decay=False, checkpoint=ck)
        return train_quiet(mlp(), cfm(), steps=2, cosine_decay=False, checkpoint=ck)


E("train.resume_more_steps_than_asked", _resume_beyond, "checkpoint", "4", owner=OWN)


def _garbage_checkpoint():
    with tempfile.TemporaryDirectory() as tmp:
        ck = os.path.join(tmp, "run.pt")
        Path(ck).write_bytes(b"not a checkpoint at all")
        return train_quiet(mlp(), cfm(), checkpoint=ck)


E("train.garbage_checkpoint", _garbage_checkpoint, "checkpoint", ("torch", "zip"), owner=OWN)
E("train.load_checkpoint_missing", lambda: fm.load_checkpoint("/nonexistent/run.pt", mlp()), "checkpoint",
  "/nonexistent/run.pt", owner="fmlearn/training.py: load_checkpoint")

# --- odeint / sample / simulate -------------------------------------------------------------------------------
OWN = "fmlearn/solvers.py: odeint"
X1 = torch.ones(4, 2)
R("ode.rk4_decay", lambda: fm.odeint(decay, X1, method="rk4", steps=20).x,
  lambda x: close(x, torch.full((4, 2), math.exp(-1)), 1e-6), owner=OWN)
R("ode.dopri5_decay", lambda: fm.odeint(decay, X1, method="dopri5", rtol=1e-8, atol=1e-8).x,
  lambda x: close(x, torch.full((4, 2), math.exp(-1)), 1e-5), owner=OWN)
R("ode.backwards", lambda: fm.odeint(decay, X1.double(), method="rk4", times=fm.time_grid(20, 1.0, 0.0)).x,
  lambda x: close(x, torch.full((4, 2), math.e), 1e-6), owner=OWN)
R("ode.tuple_state", lambda: fm.odeint(lambda s, t: (-s[0], torch.ones_like(s[1])), (X1, torch.zeros(4)),
                                       method="heun", steps=10).x[1],
  lambda a: close(a, torch.ones(4), 1e-6), owner=OWN)
E("ode.method_unknown", lambda: fm.odeint(decay, X1, method="rk5"), "method", "rk5", owner=OWN)
E("ode.method_capitalised", lambda: fm.odeint(decay, X1, method="Euler"), "method", "Euler", owner=OWN)
E("ode.steps0", lambda: fm.odeint(decay, X1, steps=0), "steps", "0", owner=OWN)
E("ode.steps_negative", lambda: fm.odeint(decay, X1, steps=-3), "steps", "-3", owner=OWN)
E("ode.steps_float", lambda: fm.odeint(decay, X1, steps=2.5), "steps", "2.5", owner=OWN)
E("ode.times_unsorted", lambda: fm.odeint(decay, X1, times=[0.0, 0.5, 0.3, 1.0]), "times", ("monoton", "increas",
  "order", "sorted"), owner=OWN)
E("ode.times_nan", lambda: fm.odeint(decay, X1, times=[0.0, float("nan"), 1.0]), "times", ("nan", "finite"),
  owner=OWN)
E("ode.times_one_point", lambda: fm.odeint(decay, X1, times=[0.5]), "times", ("1", "one", "two", "2"), owner=OWN)
E("ode.steps_and_times", lambda: fm.odeint(decay, X1, steps=4, times=[0.0, 1.0]), "steps", "times", owner=OWN)
E("ode.x0_list", lambda: fm.odeint(decay, [[1.0, 2.0]], steps=2), "x0", "list", owner=OWN,
  check=lambda sol: close(sol.x, [[0.25, 0.5]]))
E("ode.x0_numpy", lambda: fm.odeint(decay, np.ones((1, 2)), steps=2), "x0", "ndarray", owner=OWN,
  check=lambda sol: close(sol.x, [[0.25, 0.25]]))
E("ode.x0_int", lambda: fm.odeint(decay, torch.ones(4, 2, dtype=torch.long), steps=2), "x0", "int", owner=OWN,
  check=lambda sol: sol.x.is_floating_point() and close(sol.x, torch.full((4, 2), 0.25)))
E("ode.field_column", lambda: fm.odeint(lambda x, t: x[:, :1], X1, steps=2), ("velocity", "field"),
  shape(4, 1), owner=OWN)
E("ode.field_float", lambda: fm.odeint(lambda x, t: 1.0, X1, steps=2), ("velocity", "field"), "float", owner=OWN)
E("ode.field_none", lambda: fm.odeint(lambda x, t: None, X1, steps=2), ("velocity", "field"), "None", owner=OWN)
E("ode.field_not_callable", lambda: fm.odeint(3, X1, steps=2), "field", "int", owner=OWN)
E("ode.dopri5_with_steps", lambda: fm.odeint(decay, X1, method="dopri5", steps=10), "steps", "dopri5", owner=OWN)
E("ode.rtol_with_euler", lambda: fm.odeint(decay, X1, steps=2, rtol=1e-3), "rtol", "euler", owner=OWN)
E("ode.rtol_negative", lambda: fm.odeint(decay, X1, method="dopri5", rtol=-1.0), "rtol", "-1",
  owner="fmlearn/adaptive.py: dopri5")
E("ode.max_steps0", lambda: fm.odeint(decay, X1, method="dopri5", max_steps=0), "max_steps", "0",
  owner="fmlearn/adaptive.py: dopri5")
E("ode.first_step_negative", lambda: fm.odeint(decay, X1, method="dopri5", first_step=-0.1), "first_step",
  "-0.1", owner="fmlearn/adaptive.py: dopri5")
E("ode.dopri5_three_times", lambda: fm.odeint(decay, X1, method="dopri5", times=[0.0, 0.5, 1.0]), "times", "3",
  owner=OWN)
E("ode.space_string", lambda: fm.odeint(decay, X1, steps=2, space="sphere"), "space", "str",
  owner="fmlearn/spaces.py: check_space")
OWN = "fmlearn/solvers.py: sample"


def _manual_euler(model, x, steps):
    with torch.no_grad():
        for i in range(steps):
            x = x + model(x, torch.full((x.shape[0],), i / steps)) / steps
    return x


R("sample.matches_hand_euler", lambda: (fm.sample(mlp(), pts(), steps=4).x, _manual_euler(mlp().eval(), pts(), 4)),
  lambda r: close(r[0], r[1], 1e-5), owner=OWN)
E("sample.steps0", lambda: fm.sample(mlp(), pts(), steps=0), "steps", "0", owner=OWN)
E("sample.x0_list", lambda: fm.sample(mlp(), [[0.0, 1.0]], steps=2), "x0", "list", owner=OWN)
E("sample.model_other_dim", lambda: fm.sample(mlp(3), pts(4, 2), steps=2), ("x0", "x", "model"), shape(4, 2),
  owner=OWN)
E("sample.method_unknown", lambda: fm.sample(mlp(), pts(), method="rk45"), "method", "rk45", owner=OWN)
E("sample.unexpected_condition", lambda: fm.sample(mlp(), pts(), steps=2, y=torch.zeros(4, dtype=torch.long)), "y",
  owner="fmlearn/models.py: MLP.forward")
R("sample.sphere_without_space", lambda: fm.sample(sphere_model(), unit(64), steps=8).x,
  lambda x: float((x.norm(dim=1) - 1).abs().max()) < 1e-5, owner=OWN)
R("sample.sphere_without_space_rk4", lambda: fm.sample(sphere_model(), unit(64), steps=4, method="rk4").x,
  lambda x: float((x.norm(dim=1) - 1).abs().max()) < 1e-5, owner=OWN)
R("sample.sphere_without_space_same_as_with",
  lambda: (fm.sample(sphere_model(), unit(16), steps=4).x, fm.sample(sphere_model(), unit(16), steps=4,
                                                                     space=M.Sphere()).x),
  lambda r: close(r[0], r[1], 1e-6), owner=OWN)
R("sample.torus_without_space", lambda: fm.sample(torus_model(), angles(64), steps=8).x,
  lambda x: float(x.min()) >= 0 and float(x.max()) < 2 * math.pi, owner=OWN)
E("sample.sphere_x0_off_sphere", lambda: fm.sample(sphere_model(), pts(4, 3), steps=2), "x0",
  ("sphere", "norm", "|x|"), owner=OWN)
E("sample.sphere_model_torus_space", lambda: fm.sample(sphere_model(), unit(), steps=2, space=M.FlatTorus(3)),
  "space", ("Sphere", "FlatTorus"), owner=OWN)
OWN = "fmlearn/solvers.py: simulate / flow_step"
E("simulate.not_a_step", lambda: fm.simulate(decay, X1, steps=2), "step", "function", owner=OWN)
E("simulate.x0_list", lambda: fm.simulate(fm.flow_step(decay), [[1.0, 2.0]], steps=2), "x0", "list", owner=OWN)
E("simulate.steps0", lambda: fm.simulate(fm.flow_step(decay), X1, steps=0), "steps", "0", owner=OWN)
E("flow_step.dopri5", lambda: fm.flow_step(decay, method="dopri5"), "method", "dopri5", owner=OWN)
E("flow_step.weight2", lambda: fm.flow_step(decay, weight=2.0), "weight", "2", owner=OWN)
R("simulate.flow_rk4", lambda: fm.simulate(fm.flow_step(decay, method="rk4"), X1, steps=20).x,
  lambda x: close(x, torch.full((4, 2), math.exp(-1)), 1e-6), owner=OWN)
OWN = "fmlearn/stepping.py: time_grid / check_grid"
E("grid.steps0", lambda: fm.time_grid(0), "steps", "0", owner=OWN)
E("grid.kind_unknown", lambda: fm.time_grid(4, kind="cubic"), "kind", "cubic", owner=OWN)
E("grid.equal_ends", lambda: fm.time_grid(4, 0.5, 0.5), "t1", "0.5", owner=OWN)
E("grid.repeated_time", lambda: fm.check_grid([0.0, 0.5, 0.5, 1.0]), "times", ("monoton", "increas", "0.5"),
  owner=OWN)
E("grid.two_dimensional", lambda: fm.check_grid(torch.zeros(2, 2)), "times", shape(2, 2), owner=OWN)
R("grid.uniform", lambda: fm.time_grid(4), lambda g: close(g, [0.0, 0.25, 0.5, 0.75, 1.0], 1e-12), owner=OWN)

# --- log-likelihood -------------------------------------------------------------------------------------------
OWN = "fmlearn/likelihood.py: log_likelihood"
A = 0.5


def linear_field(x, t):
    return A * x


def _linear_ref(x):
    """u = a x: x_1 = e^a x_0 with x_0 ~ N(0, I): log p_1(x) = log N(e^-a x; 0, I) - a d."""
    x = x.double()
    z = x * math.exp(-A)
    d = x.shape[1]
    return -0.5 * (z ** 2).sum(1) - 0.5 * d * math.log(2 * math.pi) - A * d


R("ll.dopri5", lambda: fm.log_likelihood(linear_field, pts(8, 2).double(), method="dopri5"),
  lambda r: close(r, _linear_ref(pts(8, 2)), 1e-4), owner=OWN)
R("ll.rk4_linear", lambda: fm.log_likelihood(linear_field, pts(8, 2).double(), steps=16),
  lambda r: close(r, _linear_ref(pts(8, 2)), 1e-5), owner=OWN)
R("ll.hutchinson_linear", lambda: fm.log_likelihood(linear_field, pts(8, 2).double(), steps=16,
                                                     divergence="hutchinson", generator=gen()),
  lambda r: close(r, _linear_ref(pts(8, 2)), 1e-5), owner=OWN)
R("ll.zero_field_is_source", lambda: fm.log_likelihood(zero_field, pts(8, 2), steps=2),
  lambda r: close(r, fm.Gaussian.standard(2).log_prob(pts(8, 2)), 1e-5), owner=OWN)
E("ll.steps0", lambda: fm.log_likelihood(linear_field, pts(), steps=0), "steps", "0", owner=OWN)
E("ll.divergence_unknown", lambda: fm.log_likelihood(linear_field, pts(), divergence="skilling"), "divergence",
  "skilling", owner=OWN)
E("ll.probes0", lambda: fm.log_likelihood(linear_field, pts(), divergence="hutchinson", probes=0), "probes", "0",
  owner=OWN)
E("ll.method_unknown", lambda: fm.log_likelihood(linear_field, pts(), method="rk5"), "method", "rk5", owner=OWN)
E("ll.method_int", lambda: fm.log_likelihood(linear_field, pts(), method=4), "method", "int", owner=OWN)
E("ll.x_nan", lambda: fm.log_likelihood(linear_field, torch.full((2, 2), float("nan"))), "x", ("nan", "finite"),
  owner=OWN)
E("ll.x_1d", lambda: fm.log_likelihood(linear_field, torch.zeros(2)), "x", shape(2), owner=OWN)
E("ll.x_int", lambda: fm.log_likelihood(linear_field, torch.zeros(2, 2, dtype=torch.long)), "x", "int", owner=OWN)
E("ll.x_list", lambda: fm.log_likelihood(zero_field, [[0.0, 0.0]], steps=2), "x", "list", owner=OWN,
  check=lambda r: close(r, [-math.log(2 * math.pi)], 1e-5))
E("ll.source_number", lambda: fm.log_likelihood(linear_field, pts(), source=3), "source", "int", owner=OWN)
E("ll.source_wrong_shape", lambda: fm.log_likelihood(linear_field, pts(), steps=2, source=lambda x0: torch.zeros(1)),
  "source", shape(1), owner=OWN)
E("ll.model_not_callable", lambda: fm.log_likelihood(3, pts()), "model", "int", owner=OWN)
E("ll.model_other_dim", lambda: fm.log_likelihood(mlp(3), pts(4, 2), steps=2), ("model", "x"), shape(4, 2),
  owner=OWN)
R("ll.sphere_without_space", lambda: (fm.log_likelihood(sphere_model(), unit(8), steps=4),
                                      fm.log_likelihood(sphere_model(), unit(8), steps=4, space=M.Sphere())),
  lambda r: close(r[0], r[1], 1e-4), owner=OWN)
R("ll.torus_without_space", lambda: (fm.log_likelihood(torus_model(), angles(8), steps=4),
                                     fm.log_likelihood(torus_model(), angles(8), steps=4, space=M.FlatTorus(2))),
  lambda r: close(r[0], r[1], 1e-4), owner=OWN)
R("ll.sphere_uniform_source_given", lambda: (fm.log_likelihood(sphere_model(), unit(8), steps=4, space=M.Sphere(),
                                                               source=M.Uniform(M.Sphere())),
                                             fm.log_likelihood(sphere_model(), unit(8), steps=4, space=M.Sphere())),
  lambda r: close(r[0], r[1], 1e-5), owner=OWN)
R("ll.sphere_zero_field", lambda: fm.log_likelihood(zero_field, unit(8), steps=2, space=M.Sphere()),
  lambda r: close(r, torch.full((8,), -math.log(4 * math.pi)), 1e-5), owner=OWN)
E("ll.sphere_euclidean_source", lambda: fm.log_likelihood(sphere_model(), unit(8), steps=2, space=M.Sphere(),
                                                          source=fm.Gaussian.standard(3)),
  "source", ("sphere", "Gaussian", "euclid"), owner=OWN)
E("ll.sphere_euclidean_source_no_space", lambda: fm.log_likelihood(sphere_model(), unit(8), steps=2,
                                                                   source=fm.Gaussian.standard(3)),
  "source", ("sphere", "Gaussian", "euclid"), owner=OWN)
E("ll.sphere_x_off_sphere", lambda: fm.log_likelihood(sphere_model(), pts(4, 3), steps=2, space=M.Sphere()), "x",
  ("sphere", "norm", "|x|"), owner=OWN)
E("ll.sphere_x_off_sphere_no_space", lambda: fm.log_likelihood(sphere_model(), pts(4, 3), steps=2), "x",
  ("sphere", "norm", "|x|"), owner=OWN)
E("ll.sphere_model_torus_space", lambda: fm.log_likelihood(sphere_model(), unit(4), steps=2, space=M.FlatTorus(3)),
  "space", ("Sphere", "FlatTorus"), owner=OWN)
OWN = "fmlearn/likelihood.py: divergence_exact / divergence_hutchinson / bits_per_dim"
E("div.exact_wrong_shape", lambda: fm.divergence_exact(lambda x, t: x[:, :1], pts(), 0.5),
  ("velocity", "field"), shape(4, 1), owner=OWN)
R("div.exact_linear", lambda: fm.divergence_exact(lambda x, t: x @ torch.tensor([[1.0, 2.0], [3.0, 4.0]]),
                                                  pts(), 0.5)[1],
  lambda d: close(d, torch.full((4,), 5.0), 1e-5), owner=OWN)
E("div.hutchinson_probes0", lambda: fm.divergence_hutchinson(linear_field, pts(), 0.5, probes=0), "probes", "0",
  owner=OWN)
E("div.exact_t_above_1", lambda: fm.divergence_exact(linear_field, pts(), 1.5), "t", "1.5", owner=OWN)
E("bits.dim0", lambda: fm.bits_per_dim(torch.zeros(3), 0), "data_shape_or_dim", "0", owner=OWN)
R("bits.value", lambda: fm.bits_per_dim(torch.tensor([-4 * math.log(2)]), 2), lambda b: close(b, [2.0]), owner=OWN)

# --- sde ------------------------------------------------------------------------------------------------------
OWN = "fmlearn/sde.py: sde_sample"
PATH = fm.AffineGaussianPath("condot")
E("sde.geodesic_path", lambda: fm.sde_sample(decay, geodesic_path(M.Sphere()), unit(), steps=2), "path",
  "GeodesicPath", owner=OWN)
E("sde.g_negative", lambda: fm.sde_sample(decay, PATH, pts(), steps=2, g=-1.0), "g", "-1", owner=OWN)
E("sde.g_nan", lambda: fm.sde_sample(decay, PATH, pts(), steps=2, g=float("nan")), "g", "nan", owner=OWN)
E("sde.g_function_negative", lambda: fm.sde_sample(decay, PATH, pts(), steps=2, g=lambda t: -1.0), "g", "-1",
  owner=OWN)
E("sde.corrector_steps_negative", lambda: fm.sde_sample(decay, PATH, pts(), steps=2, corrector_steps=-1),
  "corrector_steps", "-1", owner=OWN)
E("sde.corrector_eps0", lambda: fm.sde_sample(decay, PATH, pts(), steps=2, corrector_eps=0.0), "corrector_eps",
  "0", owner=OWN)
E("sde.steps_and_times", lambda: fm.sde_sample(decay, PATH, pts(), steps=2, times=[0.0, 1.0]), "steps", "times",
  owner=OWN)
E("sde.neither_steps_nor_times", lambda: fm.sde_sample(decay, PATH, pts()), "steps", "times", owner=OWN)
E("sde.times_decreasing", lambda: fm.sde_sample(decay, PATH, pts(), times=[1.0, 0.5, 0.0]), "times", "1",
  owner=OWN)
E("sde.x0_1d", lambda: fm.sde_sample(decay, PATH, torch.zeros(4), steps=2), "x0", shape(4), owner=OWN)
E("sde.x0_list", lambda: fm.sde_sample(decay, PATH, [[0.0, 1.0]], steps=2), "x0", "list", owner=OWN)
E("sde.steps0", lambda: fm.sde_sample(decay, PATH, pts(), steps=0), "steps", "0", owner=OWN)
E("sde.velocity_not_callable", lambda: fm.sde_sample(3, PATH, pts(), steps=2), "velocity", "int", owner=OWN)
R("sde.g0_is_euler", lambda: (fm.sde_sample(decay, PATH, pts(), steps=10, g=0.0).x,
                              fm.odeint(decay, pts(), steps=10).x), lambda r: close(r[0], r[1], 1e-6), owner=OWN)
R("sde.corrector_stays_on_sphere",
  lambda: fm.sde_sample(sphere_model(), PATH, unit(32), times=[0.0, 0.25, 0.5], g=0.0, corrector_steps=2,
                        corrector_eps=0.01, space=M.Sphere(), generator=gen()).x,
  lambda x: float((x.norm(dim=1) - 1).abs().max()) < 1e-5, owner="fmlearn/sde.py: the Langevin corrector")
OWN = "fmlearn/sde.py: langevin_step / diffusion_noise"
E("langevin.eps0", lambda: fm.langevin_step(lambda x: -x, pts(), 0.0), "eps", "0", owner=OWN)
E("langevin.x_list", lambda: fm.langevin_step(lambda x: -x, [[0.0, 1.0]], 0.1), "x", "list", owner=OWN)
R("langevin.gaussian_variance", lambda: fm.langevin_step(lambda x: -x, torch.randn(200_000, 1, generator=gen(5)),
                                                         0.1, generator=gen(6)),
  lambda x: abs(float(x.var()) - ((1 - 0.1) ** 2 + 0.2)) < 0.015, owner=OWN)
E("diffusion_noise.scale_negative", lambda: fm.diffusion_noise(PATH, scale=-1.0), "scale", "-1", owner=OWN)
E("diffusion_noise.at_t0", lambda: fm.diffusion_noise(PATH)(0.0), "t", "0", owner=OWN)
E("diffusion_noise.not_affine", lambda: fm.diffusion_noise("condot"), "path", "str", owner=OWN)

# --- couplings ------------------------------------------------------------------------------------------------
OWN = "fmlearn/couplings.py"
E("cpl.ot_batch_mismatch", lambda: fm.ot_plan_exact(pts(4, 2), pts(5, 2)), ("x0", "x1"), ("5",), owner=OWN)
E("cpl.sq_dist_dim_mismatch", lambda: fm.squared_distances(pts(4, 2), pts(4, 3)), ("x0", "x1"), ("3",),
  owner=OWN)
E("cpl.sinkhorn_reg0", lambda: fm.sinkhorn_plan(pts(), pts(seed=1), 0.0), "reg", "0", owner=OWN)
E("cpl.sinkhorn_reg_negative", lambda: fm.sinkhorn_plan(pts(), pts(seed=1), -1.0), "reg", "-1", owner=OWN)
E("cpl.sinkhorn_iters0", lambda: fm.sinkhorn_plan(pts(), pts(seed=1), 0.1, iters=0), "iters", "0", owner=OWN)
E("cpl.assignment_not_square", lambda: fm.optimal_assignment(torch.zeros(3, 4)), "cost", shape(3, 4), owner=OWN)
E("cpl.assignment_nan", lambda: fm.optimal_assignment(torch.tensor([[0.0, float("nan")], [1.0, 0.0]])), "cost",
  ("nan", "finite"), owner=OWN)
E("cpl.ot_coupling_batch_mismatch", lambda: fm.OTCoupling()(pts(4, 2), pts(5, 2)), ("x0", "x1"), ("5",),
  owner=OWN)
E("cpl.ot_lists", lambda: fm.ot_plan_exact([[0.0], [1.0]], [[1.0], [0.0]]), ("x0", "x1"), "list", owner=OWN,
  check=lambda p: p.tolist() == [1, 0])


def _ot_brute():
    x0, x1 = pts(6, 2, 7), pts(6, 2, 8)
    perm = fm.ot_plan_exact(x0, x1)
    cost = ((x0[perm] - x1) ** 2).sum(1).sum()
    best = min(((x0[list(p)] - x1) ** 2).sum(1).sum() for p in itertools.permutations(range(6)))
    return float(cost), float(best)


R("cpl.ot_brute_force", _ot_brute, lambda r: abs(r[0] - r[1]) < 1e-5, owner=OWN)
R("cpl.sq_dist_numpy", lambda: fm.squared_distances(pts(3, 2), pts(5, 2, 1)),
  lambda c: close(c, ((pts(3, 2).numpy()[:, None] - pts(5, 2, 1).numpy()[None]) ** 2).sum(-1), 1e-5), owner=OWN)
R("cpl.sinkhorn_marginals", lambda: fm.sinkhorn_plan(pts(4, 2), pts(6, 2, 1), 0.5, tol=1e-9, iters=5000),
  lambda p: close(p.sum(1), torch.full((4,), 0.25), 1e-6) and close(p.sum(0), torch.full((6,), 1 / 6), 1e-6),
  owner=OWN)
R("cpl.sq_dist_sphere", lambda: fm.squared_distances(unit(3), unit(4, 3, 1), space=M.Sphere()),
  lambda c: close(c, np.arccos(np.clip(unit(3).double().numpy() @ unit(4, 3, 1).double().numpy().T, -1, 1)) ** 2,
                  1e-4), owner=OWN)
E("cpl.sq_dist_sphere_off", lambda: fm.squared_distances(pts(3, 3), unit(4, 3, 1), space=M.Sphere()), "x0",
  ("sphere", "norm", "|x|"), owner=OWN)
R("cpl.straightness_of_line", lambda: fm.straightness(torch.linspace(0, 1, 5)[:, None, None] * pts(3, 2)[None]),
  lambda s: abs(s) < 1e-10, owner=OWN)
R("cpl.path_energy_of_line", lambda: fm.path_energy(torch.linspace(0, 1, 5)[:, None, None] * pts(3, 2)[None]),
  lambda e: abs(e - float((pts(3, 2) ** 2).sum(1).mean())) < 1e-5, owner=OWN)
E("cpl.path_energy_times_length", lambda: fm.path_energy(torch.zeros(5, 3, 2), times=[0.0, 1.0]), "times", "5",
  owner=OWN)
E("cpl.reflow_n0", lambda: fm.reflow_pairs(mlp(), 0, fm.Gaussian.standard(2), steps=2), "n", "0", owner=OWN)

# --- guidance -------------------------------------------------------------------------------------------------
OWN = "fmlearn/guidance.py"


def cmlp():
    torch.manual_seed(0)
    return fm.ConditionalMLP(2, num_classes=3, hidden=16, depth=2, n_freqs=2, max_freq=1.0)


Y4 = torch.tensor([0, 1, 2, 3])
E("guid.w_string", lambda: fm.guided_velocity(cmlp(), "2"), "w", "str", owner=OWN)
E("guid.w_nan", lambda: fm.guided_velocity(cmlp(), float("nan")), "w", "nan", owner=OWN)
E("guid.unconditional_model", lambda: fm.guided_velocity(mlp(), 1.0), "num_classes", "MLP", owner=OWN)
E("guid.labels_out_of_range", lambda: fm.guided_sample(cmlp(), torch.tensor([0, 5]), 1.0, (2,), steps=2),
  ("y", "labels"), "5", owner=OWN)
E("guid.labels_negative", lambda: fm.guided_sample(cmlp(), torch.tensor([0, -1]), 1.0, (2,), steps=2),
  ("y", "labels"), "-1", owner=OWN)
E("guid.labels_float", lambda: fm.guided_sample(cmlp(), torch.tensor([0.0, 1.0]), 1.0, (2,), steps=2),
  ("y", "labels"), "float", owner=OWN)
E("guid.labels_2d", lambda: fm.guided_sample(cmlp(), torch.zeros(2, 1, dtype=torch.long), 1.0, (2,), steps=2),
  "labels", shape(2, 1), owner=OWN)
E("guid.steps0", lambda: fm.guided_sample(cmlp(), torch.tensor([0, 1]), 1.0, (2,), steps=0), "steps", "0",
  owner=OWN)
E("guid.shape_int", lambda: fm.guided_sample(cmlp(), torch.tensor([0, 1]), 1.0, 2, steps=2), "shape", "int",
  owner=OWN)
E("guid.forward_without_y", lambda: fm.guided_velocity(cmlp(), 1.0)(pts(), 0.5), "y", owner=OWN)


def _guided_w(w):
    m = cmlp().eval()
    x, y = pts(), torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        g = fm.guided_velocity(m, w)(x, 0.5, y=y)
        cond, uncond = m(x, 0.5, y=y), m(x, 0.5, y=torch.full((4,), 3))
    return g, (1 + w) * cond - w * uncond


R("guid.w0_is_conditional", lambda: _guided_w(0.0), lambda r: close(r[0], r[1], 1e-5), owner=OWN)
R("guid.w2_formula", lambda: _guided_w(2.0), lambda r: close(r[0], r[1], 1e-5), owner=OWN)

# --- metrics --------------------------------------------------------------------------------------------------
OWN = "fmlearn/metrics.py"
E("met.ed_dim_mismatch", lambda: fm.energy_distance(pts(4, 2), pts(4, 3)), "y", shape(4, 3), owner=OWN)
E("met.ed_empty", lambda: fm.energy_distance(torch.zeros(0, 2), pts()), "x", shape(0, 2), owner=OWN)
E("met.ed_nan", lambda: fm.energy_distance(torch.full((3, 2), float("nan")), pts()), "x", ("nan", "finite"),
  owner=OWN)
E("met.ed_lists", lambda: fm.energy_distance([[0.0], [1.0]], [[0.0], [1.0]]), "x", "list", owner=OWN,
  check=lambda e: abs(e) < 1e-12)


def _ed_numpy():
    x, y = pts(5, 2).double().numpy(), pts(7, 2, 1).double().numpy()
    d = lambda a, b: np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1)).mean()  # noqa: E731
    return 2 * d(x, y) - d(x, x) - d(y, y)


R("met.ed_numpy", lambda: fm.energy_distance(pts(5, 2), pts(7, 2, 1)), lambda e: abs(e - _ed_numpy()) < 1e-6,
  owner=OWN)
E("met.w2_dim_mismatch", lambda: fm.w2_distance(pts(4, 2), pts(4, 3)), ("x", "y"), ("3",), owner=OWN)
E("met.w2_sizes", lambda: fm.w2_distance(pts(4, 2), pts(5, 2)), ("x", "y"), ("5",), owner=OWN)
R("met.w2_1d_sorted", lambda: fm.w2_distance(torch.tensor([[0.0], [3.0]]), torch.tensor([[4.0], [1.0]])),
  lambda w: abs(w - 1.0) < 1e-9, owner=OWN)
R("met.w2_2d_brute", lambda: fm.w2_distance(pts(5, 2), pts(5, 2, 1)),
  lambda w: abs(w - min(float(((pts(5, 2)[list(p)] - pts(5, 2, 1)) ** 2).sum(1).mean()) for p in
                        itertools.permutations(range(5))) ** 0.5) < 1e-5, owner=OWN)
MIX = fm.GaussianMixture(MEANS2, 0.5)
E("met.mode_fractions_dim", lambda: fm.mode_fractions(MIX, pts(4, 3)), "x", shape(4, 3), owner=OWN)
E("met.fraction_near_n_std_negative", lambda: fm.fraction_near_modes(MIX, pts(), n_std=-1.0), "n_std", "-1",
  owner=OWN)
R("met.mode_fractions_at_means", lambda: fm.mode_fractions(MIX, torch.tensor([[0.0, 0.0], [3.0, 0.0], [3.1, 0.0],
                                                                              [2.9, 0.1]])),
  lambda f: close(f, [0.25, 0.75]), owner=OWN)
E("met.velocity_error_t", lambda: fm.velocity_error(mlp(), fm.MixtureOracle(MIX, fm.AffineGaussianPath()), 1.5, n=8),
  "t", "1.5", owner=OWN)
E("met.ed_sphere_off", lambda: fm.energy_distance(pts(4, 3), unit(4), space=M.Sphere()), "x",
  ("sphere", "norm", "|x|"), owner=OWN)

# --- models ---------------------------------------------------------------------------------------------------
OWN = "fmlearn/models.py"
E("model.mlp_dim0", lambda: fm.MLP(0), "dim", "0", owner=OWN)
E("model.mlp_hidden_negative", lambda: fm.MLP(2, hidden=-1), "hidden", "-1", owner=OWN)
E("model.mlp_depth0", lambda: fm.MLP(2, depth=0), "depth", "0", owner=OWN)
E("model.mlp_activation", lambda: fm.MLP(2, activation="tanhh"), "activation", "tanhh", owner=OWN)
E("model.mlp_x_other_dim", lambda: mlp(2)(pts(4, 3), 0.5), "x", shape(4, 3), owner=OWN)
E("model.mlp_x_1d", lambda: mlp(2)(torch.zeros(2), 0.5), "x", shape(2), owner=OWN)
E("model.mlp_t_column", lambda: mlp(2)(pts(), torch.rand(4, 1)), "t", shape(4, 1), owner=OWN)
E("model.mlp_t_batch", lambda: mlp(2)(pts(), torch.rand(3)), "t", shape(3), owner=OWN)
E("model.mlp_t_above_1", lambda: mlp(2)(pts(), 1.5), "t", "1.5", owner=OWN)
E("model.mlp_x_int", lambda: (mlp(2)(torch.ones(4, 2, dtype=torch.long), 0.5), mlp(2)(torch.ones(4, 2), 0.5)),
  "x", "int", owner=OWN, check=lambda r: close(r[0], r[1], 1e-6))
E("model.mlp_x_list", lambda: mlp(2)([[0.0, 1.0]], 0.5), "x", "list", owner=OWN)
E("model.mlp_conditioned", lambda: mlp(2)(pts(), 0.5, y=Y4), "y", owner=OWN)
E("model.cmlp_labels_out_of_range", lambda: cmlp()(pts(), 0.5, y=torch.tensor([0, 1, 2, 7])), "y", "7", owner=OWN)
E("model.cmlp_labels_float", lambda: cmlp()(pts(), 0.5, y=torch.tensor([0.0, 1, 2, 0])), "y", "float", owner=OWN)
E("model.cmlp_num_classes0", lambda: fm.ConditionalMLP(2, num_classes=0), "num_classes", "0", owner=OWN)
E("model.unet_wrong_shape", lambda: fm.TinyUNet(num_classes=3)(pts(4, 64), 0.5, y=torch.zeros(4, dtype=torch.long)),
  "x", shape(4, 64), owner=OWN)
R("model.mlp_float64_input", lambda: (mlp(2)(pts().double(), 0.5), mlp(2)(pts(), 0.5)),
  lambda r: close(r[0], r[1], 1e-5), owner=OWN, also=("error",))

# --- dtypes and devices --------------------------------------------------------------------------------------
OWN = "dtypes and devices"
E("dev.train_on_missing_cuda", lambda: train_quiet(mlp(), cfm(), device="cuda"), "device", "cuda",
  owner="fmlearn/config.py: get_device", check=lambda r: torch.cuda.is_available())
E("dev.sample_on_missing_cuda", lambda: fm.get_device("cuda:3"), "device", "cuda:3",
  owner="fmlearn/config.py: get_device", check=lambda r: torch.cuda.device_count() > 3)
R("dtype.sample_float64_x0", lambda: (fm.sample(mlp(), pts().double(), steps=3).x, fm.sample(mlp(), pts(), steps=3).x),
  lambda r: r[0].dtype == torch.float64 and close(r[0], r[1], 1e-5), owner="fmlearn/solvers.py: sample")
R("dtype.log_likelihood_float64", lambda: fm.log_likelihood(linear_field, pts(8, 2).double(), steps=8),
  lambda r: r.dtype == torch.float64 and close(r, _linear_ref(pts(8, 2)), 1e-3), owner="fmlearn/likelihood.py")
E("dtype.path_t_bool", lambda: _ps(t=True), "t", "bool", owner="fmlearn/_checks.py: check_time")
E("dtype.odeint_x0_bool", lambda: fm.odeint(lambda x, t: torch.zeros(x.shape), torch.ones(4, 2, dtype=torch.bool),
                                            steps=2), "x0", "bool",
  owner="fmlearn/solvers.py: odeint")
E("dtype.log_prob_complex", lambda: fm.Gaussian.standard(2).log_prob(torch.zeros(1, 2, dtype=torch.complex64)), "x",
  "complex", owner="fmlearn/_checks.py: as_tensor")
R("dtype.sphere_float64", lambda: fm.sample(sphere_model(), unit(16).double(), steps=4, space=M.Sphere()).x,
  lambda x: x.dtype == torch.float64 and float((x.norm(dim=1) - 1).abs().max()) < 1e-12,
  owner="fmlearn/manifolds/sphere.py: Sphere.step")


# ==============================================================================================================
# Part II: discrete (chapter 8)
# ==============================================================================================================
OWN = "fmlearn/discrete/categorical.py: draw"
E("draw.nan_row", lambda: D.draw(torch.tensor([[float("nan"), 0.5, 0.5]])), "probs", "nan", owner=OWN)
E("draw.zero_row", lambda: D.draw(torch.tensor([[0.0, 0.0, 0.0], [0.2, 0.3, 0.5]])), "probs", ("zero", "sum", "0"),
  owner=OWN)
E("draw.negative_weight", lambda: D.draw(torch.tensor([[-0.5, 1.0, 0.5]])), "probs", ("-0.5", "negative"),
  owner=OWN)
E("draw.inf_weight", lambda: D.draw(torch.tensor([[float("inf"), 1.0]])), "probs", ("inf", "finite"), owner=OWN)
E("draw.int_weights", lambda: D.draw(torch.tensor([[1, 3]])), "probs", "int", owner=OWN)
E("draw.list", lambda: D.draw([[0.5, 0.5]]), "probs", "list", owner=OWN,
  check=lambda x: x.shape == (1,) and int(x) in (0, 1))


def _draw_freq(p):
    x = D.draw(torch.tensor(p).expand(40_000, len(p)), gen(2))
    return torch.bincount(x, minlength=len(p)).double() / len(x)


R("draw.frequencies", lambda: _draw_freq([0.1, 0.2, 0.7]), lambda f: close(f, [0.1, 0.2, 0.7], 0.012), owner=OWN)
R("draw.unnormalised_weights", lambda: _draw_freq([1.0, 1.0, 2.0]), lambda f: close(f, [0.25, 0.25, 0.5], 0.012),
  owner=OWN)
R("draw.zero_weight_never", lambda: _draw_freq([0.0, 1.0, 0.0]), lambda f: close(f, [0.0, 1.0, 0.0], 0.0),
  owner=OWN)
OWN = "fmlearn/discrete/categorical.py: jump_probabilities / Categorical"


def _jump_ref():
    x, dx = tokens(1), torch.tensor([[0.2, 5.0, 0.3]])
    lam = 0.5
    ref = [[(1 - math.exp(-lam)) * 0.2 / lam, math.exp(-lam), (1 - math.exp(-lam)) * 0.3 / lam]]
    return D.jump_probabilities(x, dx, 3), ref


R("jump_probabilities.closed_form", _jump_ref, lambda r: close(r[0], r[1], 1e-6), owner=OWN)
E("jump_probabilities.x_out_of_range", lambda: D.jump_probabilities(tokens(5), torch.zeros(1, 4), 4), "x", "5",
  owner=OWN)
E("jump_probabilities.dx_other_states", lambda: D.jump_probabilities(tokens(1), torch.zeros(1, 3), 4), "dx",
  shape(1, 3), owner=OWN)
E("categorical.one_state", lambda: D.Categorical(1), "num_states", "1", owner=OWN)
E("categorical.generator_int", lambda: D.Categorical(3, generator=0), "generator", "int", owner=OWN)
E("categorical.step_out_of_range", lambda: D.Categorical(4).step(tokens([7]), torch.zeros(1, 1, 4)), "x", "7",
  owner=OWN)
E("categorical.check_field_float_x", lambda: D.Categorical(4).check_field(torch.zeros(1, 1, 4), torch.zeros(1, 1)),
  "x", "float", owner=OWN)

# --- MixturePath ----------------------------------------------------------------------------------------------
OWN = "fmlearn/discrete/paths.py: MixturePath"
E("mp.vocab1", lambda: D.MixturePath(1), "vocab_size", "1", owner=OWN)
E("mp.vocab_float", lambda: D.MixturePath(4.0), "vocab_size", "4.0", owner=OWN)
E("mp.source_unknown", lambda: D.MixturePath(4, "gauss"), "source", "gauss", owner=OWN)
E("mp.schedule_not_kappa", lambda: D.MixturePath(4, schedule=fm.Cosine()), "schedule", "Cosine", owner=OWN)
X0M = torch.full((8, L), V)


def _mp_sample(x0=None, x1=None, t=0.5, path=None):
    path = path or mask_path()
    return path.sample(X0M if x0 is None else x0, x1_tokens() if x1 is None else x1, t, gen())


E("mp.sample_x1_column", lambda: _mp_sample(x1=torch.zeros(8, 1, dtype=torch.long)), "x1", shape(8, 1), owner=OWN)
E("mp.sample_t_above_1", lambda: _mp_sample(t=1.5), "t", "1.5", owner=OWN)
E("mp.sample_t_negative", lambda: _mp_sample(t=-0.5), "t", "-0.5", owner=OWN)
E("mp.sample_t_tensor_above_1", lambda: _mp_sample(t=torch.full((8,), 1.5)), "t", "1.5", owner=OWN)
E("mp.sample_t_batch", lambda: _mp_sample(t=torch.rand(3)), "t", shape(3), owner=OWN)
E("mp.sample_float_tokens", lambda: _mp_sample(x1=x1_tokens().float()), "x1", "float", owner=OWN)
E("mp.sample_tokens_ge_V", lambda: _mp_sample(x1=torch.full((8, L), V)), "x1", str(V), owner=OWN)
E("mp.sample_negative_tokens", lambda: _mp_sample(x1=torch.full((8, L), -1)), "x1", "-1", owner=OWN)
E("mp.sample_x0_out_of_range", lambda: _mp_sample(x0=torch.full((8, L), 6)), "x0", "6", owner=OWN)
E("mp.sample_x0_other_shape", lambda: _mp_sample(x0=torch.full((8, 3), V)), "x0", shape(8, 3), owner=OWN)
E("mp.sample_given_out_of_range", lambda: mask_path().sample_given(torch.full((8, L), 9), 0.5, gen()), "x1", "9",
  owner=OWN)
E("mp.sample_source_int_shape", lambda: mask_path().sample_source(8), "shape", "int", owner=OWN)
R("mp.sample_t0_is_x0", lambda: xt_of(_mp_sample(t=0.0)), lambda x: bool((x == V).all()), owner=OWN)
R("mp.sample_t1_is_x1", lambda: xt_of(_mp_sample(t=1.0)), lambda x: bool((x == x1_tokens()).all()), owner=OWN)
R("mp.sample_share_revealed", lambda: xt_of(mask_path().sample(torch.full((20_000, L), V), torch.zeros(20_000, L,
                                                                                                dtype=torch.long),
                                                               0.3, gen())),
  lambda x: abs(float((x == 0).double().mean()) - 0.3) < 0.01, owner=OWN)


def _logits(value=0.0, n=8):
    return torch.full((n, L, V), value)


# NaN logits may also come back as NaN probabilities (visibly wrong, and D.draw refuses them): never as numbers
E("mp.posterior_nan_logits", lambda: mask_path().posterior(_logits(float("nan")), X0M), "logits", "nan", owner=OWN,
  check=lambda p: bool(p.isnan().all()))
E("mp.posterior_all_neginf", lambda: mask_path().posterior(_logits(-float("inf")), X0M), "logits", ("inf", "finite"),
  owner=OWN, check=lambda p: bool(p.isnan().all()))
E("mp.posterior_wrong_shape", lambda: mask_path().posterior(torch.zeros(8, L, V - 1), X0M), "logits",
  shape(8, L, V - 1), owner=OWN)
E("mp.posterior_x_out_of_range", lambda: mask_path().posterior(_logits(), torch.full((8, L), 7)), "x", "7",
  owner=OWN)


def _posterior_copy():
    x = tokens([V, 2], [1, V])
    logits = torch.tensor([[[0.0, 1.0, 2.0, 3.0]] * 2, [[3.0, 2.0, 1.0, 0.0]] * 2])
    p = mask_path().posterior(logits, x)
    soft = torch.softmax(logits, -1)
    ref = torch.stack([torch.stack([soft[0, 0], torch.eye(V)[2]]), torch.stack([torch.eye(V)[1], soft[1, 1]])])
    return p, ref


R("mp.posterior_copies_revealed", _posterior_copy, lambda r: close(r[0], r[1], 1e-6), owner=OWN)
E("mp.velocity_with_logits", lambda: mask_path().velocity(torch.randn(8, L, V), X0M, 0.5), "probs",
  ("logits", "probabilities"), owner=OWN)


def _velocity_ref():
    probs = torch.softmax(torch.randn(8, L, V, generator=gen()), -1)
    x = x1_tokens()
    u = uniform_path().velocity(probs, x, 0.5)
    ref = 2.0 * (probs - torch.nn.functional.one_hot(x, V).float())  # rate kappa' / (1 - kappa) = 2 at t = 1/2
    return u, ref


R("mp.velocity_by_hand", _velocity_ref, lambda r: close(r[0], r[1], 1e-5), owner=OWN)
E("mp.conditional_velocity_out_of_range", lambda: mask_path().conditional_velocity(X0M, torch.full((8, L), 7), 0.5),
  "x1", "7", owner=OWN)
E("mp.rate_t_above_1", lambda: mask_path().rate(1.5, X0M), "t", "1.5", owner=OWN)
E("mp.token_marginal_wrong_shape", lambda: mask_path().token_marginal(torch.tensor([0.5, 0.5]), 0.5), "p1",
  shape(2), owner=OWN)
E("mp.token_marginal_t", lambda: mask_path().token_marginal(torch.full((V,), 0.25), 1.5), "t", "1.5", owner=OWN)
R("mp.token_marginal", lambda: uniform_path().token_marginal(torch.tensor([1.0, 0, 0, 0], dtype=torch.float64), 0.5),
  lambda p: close(p, [0.625, 0.125, 0.125, 0.125]), owner=OWN)
E("mp.check_probabilities_logits", lambda: D.check_probabilities("probs", torch.randn(3, 4, generator=gen())),
  "probs", ("logits", "probabilities"), owner=OWN)

# --- token models ---------------------------------------------------------------------------------------------
OWN = "fmlearn/discrete/models.py: TokenMLP"
E("tm.forward_out_of_range", lambda: token_mlp()(tokens([0, 7]), 0.5), "x", "7", owner=OWN)
E("tm.forward_negative", lambda: token_mlp()(tokens([0, -1]), 0.5), "x", "-1", owner=OWN)
E("tm.forward_float", lambda: token_mlp()(torch.zeros(1, L), 0.5), "x", "float", owner=OWN)
E("tm.forward_length", lambda: token_mlp()(torch.zeros(1, 3, dtype=torch.long), 0.5), "x", shape(1, 3), owner=OWN)
E("tm.forward_t_above_1", lambda: token_mlp()(tokens([0, 1]), 1.5), "t", "1.5", owner=OWN)
E("tm.dropout_one", lambda: D.TokenMLP(5, 4, 2, dropout=1.0), "dropout", "1.0", owner=OWN)
E("tm.num_states0", lambda: D.TokenMLP(0, 4, 2), "num_states", "0", owner=OWN)
E("tm.vocab_above_states", lambda: D.TokenMLP(3, 4, 2), ("num_states", "vocab_size"), ("3", "4"), owner=OWN)
E("tm.convnet_out_of_range", lambda: D.TokenConvNet(5, 4, side=2, channels=4, depth=1)(tokens([0, 1, 2, 9]), 0.5),
  "x", "9", owner="fmlearn/discrete/models.py: TokenConvNet")
R("tm.logits_shape", lambda: token_mlp()(x1_tokens(), 0.5), lambda y: tuple(y.shape) == (8, L, V), owner=OWN)

# --- D.sample / D.elbo ----------------------------------------------------------------------------------------
OWN = "fmlearn/discrete/sampling.py: sample"
E("ds.model_without_mask_state", lambda: D.sample(token_mlp(num_states=V), mask_path(), X0M, steps=2),
  "num_states", (str(V + 1), "mask"), owner=OWN)
E("ds.mask_model_on_uniform_path", lambda: D.sample(token_mlp(), uniform_path(),
                                                    uniform_path().sample_source((8, L), gen()), steps=2),
  ("num_states", "source", "mask"), (str(V + 1), "uniform"), owner=OWN)
E("ds.model_other_vocab", lambda: D.sample(token_mlp(V + 2, V + 1), mask_path(), X0M, steps=2),
  ("vocab", "logits"), (str(V + 1),), owner=OWN)
E("ds.model_other_length", lambda: D.sample(token_mlp(length=3), mask_path(), X0M, steps=2), "x",
  ("3", shape(8, L)), owner=OWN)
E("ds.steps0", lambda: D.sample(token_mlp(), mask_path(), X0M, steps=0), "steps", "0", owner=OWN)
E("ds.x0_float", lambda: D.sample(token_mlp(), mask_path(), X0M.float(), steps=2), "x0", "float", owner=OWN)
E("ds.x0_out_of_range", lambda: D.sample(token_mlp(), mask_path(), torch.full((8, L), 7), steps=2), "x0", "7",
  owner=OWN)
E("ds.x0_list", lambda: D.sample(token_mlp(), mask_path(), [[V, V]], steps=2), "x0", "list", owner=OWN)
E("ds.corrector_negative", lambda: D.sample(token_mlp(), mask_path(), X0M, steps=2, corrector=-1.0), "corrector",
  "-1", owner=OWN)
E("ds.corrector_on_uniform", lambda: D.sample(token_mlp(V), uniform_path(), x1_tokens(), steps=2, corrector=0.5),
  "corrector", "uniform", owner=OWN)
E("ds.nan_logits", lambda: D.sample(ConstLogits(float("nan")), mask_path(), X0M, steps=2, generator=gen()),
  "logits", "nan", owner=OWN)
E("ds.neginf_logits", lambda: D.sample(ConstLogits(-float("inf")), mask_path(), X0M, steps=2, generator=gen()),
  "logits", ("inf", "finite"), owner=OWN)
E("ds.nan_logits_uniform", lambda: D.sample(ConstLogits(float("nan"), num_states=V), uniform_path(), x1_tokens(),
                                            steps=2, generator=gen()), "logits", "nan", owner=OWN)
R("ds.exact_posterior_point", lambda: D.sample(D.ExactPosterior(tokens([1, 2]), mask_path()), mask_path(), X0M,
                                               steps=4, generator=gen()).x,
  lambda x: bool((x == tokens([1, 2])).all()), owner=OWN)
OWN = "fmlearn/discrete/elbo.py: elbo"
E("elbo.model_without_mask_state", lambda: D.elbo(token_mlp(num_states=V), mask_path(), x1_tokens(), repeats=1),
  "num_states", (str(V + 1), "mask"), owner=OWN)
E("elbo.mask_model_on_uniform_path", lambda: D.elbo(token_mlp(), uniform_path(), x1_tokens(), repeats=1),
  ("num_states", "source", "mask"), (str(V + 1), "uniform"), owner=OWN)
E("elbo.repeats0", lambda: D.elbo(token_mlp(), mask_path(), x1_tokens(), repeats=0), "repeats", "0", owner=OWN)
E("elbo.x1_tokens_ge_V", lambda: D.elbo(token_mlp(), mask_path(), torch.full((4, L), V), repeats=1), "x1", str(V),
  owner=OWN)
E("elbo.x1_float", lambda: D.elbo(token_mlp(), mask_path(), x1_tokens().float(), repeats=1), "x1", "float",
  owner=OWN)
E("elbo.masked_on_uniform", lambda: D.elbo(token_mlp(V), uniform_path(), x1_tokens(), estimator="masked"),
  "estimator", "masked", owner=OWN)
E("elbo.estimator_unknown", lambda: D.elbo(token_mlp(), mask_path(), x1_tokens(), estimator="exact"), "estimator",
  "exact", owner=OWN)
E("elbo.positions_above_length", lambda: D.elbo(token_mlp(), mask_path(), x1_tokens(), positions=5), "positions",
  "5", owner=OWN)
R("elbo.exact_point_is_zero_bits", lambda: D.elbo(D.ExactPosterior(tokens([1, 2]), mask_path()), mask_path(),
                                                  tokens([1, 2]).expand(16, L), repeats=2, generator=gen()),
  lambda e: abs(e.bits) < 1e-3, owner=OWN)

# --- objectives -----------------------------------------------------------------------------------------------
OWN = "fmlearn/discrete/objectives.py"


def _token_losses(loss):
    x1 = x1_tokens()
    t = torch.full((8,), 0.5)
    return D.token_losses(mask_path(), torch.zeros(8, L, V), X0M, x1, t, loss=loss)


E("tok.losses_kl", lambda: _token_losses("kl"), "loss", "kl", owner=OWN + ": token_losses")
E("tok.losses_unknown", lambda: _token_losses("mse"), "loss", "mse", owner=OWN + ": token_losses")
R("tok.losses_ce_masked", lambda: _token_losses("ce"), lambda r: close(r, torch.full((8, L), math.log(V)), 1e-5),
  owner=OWN + ": token_losses")
E("tok.losses_x1_out_of_range", lambda: D.token_losses(mask_path(), torch.zeros(8, L, V), X0M,
                                                       torch.full((8, L), 6), torch.full((8,), 0.5)), "x1", "6",
  owner=OWN + ": token_losses")
E("tok.objective_path", lambda: D.DiscreteObjective(fm.AffineGaussianPath(), D.TokenData(x1_tokens())), "path",
  "AffineGaussianPath", owner=OWN)
E("tok.objective_loss_kl", lambda: D.DiscreteObjective(mask_path(), D.TokenData(x1_tokens()), loss="kl"), "loss",
  "kl", owner=OWN)
E("tok.objective_data_out_of_vocab", lambda: D.DiscreteObjective(mask_path(), D.TokenData(torch.full((4, L), 6))),
  ("data", "x1", "table", "token"), "6", owner=OWN)
E("tok.train_without_mask_state",
  lambda: train_quiet(token_mlp(num_states=V), D.DiscreteObjective(mask_path(), D.TokenData(x1_tokens()))),
  "num_states", (str(V + 1), "mask"), owner=OWN)
E("tok.train_data_out_of_vocab",
  lambda: train_quiet(token_mlp(), D.DiscreteObjective(mask_path(), D.TokenData(torch.full((4, L), 7)))),
  ("data", "x1", "table", "token"), "7", owner=OWN)
E("tok.train_mask_model_uniform_path",
  lambda: train_quiet(token_mlp(), D.DiscreteObjective(uniform_path(), D.TokenData(x1_tokens()))),
  ("num_states", "source", "mask"), (str(V + 1), "uniform"), owner=OWN)
E("tok.resume_ce_then_gkl",
  lambda: _resume(D.DiscreteObjective(mask_path(), D.TokenData(x1_tokens())),
                  D.DiscreteObjective(mask_path(), D.TokenData(x1_tokens()), loss="gkl"), model_fn=token_mlp),
  "checkpoint", ("objective", "loss", "gkl"), owner="fmlearn/training.py: train")
E("tokdata.float_table", lambda: D.TokenData(torch.zeros(4, 2)), "table", "float", owner=OWN + ": TokenData")
E("tokdata.1d_table", lambda: D.TokenData(torch.zeros(4, dtype=torch.long)), "table", shape(4),
  owner=OWN + ": TokenData")
E("tokdata.negative", lambda: D.TokenData(tokens([0, -1])), "table", "-1", owner=OWN + ": TokenData")
E("tokdata.probs_sum", lambda: D.TokenData(tokens([0, 1], [1, 0]), torch.tensor([0.5, 0.6])), "probs", "1",
  owner=OWN + ": TokenData")
R("tokdata.rows_of_table", lambda: D.TokenData(tokens([0, 1], [2, 3])).sample(50, gen()),
  lambda x: all(r in ([0, 1], [2, 3]) for r in x.tolist()), owner=OWN + ": TokenData")

# --- exact laws -----------------------------------------------------------------------------------------------
OWN = "fmlearn/discrete/exact.py"
LAW = torch.arange(1.0, V ** L + 1, dtype=torch.float64) / (V ** L * (V ** L + 1) / 2)
E("exact.nll_token_ge_V", lambda: D.nll_bits(LAW, tokens([0, V]), V), "x1", str(V), owner=OWN + ": nll_bits")
E("exact.nll_negative_token", lambda: D.nll_bits(LAW, tokens([0, -1]), V), "x1", "-1", owner=OWN + ": nll_bits")
E("exact.nll_float_tokens", lambda: D.nll_bits(LAW, torch.zeros(1, L), V), "x1", "float", owner=OWN + ": nll_bits")
E("exact.nll_law_size", lambda: D.nll_bits(LAW[:15], tokens([0, 1]), V), "law", "15", owner=OWN + ": nll_bits")
E("exact.nll_law_length_mismatch", lambda: D.nll_bits(LAW, tokens([0, 1, 2]), V), ("law", "x1"), ("16", "64"),
  owner=OWN + ": nll_bits")
R("exact.nll_by_hand", lambda: D.nll_bits(LAW, tokens([1, 0], [3, 3]), V),
  lambda b: close(b, [-math.log2(float(LAW[4])), -math.log2(float(LAW[15]))], 1e-9), owner=OWN + ": nll_bits")
E("exact.state_index_token_ge_V", lambda: D.state_index(tokens([0, V]), V), "x", str(V), owner=OWN + ": state_index")
E("exact.state_index_negative", lambda: D.state_index(tokens([0, -1]), V), "x", "-1", owner=OWN + ": state_index")
E("exact.state_index_float", lambda: D.state_index(torch.zeros(1, L), V), "x", "float", owner=OWN + ": state_index")
R("exact.state_index_by_hand", lambda: D.state_index(tokens([1, 2], [3, 3], [0, 0]), V),
  lambda i: i.tolist() == [6, 15, 0], owner=OWN + ": state_index")
E("exact.tabulated_token_out_of_range", lambda: D.tabulated(token_mlp(), V + 1, L)(tokens([0, 7]), 0.5), "x", "7",
  owner=OWN + ": tabulated")
E("exact.tabulated_negative_token", lambda: D.tabulated(token_mlp(), V + 1, L)(tokens([0, -1]), 0.5), "x", "-1",
  owner=OWN + ": tabulated")
E("exact.tabulated_tensor_time", lambda: D.tabulated(token_mlp(), V + 1, L)(tokens([0, 1]), torch.tensor(0.5)), "t",
  "Tensor", owner=OWN + ": tabulated")
R("exact.tabulated_same_logits", lambda: (D.tabulated(token_mlp(), V + 1, L)(tokens([0, 1], [V, 2]), 0.5),
                                          token_mlp()(tokens([0, 1], [V, 2]), 0.5)),
  lambda r: close(r[0], r[1], 1e-5), owner=OWN + ": tabulated")
E("exact.all_states_zero", lambda: D.all_states(0, 2), "num_states", "0", owner=OWN + ": all_states")
E("exact.generator_matrix_wrong_rows", lambda: D.generator_matrix(torch.zeros(3, 2, V)), "rates", ("3", "16"),
  owner=OWN + ": generator_matrix")


def _gen_matrix():
    rates = torch.tensor([[[-1.0, 1.0, 0.0]], [[0.5, -2.5, 2.0]], [[0.0, 3.0, -3.0]]])
    return D.generator_matrix(rates)


R("exact.generator_matrix_by_hand", _gen_matrix,
  lambda q: close(q, [[-1.0, 1.0, 0.0], [0.5, -2.5, 2.0], [0.0, 3.0, -3.0]], 1e-7),
  owner=OWN + ": generator_matrix")
E("exact.marginal_law_t", lambda: D.marginal_law(mask_path(), tokens([1, 2]), 1.5), "t", "1.5",
  owner=OWN + ": marginal_law")
E("exact.euler_law_steps0", lambda: D.euler_law(D.ExactPosterior(tokens([1, 2]), mask_path()), mask_path(), L,
                                                steps=0), "steps", "0", owner=OWN + ": euler_law")
R("exact.euler_law_point", lambda: D.euler_law(D.ExactPosterior(tokens([1, 2]), mask_path()), mask_path(), L,
                                               steps=3),
  lambda law: close(law, torch.nn.functional.one_hot(torch.tensor(6), V ** L).double(), 1e-6),
  owner=OWN + ": euler_law")
E("exact.posterior_support_out_of_range", lambda: D.ExactPosterior(tokens([1, 9]), mask_path()), "support", "9",
  owner=OWN + ": ExactPosterior")
E("exact.posterior_x_out_of_range", lambda: D.ExactPosterior(tokens([1, 2]), mask_path())(tokens([0, 8]), 0.5),
  "x", "8", owner=OWN + ": ExactPosterior")
OWN = "fmlearn/discrete/data.py"
E("data.encode_bad_character", lambda: D.data.encode(["2020-01-0x"]), "strings", "x", owner=OWN + ": encode")
E("data.decode_out_of_range", lambda: D.data.decode(tokens([1, 99])), "tokens", "99", owner=OWN + ": decode")
E("data.decode_negative", lambda: D.data.decode(tokens([1, -1])), "tokens", "-1", owner=OWN + ": decode")
R("data.roundtrip", lambda: D.data.decode(D.data.encode(["2020-01-02", "1999-12-31"])),
  lambda s: s == ["2020-01-02", "1999-12-31"], owner=OWN)

# ==============================================================================================================
# Part II: manifolds (chapter 9)
# ==============================================================================================================
OWN = "fmlearn/manifolds/sphere.py: Sphere"
S2 = M.Sphere()
E("sph.dim1", lambda: M.Sphere(1), "dim", "1", owner=OWN)
E("sph.dim_float", lambda: M.Sphere(2.5), "dim", "2.5", owner=OWN)
E("sph.dim_string", lambda: M.Sphere("3"), "dim", "str", owner=OWN)
E("sph.check_points_off", lambda: S2.check_points("x", 2 * unit()), "x", "1", owner=OWN)
E("sph.check_points_shape", lambda: S2.check_points("x", unit(4, 2)), "x", shape(4, 2), owner=OWN)
E("sph.random_uniform0", lambda: S2.random_uniform(0), "n", "0", owner=OWN)
E("sph.exp_shapes", lambda: S2.exp(unit(), pts(4, 2)), "v", shape(4, 2), owner=OWN + ".exp")
E("sph.log_shapes", lambda: S2.log(unit(), unit(5)), "y", shape(5, 3), owner=OWN + ".log")
R("sph.exp_of_log", lambda: S2.exp(unit(8).double(), S2.log(unit(8).double(), unit(8, 3, 1).double())),
  lambda y: close(y, unit(8, 3, 1), 1e-6), owner=OWN)
R("sph.log_length_is_angle", lambda: S2.log(unit(8).double(), unit(8, 3, 1).double()).norm(dim=1),
  lambda n: close(n, np.arccos((unit(8).double() * unit(8, 3, 1).double()).sum(1).numpy()), 1e-6), owner=OWN)
R("sph.antipodal", lambda: S2.exp(unit(4).double(), S2.log(unit(4).double(), -unit(4).double())),
  lambda y: close(y, -unit(4), 1e-6), owner=OWN)
R("sph.cdist", lambda: S2.cdist(unit(3).double(), unit(4, 3, 1).double()),
  lambda c: close(c, np.arccos(unit(3).double().numpy() @ unit(4, 3, 1).double().numpy().T), 1e-6), owner=OWN)
R("sph.random_uniform_on_sphere", lambda: S2.random_uniform(1000, gen()),
  lambda x: float((x.norm(dim=1) - 1).abs().max()) < 1e-6 and float(x.mean(0).norm()) < 0.1, owner=OWN)
R("sph.uniform_log_prob", lambda: S2.uniform_log_prob(unit()), lambda v: close(v, [-math.log(4 * math.pi)] * 4),
  owner=OWN)
R("sph.log_volume_s3", lambda: M.Sphere(4).log_volume(), lambda v: abs(v - math.log(2 * math.pi ** 2)) < 1e-12,
  owner=OWN)
OWN = "fmlearn/manifolds/torus.py: FlatTorus"
T2 = M.FlatTorus(2)
E("tor.dim0", lambda: M.FlatTorus(0), "dim", "0", owner=OWN)
E("tor.dim_float", lambda: M.FlatTorus(1.5), "dim", "1.5", owner=OWN)
E("tor.check_points_range", lambda: T2.check_points("x", angles() - 4.0), "x", ("angle", "[0, 2"), owner=OWN)
E("tor.check_points_shape", lambda: T2.check_points("x", angles(4, 3)), "x", shape(4, 3), owner=OWN)
R("tor.wrap", lambda: T2.wrap(torch.tensor([[-0.1, 2 * math.pi]], dtype=torch.float64)),
  lambda w: close(w, [[2 * math.pi - 0.1, 0.0]], 1e-12), owner=OWN)
R("tor.log_across_seam", lambda: T2.log(torch.tensor([[0.1, 3.0]]), torch.tensor([[2 * math.pi - 0.1, 3.5]])),
  lambda v: close(v, [[-0.2, 0.5]], 1e-5), owner=OWN)
R("tor.dist", lambda: T2.dist(torch.tensor([[0.1, 0.0]]), torch.tensor([[2 * math.pi - 0.2, 0.4]])),
  lambda d: close(d, [0.5], 1e-5), owner=OWN)
R("tor.random_uniform_range", lambda: T2.random_uniform(1000, gen()),
  lambda x: float(x.min()) >= 0 and float(x.max()) < 2 * math.pi, owner=OWN)


def _torus_tangent():
    x, v = angles(4, 2), pts(4, 2)
    w = torch.cat([-torch.sin(x) * v, torch.cos(x) * v], 1)   # d/ds embed(x + s v)
    return T2.tangent_from_ambient(x, w), v


R("tor.tangent_of_embedding_derivative", _torus_tangent, lambda r: close(r[0], r[1], 1e-5), owner=OWN)
OWN = "fmlearn/manifolds/models.py: ProjectedVelocity"
E("pv.net_other_dim", lambda: M.ProjectedVelocity(S2, fm.MLP(2)), "net", "3", owner=OWN)
E("pv.torus_net_dim", lambda: M.ProjectedVelocity(T2, fm.MLP(2)), "net", "4", owner=OWN)
E("pv.space_string", lambda: M.ProjectedVelocity("sphere", fm.MLP(3)), "space", "str", owner=OWN)
E("pv.net_function", lambda: M.ProjectedVelocity(S2, lambda z, t: z), "net", "function", owner=OWN)
E("pv.x_other_dim", lambda: sphere_model()(pts(4, 2), 0.5), "x", shape(4, 2), owner=OWN)
R("pv.tangent", lambda: ((sphere_model()(unit(16), 0.3) * unit(16)).sum(1)),
  lambda d: float(d.abs().max()) < 1e-5, owner=OWN)
OWN = "fmlearn/manifolds/distributions.py"
E("vmf.kappa_negative", lambda: M.VonMisesFisherMixture([[0.0, 0.0, 1.0]], -1.0), "kappa", "-1", owner=OWN)
E("vmf.means_zero", lambda: M.VonMisesFisherMixture([[0.0, 0.0, 0.0]], 1.0), "means", ("0", "zero"), owner=OWN)
E("vmf.means_2d", lambda: M.VonMisesFisherMixture([[0.0, 1.0]], 1.0), "means", shape(1, 2), owner=OWN)
E("vmf.weights_negative", lambda: M.VonMisesFisherMixture([[0.0, 0, 1], [0, 1, 0]], 1.0, [-1.0, 2.0]), "weights",
  "-1", owner=OWN)
E("vmf.log_prob_off_sphere", lambda: M.VonMisesFisherMixture.tetrahedron().log_prob(pts(4, 3)), "x",
  ("sphere", "norm", "|x|"), owner=OWN)
E("vmf.log_prob_dim", lambda: M.VonMisesFisherMixture.tetrahedron().log_prob(unit(4, 2)), "x", shape(4, 2),
  owner=OWN)
R("vmf.log_prob_at_mean", lambda: M.VonMisesFisherMixture([[0.0, 0.0, 1.0]], 2.0).log_prob(
    torch.tensor([[0.0, 0.0, 1.0]])),
  lambda v: close(v, [math.log(2.0 / (4 * math.pi * math.sinh(2.0))) + 2.0], 1e-5), owner=OWN)
R("vmf.normalizer", lambda: M.vmf_log_normalizer(1.0), lambda v: abs(float(v) - math.log(1 / (4 * math.pi *
                                                                                              math.sinh(1.0)))) < 1e-6,
  owner=OWN)
E("vmf.normalizer_negative", lambda: M.vmf_log_normalizer(-1.0), "kappa", "-1", owner=OWN)
R("vmf.samples_on_sphere", lambda: M.VonMisesFisherMixture.tetrahedron().sample(500, gen()),
  lambda x: float((x.norm(dim=1) - 1).abs().max()) < 1e-5, owner=OWN)
E("wn.std0", lambda: M.WrappedNormalMixture([[1.0, 1.0]], 0.0), "stds", "0", owner=OWN)
E("wn.log_prob_out_of_range", lambda: M.WrappedNormalMixture([[1.0, 1.0]], 0.5).log_prob(angles() + 7.0), "x",
  ("angle", "[0, 2", "wrap"), owner=OWN)


def _wrapped_ref():
    x = np.array([0.2, 3.0, 6.0])
    k = np.arange(-20, 21)
    p = np.exp(-0.5 * ((x[:, None] - 1.0 + 2 * np.pi * k[None]) / 0.8) ** 2).sum(1) / (0.8 * np.sqrt(2 * np.pi))
    return np.log(p)


R("wn.log_prob_by_images", lambda: M.WrappedNormalMixture([[1.0]], 0.8).log_prob(torch.tensor([[0.2], [3.0], [6.0]])),
  lambda v: close(v, _wrapped_ref(), 1e-5), owner=OWN)
E("unif.space_string", lambda: M.Uniform("sphere"), "space", "str", owner=OWN)
R("unif.sphere_log_prob", lambda: M.Uniform(S2).log_prob(unit()), lambda v: close(v, [-math.log(4 * math.pi)] * 4),
  owner=OWN)
E("unif.log_prob_off", lambda: M.Uniform(S2).log_prob(pts(4, 3)), "x", ("sphere", "norm", "|x|"), owner=OWN)

# ==============================================================================================================
# Part II: generators (chapter 10)
# ==============================================================================================================
OWN = "fmlearn/generators/generators.py"


def half_sq(x):
    return 0.5 * (x ** 2).sum(1)


E("gen.flow_column_velocity", lambda: G.FlowGenerator(lambda x, t: x[:, :1])(half_sq, pts(), 0.5), "velocity",
  shape(4, 1), owner=OWN + ": FlowGenerator")
E("gen.flow_not_callable", lambda: G.FlowGenerator(3), "velocity", "int", owner=OWN + ": FlowGenerator")
E("gen.flow_f_not_callable", lambda: G.FlowGenerator(decay)(3, pts(), 0.5), "f", "int", owner=OWN)
E("gen.flow_f_shape", lambda: G.FlowGenerator(decay)(lambda x: x, pts(), 0.5), "f", shape(4, 2), owner=OWN)
E("gen.flow_x_list", lambda: G.FlowGenerator(decay)(half_sq, [[1.0, 2.0]], 0.5), "x", "list", owner=OWN)
R("gen.flow_linear", lambda: G.FlowGenerator(lambda x, t: x)(half_sq, pts(), 0.5),
  lambda v: close(v, (pts() ** 2).sum(1), 1e-5), owner=OWN)
E("gen.diffusion_g_negative", lambda: G.DiffusionGenerator(decay, -1.0), "g", "-1", owner=OWN)
R("gen.diffusion_heat", lambda: G.DiffusionGenerator(zero_field, 2.0)(lambda x: (x ** 2).sum(1), pts(), 0.5),
  lambda v: close(v, torch.full((4,), 8.0), 1e-5), owner=OWN)
E("gen.jump_samples0", lambda: G.JumpGenerator(G.ConditionalJumps(pts()), samples=0), "samples", "0", owner=OWN)
E("gen.jump_x_1d", lambda: G.JumpGenerator(G.ConditionalJumps(pts()))(lambda x: x.sum(1), torch.zeros(4), 0.5), "x",
  shape(4), owner=OWN)
OWN = "fmlearn/generators/generators.py: CTMCGenerator"
Q3 = torch.tensor([[-1.0, 1.0, 0.0], [0.5, -2.5, 2.0], [0.0, 3.0, -3.0]])
F3 = torch.tensor([1.0, 2.0, 5.0])
E("ctmc.rows_not_summing_to_zero", lambda: G.CTMCGenerator(lambda x, t: torch.ones(x.shape[0], 3))(F3, tokens(0, 1),
                                                                                                   0.5),
  "rates", ("sum", "0"), owner=OWN)
E("ctmc.negative_off_diagonal", lambda: G.CTMCGenerator(lambda x, t: torch.tensor([[1.0, -2.0, 1.0]]).expand(
    x.shape[0], 3))(F3, tokens(0, 1), 0.5), "rates", "-2", owner=OWN)
E("ctmc.f_2d", lambda: G.CTMCGenerator(lambda x, t: Q3[x])(F3[None], tokens(0, 1), 0.5), "f", shape(1, 3),
  owner=OWN)
E("ctmc.rates_shape", lambda: G.CTMCGenerator(lambda x, t: torch.zeros(x.shape[0], 4))(F3, tokens(0, 1), 0.5),
  "rates", shape(2, 4), owner=OWN)
E("ctmc.not_callable", lambda: G.CTMCGenerator(Q3), "rates", "Tensor", owner=OWN)
R("ctmc.by_hand", lambda: G.CTMCGenerator(lambda x, t: Q3[x])(F3, torch.tensor([0, 1, 2]), 0.5),
  lambda v: close(v, [1.0, 0.5 - 5.0 + 10.0, 6.0 - 15.0], 1e-6), owner=OWN)
OWN = "fmlearn/generators/markov.py: jump_step"


class Proc:
    """A jump process whose intensity and kernel change after the first step (a careless or diverging model)."""

    def __init__(self, lam_later=1.0, kernel_later=1.0):
        self.calls, self.lam_later, self.kernel_later = 0, lam_later, kernel_later

    def __call__(self, x, t):
        self.calls += 1
        first = self.calls == 1
        lam = torch.ones_like(x) * (1.0 if first else self.lam_later)
        probs = torch.full((*x.shape, 2), 0.5 * (1.0 if first else self.kernel_later))
        return G.JumpRates(lam, bins=(torch.tensor([0.0, 1.0, 2.0]), probs))


E("js.kernel_unnormalised_later", lambda: fm.simulate(G.jump_step(Proc(kernel_later=0.5), generator=gen()), X1,
                                                      steps=3), "kernel", ("0.5", "sum"), owner=OWN)
E("js.intensity_negative_later", lambda: fm.simulate(G.jump_step(Proc(lam_later=-1.0), generator=gen()), X1,
                                                     steps=3), "intensity", "-1", owner=OWN)
E("js.intensity_nan_later", lambda: fm.simulate(G.jump_step(Proc(lam_later=float("nan")), generator=gen()), X1,
                                                steps=3), "intensity", ("nan", "finite"), owner=OWN)
E("js.intensity_negative_first", lambda: fm.simulate(G.jump_step(lambda x, t: G.JumpRates(
    -torch.ones_like(x), sampler=lambda g: x)), X1, steps=2), "intensity", "-1", owner=OWN)
E("js.intensity_shape", lambda: fm.simulate(G.jump_step(lambda x, t: G.JumpRates(
    torch.ones(x.shape[0], 1), sampler=lambda g: x)), X1, steps=2), "intensity", shape(4, 1), owner=OWN)
E("js.weight2", lambda: G.jump_step(Proc(), weight=2.0), "weight", "2", owner=OWN)
E("js.not_callable", lambda: G.jump_step(3), "process", "int", owner=OWN)
R("js.zero_intensity_stays", lambda: fm.simulate(G.jump_step(lambda x, t: G.JumpRates(
    torch.zeros_like(x), sampler=lambda g: x + 100)), pts(), steps=4).x, lambda x: close(x, pts()), owner=OWN)
R("js.certain_jump", lambda: fm.simulate(G.jump_step(lambda x, t: G.JumpRates(
    torch.full_like(x, 1e6), sampler=lambda g: torch.full_like(x, 5.0)), generator=gen()), pts(), steps=2).x,
  lambda x: close(x, torch.full((4, 2), 5.0)), owner=OWN)
OWN = "fmlearn/generators/markov.py: superpose / superposition"
E("sp.a_above_1", lambda: G.superposition(decay, Proc(), 1.5), "a", "1.5", owner=OWN)
E("sp.empty", lambda: G.superpose(), "Step", owner=OWN)
E("sp.not_a_step", lambda: G.superpose(decay), ("Step", "step"), "function", owner=OWN)
OWN = "fmlearn/generators/bregman.py"
E("br.shape_mismatch", lambda: G.squared_norm(pts(4, 2), pts(4, 3)), ("a", "b"), shape(4, 3), owner=OWN)
E("br.gkl_negative", lambda: G.generalized_kl(torch.tensor([[-1.0, 1.0]]), torch.ones(1, 2)), "a", "-1", owner=OWN)
E("br.int_inputs", lambda: G.squared_norm(torch.ones(2, 2, dtype=torch.long), torch.ones(2, 2)), "a", "int",
  owner=OWN)
R("br.squared_norm", lambda: G.squared_norm(pts(), pts(seed=1)), lambda v: close(v, ((pts() - pts(seed=1)) ** 2)
                                                                                 .sum(1), 1e-6), owner=OWN)
R("br.gkl_formula", lambda: G.generalized_kl(torch.tensor([[1.0, 0.0, 2.0]]), torch.tensor([[2.0, 1.0, 2.0]])),
  lambda v: close(v, [math.log(0.5) - 1 + 2 + 1.0], 1e-6), owner=OWN)
R("br.bregman_is_squared_norm", lambda: (G.bregman(lambda a: a ** 2, pts(), pts(seed=1)),
                                         G.squared_norm(pts(), pts(seed=1))),
  lambda r: close(r[0], r[1], 1e-5), owner=OWN)
OWN = "fmlearn/generators/jumps.py"
E("cj.intensity_t1", lambda: G.condot_intensity(pts(), pts(seed=1), 1.0), "t", "1", owner=OWN)
E("cj.intensity_t_above_1", lambda: G.condot_intensity(pts(), pts(seed=1), 1.5), "t", "1.5", owner=OWN)
E("cj.density_shapes", lambda: G.condot_density(pts(4, 2), pts(4, 3), 0.5), ("x", "z"), shape(4, 3), owner=OWN)


def _condot_density_ref():
    x, z, t = pts(), pts(seed=1), 0.3
    return torch.exp(-0.5 * ((x - t * z) / (1 - t)) ** 2) / (math.sqrt(2 * math.pi) * (1 - t))


R("cj.density_formula", lambda: G.condot_density(pts(), pts(seed=1), 0.3),
  lambda v: close(v, _condot_density_ref(), 1e-5), owner=OWN)
E("cj.edges_decreasing", lambda: G.condot_kernel_mass([1.0, 0.0, -1.0], pts(), 0.5), "edges", "3", owner=OWN)
E("cj.edges_one", lambda: G.condot_kernel_mass([0.0], pts(), 0.5), "edges", "1", owner=OWN)
R("cj.kernel_mass_sums_to_1", lambda: G.condot_kernel_mass(torch.linspace(-20, 20, 401), pts(), 0.5).sum(-1),
  lambda s: close(s, torch.ones(4, 2), 1e-5), owner=OWN)
E("jr.both_bins_and_sampler", lambda: G.JumpRates(torch.ones(2), bins=(torch.zeros(2), torch.ones(2, 1)),
                                                  sampler=lambda g: None), "bins", "sampler", owner=OWN)
E("jm.dim0", lambda: G.JumpModel(0, torch.linspace(-3, 3, 7)), "dim", "0", owner=OWN)
E("jm.x_other_dim", lambda: G.JumpModel(2, torch.linspace(-3, 3, 7))(pts(4, 3), 0.5), "x", shape(4, 3), owner=OWN)
E("jm.t_above_1", lambda: G.JumpModel(2, torch.linspace(-3, 3, 7))(pts(), 1.5), "t", "1.5", owner=OWN)
E("jo.t_max_one", lambda: G.JumpObjective(fm.Gaussian.standard(2), t_max=1.0), "t_max", "1", owner=OWN)
E("jo.data_not_sampleable", lambda: G.JumpObjective(3), "data", "int", owner=OWN)
E("jo.mlp_model", lambda: train_quiet(mlp(), G.JumpObjective(fm.Gaussian.standard(2))), "JumpModel", "MLP",
  owner=OWN)

_ids = [c.id for c in CASES]
assert len(_ids) == len(set(_ids)), sorted({i for i in _ids if _ids.count(i) > 1})
CASES_BY_ID = {c.id: c for c in CASES}

#: Cases whose fix has not landed: id -> the file and function to fix. test_careless_inputs.py marks them
#: xfail(strict=True): when a fix lands the test fails, and the fixer deletes the id here.
BROKEN: dict[str, str] = {
}
