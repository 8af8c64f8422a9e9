"""HTTP service: ``soundscene serve MODEL`` classifies uploaded recordings (FastAPI + uvicorn).

Endpoints (every error is JSON ``{"error": "one line"}``)::

    GET  /               the web page (upload, drag and drop, or record from the microphone)
    POST /v1/classify    multipart/form-data, field "file" -> the record `soundscene predict --format json`
                         prints per file (label, probabilities, level, windows, segments...)
    GET  /v1/model       SceneClassifier.describe(): classes, sample rate, windowing, configuration, model
    GET  /v1/limits      {"max_upload_bytes": N}: the upload limit (the page checks it before sending)
    GET  /healthz        {"status": "ok"}
    GET  /metrics        Prometheus text format 0.0.4
    GET  /openapi.json   the OpenAPI schema (/docs renders it; its assets come from a CDN)

Status codes of ``/v1/classify``: 200; 400 for a request that is not
multipart/form-data, has no field "file", sends several files or an empty
file; 413 for an upload over the limit; 415 for a file the audio decoder
cannot read (not audio, or a format libsndfile lacks, e.g. WebM/Opus); 422 for
audio that is read but cannot be used (too short, silent, NaN samples,
truncated...), with the classifier's one-line reason; 500 when the model
fails (ModelFileError, with its line) or for a bug (logged, generic line).

Uploads are safe to accept from anyone who can reach the port:

* The body is parsed as it streams in (python-multipart's streaming parser)
  and the bytes actually received are counted, so a missing or lying
  Content-Length changes nothing: reading stops at the first chunk past the
  limit and the answer is 413 with ``Connection: close``.  (A Content-Length
  that already declares more than the limit is refused before reading
  anything.)  A client that keeps sending after the 413 may see the
  connection reset before it reads the JSON body; the status line arrives.
* The client's file name is display text only (the record's ``path``):
  reduced to its last path component, control and formatting characters
  removed, length-capped.  The upload goes to a random-named file
  (``tempfile.mkstemp``) in a fresh private directory (``tempfile.mkdtemp``:
  random name, mode 0700), removed with everything in it when the request
  ends, whatever happens (also when the request is cancelled).  Only a known
  audio suffix (``.wav``, ``.flac``...) is taken from the client's name.
* The model runs in a worker thread, never on the event loop; an
  ``anyio.Lock`` lets one request at a time use it (torch already spreads
  one forward pass over every core, so parallel passes would only contend,
  and the lock makes thread safety of the classifier a non-question).
  Uploads still stream in concurrently while another request is classified.

The service binds to 127.0.0.1 unless told otherwise; it has no
authentication, so put it behind a proxy that has one before exposing it.

Metrics use prometheus_client (pure Python, no dependencies, about 100 kB):
it gets the exposition format's escaping, histogram buckets and ``_created``
series right, which a hand-written exporter would have to re-implement.  Each
app has its own registry, so several apps in one process (tests) do not mix.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import time
import unicodedata
from importlib import resources
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import AudioError, SoundsceneError, warn

try:
    import anyio
    import soundfile
    import torch
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
    from python_multipart.multipart import MultipartParser, parse_options_header
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.requests import ClientDisconnect
except ImportError as _exc:  # pragma: no cover - depends on the installation
    raise SoundsceneError(f"soundscene serve needs {_exc.name}: pip install fastapi uvicorn python-multipart "
                          "prometheus-client (or the package's [serve] extra)") from None

log = logging.getLogger("soundscene.serve")

UPLOAD_FIELD = "file"
MAX_NAME_CHARS = 120
#: Multipart framing and any small extra fields may add this much to the body beyond the file's own limit.
BODY_OVERHEAD_BYTES = 64 * 1024
#: Suffixes the temporary file may take from the client's name (libsndfile sniffs the content anyway;
#: the suffix only helps formats it recognises by extension).  Nothing else of the name reaches the disk.
SAFE_SUFFIXES = (".wav", ".wave", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".au", ".w64", ".caf")
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
WEB_FILES = {  # the page's files: name -> media type (nothing else under /static is served)
    "app.js": "text/javascript; charset=utf-8",
    "recorder-worklet.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; media-src 'self' blob:; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")


class UploadError(Exception):
    """A request /v1/classify refuses: HTTP status, one-line message, metrics reason."""

    def __init__(self, status: int, message: str, reason: str):
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason


def display_name(filename: str | None) -> str:
    """The client's file name as safe display text: last path component (``/`` or ``\\``), no
    control/format characters, at most MAX_NAME_CHARS characters (the middle elided).
    Never used as a path."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    # control (Cc: NUL, CR, LF, ESC...), format (Cf: bidi overrides, zero-width), surrogate, private, unassigned
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn"))
    name = " ".join(name.split())  # no odd whitespace runs (tabs, line separators...)
    if name in ("", ".", ".."):
        return "upload"
    if len(name) > MAX_NAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        ext = dot + ext if dot and 0 < len(ext) <= 8 else ""
        keep = MAX_NAME_CHARS - len(ext) - 1
        name = name[: len(name) - len(ext)][:keep] + "…" + ext
    return name


