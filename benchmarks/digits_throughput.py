"""Digits training throughput (images/s) of chapter 6's recipe, and its guided sampling throughput.

The recipe: fm.TinyUNet (16 channels) on the generator half of scikit-learn's digits, the CondOT path,
conditional CFM with label dropout 0.1, Adam at lr 2e-3, EMA weights, bfloat16 autocast on CUDA.
Training throughput = steps * batch / seconds of fm.train (its only host syncs are its own loss
read-backs), median over repeats after one warm-up round. Sampling throughput = guided images per
second with 5 midpoint steps (10 evaluations of the guided field, each one forward pass on a doubled batch).

    python benchmarks/digits_throughput.py [--device cpu|cuda] [--steps 300] [--repeats 3] [--batch 256]
                                            [--amp chapter|on|off] [--ema 0.999 | --ema none] [--channels 16]

``--amp chapter`` (default) is what the chapter does: on on CUDA, off on the CPU. Run with
OMP_NUM_THREADS set to the cores you mean to use; on a shared machine the numbers are indicative only.
"""

import argparse
import statistics
import time

import torch

import fmlearn as fm


def sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_rate(data, device, steps, batch, amp, ema, channels, seed) -> float:
    torch.manual_seed(seed)
    model = fm.TinyUNet(num_classes=10, channels=channels)
    res = fm.train(model, fm.CFMObjective(fm.AffineGaussianPath("condot"), data, conditional=True, label_dropout=0.1),
                   steps=steps, batch_size=batch, lr=2e-3, seed=seed, device=device, ema=ema, amp=amp,
                   progress=False)
    return steps * batch / res.seconds, model


def sample_rate(model, device, n, amp) -> float:
    labels = torch.arange(10).repeat_interleave(n // 10)
    gen = torch.Generator(device=device).manual_seed(0)
    ctx = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp)
    with ctx:
        fm.guided_sample(model, labels[:20], 0.5, (1, 8, 8), steps=5, method="midpoint", generator=gen)  # warm-up
        sync(device)
        start = time.perf_counter()
        fm.guided_sample(model, labels, 0.5, (1, 8, 8), steps=5, method="midpoint", generator=gen)
        sync(device)
    return len(labels) / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--amp", choices=["chapter", "on", "off"], default="chapter")
    ap.add_argument("--ema", default="0.999", help="EMA decay, or 'none'")
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--samples", type=int, default=2000, help="images for the sampling throughput")
    args = ap.parse_args()
    device = fm.get_device(args.device)
    amp = {"chapter": device.type == "cuda", "on": True, "off": False}[args.amp]
    ema = None if args.ema == "none" else float(args.ema)
    print(fm.describe() if args.device is None else f"device {device}; torch {torch.__version__}; "
          f"{torch.get_num_threads()} CPU threads")
    train_set, _ = fm.load_digits()
    rates, model = [], None
    for r in range(args.repeats + 1):  # round 0 warms up (allocator, kernels) and is dropped
        rate, model = train_rate(train_set, device, args.steps if r else 30, args.batch, amp, ema, args.channels, r)
        if r:
            rates.append(rate)
    print(f"training (batch {args.batch}, amp {amp}, ema {ema}, channels {args.channels}): "
          f"{statistics.median(rates):,.0f} images/s  (repeats: {', '.join(f'{v:,.0f}' for v in rates)})")
    rate = sample_rate(model, device, args.samples, amp)
    print(f"guided sampling (5 midpoint steps, 10 evaluations): {rate:,.0f} images/s")


if __name__ == "__main__":
    main()
