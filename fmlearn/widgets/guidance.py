"""Explorers of guidance (see fmlearn.widgets.explorer.Explorer)."""

from __future__ import annotations

__all__: list[str] = []
