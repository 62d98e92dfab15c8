"""Dashboard routes (being written)."""

from __future__ import annotations

from fastapi import FastAPI

__all__ = ["mount"]


def mount(app: FastAPI) -> None:
    """Add the dashboard's pages and static files to ``app``."""
