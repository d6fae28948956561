"""Each notebook executed once per ``make test`` (issue 25, item 2): the web book shows what nbval executed.

nbval runs every chapter cell by cell in one kernel (``--nbval-lax``: each cell must run without an error). This
plugin records, for every cell, the kernel's output messages as nbval reads them, and turns them into the cell's
outputs the way nbclient does (the executor jupyter-cache and myst-nb use: one output per message, a display
updated through its display id, ``clear_output`` honoured, cells numbered 1, 2, ...). When every code cell of a
notebook the book includes has run and passed, the notebook with its outputs is written to
``build/book-quick/executed/<folder>/<name>.ipynb``; a notebook with a failed or skipped cell gets a
``<name>.ipynb.failed`` marker instead.

The book's test (``tests/test_book.py``) runs after those notebooks (:func:`run_order`; under pytest-xdist the
other worker may still be running the last of them: it waits, building the exercises' pages meanwhile), stores
them in the quick book's jupyter-cache (:func:`store_in_book_cache`; myst-nb keys the cache by the notebook's
code, so each one is a cache hit and is not executed again) and builds the book. A notebook nbval did not run
and pass in this test run (deselected, failed, not a test path) is not there, and the book executes it itself,
as ``make book-quick`` does: a failing chapter fails the book's build as before.

Outputs are only recorded when nbval runs in the book's environment (``FMLEARN_QUICK=1``, ``FMLEARN_PROGRESS=0``,
no ``FMLEARN_DEVICE``): the book (quick mode) executes its notebooks with exactly these settings.

The handed-out exercises (``exercises/ex*.ipynb``) are not nbval test paths: ``tests/test_exercises.py`` executes
each one (as built from its solution) with nbclient, errors allowed, in the book's settings, and hands the executed
notebook over (:func:`hand_to_book`) when its code is the code of the exercise the book reads; those tests carry
the ``book_execution`` marker, run before the book (:func:`run_order`), and are waited for and stored like nbval's
notebooks. An exercise whose test did not run, failed before executing it, or ran other code (a learner's filled-in
copy in exercises/) gets the ``.failed`` marker: the book executes it itself.
"""

from __future__ import annotations

import copy
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK_BUILD = ROOT / "build" / "book-quick"  # book/conf.py's build folder in quick mode (tests/test_book.py's)
EXECUTED = BOOK_BUILD / "executed"
CACHE = BOOK_BUILD / ".jupyter_cache"  # book/conf.py: nb_execution_cache_path
BOOK_FOLDERS = ("chapters", "exercises")  # the notebooks the book includes (book/conf.py: include_patterns)


def book_environment(env=os.environ) -> bool:
    """Whether a kernel started from this environment computes what the quick book's kernel computes."""
    return env.get("FMLEARN_QUICK") == "1" and env.get("FMLEARN_PROGRESS") == "0" and not env.get("FMLEARN_DEVICE")


# The settings only the book's build and its browser tests read (not the kernel): a test may drop them.
BOOK_ONLY_SETTINGS = ("FMLEARN_BOOK_BUILD", "FMLEARN_BOOK_EXECUTE", "FMLEARN_CHROMIUM", "FMLEARN_CHROMEDRIVER")
_OUTER_ENV = dict(os.environ)  # this run's environment before any test changes it (the book's build gets it)


def hands_to_book(env=None) -> bool:
    """Whether a test's kernel, started with every ``FMLEARN_*`` setting removed (tests/conftest.py) but
    ``FMLEARN_QUICK=1`` and ``FMLEARN_PROGRESS=0``, computes what the quick book's kernel computes: the book's
    build gets this run's environment plus those two, so no other setting the kernel reads may be set in it."""
    env = _OUTER_ENV if env is None else env
    return not [k for k in env if k.startswith("FMLEARN_") and k not in ("FMLEARN_QUICK", "FMLEARN_PROGRESS",
                                                                         *BOOK_ONLY_SETTINGS)]


def handed_over(item) -> Path | None:
    """Where the test ``item`` hands the book its execution of a notebook (its ``book_execution`` marker names the
    notebook); None for any other test, or when it cannot (:func:`hands_to_book`)."""
    marker = item.get_closest_marker("book_execution")
    if marker is None or not hands_to_book():
        return None
    return executed_path(Path(marker.args[0]))


