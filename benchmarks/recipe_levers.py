"""One variant of chapter 4's recipe, trained for a fixed number of steps and scored by the KL on two sample sets.

The search behind ``benchmarks/time_to_quality.py``'s recipe: a lever is kept only if it lowers the KL at equal
training time, over more than one seed. Fixed steps (not seconds) make runs comparable when several share a
machine: run them one thread each (``OMP_NUM_THREADS=1``), two at a time on 2 cores, and convert steps to
seconds with a step's cost measured alone.

    python benchmarks/recipe_levers.py --steps 12000 --batch 1024 [--depth 4] [--hidden 96] [--lr 3e-3]
        [--ema 0.999] [--time uniform|strat|MEAN,STD] [--source-std S] [--in-scale A] [--out-scale B] [--seed 0]

Prints one JSON line: the settings, the training seconds, and KL ± SE on --n samples of seed 1 (``kl``, ``se``)
and on another --n of seed 2 (``kl2``), log q by ``fm.log_likelihood`` (exact divergence, RK4 at 32 steps).
``--time strat`` draws stratified times, t_i = (i + u_i) / n, one per slice of [0, 1) (low-discrepancy
times, Kingma et al. 2021); ``--source-std`` trains from N(0, S^2 I) instead of N(0, I) (and scores with that
source); ``--in-scale`` / ``--out-scale`` wrap the network as B * net(A * x, t).
"""

from __future__ import annotations

import argparse
import json
import math

import fmlearn as fm  # first: it sets OMP_WAIT_POLICY before torch loads OpenMP

import torch
from torch import nn


class _Scaled(nn.Module):
    def __init__(self, net: nn.Module, in_scale: float, out_scale: float):
        super().__init__()
        self.net, self.in_scale, self.out_scale = net, in_scale, out_scale

    def forward(self, x, t):
        return self.out_scale * self.net(self.in_scale * x, t)


def _stratified_time(n, generator, device):
    u = torch.rand(n, generator=generator, device=device)
    return ((torch.arange(n, device=device) + u) / n).clamp(2.0**-24, 1 - 2.0**-24)


def _time_sampler(spec: str):
    if spec == "uniform":
        return fm.objectives.uniform_time
    if spec == "strat":
        return _stratified_time
    mean, std = (float(v) for v in spec.split(","))
    return fm.objectives.logit_normal_time(mean, std)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--hidden", type=int, default=96)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--ema", type=float, default=None)
    ap.add_argument("--time", default="uniform", help="uniform, strat, or MEAN,STD of logit-normal times")
    ap.add_argument("--source-std", type=float, default=None)
    ap.add_argument("--in-scale", type=float, default=1.0)
    ap.add_argument("--out-scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=10_000)
    args = ap.parse_args()

    target = fm.GaussianMixture.symmetric_2d()
    source = None if args.source_std is None else fm.Gaussian(torch.zeros(2), args.source_std)
    fm.seed_everything(args.seed)
    model = fm.MLP(2, hidden=args.hidden, depth=args.depth, activation="gelu", n_freqs=2, max_freq=1.0)
    if args.in_scale != 1.0 or args.out_scale != 1.0:
        model = _Scaled(model, args.in_scale, args.out_scale)
    objective = fm.CFMObjective(fm.AffineGaussianPath("condot"), target, source=source,
                                time_sampler=_time_sampler(args.time))
    run = fm.train(model, objective, steps=args.steps, batch_size=args.batch, lr=args.lr, seed=args.seed,
                   ema=args.ema, progress=False)
    result = dict(vars(args), seconds=round(run.seconds, 1))
    for key, sample_seed in (("kl", 1), ("kl2", 2)):
        x = target.sample(args.n, generator=torch.Generator().manual_seed(sample_seed))
        diff = target.log_prob(x).double() - fm.log_likelihood(model, x, steps=32, method="rk4",
                                                               source=source).cpu().double()
        result[key] = round(diff.mean().item(), 5)
        if key == "kl":
            result["se"] = round(diff.std().item() / math.sqrt(args.n), 5)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
