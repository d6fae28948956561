"""A progress bar that leaves one line of text behind.

In a Jupyter kernel the bar is an HTML ``<progress>`` element beside tqdm's counters (steps, time, rate, loss),
shown under a display id and updated in place; when the loop ends, that same output is replaced by one line of
plain text, such as "trained 3000 steps in 75 s on cpu, loss 0.1234 (mean of the last 100 steps)". No widget is
involved: a widget view lives in the kernel, so a saved notebook would reopen on "Error displaying widget: model not
found" after a restart (tqdm's notebook bar, closed with ``leave=False``, shows it even after a plain page reload).
A kernel that dies mid-run leaves the bar where it stopped, as static HTML.

Elsewhere (a terminal, a script) it is tqdm's text bar on stderr, erased at the end and followed by the same line.
"""

from __future__ import annotations

import html
import sys
import time

from tqdm.std import tqdm

__all__ = ["ProgressBar", "in_kernel", "seconds_text"]


def in_kernel() -> bool:
    """True inside a Jupyter kernel (where outputs are shown by a front end and can be updated by display id)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def seconds_text(seconds: float) -> str:
    """A duration as a learner reads it: "0.42 s", "7.5 s", "75 s", "12 min 5 s"."""
    if seconds < 1:
        return f"{seconds:.2f} s"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 600:
        return f"{seconds:.0f} s"
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


class ProgressBar:
    """Progress from ``initial`` to ``total`` (``unit`` each), shown only when ``enabled``.

    ``update(n, postfix)`` advances it by ``n`` with a short text after the counters (e.g. "loss=0.1234");
    ``close(line)`` ends it, leaving ``line`` (or nothing when ``line`` is None) in its place. Closing twice
    does nothing the second time."""

    def __init__(self, total: int, *, desc: str, initial: int = 0, unit: str = "step", enabled: bool = True,
                 min_interval: float = 0.2):
        self.total, self.n, self.initial, self.desc, self.unit = int(total), int(initial), int(initial), desc, unit
        self.enabled, self.min_interval, self.postfix = bool(enabled), float(min_interval), ""
        self.t0 = time.perf_counter()
        self._shown_at = -float("inf")
        self._handle = None
        self._tqdm = None
        self.closed = not self.enabled
        if not self.enabled:
            return
        if in_kernel():
            from IPython.display import display

            self._handle = display(self._bundle(), raw=True, display_id=True)
            self._shown_at = self.t0
        else:
            self._tqdm = tqdm(total=self.total, initial=self.initial, desc=desc, unit=unit, leave=False,
                              file=sys.stderr)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def _meter(self) -> str:
        return tqdm.format_meter(self.n, self.total, self.elapsed, prefix=self.desc, unit=self.unit,
                                 initial=self.initial, postfix=self.postfix or None,
                                 bar_format="{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} "
                                            "[{elapsed}<{remaining}, {rate_fmt}{postfix}]")

    def _bundle(self) -> dict[str, str]:
        meter = self._meter()
        bar = (f'<div class="fmlearn-progress"><progress value="{self.n}" max="{max(self.total, 1)}" '
               f'aria-label="{html.escape(self.desc)}" style="width: 20em; vertical-align: middle"></progress> '
               f'<code>{html.escape(meter)}</code></div>')
        return {"text/plain": meter, "text/html": bar}

    def update(self, n: int, postfix: str = "") -> None:
        if self.closed:
            return
        self.n += int(n)
        self.postfix = postfix
        if self._tqdm is not None:
            self._tqdm.set_postfix_str(postfix, refresh=False)
            self._tqdm.update(n)
        elif self._handle is not None:
            now = time.perf_counter()
            if now - self._shown_at >= self.min_interval or self.n >= self.total:
                self._handle.update(self._bundle(), raw=True)
                self._shown_at = now

    def close(self, line: str | None = None) -> None:
        if self.closed:
            return
        self.closed = True
        if self._tqdm is not None:
            self._tqdm.close()
            if line:
                print(line, file=sys.stderr, flush=True)
        elif self._handle is not None:
            # an empty bundle would leave an empty output: show the line, or an empty text
            self._handle.update({"text/plain": line or ""}, raw=True)
