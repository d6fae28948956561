"""Shared test setup: a headless matplotlib, one CPU thread for torch, the
``cuda`` marker (skipped automatically when torch sees no CUDA device), and the
notebooks executed once per test run (tests/_executed.py): nbval's executions of the
chapters, and tests/test_exercises.py's of the exercises (the ``book_execution`` marker),
are handed to the web book (tests/test_book.py), which runs after them."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

import _executed  # noqa: E402
import _order  # noqa: E402

# One thread: the unit tests use tiny tensors, and on a shared 2-core machine a
# second intra-op thread makes OpenMP spin-wait (a 30x slowdown under load).
torch.set_num_threads(1)


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA device (skipped when torch.cuda.is_available() is False)")
    config.addinivalue_line("markers", "book_execution(notebook): executes the notebook as the quick book does and "
                            "hands the book its outputs (tests/_executed.py: hand_to_book)")
    if getattr(config.option, "nbval", False) or getattr(config.option, "nbval_lax", False):
        config.pluginmanager.register(_executed.NbvalRecorder(config), "fmlearn-nbval-recorder")
    if not hasattr(config, "workerinput") and not config.option.collectonly:  # the controller (or a run without xdist)
        config.pluginmanager.register(_order.DurationRecorder(), "fmlearn-durations")


def pytest_collection_modifyitems(config, items):
    # The book's notebooks under nbval (and the tests that execute the exercises for it) first, longest first, then
    # the longest other scope, then the book (tests/test_book.py: it waits for them and builds the book from their
    # executions), then the rest, longest first (tests/_order.py): pytest-xdist (--dist loadscope
    # --no-loadscope-reorder) hands them out in this order.
    items[:] = _order.ordered(items)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device visible to torch")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def pytest_collection_finish(session):
    if not session.config.option.collectonly:  # the tests selected here, before any runs (each xdist worker too)
        _executed.clear_handed_over(session.items)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    _executed.settle(item)  # a test that was to hand the book an execution and did not: the book runs it itself


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
