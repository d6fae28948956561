"""Time to quality: KL(p_data || p_model) on the 11-mode mixture against training seconds.

The recipe of chapter 4 (MLP of 4 hidden layers of 96 GELU units with two slow
time sinusoids, CondOT path, uniform t, batch 512, Adam at 3e-3 with cosine decay) trained for increasing numbers of
steps; after each run, KL by the paired estimator on --n samples of the target
with the exact divergence and RK4 at 32 steps.

    python benchmarks/time_to_quality.py [--steps 2500 5000 10000 20000] [--n 10000]
"""

import argparse
import math

import torch

import fmlearn as fm


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[2500, 5000, 10000, 20000])
    ap.add_argument("--n", type=int, default=10_000)
    args = ap.parse_args()
    print(fm.describe())
    target, path = fm.GaussianMixture.symmetric_2d(), fm.AffineGaussianPath("condot")
    x = target.sample(args.n, generator=torch.Generator().manual_seed(1))
    log_p = target.log_prob(x).double()
    print(f"{'steps':>6} {'train s':>8} {'KL nats':>9} {'SE':>7}")
    for steps in args.steps:
        fm.seed_everything(0)
        model = fm.MLP(2, hidden=96, depth=4, activation="gelu", n_freqs=2, max_freq=1.0)
        run = fm.train(model, fm.CFMObjective(path, target),
                       steps=steps, batch_size=512, lr=3e-3, seed=0, progress=False)
        diff = log_p - fm.log_likelihood(model, x, steps=32, method="rk4").cpu().double()
        print(f"{steps:6d} {run.seconds:8.1f} {diff.mean().item():9.4f} {diff.std().item() / math.sqrt(args.n):7.4f}",
              flush=True)


if __name__ == "__main__":
    main()
