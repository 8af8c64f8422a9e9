"""The HTTP pieces the service (:mod:`soundscene.apps.serve`) and the hub share: every error answered as
``{"error": "one line"}`` (:func:`error_response`), and :class:`CatchAll`, which logs a bug once and answers
it in that shape, never in text/plain.  FastAPI and Starlette only: no model, no torch."""

from __future__ import annotations

import logging

from starlette.responses import JSONResponse

log = logging.getLogger("soundscene.http")


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """``{"error": message}`` with ``message`` folded onto one line (and cut at 300 characters). The service and
    the hub answer every error so."""
    line = " ".join(str(message).split())[:300] or "error"
    return JSONResponse({"error": line}, status_code=status, headers=headers)


class CatchAll:
    """Pure ASGI middleware: an exception no handler took is logged here, once, with its traceback, and answered
    500 ``{"error": ...}`` in JSON when no response has started (an ``Exception`` handler would be re-raised by
    Starlette after answering, and logged a second time by the server)."""

    def __init__(self, app, message: str = "internal server error; see the server log"):
        self.app, self.message = app, message

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)
        try:
            await self.app(scope, receive, sending)
        except Exception:  # noqa: BLE001 - any bug: logged once, a generic line to the client
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await error_response(500, self.message)(scope, receive, send)
