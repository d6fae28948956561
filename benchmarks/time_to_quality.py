"""Time to quality: KL(p_data || p_model) on the 11-mode mixture after the same seconds of training, side by side.

Every recipe trains a velocity field from N(0, I) to ``fm.GaussianMixture.symmetric_2d()`` for --seconds of
wall-clock training on this machine, each in a fresh process with the settings its users get (the peers: torch's
defaults, threads spinning between operations; fmlearn: its own, OMP_WAIT_POLICY=PASSIVE), then one estimator
scores them all:
KL = mean over --n target samples x of log p(x) - log q(x), with log q(x) by ``fm.log_likelihood`` (exact
divergence, RK4 at 32 steps), ± its standard error; the same x for every recipe.

Recipes (rows):

- ``fmlearn``: chapter 4's network (``fm.MLP``, 4 hidden layers of 96 GELU units, two slow time sinusoids),
  CondOT path, uniform t, batch 1024, Adam at 3e-3 cosine-decayed to 0, by ``fm.train`` (fused Adam), on one CPU
  thread (``torch.set_num_threads(1)``: on a 2-core CPU a step of a model this small is per-operation overhead,
  and a second thread that sleeps between operations, as the course sets torch's threads, costs more than it
  gives). Its number of steps is set from timed warm-up runs (20 steps that pay the process's first-call
  costs, then 300 timed) so that warm-up plus training fit in the budget (the warm-up counts against it: the
  printed seconds include it).
- ``fmlearn-before``: chapter 4's recipe as it was (batch 512, torch's threads as the course sets them), the same
  way: what the levers bought.
- ``torchcfm``: torchcfm 1.0.7 as its 2-D tutorial trains: its ``torchcfm.models.models.MLP`` (3 hidden layers
  of 64 SELU units, t as a fourth input), ``ExactOptimalTransportConditionalFlowMatcher(sigma=0.1)`` (minibatch
  OT by POT), batch 256, Adam at its default 1e-3; steps until the budget is spent. ``torchcfm, sigma 0`` is the
  same with sigma = 0 (sigma = 0.1 blurs every mode by design, which the KL charges for).
- ``flow_matching``: flow_matching 1.0.10 as its 2-D example trains: an MLP of 4 hidden layers of 512 Swish units
  with t as a third input (written here: the example defines it in the notebook, not the library), its
  ``AffineProbPath(CondOTScheduler())``, t ~ U(0, 1), batch 4096, Adam at 1e-3; steps until the budget is spent.

The peers are optional and installed beside the course, never inside it (no dependency of fmlearn):

    python -m pip install --target build/peers --no-deps torchcfm==1.0.7 flow-matching==1.0.10 pot==0.9.7.post1
    python benchmarks/time_to_quality.py [--seconds 60] [--n 10000] [--recipes fmlearn torchcfm ...]

(build/peers is put on sys.path when it exists; a recipe whose library is missing is reported and skipped.)
Measure on an idle machine: the budget is wall-clock time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

if os.environ.get("TTQ_RECIPE", "fmlearn").startswith("fmlearn"):
    import fmlearn as fm  # first: it sets OMP_WAIT_POLICY before torch loads OpenMP (fmlearn's own setting)

import torch
from torch import nn

import fmlearn as fm  # noqa: E402  (a peer's process: after torch, so torch keeps its default thread waiting)

PEERS = Path(__file__).resolve().parents[1] / "build" / "peers"
if PEERS.is_dir():
    sys.path.insert(0, str(PEERS))

TARGET = fm.GaussianMixture.symmetric_2d()


# ----------------------------------------------------------------------------------------------- fmlearn's recipes
def _fmlearn(depth: int, batch: int, lr: float = 3e-3, threads: int | None = None):
    def recipe(seconds: float, seed: int):
        if threads is not None:
            torch.set_num_threads(threads)

        def model_and_objective():
            fm.seed_everything(seed)
            model = fm.MLP(2, hidden=96, depth=depth, activation="gelu", n_freqs=2, max_freq=1.0)
            return model, fm.CFMObjective(fm.AffineGaussianPath("condot"), TARGET)

        started = time.perf_counter()  # throwaway runs: one pays the process's first-call costs, one times a step
        for n in (20, 300):
            model, objective = model_and_objective()
            tic = time.perf_counter()
            fm.train(model, objective, steps=n, batch_size=batch, lr=lr, seed=seed, progress=False)
        per_step = (time.perf_counter() - tic) / 300
        warmup = time.perf_counter() - started
        steps = max(100, int((seconds - warmup) / per_step * 0.98))
        model, objective = model_and_objective()
        run = fm.train(model, objective, steps=steps, batch_size=batch, lr=lr, seed=seed, progress=False)
        return model, steps, warmup + run.seconds
    return recipe


# ------------------------------------------------------------------------------------------------- the peers' loops
class _TimeAsInput(nn.Module):
    """model(x, t) for fm.log_likelihood, around a network that takes cat([x, t]) (both peers' 2-D models)."""

    def __init__(self, net: nn.Module, time_first: bool = False):
        super().__init__()
        self.net, self.time_first = net, time_first

    def forward(self, x, t):
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(-1, 1).expand(x.shape[0], 1)
        return self.net(torch.cat([t, x] if self.time_first else [x, t], dim=1))


def _until(seconds: float, step) -> tuple[int, float]:
    """Call step() until the budget is spent; (steps, seconds)."""
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step()
        steps += 1
    return steps, time.perf_counter() - started


def _torchcfm(sigma: float):
    def recipe(seconds: float, seed: int):
        from torchcfm.conditional_flow_matching import ExactOptimalTransportConditionalFlowMatcher
        from torchcfm.models.models import MLP

        torch.manual_seed(seed)
        net = MLP(dim=2, time_varying=True)
        flow_matcher = ExactOptimalTransportConditionalFlowMatcher(sigma=sigma)
        opt = torch.optim.Adam(net.parameters())
        gen = torch.Generator().manual_seed(seed)

        def step():
            x1 = TARGET.sample(256, generator=gen)
            x0 = torch.randn(x1.shape, generator=gen)
            t, xt, ut = flow_matcher.sample_location_and_conditional_flow(x0, x1)
            loss = ((net(torch.cat([xt, t[:, None]], dim=-1)) - ut) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

        steps, took = _until(seconds, step)
        return _TimeAsInput(net), steps, took
    return recipe


def _flow_matching(seconds: float, seed: int):
    from flow_matching.path import AffineProbPath
    from flow_matching.path.scheduler import CondOTScheduler

    torch.manual_seed(seed)
    width = 512
    layers: list[nn.Module] = [nn.Linear(3, width), nn.SiLU()]
    for _ in range(3):
        layers += [nn.Linear(width, width), nn.SiLU()]
    net = nn.Sequential(*layers, nn.Linear(width, 2))
    path = AffineProbPath(scheduler=CondOTScheduler())
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)

    def step():
        x1 = TARGET.sample(4096, generator=gen)
        x0 = torch.randn(x1.shape, generator=gen)
        t = torch.rand(x1.shape[0], generator=gen)
        sample = path.sample(t=t, x_0=x0, x_1=x1)
        loss = (net(torch.cat([sample.x_t, sample.t[:, None]], dim=1)) - sample.dx_t).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    steps, took = _until(seconds, step)
    return _TimeAsInput(net), steps, took


RECIPES = {
    "fmlearn": ("fmlearn: 4x96 GELU, batch 1024, lr 3e-3 cosine, 1 thread", _fmlearn(depth=4, batch=1024, threads=1)),
    "fmlearn-before": ("fmlearn, before: the same, batch 512, 2 threads", _fmlearn(depth=4, batch=512)),
    "torchcfm": ("torchcfm 1.0.7 tutorial: 3x64 SELU, OT-CFM sigma 0.1, batch 256", _torchcfm(0.1)),
    "torchcfm-sigma0": ("torchcfm, the same with sigma 0", _torchcfm(0.0)),
    "flow_matching": ("flow_matching 1.0.10 example: 4x512 Swish, batch 4096", _flow_matching),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="training budget per recipe (wall clock)")
    ap.add_argument("--n", type=int, default=10_000, help="target samples the KL is averaged over")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    args = ap.parse_args()
    if "TTQ_RECIPE" in os.environ:  # a child: train one recipe, score it, print one JSON line
        label, recipe = RECIPES[os.environ["TTQ_RECIPE"]]
        try:
            model, steps, seconds = recipe(args.seconds, args.seed)
        except ImportError as err:
            print(json.dumps({"skipped": str(err)}))
            return
        x = TARGET.sample(args.n, generator=torch.Generator().manual_seed(1))
        diff = TARGET.log_prob(x).double() - fm.log_likelihood(model, x, steps=32, method="rk4").cpu().double()
        print(json.dumps({"steps": steps, "seconds": seconds, "kl": diff.mean().item(),
                          "se": diff.std().item() / math.sqrt(args.n), "threads": torch.get_num_threads()}))
        return
    print(fm.describe())
    print(f"{'recipe':<62} {'steps':>7} {'train s':>8} {'KL nats':>9} {'SE':>7}")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    for key in args.recipes:
        label = RECIPES[key][0]
        out = subprocess.run([sys.executable, __file__, "--seconds", str(args.seconds), "--n", str(args.n),
                              "--seed", str(args.seed)], env={**env, "TTQ_RECIPE": key},
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{label:<62} failed: {out.stderr.strip().splitlines()[-1:]}", flush=True)
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        if "skipped" in r:
            print(f"{label:<62} skipped: {r['skipped']} (install the peers: see this file's docstring)", flush=True)
            continue
        print(f"{label:<62} {r['steps']:7d} {r['seconds']:8.1f} {r['kl']:9.4f} {r['se']:7.4f}", flush=True)


if __name__ == "__main__":
    main()
