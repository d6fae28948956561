"""Checks for the exercises of chapter 4 (likelihood): exact divergence, Hutchinson, the paired KL estimator."""

from __future__ import annotations

import math

import torch

from ..likelihood import divergence_exact
from ..models import MLP
from ._base import call, fail, finite, max_err, ok, tensor_of
from .forbidden import guarded_for

_EXERCISE = "ex04_likelihood"


def _field():
    torch.manual_seed(0)
    return MLP(3, hidden=16, depth=2).double()


def _full_jacobians(model, x, t):
    """(n, d, d) Jacobians of model(., t) at each x, one sample at a time (a reference computed another way)."""
    return torch.stack([torch.autograd.functional.jacobian(lambda y: model(y[None], t)[0], xi) for xi in x])


def check_divergence(divergence, tol: float = 1e-8) -> bool:
    """The learner's ``divergence(u, x, t)`` -> (n,): sum_i d u_i / d x_i at each sample, against the traces
    of the full per-sample Jacobians of a small MLP in 3-D."""
    divergence = guarded_for(divergence, _EXERCISE, "divergence_check")
    model = _field()
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    jac = _full_jacobians(model, x, 0.4)
    want = jac.diagonal(dim1=1, dim2=2).sum(-1)
    got = tensor_of(call(divergence, model, x, 0.4, what="divergence"), (6,), "divergence")
    if not max_err(got, want) <= tol * (1 + float(want.abs().max())):
        hint = ("you summed every entry of the Jacobian (the gradient of u.sum()); the divergence needs only the "
                "diagonal: one backward pass per dimension i, keeping d u_i / d x_i"
                if max_err(got, jac.sum((1, 2))) < 1e-8 else
                "for each dimension i, take the gradient of u[:, i].sum() with respect to x and keep column i "
                "(samples do not interact, so summing over the batch is safe); use create_graph=False")
        fail("the divergence differs from the Jacobian's trace", want.tolist()[:3], got.tolist()[:3], hint)
    return ok("your divergence equals the trace of the Jacobian at every sample")


def check_hutchinson(hutchinson, tol: float = 1e-8) -> bool:
    """The learner's ``hutchinson(u, x, t, eps)`` with probes eps of shape (k, n, d) -> (n,):
    the mean over probes of eps^T J eps, against the same probes applied to the full Jacobians;
    and, with many Rademacher probes, close to the exact divergence."""
    hutchinson = guarded_for(hutchinson, _EXERCISE, "hutchinson_check")
    model = _field()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(5, 3, generator=g, dtype=torch.float64)
    eps = torch.randint(0, 2, (4, 5, 3), generator=g).double() * 2 - 1
    jac = _full_jacobians(model, x, 0.7)
    want = torch.einsum("kni,nij,knj->kn", eps, jac, eps).mean(0)
    got = tensor_of(call(hutchinson, model, x, 0.7, eps, what="hutchinson"), (5,), "hutchinson")
    if not max_err(got, want) <= tol * (1 + float(want.abs().max())):
        if max_err(got, 4 * want) < 1e-8:
            hint = "average over the k probes instead of summing"
        elif max_err(got, torch.einsum("kni,nij->kn", eps, jac).mean(0)) < 1e-8:
            hint = "you computed eps^T J summed over its entries; multiply by eps again: eps^T J eps"
        else:
            hint = "for each probe: the vector-Jacobian product eps^T J (one backward pass), then its dot product " \
                   "with eps; average over the probes"
        fail("the Hutchinson estimate differs from eps^T J eps averaged over the given probes", want.tolist()[:3],
              got.tolist()[:3], hint)
    many = torch.randint(0, 2, (2000, 5, 3), generator=g).double() * 2 - 1
    est = tensor_of(call(hutchinson, model, x, 0.7, many, what="hutchinson"), (5,), "hutchinson")
    _, exact = divergence_exact(model, x, 0.7)
    if not max_err(est, exact) <= 0.25:
        fail("with 2000 probes the estimate should be near the exact divergence", exact.tolist()[:3],
              est.tolist()[:3], "the estimator must be unbiased: E[eps eps^T] = I for Rademacher probes")
    return ok("your Hutchinson estimator matches eps^T J eps and is unbiased")


def check_paired_kl(kl_fn, tol: float = 1e-10) -> bool:
    """The learner's ``kl_fn(log_p, log_q)`` -> (kl, standard_error): the mean of log p - log q over
    paired samples and the standard error std / sqrt(n), against a loop written out in Python."""
    kl_fn = guarded_for(kl_fn, _EXERCISE, "paired_kl_check")
    g = torch.Generator().manual_seed(3)
    log_p = torch.randn(400, generator=g, dtype=torch.float64) * 3 - 4
    log_q = log_p - 0.05 + 0.1 * torch.randn(400, generator=g, dtype=torch.float64)
    d = [float(a - b) for a, b in zip(log_p, log_q)]
    mean = sum(d) / len(d)
    se = math.sqrt(sum((v - mean) ** 2 for v in d) / (len(d) - 1) / len(d))
    out = call(kl_fn, log_p, log_q, what="kl_fn")
    if not (isinstance(out, tuple) and len(out) == 2):
        fail("kl_fn must return a pair (kl, standard_error)", "(float, float)", type(out).__name__,
              "return kl, se")
    kl = finite(out[0], "the KL estimate", "the mean of log_p - log_q over the samples")
    got_se = finite(out[1], "the standard error", "the (n - 1) sample standard deviation of log_p - log_q, over "
                     "sqrt(n)")
    if not abs(kl - mean) <= tol:
        hint = "KL(p || q) = E_p[log p - log q]; you have the sign flipped" if abs(kl + mean) < 1e-9 else \
            "average log p - log q over the samples"
        fail("the KL estimate is wrong", f"{mean:.6f}", f"{kl:.6f}", hint)
    if not abs(got_se - se) <= 1e-3 * se:
        hint = "divide the standard deviation by sqrt(n)" if abs(got_se - se * math.sqrt(len(d))) < 1e-3 * se * 20 \
            else "standard error = std(log p - log q) / sqrt(n), with the (n - 1) sample standard deviation"
        fail("the standard error is wrong", f"{se:.6f}", f"{got_se:.6f}", hint)
    return ok(f"paired KL estimate and its standard error match ({mean:.4f} ± {se:.4f} on the test data)")
