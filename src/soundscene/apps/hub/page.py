"""The hub's web page (``GET /``, ``/static/NAME``, ``/site-plan``): files in ``hub/web/`` (package data),
served with a Content-Security-Policy that lets the page load nothing but itself: no CDN, no inline script."""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

WEB_FILES = {"hub.js": "text/javascript; charset=utf-8", "hub.css": "text/css; charset=utf-8"}
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def headers() -> dict[str, str]:
    return {"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


def _file(name: str) -> bytes:
    return (resources.files("soundscene.apps.hub") / "web" / name).read_bytes()


def register(app: FastAPI, hub) -> None:
    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return Response(_file("index.html"), media_type="text/html; charset=utf-8", headers=headers())

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in WEB_FILES:
            return JSONResponse({"error": "not found"}, status_code=404)
        return Response(_file(name), media_type=WEB_FILES[name], headers=headers())

    @app.get("/site-plan", include_in_schema=False)
    def site_plan() -> Response:
        if hub.site_plan is None:
            return JSONResponse({"error": "no site plan (start the hub with --site-plan IMAGE)"}, status_code=404)
        data, media = hub.site_plan
        return Response(data, media_type=media, headers={**headers(), "Content-Security-Policy":
                                                         "default-src 'none'; style-src 'unsafe-inline'"})
