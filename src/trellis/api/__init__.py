"""The HTTP face of Trellis: REST API under /api/v1, live streams, the app factory."""

from trellis.api.app import create_app

__all__ = ["create_app"]
