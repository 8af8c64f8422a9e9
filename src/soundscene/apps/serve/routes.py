"""The route table: every URL the service answers, as (method, path, handler) in :data:`ROUTES`.

Handlers are a few lines each; what they serve hangs on ``request.app.state`` (set by ``create_app``):
``uploads`` (the :class:`~.upload.UploadHandler`), ``description`` (the model's), ``max_upload_bytes``
and ``metrics``.  :func:`register` adds the table to a FastAPI app; FastAPI adds ``/openapi.json``,
``/docs`` and ``/redoc`` of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from fastapi import FastAPI, Request
from starlette.responses import HTMLResponse, Response

from ..._version import __version__
from .metrics import METRICS_CONTENT_TYPE
from .openapi import ERROR_RESPONSE, ref
from .page import WEB_FILES, page_headers, web_file
from .responses import error_response


@dataclass(frozen=True)
class Route:
    """One method on one path, its handler, and FastAPI's ``add_api_route`` options (OpenAPI text...)."""

    method: str
    path: str
    handler: Callable
    options: dict[str, Any] = field(default_factory=dict)


async def classify(request: Request) -> Response:
    return await request.app.state.uploads.handle(request)


async def model(request: Request) -> dict[str, Any]:
    return request.app.state.description


async def limits(request: Request) -> dict[str, int]:
    return {"max_upload_bytes": request.app.state.max_upload_bytes}


async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def prometheus_metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.exposition(), media_type=METRICS_CONTENT_TYPE)


async def index() -> Response:
    return HTMLResponse(web_file("index.html"), headers=page_headers())


async def static(name: str) -> Response:
    if name not in WEB_FILES:
        return error_response(404, "not found")
    return Response(web_file(name), media_type=WEB_FILES[name], headers=page_headers())


CLASSIFY = {
    "summary": "Classify one recording",
    "response_description": "The prediction record (what `soundscene predict --format json` prints per file); "
                            "`path` is the uploaded file's name (display text only)",
    "responses": {200: {"content": {"application/json": {"schema": ref("prediction")}}},
                  **{code: ERROR_RESPONSE for code in (400, 413, 415, 422, 500)}},
    "openapi_extra": {"requestBody": {"required": True,
                                      "content": {"multipart/form-data": {"schema": ref("upload")}}}},
}
MODEL_EXAMPLE = {"classes": ["metro", "park"], "sample_rate": 48000, "window_seconds": 10.0, "hop_seconds": 5.0,
                 "config": {}, "model": {"name": "paper_cnn", "soundscene_version": __version__}}
HIDDEN = {"include_in_schema": False}

ROUTES: tuple[Route, ...] = (
    Route("POST", "/v1/classify", classify, CLASSIFY),
    Route("GET", "/v1/model", model, {
        "summary": "The model being served: classes, sample rate, windowing, configuration",
        "responses": {200: {"content": {"application/json": {"example": MODEL_EXAMPLE}}}}}),
    Route("GET", "/v1/limits", limits,
          {"summary": "The service's limits (the page checks an upload's size before sending it)"}),
    Route("GET", "/healthz", healthz, {"summary": "Liveness check"}),
    Route("HEAD", "/healthz", healthz, HIDDEN),
    Route("GET", "/metrics", prometheus_metrics, {
        "summary": "Prometheus metrics (text format 0.0.4)", "response_class": Response,
        "responses": {200: {"content": {"text/plain": {}}}}}),
    Route("GET", "/", index, HIDDEN),
    Route("HEAD", "/", index, HIDDEN),
    Route("GET", "/static/{name}", static, HIDDEN),
)


def register(app: FastAPI, routes: tuple[Route, ...] = ROUTES) -> None:
    """Add ``routes`` to ``app``, one API route per (method, path)."""
    for route in routes:
        app.add_api_route(route.path, route.handler, methods=[route.method], **route.options)