def _safe_suffix(name: str) -> str:
    suffix = os.path.splitext(name)[1].lower()
    return suffix if suffix in SAFE_SUFFIXES else ""


def _format_bytes(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:g} MB"
    if n >= 1000:
        return f"{n / 1000:g} kB"
    return f"{n} bytes"


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    line = " ".join(str(message).split()) or "error"
    return JSONResponse({"error": line}, status_code=status, headers=headers)


class _Metrics:
    """The service's Prometheus metrics, in a registry of their own."""

    def __init__(self, model_info: dict[str, Any]):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("soundscene_http_requests", "HTTP requests by endpoint, method and status code",
                                ["endpoint", "method", "status"], registry=r)
        self.duration = Histogram("soundscene_http_request_duration_seconds",
                                  "Time from request to response end, by endpoint", ["endpoint"], registry=r,
                                  buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.classify_errors = Counter("soundscene_classify_errors",
                                       "Refused or failed /v1/classify requests by reason", ["reason"],
                                       registry=r)
        self.inference = Histogram("soundscene_classify_inference_seconds",
                                   "Model time per classified upload (decode, resample, features, network)",
                                   registry=r, buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.audio_seconds = Counter("soundscene_classified_audio_seconds",
                                     "Seconds of audio classified", registry=r)
        self.upload_bytes = Counter("soundscene_upload_bytes", "Request body bytes received by /v1/classify",
                                    registry=r)
        self.in_progress = Gauge("soundscene_classify_in_progress", "/v1/classify requests being handled",
                                 registry=r)
        info = Gauge("soundscene_build_info", "soundscene's version and the model served (always 1)",
                     ["version", "model_name", "model_trained_with"], registry=r)
        info.labels(__version__, str(model_info.get("name") or ""), str(model_info.get("trained_with") or "")).set(1)


class _MetricsMiddleware:
    """Pure ASGI middleware: counts every HTTP response by route template, method and status."""

    def __init__(self, app, metrics: _Metrics, known_paths: set[str]):
        self.app = app
        self.metrics = metrics
        self.known_paths = known_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or scope.get("path", "")
            if endpoint not in self.known_paths:
                endpoint = "other"  # unknown URLs do not create new series
            method = scope.get("method", "")
            if method not in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
                method = "other"
            self.metrics.requests.labels(endpoint, method, str(status["code"])).inc()
            self.metrics.duration.labels(endpoint).observe(time.perf_counter() - start)


class _UploadReceiver:
    """Parses a multipart body chunk by chunk: the part named ``file`` is handed back to be written,
    other fields are read and dropped.  Counts the file's bytes as they arrive (413 past the limit)."""

    def __init__(self, boundary: bytes, *, max_file_bytes: int):
        self.max_file_bytes = max_file_bytes
        self.file_bytes = 0
        self.found = False
        self.filename: str | None = None
        self.finished = False
        self._in_file = False
        self._pending: list[bytes] = []
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self.parser = MultipartParser(boundary, {
            "on_part_begin": self._on_part_begin,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
            "on_end": self._on_end,
        })

    def _on_part_begin(self):
        self._disposition = b""
        self._in_file = False

    def _on_header_field(self, data, start, end):
        self._header_name += data[start:end]

    def _on_header_value(self, data, start, end):
        self._header_value += data[start:end]

    def _on_header_end(self):
        if self._header_name.strip().lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def _on_headers_finished(self):
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name")
        if name is None or name.decode("utf-8", "replace") != UPLOAD_FIELD:
            return
        if self.found:
            raise UploadError(400, f'send one file per request (field "{UPLOAD_FIELD}" appears twice)',
                              "bad_request")
        self.found = True
        self._in_file = True
        raw = options.get(b"filename")
        self.filename = raw.decode("utf-8", "replace") if raw is not None else None

    def _on_part_data(self, data, start, end):
        if not self._in_file:
            return  # other fields: bounded by the body limit, ignored
        self.file_bytes += end - start
        if self.file_bytes > self.max_file_bytes:
            raise UploadError(413, f"upload is larger than the limit of {_format_bytes(self.max_file_bytes)}",
                              "too_large")
        self._pending.append(bytes(data[start:end]))

    def _on_part_end(self):
        self._in_file = False

    def _on_end(self):
        self.finished = True

    def write(self, chunk: bytes) -> bytes:
        """Feed a chunk; returns the file bytes it completed (to be written off the event loop)."""
        self.parser.write(chunk)
        out = b"".join(self._pending)
        self._pending.clear()
        return out


def create_app(classifier, *, max_upload_bytes: int = 50_000_000, temp_dir: str | Path | None = None) -> FastAPI:
    """The web application serving ``classifier`` (a :class:`soundscene.inference.SceneClassifier`).

    Args:
        classifier: anything with ``classify_file(path) -> result`` (``result.to_record()`` a JSON-safe
            dict; AudioError with one line for unusable audio) and ``describe() -> dict``.
        max_upload_bytes: largest accepted upload (the file's bytes); more is answered with 413.
        temp_dir: where each upload's private directory is made (default: the system's temp folder).
    """
    if int(max_upload_bytes) < 1:
        raise SoundsceneError("the upload limit must be at least 1 byte")
    max_upload_bytes = int(max_upload_bytes)
    max_body_bytes = max_upload_bytes + BODY_OVERHEAD_BYTES
    temp_root = str(temp_dir) if temp_dir is not None else None
    description = classifier.describe()
    model_info = description.get("model", {}) if isinstance(description, dict) else {}
    metrics = _Metrics(model_info)
    model_lock = anyio.Lock()

    app = FastAPI(
        title="soundscene",
        version=__version__,
        summary="Acoustic scene classification: which scene an uploaded recording was made in.",
        description="Upload a recording (WAV, FLAC, OGG, MP3...) to `/v1/classify`; every error is "
                    '`{"error": "one line"}`.',
    )
    app.state.classifier = classifier
    app.state.max_upload_bytes = max_upload_bytes
    app.state.metrics = metrics

    # ---- errors: always {"error": "..."} ------------------------------------------------------------
    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, exc.detail if isinstance(exc.detail, str) else "request refused",
                      headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception):
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return _error(500, "internal server error; see the server log")

    # ---- the API ---------------------------------------------------------------------------------------
    @app.post(
        "/v1/classify",
        summary="Classify one recording",
        response_description="The record `soundscene predict --format json` prints per file; `path` is the "
                             "uploaded file's name (display text only)",
        responses={200: {"content": {"application/json": {"schema": _RECORD_SCHEMA}}},
                   400: _ERROR_RESPONSE, 413: _ERROR_RESPONSE, 415: _ERROR_RESPONSE, 422: _ERROR_RESPONSE},
        openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": [UPLOAD_FIELD],
            "properties": {UPLOAD_FIELD: {"type": "string", "format": "binary",
                                          "description": "the recording: any format libsndfile reads "
                                                         f"(at most {_format_bytes(max_upload_bytes)})"}}}}}}},
    )
    async def classify(request: Request):
        metrics.in_progress.inc()
        try:
            return await _classify(request)
        except UploadError as exc:
            metrics.classify_errors.labels(exc.reason).inc()
            headers = {"Connection": "close"} if exc.status == 413 else None
            return _error(exc.status, exc.message, headers=headers)
        finally:
            metrics.in_progress.dec()

    async def _classify(request: Request):
        ctype, params = parse_options_header(request.headers.get("content-type", ""))
        boundary = params.get(b"boundary")
        if ctype != b"multipart/form-data" or not boundary:
            raise UploadError(400, f'send the audio as multipart/form-data with a field named "{UPLOAD_FIELD}"',
                              "bad_request")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_body_bytes:
            raise UploadError(413, f"upload is larger than the limit of {_format_bytes(max_upload_bytes)}",
                              "too_large")
        workdir = await anyio.to_thread.run_sync(lambda: tempfile.mkdtemp(prefix="soundscene-upload-",
                                                                          dir=temp_root))
        try:
            # A random name in the private directory; only a known audio suffix may be added later.
            fd, raw_path = tempfile.mkstemp(prefix="upload-", dir=workdir)
            os.close(fd)
            receiver = await _receive(request, raw_path, boundary)
            if not receiver.found:
                raise UploadError(400, f'no file in the form field "{UPLOAD_FIELD}"', "missing_file")
            name = display_name(receiver.filename)
            if receiver.file_bytes == 0:
                raise UploadError(400, f"{name}: file is empty (0 bytes)", "empty")
            audio_path = raw_path + _safe_suffix(name)
            if audio_path != raw_path:
                os.replace(raw_path, audio_path)
            record = await _run_model(audio_path, name)
            return JSONResponse(record, headers={"Cache-Control": "no-store"})
        finally:  # shielded: a cancelled request (client gone, shutdown) still removes its upload
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(lambda: shutil.rmtree(workdir, ignore_errors=True))

    async def _receive(request: Request, raw_path: str, boundary: bytes) -> _UploadReceiver:
        received = 0
        with open(raw_path, "wb") as dest:
            receiver = _UploadReceiver(boundary, max_file_bytes=max_upload_bytes)
            try:
                async for chunk in request.stream():
                    received += len(chunk)
                    metrics.upload_bytes.inc(len(chunk))
                    if received > max_body_bytes:
                        raise UploadError(413, "upload is larger than the limit of "
                                               f"{_format_bytes(max_upload_bytes)}", "too_large")
                    data = receiver.write(chunk)
                    if data:
                        await anyio.to_thread.run_sync(dest.write, data)
                receiver.parser.finalize()
            except ClientDisconnect:
                raise UploadError(400, "the client disconnected during the upload", "disconnected") from None
            except UploadError:
                raise
            except Exception as exc:  # python-multipart's FormParserError and friends
                raise UploadError(400, f"malformed multipart/form-data body ({type(exc).__name__})",
                                  "bad_request") from None
        if receiver.found and not receiver.finished:
            raise UploadError(400, "the multipart/form-data body ends before its closing boundary",
                              "bad_request")
        return receiver

    async def _run_model(audio_path: str, name: str) -> dict[str, Any]:
        def work():
            start = time.perf_counter()
            with torch.no_grad():
                result = classifier.classify_file(audio_path)
            record = result.to_record()
            return record, time.perf_counter() - start

        try:
            async with model_lock:
                record, seconds = await anyio.to_thread.run_sync(work)
        except AudioError as exc:
            message = str(exc).replace(audio_path, name)
            readable = await anyio.to_thread.run_sync(_decoder_reads, audio_path)
            if not readable:
                raise UploadError(415, message, "unsupported_media") from None
            raise UploadError(422, message, "unusable_audio") from None
        except SoundsceneError as exc:  # e.g. ModelFileError: the model, not the upload, is at fault
            log.error("classifying %s failed: %s", name, exc)
            raise UploadError(500, str(exc).replace(audio_path, name), "model_error") from None
        if record.get("error"):
            raise UploadError(422, str(record["error"]).replace(audio_path, name), "unusable_audio")
        metrics.inference.observe(seconds)
        duration = record.get("duration_seconds")
        if isinstance(duration, (int, float)):
            metrics.audio_seconds.inc(max(float(duration), 0.0))
        record["path"] = name
        if isinstance(record.get("warning"), str):
            record["warning"] = record["warning"].replace(audio_path, name)
        return record

    @app.get("/v1/model", summary="The model being served: classes, sample rate, windowing, configuration",
             responses={200: {"content": {"application/json": {"example": {
                 "classes": ["metro", "park"], "sample_rate": 48000, "window_seconds": 10.0, "hop_seconds": 5.0,
                 "config": {}, "model": {"name": "paper_cnn", "soundscene_version": __version__}}}}}})
    async def model() -> dict[str, Any]:
        return description

    @app.get("/v1/limits", summary="The service's limits (the page checks an upload's size before sending it)")
    async def limits() -> dict[str, int]:
        return {"max_upload_bytes": max_upload_bytes}

    @app.get("/healthz", summary="Liveness check")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_api_route("/healthz", healthz, methods=["HEAD"], include_in_schema=False)

    @app.get("/metrics", summary="Prometheus metrics (text format 0.0.4)",
             responses={200: {"content": {"text/plain": {}}}}, response_class=Response)
    async def prometheus_metrics():
        return Response(generate_latest(metrics.registry), media_type=METRICS_CONTENT_TYPE)

    # ---- the web page ----------------------------------------------------------------------------------
    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def index():
        return HTMLResponse(_web_file("index.html"), headers=_page_headers())

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        if name not in WEB_FILES:
            return _error(404, "not found")
        return Response(_web_file(name), media_type=WEB_FILES[name], headers=_page_headers())

    known = {getattr(r, "path", "") for r in app.routes}
    app.add_middleware(_MetricsMiddleware, metrics=metrics, known_paths=known)
    return app


