"""``create_app``: the FastAPI application serving one classifier.

It assembles the parts: the :class:`~.upload.UploadHandler` and the other shared state on
``app.state``, the error handlers (every error is ``{"error": "one line"}``), the route table, the
OpenAPI components (the record schema) and the metrics middleware.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from ..._version import __version__
from ...errors import SoundsceneError
from . import openapi, routes
from .metrics import Metrics, MetricsMiddleware
from .responses import install_error_handlers
from .upload import UPLOAD_FIELD, UploadHandler, format_bytes


def create_app(classifier, *, max_upload_bytes: int = 50_000_000, temp_dir: str | Path | None = None) -> FastAPI:
    """The web application serving ``classifier`` (a :class:`soundscene.core.inference.SceneClassifier`).

    Args:
        classifier: anything with ``classify_file(path, *, name) -> result`` (``result.to_record()`` a
            prediction record whose ``path`` is ``name``; AudioError with one line, naming ``name``, for
            unusable audio) and ``describe() -> dict``.
        max_upload_bytes: largest accepted upload (the file's bytes); more is answered with 413.
        temp_dir: where each upload's private directory is made (default: the system's temp folder).
    """
    if int(max_upload_bytes) < 1:
        raise SoundsceneError("the upload limit must be at least 1 byte")
    max_upload_bytes = int(max_upload_bytes)
    description = classifier.describe()
    model_info = description.get("model", {}) if isinstance(description, dict) else {}
    metrics = Metrics(model_info)

    app = FastAPI(
        title="soundscene",
        version=__version__,
        summary="Acoustic scene classification: which scene an uploaded recording was made in.",
        description="Upload a recording (WAV, FLAC, OGG, MP3...) to `/v1/classify`; every error is "
                    '`{"error": "one line"}`.',
    )
    app.state.classifier = classifier
    app.state.description = description
    app.state.max_upload_bytes = max_upload_bytes
    app.state.metrics = metrics
    app.state.uploads = UploadHandler(classifier, max_upload_bytes=max_upload_bytes,
                                      temp_root=str(temp_dir) if temp_dir is not None else None, metrics=metrics)
    install_error_handlers(app)
    routes.register(app)
    openapi.install(app, upload=openapi.upload_form(UPLOAD_FIELD, format_bytes(max_upload_bytes)))
    known = {getattr(r, "path", "") for r in app.routes}
    app.add_middleware(MetricsMiddleware, metrics=metrics, known_paths=known)
    return app
