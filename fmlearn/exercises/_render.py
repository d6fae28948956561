"""How a failed check shows in a notebook: its message and the learner's own line, not the checker's source.

IPython renders an exception through its ``_render_traceback_()`` method when it has one. A full traceback of a
check runs through the checker's source (a screenful, with the hints of other slips and parts of the reference
code); the learner needs the verdict (what / expected / got / hint) and where in their own code it happened.
"""

from __future__ import annotations

import linecache
import sysconfig
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]  # fmlearn/
_INSTALLED = tuple({Path(p).resolve() for key in ("stdlib", "platstdlib", "purelib", "platlib")
                    if (p := sysconfig.get_paths().get(key))})


def _theirs(filename: str) -> bool:
    """A frame of the learner's code: not fmlearn's, not Python's or an installed package's."""
    if filename.startswith("<"):  # code compiled from a string: the learner's, unless it is Python's or a forbidden
        return not filename.startswith(("<frozen", "<forbidden"))  # function's stand-in (fmlearn.exercises._forbid)
    path = Path(filename).resolve()
    return not any(path.is_relative_to(root) for root in (_PACKAGE, *_INSTALLED))


def _where(filename: str, lineno: int, function: str) -> str:
    """"Cell In[3], line 4, in heun_step" in IPython, else "file.py, line 4, in heun_step"."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
        cell = shell.compile.format_code_name(filename) if shell is not None else None
    except (ImportError, AttributeError):
        cell = None
    place = f"{cell[0]} {cell[1]}" if cell else Path(filename).name
    inside = "" if function == "<module>" else f", in {function}"
    return f"{place}, line {lineno}{inside}"


def learner_line(err: BaseException) -> str | None:
    """Where the learner's code was when ``err`` happened: the deepest of their frames in the traceback of its
    cause (a shape error raised in their function), else in its own; None when none is theirs."""
    for exc in (err.__cause__, err):
        if exc is None:
            continue
        last, tb = None, exc.__traceback__
        while tb is not None:
            code = tb.tb_frame.f_code
            if _theirs(code.co_filename):
                last = (code.co_filename, tb.tb_lineno, code.co_name)
            tb = tb.tb_next
        if last is not None:
            source = linecache.getline(last[0], last[1]).strip()
            return f"{_where(*last)}" + (f": {source}" if source else "")
    return None


def short_traceback(err: BaseException) -> list[str]:
    """The lines IPython shows for a failed check: the error's name and message, then the learner's line."""
    lines = f"{type(err).__name__}: {err}".splitlines()
    where = learner_line(err)
    if where is not None:
        lines.append(f"  (in your code: {where})")
    return lines


__all__ = ["learner_line", "short_traceback"]