def _decoder_reads(path: str) -> bool:
    """Whether libsndfile recognises the file at all (415 when it does not, 422 when it does)."""
    try:
        soundfile.info(path)
        return True
    except Exception:
        return False


def _web_file(name: str) -> bytes:
    return (resources.files("soundscene.apps") / "web" / name).read_bytes()


def _page_headers() -> dict[str, str]:
    return {"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache",
            "Permissions-Policy": "microphone=(self), camera=(), geolocation=()"}


_ERROR_RESPONSE = {"description": "Refused, with the reason in one line",
                   "content": {"application/json": {"schema": {
                       "type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}}}}

_PROBS = {"type": "object", "additionalProperties": {"type": "number"}, "description": "class -> probability"}
_RECORD_SCHEMA = {
    "type": "object",
    "required": ["path", "label", "confidence", "probabilities"],
    "properties": {
        "path": {"type": "string", "description": "the uploaded file's name (sanitised; display text only)"},
        "label": {"type": "string", "description": "the most probable scene"},
        "confidence": {"type": "number", "description": "the label's probability"},
        "probabilities": _PROBS,
        "level_dbfs": {"type": "number", "description": "RMS level of the recording in dB full scale"},
        "duration_seconds": {"type": "number"},
        "warning": {"type": ["string", "null"], "description": "something to know about the result"},
        "windows": {"type": "array", "description": "one per analysis window", "items": {
            "type": "object", "properties": {"start": {"type": "number"}, "end": {"type": "number"},
                                             "probabilities": _PROBS}}},
        "segments": {"type": "array", "description": "runs of one label covering the file without gaps",
                     "items": {"type": "object", "properties": {
                         "start": {"type": "number"}, "end": {"type": "number"}, "label": {"type": "string"},
                         "confidence": {"type": "number"}}}},
    },
}


def run_server(model_path: str | Path, *, host: str = "127.0.0.1", port: int = 8000, max_upload_mb: float = 50,
               log_level: str = "info") -> None:
    """Load ``model_path`` (a model file or run folder) and serve it until Ctrl-C.

    ``max_upload_mb`` is in megabytes of 1,000,000 bytes.  Raises SoundsceneError (one line) for a bad
    model file, a bad limit, or an address that cannot be listened on; blocks otherwise.
    """
    import uvicorn

    from ..core.inference import SceneClassifier

    if not (max_upload_mb > 0):
        raise SoundsceneError(f"--max-upload-mb must be positive, got {max_upload_mb}")
    if not (0 <= int(port) <= 65535):
        raise SoundsceneError(f"--port must be in 0..65535, got {port}")
    classifier = SceneClassifier.from_file(model_path)  # ModelFileError: one line
    app = create_app(classifier, max_upload_bytes=int(max_upload_mb * 1_000_000))
    sock = _listen(host, int(port))
    shown = f"[{host}]" if ":" in host else host
    bound_port = sock.getsockname()[1]
    if host not in ("127.0.0.1", "localhost", "::1"):
        warn(f"listening on {host}: the service has no authentication; anyone who can reach this address "
             "can use it")
    print(f"soundscene {__version__}: serving {model_path} on http://{shown}:{bound_port}/ "
          f"(API docs: /docs, schema: /openapi.json; Ctrl-C stops)", flush=True)
    config = uvicorn.Config(app, log_level=log_level, server_header=False, proxy_headers=False,
                            timeout_keep_alive=5)
    uvicorn.Server(config).run(sockets=[sock])


def _listen(host: str, port: int) -> socket.socket:
    """A bound, listening socket, or SoundsceneError naming the address and the reason."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        sock.listen(128)
        sock.set_inheritable(True)
    except OSError as exc:
        raise SoundsceneError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock
