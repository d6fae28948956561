"""Training speed on a small CPU, idle and beside a CPU-bound process, for three thread settings.

On a 2-core machine torch's default of one OpenMP thread per core busy-waits between the many small
kernels of a small model; when another process wants the cores (a second notebook, a browser, a test
suite) those spinning threads fight it and a training step can slow ~100x. This measures
``fmlearn.train`` (chapter 1's MLP 3x256, batch 256, CondOT) in a fresh process per setting:

* ``torch default``: torch's own thread count, OpenMP's default (active) wait policy;
* ``2 threads, PASSIVE``: the same threads, ``OMP_WAIT_POLICY=PASSIVE`` (what ``make lab``/``make test`` set);
* ``GOMP_SPINCOUNT=10000``: active waiting, but only briefly (libgomp, i.e. torch on Linux);
* ``1 thread``: ``torch.set_num_threads(1)``.

"loaded" runs a busy loop on every core in other processes during the measurement.

    python benchmarks/threads.py [--steps 600] [--repeats 2]
    taskset -c 0,1 python benchmarks/threads.py    # a 2-core machine carved out of a bigger one
"""

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time, torch
import fmlearn as fm
threads, steps, batch = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
if threads:
    torch.set_num_threads(threads)
target, path = fm.GaussianMixture.symmetric_2d(), fm.AffineGaussianPath("condot")
fm.train(fm.MLP(2, hidden=256, depth=3), fm.CFMObjective(path, target), steps=20, batch_size=batch, progress=False, device="cpu")
model = fm.MLP(2, hidden=256, depth=3)
start = time.perf_counter()
fm.train(model, fm.CFMObjective(path, target), steps=steps, batch_size=batch, progress=False, device="cpu")
print(json.dumps({"its": steps / (time.perf_counter() - start), "threads": torch.get_num_threads()}))
"""

SETTINGS = {
    "torch default": ({"OMP_WAIT_POLICY": None}, 0),
    "PASSIVE (the course)": ({"OMP_WAIT_POLICY": "PASSIVE"}, 0),
    "GOMP_SPINCOUNT=10000": ({"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "10000"}, 0),
    "1 thread": ({"OMP_WAIT_POLICY": None}, 1),
}


def _busy(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        x += 1


def measure(env_changes: dict, threads: int, steps: int, batch: int) -> dict:
    env = dict(os.environ)
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    env.pop("OMP_NUM_THREADS", None)
    if "GOMP_SPINCOUNT" not in env_changes:
        env.pop("GOMP_SPINCOUNT", None)
    out = subprocess.run([sys.executable, "-c", CHILD, str(threads), str(steps), str(batch)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=2, help="best of this many runs per cell")
    args = ap.parse_args()
    cpus = len(os.sched_getaffinity(0))  # what this process may use (taskset -c 0,1 makes a 2-core machine)
    print(f"{cpus} CPUs; MLP 3x256, batch {args.batch}, {args.steps} steps per measurement, best of {args.repeats}")
    print(f"{'setting':22s} {'idle it/s':>10s} {'loaded it/s':>12s} {'slowdown':>9s}")
    for name, (env_changes, threads) in SETTINGS.items():
        idle = max((measure(env_changes, threads, args.steps, args.batch) for _ in range(args.repeats)),
                   key=lambda r: r["its"])
        load = [mp.Process(target=_busy, args=(time.time() + 900,), daemon=True) for _ in range(cpus)]
        for p in load:
            p.start()
        try:
            loaded = max((measure(env_changes, threads, max(args.steps // 4, 50), args.batch)
                          for _ in range(args.repeats)), key=lambda r: r["its"])
        finally:
            for p in load:
                p.terminate()
        print(f"{name:22s} {idle['its']:10.1f} {loaded['its']:12.1f} {idle['its'] / loaded['its']:8.2f}x"
              f"   ({idle['threads']} torch threads)")


if __name__ == "__main__":
    main()
