"""The order ``make test`` hands out its tests in (issue 25, item 2): the longest work first, so that neither of
the two pytest-xdist workers sits idle while the other finishes.

``make test`` runs ``pytest -n 2 --dist loadscope --no-loadscope-reorder``: each scope (a module, a class, a
notebook under nbval: pytest-xdist's ``nodeid.rsplit("::", 1)[0]``) runs whole on one worker, and the scopes are
handed out in the order of their first test here, the next one to a worker as it runs out of work. So:

1. the notebooks the book includes, and the tests that execute an exercise for it (:func:`_executed.run_order`
   0), longest first: they end about together, and the book does not wait long for the last of them;
2. then the longest of the other scopes (the hostile class, graded once per jail route): the worker that ends
   its notebooks first takes it, and the book goes to the other one, which by then has (nearly) finished its own;
3. the book (``tests/test_book.py``, run order 1);
4. the rest, longest first (the classic rule for two machines: the short ones fill in at the end).

How long a scope takes comes from ``tests/durations.json`` (seconds per scope, measured by a ``make test`` on
2 cores; a scope it does not list counts as 0 s and keeps its place). Each run adds what it measured to
``build/test-durations.json`` (the controller's view: setup + call + teardown of each test, summed per scope);
copy that over ``tests/durations.json`` when the suite changes a lot. Only the order changes: the same tests run,
each scope on one worker, and a test's own order inside its scope is kept.
"""

from __future__ import annotations

import json
from pathlib import Path

import _executed

HERE = Path(__file__).resolve().parent
DURATIONS = HERE / "durations.json"
MEASURED = _executed.ROOT / "build" / "test-durations.json"


def scope(nodeid: str) -> str:
    """The unit pytest-xdist's loadscope keeps on one worker (its ``_split_scope``)."""
    return nodeid.rsplit("::", 1)[0]


def known_seconds(path: Path = DURATIONS) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(v, (int, float))}


def ordered(items: list, seconds: dict[str, float] | None = None) -> list:
    """``items`` in the order above: each scope kept together, in its own order (book executions first)."""
    seconds = known_seconds() if seconds is None else seconds
    first: dict[str, int] = {}
    group: dict[str, int] = {}
    for i, item in enumerate(items):
        key = scope(item.nodeid)
        first.setdefault(key, i)
        group[key] = min(group.get(key, 2), _executed.run_order(item))
    later = [k for k in first if group[k] == 2]
    lead = max(later, key=lambda k: (seconds.get(k, 0.0), -first[k]), default=None)

    def rank(key: str) -> tuple:
        g = group[key]
        if g == 2 and key == lead:
            return (1, 0.0, 0)  # between the book's notebooks (0) and the book (1 -> 2)
        return (0 if g == 0 else g + 1, -seconds.get(key, 0.0), first[key])

    return [item for _, item in sorted(enumerate(items), key=lambda p: (*rank(scope(p[1].nodeid)),
                                                                      _executed.run_order(p[1]), p[0]))]


class DurationRecorder:
    """Sums each scope's setup, call and teardown seconds as the reports arrive; writes them at the end."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def pytest_runtest_logreport(self, report) -> None:
        key = scope(report.nodeid)
        self.seconds[key] = self.seconds.get(key, 0.0) + float(getattr(report, "duration", 0.0) or 0.0)

    def pytest_sessionfinish(self, session) -> None:
        if not self.seconds:
            return
        merged = {**known_seconds(MEASURED), **{k: round(v, 1) for k, v in self.seconds.items()}}
        try:
            MEASURED.parent.mkdir(parents=True, exist_ok=True)
            MEASURED.write_text(json.dumps(dict(sorted(merged.items())), indent=0) + "\n")
        except OSError:
            pass
