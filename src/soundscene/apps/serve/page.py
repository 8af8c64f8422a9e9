"""The web page (``GET /`` and ``/static/NAME``): upload, drag and drop, or record from the microphone.

Its files live in ``soundscene/apps/web/`` (package data).  Only the files named in :data:`WEB_FILES` are
served, each with a Content-Security-Policy that lets the page load nothing but itself (no CDN, no inline
script) and use the microphone of its own origin only.
"""

from __future__ import annotations

from importlib import resources

WEB_FILES = {  # the page's files: name -> media type (nothing else under /static is served)
    "app.js": "text/javascript; charset=utf-8",
    "recorder-worklet.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; media-src 'self' blob:; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")


def web_file(name: str) -> bytes:
    """The bytes of one of the page's files (``index.html`` or a name in WEB_FILES)."""
    return (resources.files("soundscene.apps") / "web" / name).read_bytes()


def page_headers() -> dict[str, str]:
    """Headers of every page file: the CSP, no sniffing, no referrer, revalidated on each load."""
    return {"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache",
            "Permissions-Policy": "microphone=(self), camera=(), geolocation=()"}
