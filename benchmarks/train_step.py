"""Training throughput: fmlearn.train against a plain hand-written torch loop.

Same model (MLP 3x256), same batch (256 points of the 11-mode mixture, N(0, I)
noise, t ~ U[0, 1)), same optimizer (Adam, lr 1e-3), same CondOT path. The
hand loop keeps its losses on the device (no per-step .item()), the fastest
simple loop. Runs alternate, and we report the median of the repeats.

    python benchmarks/train_step.py [--steps 1500] [--repeats 5] [--device cpu|cuda] [--amp default|on|off]

(The progress bar is off in both loops.)
"""

import argparse
import statistics
import time

import torch

import fmlearn as fm


def hand_loop(model, target, steps, batch, device, seed):
    gen = torch.Generator(device=device).manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    start = time.perf_counter()
    for _ in range(steps):
        x1 = target.sample(batch, generator=gen, device=device)
        x0 = torch.randn(x1.shape, generator=gen, device=device)
        t = torch.rand(batch, generator=gen, device=device)
        xt = t[:, None] * x1 + (1 - t[:, None]) * x0
        loss = ((model(xt, t) - (x1 - x0)) ** 2).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    torch.stack(losses).cpu()
    return steps / (time.perf_counter() - start)


def fmlearn_loop(model, target, steps, batch, device, seed, amp=None):
    path = fm.AffineGaussianPath("condot")
    start = time.perf_counter()
    fm.train(model, fm.CFMObjective(path, target),
             steps=steps, batch_size=batch, lr=1e-3, seed=seed, device=device, amp=amp, progress=False)
    return steps / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--device", default=None)
    ap.add_argument("--amp", choices=["default", "on", "off"], default="default",
                    help="fmlearn's mixed precision: its default, or forced on/off")
    args = ap.parse_args()
    device = fm.get_device(args.device)
    target = fm.GaussianMixture.symmetric_2d()
    print(fm.describe() if args.device is None else f"device {device}")
    amp = {"default": None, "on": True, "off": False}[args.amp]
    ours_fn = lambda *a, **k: fmlearn_loop(*a, **k, amp=amp)  # noqa: E731
    results = {"hand": [], "fmlearn": []}
    for r in range(args.repeats + 1):  # the first round warms up and is dropped
        for name, fn in (("hand", hand_loop), ("fmlearn", ours_fn)) if r % 2 else \
                        (("fmlearn", ours_fn), ("hand", hand_loop)):
            torch.manual_seed(r)
            model = fm.MLP(2, hidden=256, depth=3).to(device)
            ips = fn(model, target, args.steps if r else 200, args.batch, device, seed=r)
            if r:
                results[name].append(ips)
    hand, ours = statistics.median(results["hand"]), statistics.median(results["fmlearn"])
    print(f"hand-written loop: {hand:8.1f} it/s  (repeats: {', '.join(f'{v:.1f}' for v in results['hand'])})")
    print(f"fmlearn.train (amp {args.amp}): {ours:8.1f} it/s  (repeats: {', '.join(f'{v:.1f}' for v in results['fmlearn'])})")
    print(f"ratio fmlearn / hand: {ours / hand:.3f}")


if __name__ == "__main__":
    main()