BOOK_TESTS = Path(__file__).resolve().parent / "test_book.py"


def run_order(item) -> int:
    """0 for a cell of a notebook the book includes or a test that executes one for the book (an exercise), 1 for
    the book's tests, 2 for the rest."""
    if executed_path(Path(str(item.fspath))) is not None or item.get_closest_marker("book_execution") is not None:
        return 0
    return 1 if Path(str(item.fspath)).resolve() == BOOK_TESTS else 2


def executed_path(notebook: Path) -> Path | None:
    """Where the executed copy of a notebook the book includes goes (None for a notebook the book leaves out)."""
    try:
        rel = notebook.resolve().relative_to(ROOT)
    except ValueError:
        return None
    if len(rel.parts) != 2 or rel.parts[0] not in BOOK_FOLDERS or rel.suffix != ".ipynb":
        return None
    return EXECUTED / rel


def outputs_from_messages(messages: list[dict], displays: dict[str, list[list]]) -> list:
    """A cell's outputs from the kernel's iopub messages for its execute request, as nbclient builds them:
    one output per display_data / execute_result / stream / error message (streams are merged later, by the
    book's nb_merge_streams), a message carrying a display id updates every output shown with that id (in any
    cell of the notebook: ``displays`` maps display id to those outputs), clear_output clears (at the next output
    when it says wait)."""
    from nbformat.v4 import output_from_msg

    outs: list = []
    clear_pending = False
    for msg in messages:
        kind = msg["msg_type"]
        content = msg["content"]
        if kind == "clear_output":
            if content.get("wait"):
                clear_pending = True
            else:
                outs.clear()
            continue
        if kind not in ("display_data", "execute_result", "stream", "error", "update_display_data"):
            continue
        display_id = (content.get("transient") or {}).get("display_id")
        if display_id and kind != "stream":
            update = output_from_msg({**msg, "msg_type": "display_data", "header": {**msg["header"],
                                                                                     "msg_type": "display_data"}})
            for shown in displays.get(display_id, []):
                shown["data"], shown["metadata"] = update["data"], update["metadata"]
        if kind == "update_display_data":
            continue
        out = output_from_msg(msg)
        if clear_pending:
            outs.clear()
            clear_pending = False
        if display_id:
            displays.setdefault(display_id, []).append(out)
        outs.append(out)
    return outs


def language_info() -> dict:
    """What the kernel's kernel_info reply says (nbclient stores it in the executed notebook's metadata; myst-nb
    picks the code cells' lexer from it). nbval runs --nbval-current-env: the kernel is this Python's ipykernel."""
    from ipykernel.ipkernel import IPythonKernel

    return copy.deepcopy(dict(IPythonKernel.language_info))


class _Notebook:
    def __init__(self, target: Path, nb) -> None:
        self.target = target
        self.nb = copy.deepcopy(nb)
        self.done: set[int] = set()
        self.count = 0
        self.ok = True
        self.displays: dict[str, list] = {}
        self.started = time.monotonic()


