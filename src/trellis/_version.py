"""The version of Trellis, read by hatch at build time."""

__all__ = ["__version__"]

__version__ = "0.1.0"
