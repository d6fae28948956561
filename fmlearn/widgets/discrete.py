"""Explorers of discrete (see fmlearn.widgets.explorer.Explorer)."""

from __future__ import annotations

__all__: list[str] = []
