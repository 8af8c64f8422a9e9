"""What the service answers with: records as strict JSON, and every error as ``{"error": "one line"}``.

:func:`install_error_handlers` makes FastAPI's own refusals (404, 405, request validation) and any bug
(500, logged once with its traceback by :class:`CatchAll`, a generic line to the client) take that error
shape too.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from ...core import records
from ..http import CatchAll, error_response  # noqa: F401 - the shape the service and the hub share

log = logging.getLogger("soundscene.serve")


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

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_middleware(CatchAll)