class NbvalRecorder:
    """The pytest plugin (registered by tests/conftest.py when nbval runs): see the module's docstring."""

    def __init__(self, config) -> None:
        self.config = config
        self.notebooks: dict[str, _Notebook] = {}
        self.active = book_environment()
        if self.active and not hasattr(config, "workerinput"):  # the controller (or a run without xdist)
            shutil.rmtree(EXECUTED, ignore_errors=True)  # only this run's executions reach the book

    def _notebook(self, item) -> _Notebook | None:
        from nbval.plugin import IPyNbCell

        if not self.active or not isinstance(item, IPyNbCell):
            return None
        key = item.parent.nodeid
        if key not in self.notebooks:
            target = executed_path(Path(str(item.parent.fspath)))
            if target is None:
                return None
            self.notebooks[key] = _Notebook(target, item.parent.nb)
        return self.notebooks[key]

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item):
        record = self._notebook(item)
        if record is None:
            yield
            return
        notebook, kernel = item.parent, item.parent.kernel
        sent: list[str] = []
        messages: list[dict] = []
        execute, get_message = kernel.execute_cell_input, notebook.get_kernel_message

        def execute_cell_input(*args, **kwargs):
            msg_id = execute(*args, **kwargs)
            sent.append(msg_id)
            return msg_id

        def get_kernel_message(*args, **kwargs):
            msg = get_message(*args, **kwargs)
            messages.append(msg)
            return msg

        kernel.execute_cell_input, notebook.get_kernel_message = execute_cell_input, get_kernel_message
        try:
            yield
        finally:
            del kernel.execute_cell_input, notebook.get_kernel_message  # back to the methods
        ours = [m for m in messages if sent and m["parent_header"].get("msg_id") == sent[0]]
        cell = record.nb.cells[self._cell_index(record.nb, item.cell_num)]
        cell.outputs = outputs_from_messages(ours, record.displays)
        # nbval executes without storing history (every count is 1); nbclient numbers the cells it sends to the
        # kernel 1, 2, ..., and does not send an empty cell (no execution count, no output)
        if cell.source.strip():
            record.count += 1
            cell.execution_count = record.count
            for out in cell.outputs:
                if out.output_type == "execute_result":
                    out.execution_count = record.count
        else:
            cell.execution_count, cell.outputs = None, []
        record.done.add(item.cell_num)

    @staticmethod
    def _cell_index(nb, cell_num: int) -> int:
        return [i for i, c in enumerate(nb.cells) if c.cell_type == "code"][cell_num]

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        record = self._notebook(item)
        report = outcome.get_result()
        if record is not None and (report.failed or report.skipped) and record.ok:
            record.ok = False  # the book executes it itself: say so now, not after the notebook's last cell (-x)
            record.target.parent.mkdir(parents=True, exist_ok=True)
            record.target.with_name(record.target.name + ".failed").touch()

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_teardown(self, item, nextitem):
        record = self._notebook(item)
        if record is None or (nextitem is not None and nextitem.parent is item.parent):
            return
        del self.notebooks[item.parent.nodeid]
        code_cells = sum(1 for c in record.nb.cells if c.cell_type == "code")
        record.target.parent.mkdir(parents=True, exist_ok=True)
        if not record.ok or len(record.done) != code_cells:  # the book executes it itself (and reports what fails)
            record.target.with_name(record.target.name + ".failed").touch()
            return
        import nbformat

        record.nb.metadata["language_info"] = language_info()
        record.nb.metadata.setdefault("fmlearn", {})["nbval_seconds"] = round(time.monotonic() - record.started, 1)
        partial = record.target.with_suffix(f".{os.getpid()}.part")
        nbformat.write(record.nb, str(partial))
        partial.replace(record.target)


def planned(session) -> set[Path]:
    """The executed copies this session writes: one per notebook the book includes whose every code cell is an nbval
    test item here (none when the recorder is off), and one per test here that hands the book its execution of an
    exercise (:func:`handed_over`)."""
    exercises = {t for t in map(handed_over, session.items) if t is not None}
    recorder = session.config.pluginmanager.get_plugin("fmlearn-nbval-recorder")
    if recorder is None or not recorder.active:
        return exercises
    from nbval.plugin import IPyNbCell

    cells: dict = {}
    for item in session.items:
        if isinstance(item, IPyNbCell) and executed_path(Path(str(item.parent.fspath))) is not None:
            cells.setdefault(item.parent, set()).add(item.cell_num)
    return exercises | {executed_path(Path(str(nb.fspath))) for nb, nums in cells.items()
                        if len(nums) == sum(1 for c in nb.nb.cells if c.cell_type == "code")}


def clear_handed_over(items) -> None:
    """Remove what an earlier run left for the tests here that hand the book an execution (at collection, before
    any test runs): the book then waits for this run's."""
    for target in filter(None, map(handed_over, items)):
        target.unlink(missing_ok=True)
        target.with_name(target.name + ".failed").unlink(missing_ok=True)


