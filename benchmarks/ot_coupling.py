"""What a minibatch OT coupling costs per training step, against the training step itself.

For each batch size: the median time of one call of the exact coupling (fm.OTCoupling: scipy's
linear_sum_assignment on the CPU) and of the entropic one (fm.SinkhornCoupling, a fixed number of
log-domain iterations on the device, no host sync), on batches of 8 Gaussians (source) and moons (data);
and the time of one training step of chapter 5's MLP (3 x 256) without coupling, from fm.train.
Since fm.train calls the coupling once per step, a coupled step costs about their sum.

    python benchmarks/ot_coupling.py [--batches 256 1024] [--repeats 5] [--device cpu|cuda] [--iters 100]

Sinkhorn's reg is --reg-frac times the mean squared distance of independent pairs (about 20 here).
"""

import argparse
import statistics
import time

import torch

import fmlearn as fm


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_coupling(coupling, x0, x1, repeats, device):
    coupling(x0, x1)  # warm-up
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        coupling(x0, x1)
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_train_step(batch, steps, repeats, device):
    path, source, target = fm.AffineGaussianPath("condot"), fm.EightGaussians(), fm.Moons()
    times = []
    for r in range(repeats + 1):  # the first run warms up and is dropped
        torch.manual_seed(r)
        model = fm.MLP(2, hidden=256, depth=3)
        run = fm.train(model, fm.CFMObjective(path, target, source=source),
                       steps=steps if r else 10, batch_size=batch, seed=r, device=device, progress=False)
        if r:
            times.append(run.seconds / steps)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--train-steps", type=int, default=200, help="steps per timing of the training step")
    ap.add_argument("--iters", type=int, default=100, help="Sinkhorn iterations")
    ap.add_argument("--reg-frac", type=float, default=0.01)
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    device = fm.get_device(args.device)
    print(fm.describe() if args.device is None else f"device {device}")
    gen = torch.Generator(device=device).manual_seed(0)
    print(f"{'batch':>6} | {'train step':>10} | {'exact OT':>17} | {'Sinkhorn (' + str(args.iters) + ' it)':>19}")
    for batch in args.batches:
        x0 = fm.EightGaussians().sample(batch, generator=gen, device=device)
        x1 = fm.Moons().sample(batch, generator=gen, device=device)
        reg = args.reg_frac * fm.squared_distances(x0, x1).mean().item()
        step = time_train_step(batch, args.train_steps, args.repeats, device)
        exact = time_coupling(fm.OTCoupling(), x0, x1, args.repeats, device)
        sink = time_coupling(fm.SinkhornCoupling(reg, iters=args.iters, generator=gen), x0, x1, args.repeats, device)
        print(f"{batch:6d} | {step * 1e3:8.2f}ms | {exact * 1e3:8.2f}ms ({exact / step:5.1f}x) | "
              f"{sink * 1e3:8.2f}ms ({sink / step:5.1f}x)")
    print("(x: the coupling's time in units of one training step without coupling)")


if __name__ == "__main__":
    main()
