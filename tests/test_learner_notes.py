"""Small things a learner notices (issue 22, item 4): the header's wording, the busy-machine note beside the run
time, and a passing check that shows no ``Out[n]: True``."""

from __future__ import annotations

import time

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell

import fmlearn
from fmlearn import config
from fmlearn.exercises._base import Passed, ok


def test_header_says_quick_mode_and_counts_threads(monkeypatch):
    monkeypatch.setenv("FMLEARN_QUICK", "1")
    monkeypatch.setenv("FMLEARN_DEVICE", "cpu")
    monkeypatch.setattr(config, "machine_load", lambda: (0.5, 2))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        line = fmlearn.describe()
        assert line.startswith("fmlearn: quick mode; device cpu (1 CPU thread, ") and "CI" not in line
        torch.set_num_threads(2)
        assert "(2 CPU threads, " in fmlearn.describe()
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setenv("FMLEARN_QUICK", "0")
    assert fmlearn.describe().startswith("fmlearn: default budget; ")


def test_run_time_names_the_load_only_on_a_busy_machine(monkeypatch):
    start = time.perf_counter() - 42.2
    monkeypatch.setattr(config, "machine_load", lambda: (1.5, 2))
    assert config.run_time(start) == "this run took 42 s (default budget)"
    monkeypatch.setattr(config, "machine_load", lambda: (9.25, 2))
    line = config.run_time(start)
    assert line.startswith("this run took 42 s (default budget); the machine is busy (load 9.2 on 2 cores")
    assert "several times slower than its header says" in line and "close other notebooks" in line
    assert "busy already (load 9.2 on 2 cores)" in fmlearn.describe()
    monkeypatch.setattr(config, "machine_load", lambda: None)  # no load average (Windows)
    assert config.run_time(start) == "this run took 42 s (default budget)"


def test_machine_load_reads_the_system(monkeypatch):
    measured = config.machine_load()
    assert measured is None or (measured[0] >= 0 and measured[1] >= 1)

    def unavailable():
        raise OSError("no load average")

    monkeypatch.setattr(config.os, "getloadavg", unavailable)
    assert config.machine_load() is None


def test_a_passing_check_is_true_and_shows_nothing(capsys):
    result = ok("fine")
    assert capsys.readouterr().out == "OK: fine\n"
    assert result and result == 1 and isinstance(result, int) and repr(result) == "Passed"
    shell = InteractiveShell.instance()
    data, metadata = shell.display_formatter.format(result)
    assert data == {} and metadata == {}  # no execute_result: no "Out[n]: True" under the OK line


@pytest.mark.parametrize("value", [Passed(), ok("x")])
def test_passed_is_what_the_existing_asserts_expect(value):
    assert value
    assert bool(value) is True
