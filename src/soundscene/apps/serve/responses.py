"""What the service answers with: records as strict JSON, and every error as ``{"error": "one line"}``.

:func:`install_error_handlers` makes FastAPI's own refusals (404, 405, request validation) and any bug
(500, logged with its traceback, a generic line to the client) take that error shape too.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from ...core import records

log = logging.getLogger("soundscene.serve")


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """``{"error": message}`` with ``message`` folded onto one line."""
    line = " ".join(str(message).split()) or "error"
    return JSONResponse({"error": line}, status_code=status, headers=headers)


def record_response(record: dict[str, Any]) -> Response:
    """A record as strict JSON (:func:`records.dumps`: never NaN), not to be cached."""
    return Response(records.dumps(record), media_type="application/json", headers={"Cache-Control": "no-store"})


def install_error_handlers(app: FastAPI) -> None:
    """Route FastAPI's HTTP errors, validation errors and unhandled exceptions to :func:`error_response`."""

    async def http_error(request: Request, exc: StarletteHTTPException):
        return error_response(exc.status_code, exc.detail if isinstance(exc.detail, str) else "request refused",
                              headers=getattr(exc, "headers", None))

    async def validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(422, f"{where}: {first.get('msg', 'invalid request')}")

    async def internal_error(request: Request, exc: Exception):
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return error_response(500, "internal server error; see the server log")

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, internal_error)
