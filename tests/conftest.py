"""Shared test setup: a headless matplotlib, one CPU thread for torch, and the
``cuda`` marker (skipped automatically when torch sees no CUDA device)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

# One thread: the unit tests use tiny tensors, and on a shared 2-core machine a
# second intra-op thread makes OpenMP spin-wait (a 30x slowdown under load).
torch.set_num_threads(1)


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA device (skipped when torch.cuda.is_available() is False)")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device visible to torch")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _clean_fmlearn_env(monkeypatch):
    """Tests must not depend on the caller's FMLEARN_* settings."""
    for key in list(os.environ):
        if key.startswith("FMLEARN_"):
            monkeypatch.delenv(key)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")
