"""Trellis: an open-source AIoT platform that carries a fleet from pilot to production."""

from trellis._version import __version__

__all__ = ["__version__"]