def mark_failed(target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.with_name(target.name + ".failed").touch()


def settle(item) -> None:
    """After a test that hands the book an execution: if it wrote none (skipped, failed before executing), the
    marker says so, and the book executes the notebook itself without waiting."""
    target = handed_over(item)
    if target is not None and not finished(target):
        mark_failed(target)


def hand_to_book(notebook: Path, executed, kernel_name: str, seconds: float | None = None) -> bool:
    """Hand the book a test's execution of ``notebook`` (an nbformat notebook ``executed`` by nbclient with the
    kernel ``kernel_name``, errors allowed, in the book's settings: :func:`hands_to_book`): the notebook as the book
    reads it, with the executed cells' outputs and numbers and the kernel's language_info, into
    ``build/book-quick/executed/``. Only when its code cells and kernel are those of the notebook the book reads
    (else the ``.failed`` marker: the book executes it itself). Returns whether it was handed over."""
    import nbformat

    target = executed_path(notebook)
    if target is None or not hands_to_book():
        return False
    book_nb = nbformat.read(str(notebook), as_version=4)
    code = [c for c in book_nb.cells if c.cell_type == "code"]
    ran = [c for c in executed.cells if c.cell_type == "code"]
    if ([c.source for c in code] != [c.source for c in ran]
            or book_nb.metadata.get("kernelspec", {}).get("name") != kernel_name
            or "language_info" not in executed.metadata):
        mark_failed(target)
        return False
    for cell, run in zip(code, ran):
        cell.outputs, cell.execution_count = copy.deepcopy(run.outputs), run.execution_count
    for key in ("language_info", "widgets"):  # what jupyter-cache gives the book from an executed notebook
        if key in executed.metadata:
            book_nb.metadata[key] = copy.deepcopy(executed.metadata[key])
    book_nb.metadata.setdefault("fmlearn", {}).update(seconds=None if seconds is None else round(seconds, 1),
                                                      executed_by="tests/test_exercises.py")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.part")
    nbformat.write(book_nb, str(partial))
    partial.replace(target)
    return True


def finished(target: Path) -> bool:
    return target.is_file() or target.with_name(target.name + ".failed").is_file()


def wait_for(targets, timeout: float) -> list[Path]:
    """Wait until nbval has finished each notebook (executed or failed), at most ``timeout`` seconds; returns those
    still running then (the book executes them itself)."""
    end = time.monotonic() + timeout
    waiting = [t for t in targets if not finished(t)]
    while waiting and time.monotonic() < end:
        time.sleep(1)
        waiting = [t for t in waiting if not finished(t)]
    return waiting


def book_notebooks() -> list[Path]:
    """The notebooks the book includes (book/conf.py: include_patterns), as paths relative to the repository."""
    return sorted(p.relative_to(ROOT) for folder in BOOK_FOLDERS for p in (ROOT / folder).glob("*.ipynb"))


def store_in_book_cache(targets=None, cache_path: Path = CACHE, executed: Path = EXECUTED,
                        root: Path = ROOT) -> list[str]:
    """Put the notebooks nbval executed (``targets``: the executed copies this test run wrote, see :func:`planned`;
    None: every one there) into the book's jupyter-cache, keyed as myst-nb keys it (the notebook's code cells and
    kernelspec): the book then reads them from the cache instead of executing them. Each one moves out of
    ``executed`` once stored. Returns their paths (relative to the repository)."""
    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    files = sorted(executed.glob("*/*.ipynb") if targets is None else (t for t in targets if t.is_file()))
    if not files:
        return []
    cache = get_cache(str(cache_path))
    stored = []
    for path in files:
        rel = path.relative_to(executed)
        source = root / rel
        nb = nbformat.read(str(path), as_version=4)
        if not source.is_file():
            path.unlink()
            continue
        info = nb.metadata.get("fmlearn", {})
        seconds = info.pop("nbval_seconds", info.pop("seconds", None))
        by = info.pop("executed_by", "nbval")
        if not nb.metadata.get("fmlearn"):
            nb.metadata.pop("fmlearn", None)
        cache.cache_notebook_bundle(CacheBundleIn(nb, str(source), data={"execution_seconds": seconds,
                                                                         "executed_by": by}),
                                    check_validity=False, overwrite=True)
        path.unlink()
        stored.append(str(rel))
    return stored


if __name__ == "__main__":  # python tests/_executed.py: store what nbval executed (for a book built by hand)
    print("\n".join(store_in_book_cache()) or "nothing to store", file=sys.stderr)
