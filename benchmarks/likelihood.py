"""Exact log-likelihood: fmlearn.log_likelihood against a plain per-dimension autograd loop.

Both integrate the same augmented ODE, [dx/dt, da/dt] = [u_t(x), div u_t(x)], from
t = 1 to 0 with RK4 (fmlearn.odeint) and return log N(x_0; 0, I) + a(0). They differ
only in the divergence: fmlearn uses divergence_exact (torch.func: one forward pass,
then the D vector-Jacobian products vmapped into batched backward passes); the loop
does, for each output dimension i, torch.autograd.grad(v[:, i].sum(), x)[0][:, i].
The model is an UNTRAINED MLP (3 x 256): the cost does not depend on the weights,
and its divergence is small, so in float32 the two log p often agree to the last bit.
Points: the 11-mode mixture (2-D) or N(0, I) (--dim other than 2).

    python benchmarks/likelihood.py [--n 10000] [--steps 32] [--dim 2] [--device cpu|cuda] [--threads 1]
"""

import argparse
import math
import time

import torch

import fmlearn as fm


def loop_divergence(model, x, t):
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        v = model(xr, t)
        div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for i in range(x.shape[1]):
            div += torch.autograd.grad(v[:, i].sum(), xr, retain_graph=i < x.shape[1] - 1)[0][:, i]
    return v.detach(), div


@torch.no_grad()
def loop_log_likelihood(model, x, steps):
    d = x.shape[1]

    def augmented(z, t):
        v, div = loop_divergence(model, z[:, :d], t)
        return torch.cat([v, div[:, None]], dim=1)

    z = torch.cat([x, torch.zeros_like(x[:, :1])], dim=1)
    z = fm.odeint(augmented, z, times=torch.linspace(1, 0, steps + 1, dtype=torch.float64), method="rk4").x
    return -0.5 * (z[:, :d] ** 2).sum(1) - 0.5 * d * math.log(2 * math.pi) + z[:, d]


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="number of points")
    ap.add_argument("--steps", type=int, default=32, help="RK4 steps from t = 1 to 0")
    ap.add_argument("--dim", type=int, default=2, help="data dimension (2: the 11-mode mixture; else N(0, I) points)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = fm.MLP(args.dim, hidden=256, depth=3).to(device).eval()
    gen = torch.Generator(device=device).manual_seed(1)
    if args.dim == 2:
        x = fm.GaussianMixture.symmetric_2d().sample(args.n, generator=gen, device=device)
    else:
        x = torch.randn(args.n, args.dim, generator=gen, device=device)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}; "
          f"untrained MLP 3x256, {args.n} points in {args.dim}-D, RK4 {args.steps} steps ({4 * args.steps} evaluations)")
    # warm up both paths (first-call costs of torch.func and autograd)
    fm.log_likelihood(model, x[:64], steps=1)
    loop_log_likelihood(model, x[:64], 1)
    reached = []  # the source points x_0, as the callable source sees them

    def standard_normal(x0):
        reached.append(x0)
        return -0.5 * (x0**2).sum(1) - 0.5 * args.dim * math.log(2 * math.pi)

    ll_fm, t_fm = timed(lambda: fm.log_likelihood(model, x, steps=args.steps, source=standard_normal), device)
    x0 = reached[-1]
    ll_loop, t_loop = timed(lambda: loop_log_likelihood(model, x, args.steps), device)
    diff = float((ll_fm - ll_loop).abs().max())
    print(f"fmlearn.log_likelihood (torch.func)  {t_fm:8.2f} s")
    print(f"per-dimension autograd loop          {t_loop:8.2f} s   (loop / fmlearn = {t_loop / t_fm:.2f})")
    integral = ll_fm + 0.5 * (x0**2).sum(1) + 0.5 * args.dim * math.log(2 * math.pi)  # -int div dt
    print(f"max |difference| of log p: {diff:.3g} nats (log p from {float(ll_fm.min()):.3g} to {float(ll_fm.max()):.3g}, "
          f"-int div dt up to {float(integral.abs().max()):.3g})")
    tol = 1e-3 * max(1.0, float(ll_fm.abs().max()))
    assert diff < tol, f"the two results disagree: {diff} >= {tol}"


if __name__ == "__main__":
    main()
