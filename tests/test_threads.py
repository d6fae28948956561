"""CPU threads: importing fmlearn before torch makes idle OpenMP workers sleep (OMP_WAIT_POLICY=PASSIVE, read
once when torch loads); importing torch first without that setting gets a warning that says how to fix it.
Each case runs in a fresh interpreter, since the setting only counts before torch is loaded."""

import os
import subprocess
import sys

import pytest

CASES = {
    "fmlearn first": ("import fmlearn as fm; import os; print(os.environ.get('OMP_WAIT_POLICY')); print(fm.describe())",
                      None),
    "torch first": ("import torch; import fmlearn as fm; print(fm.describe())", None),
    "torch first, PASSIVE set": ("import torch; import fmlearn as fm; print(fm.describe())", "PASSIVE"),
}


def _run(code: str, policy: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env["FMLEARN_DEVICE"] = "cpu"
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    return subprocess.run([sys.executable, "-W", "always", "-c", code], env=env, capture_output=True, text=True,
                          timeout=120, check=True)


def test_fmlearn_first_sets_the_passive_wait_policy():
    out = _run(*CASES["fmlearn first"])
    assert out.stdout.splitlines()[0] == "PASSIVE"
    assert "sleeping when idle" in out.stdout and "busy-wait" not in out.stderr


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="torch runs one thread on one core: nothing busy-waits")
@pytest.mark.parametrize("case, warned", [("torch first", True), ("torch first, PASSIVE set", False)])
def test_torch_first_warns_only_without_the_policy(case, warned):
    out = _run(*CASES[case])
    assert ("busy-wait" in out.stderr) is warned, out.stderr
    if warned:
        assert "OMP_WAIT_POLICY=PASSIVE" in out.stderr and "busy-waiting when idle" in out.stdout
