"""The ASGI application: the REST API, the dashboard, and the platform's lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from trellis._version import __version__
from trellis.api import routes
from trellis.api.encoding import install_openapi
from trellis.auth.setup import guarded_router, open_gate
from trellis.core.config import Settings
from trellis.core.errors import ClosedError, ConflictError, LimitError, NotFoundError
from trellis.platform import Platform
from trellis.ui.auth import SecurityHeaders

__all__ = ["GzipWhenAccepted", "create_app"]


def create_app(settings: Settings, *, simulate: bool = False) -> FastAPI:
    """The app; the platform is built and started by its lifespan, not at import."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        platform = Platform(settings)
        try:
            async with platform.running(simulate=simulate):
                app.state.platform = platform
                app.state.gate = open_gate(settings, platform.engine, guarded_router())
                try:
                    yield
                finally:
                    app.state.gate.audit.close()  # the signed checkpoint at shutdown
        finally:
            platform.close()

    app = FastAPI(
        title="Trellis",
        version=__version__,
        description="AIoT platform: devices, telemetry, rules, alerts.",
        lifespan=lifespan,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    # Pages, JSON and static JS compress 3-5x; starlette leaves event streams alone.
    app.add_middleware(GzipWhenAccepted, minimum_size=1024)
    app.add_middleware(SecurityHeaders, secure=settings.auth.secure_cookies)
    routes.copy_routes(app.router, routes.router)  # flat: see trellis.api.routes
    _install_ui(app)
    install_openapi(app)

    @app.exception_handler(NotFoundError)
    async def not_found(_: Request, exc: NotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 404)

    @app.exception_handler(ConflictError)
    async def conflict(_: Request, exc: ConflictError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 409)

    @app.exception_handler(LimitError)
    async def over_limit(_: Request, exc: LimitError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 422)

    @app.exception_handler(ClosedError)
    async def closed(_: Request, exc: ClosedError) -> JSONResponse:
        return JSONResponse({"detail": f"shutting down: {exc}"}, 503)

    return app


class GzipWhenAccepted:
    """Starlette's GZip for the clients that accept gzip; the others (most API clients)
    skip its per-response wrapper. ``Vary: Accept-Encoding``, which tells caches that the
    answer depends on that header, is on every response (``ui.auth.SecurityHeaders``)."""

    def __init__(self, app: ASGIApp, minimum_size: int = 500) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=minimum_size)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"accept-encoding" and b"gzip" in value.lower():
                    await self.gzip(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _install_ui(app: FastAPI) -> None:
    from trellis.ui.routes import mount  # the UI imports the API's deps

    mount(app)
