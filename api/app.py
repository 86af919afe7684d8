"""The FastAPI application: :func:`create_app` builds it from :class:`ApiSettings`.

Models are loaded once per app (per worker process) into ``app.state.service`` and reach the
routes as dependencies (:mod:`genoseq.api.deps`). Loading starts with the app's lifespan in the
model thread: ``/healthz`` answers at once, ``/readyz`` and the model routes answer 503 until
the models are in.
"""

from __future__ import annotations

import contextlib
import os

from fastapi import Depends, FastAPI
from fastapi_offline import FastAPIOffline

import genoseq

from .deps import require_api_key
from .errors import install_error_handlers
from .middleware import BodyLimitMiddleware, RequestLogMiddleware
from .routers import align, annotate, classify, embed, generate, health, interpret, score, variants
from .service import ModelService
from .settings import ApiSettings, Limits

SETTINGS_ENV = "GENOSEQ_API_SETTINGS"  # JSON ApiSettings, for worker processes of `genoseq serve --workers N`

DESCRIPTION = """DNA language models over HTTP: likelihoods, embeddings, variant effects, classification,
sequence design and read mapping, computed by the same functions as the `genoseq` command line.

Bad input gets a 4xx whose `detail` names the field (and the position of a bad base)."""


def create_app(settings: ApiSettings | None = None, *, load_in_background: bool = True, **options) -> FastAPI:
    """The genoseq API app.

    Either pass ``settings`` or the :class:`ApiSettings` fields as keywords:
    ``create_app(model="run/model", classifier="clf", limits=Limits(max_sequences=8))``.
    With ``load_in_background=False`` startup waits for the models (and fails if they do not load).
    """
    if settings is None:
        settings = ApiSettings(**options)
    elif options:
        raise TypeError("give settings or keyword options, not both")
    service = ModelService(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start(background=load_in_background)
        if not load_in_background and service.status == "failed":
            raise RuntimeError(f"genoseq API: {service.error}")
        try:
            yield
        finally:
            await service.stop()

    # FastAPIOffline: the Swagger UI and ReDoc pages load their scripts, styles and favicon from
    # the installed package (/static-offline-docs), so /docs works on a node without internet.
    app = FastAPIOffline(title="genoseq", version=genoseq.__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.service = service
    install_error_handlers(app)

    protected = [Depends(require_api_key)] if settings.api_key is not None else []
    app.include_router(health.router)  # /healthz and /readyz stay open for probes
    for module in (health, score, embed, variants, classify, generate, align, annotate, interpret):
        router = module.models_router if module is health else module.router
        app.include_router(router, dependencies=protected)

    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.limits.max_body_bytes)
    app.add_middleware(RequestLogMiddleware)  # outermost: logs 413s too
    return app


def app_from_environment() -> FastAPI:
    """App factory for uvicorn worker processes: settings from ``$GENOSEQ_API_SETTINGS``."""
    text = os.environ.get(SETTINGS_ENV)
    if not text:
        raise RuntimeError(f"${SETTINGS_ENV} is not set (it is set by `genoseq serve`)")
    return create_app(ApiSettings.from_json(text))


__all__ = ["ApiSettings", "Limits", "app_from_environment", "create_app"]
