"""HTTP service: ``soundscene serve MODEL`` classifies uploaded recordings (FastAPI + uvicorn).

Endpoints (every error is JSON ``{"error": "one line"}``)::

    GET  /               the web page (upload, drag and drop, or record from the microphone)
    POST /v1/classify    multipart/form-data, field "file" -> the prediction record (core.records), as
                         `soundscene predict --format json` prints it per file
    GET  /v1/model       SceneClassifier.describe(): classes, sample rate, windowing, configuration, model
    GET  /v1/limits      {"max_upload_bytes": N}: the upload limit (the page checks it before sending)
    GET  /healthz        {"status": "ok"}
    GET  /metrics        Prometheus text format 0.0.4
    GET  /openapi.json   the OpenAPI document; the 200 response of /v1/classify is the record schema
                         (/docs renders it; its assets come from a CDN)

The parts:

* :mod:`.app`: ``create_app`` assembles the application from the parts below;
* :mod:`.routes`: the route table, (method, path, handler) per URL, each handler a few lines;
* :mod:`.upload`: ``UploadHandler`` (receive the streamed multipart body, classify, clean up), the
  multipart receiver, ``display_name`` and the status code of each refusal (400, 413, 415, 422, 500);
* :mod:`.responses`: strict-JSON records and the one-line error body;
* :mod:`.openapi`: the record schema and the other component schemas in the OpenAPI document;
* :mod:`.metrics`: Prometheus metrics and the middleware that counts requests;
* :mod:`.page`: the web page's files and their Content-Security-Policy;
* :mod:`.server`: ``run_server``, the listening socket (127.0.0.1 by default) and uvicorn.

Uploads are safe to accept from anyone who can reach the port: the bytes actually received are counted
(413 with ``Connection: close`` at the first chunk past the limit, whatever Content-Length says), the
client's file name is display text only, the upload lives in a private random-named directory removed
when the request ends, and the model runs in a worker thread, one request at a time.  The service has
no authentication: put it behind a proxy that has one before exposing it beyond 127.0.0.1.
"""

from __future__ import annotations

from ...errors import SoundsceneError

try:
    import fastapi  # noqa: F401
    import prometheus_client  # noqa: F401
    import python_multipart  # noqa: F401
except ImportError as _exc:  # pragma: no cover - depends on the installation
    raise SoundsceneError(f"soundscene serve needs {_exc.name}: pip install fastapi uvicorn python-multipart "
                          "prometheus-client (or the package's [serve] extra)") from None

from .app import create_app
from .metrics import Metrics, MetricsMiddleware
from .routes import ROUTES, Route
from .server import run_server
from .upload import MAX_NAME_CHARS, UPLOAD_FIELD, MultipartReceiver, UploadError, UploadHandler, display_name

__all__ = ["create_app", "run_server", "display_name", "UploadHandler", "UploadError", "MultipartReceiver",
           "Metrics", "MetricsMiddleware", "Route", "ROUTES", "UPLOAD_FIELD", "MAX_NAME_CHARS"]
