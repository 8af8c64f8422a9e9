"""``POST /v1/classify``: receives one streamed multipart upload, classifies it, removes it.

:class:`UploadHandler` holds what every upload shares: the classifier, the size limits, where the
temporary directories go, the metrics and the lock that lets one request at a time use the model.
For each request it

1. checks the headers (multipart/form-data with a boundary; a Content-Length that already declares too
   much is refused before reading anything);
2. makes a fresh private directory (``tempfile.mkdtemp``: random name, mode 0700) holding a
   random-named file (``tempfile.mkstemp``);
3. streams the body through :class:`MultipartReceiver` (python-multipart's streaming parser) into that
   file, counting the bytes actually received, so that a missing or lying Content-Length changes
   nothing: reading stops at the first chunk past the limit (413);
4. runs the model in a worker thread under the lock, as ``classifier.classify_file(path,
   name=display name)``, so that the record's ``path`` and every one-line error name the upload as the
   client called it (sanitised by :func:`display_name`), never the temporary file;
5. removes the directory with everything in it, whatever happened (also when the request is cancelled).

Every refusal is an :class:`UploadError`: HTTP status, one-line message and the reason counted in the
metrics.  400: not multipart, no field "file", several files, an empty file, a malformed or cut-short
body, a client gone; 413: over the limit; 415: a file the audio decoder cannot read; 422: audio that is
read but cannot be used (too short, silent...); 500: the model fails (ModelFileError).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import unicodedata
from typing import Any

import anyio
import torch
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from ...core.audio import recognised_format
from ...errors import AudioError, SoundsceneError
from .metrics import Metrics
from .responses import error_response, record_response

log = logging.getLogger("soundscene.serve")

UPLOAD_FIELD = "file"
MAX_NAME_CHARS = 120
#: Multipart framing and any small extra fields may add this much to the body beyond the file's own limit.
BODY_OVERHEAD_BYTES = 64 * 1024
#: Suffixes the temporary file may take from the client's name (libsndfile sniffs the content anyway;
#: the suffix only helps formats it recognises by extension).  Nothing else of the name reaches the disk.
SAFE_SUFFIXES = (".wav", ".wave", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".au", ".w64", ".caf")


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


def format_bytes(n: int) -> str:
    """``50 MB``, ``20 kB``, ``999 bytes`` (decimal units, as the limit is given)."""
    if n >= 1_000_000:
        return f"{n / 1_000_000:g} MB"
    if n >= 1000:
        return f"{n / 1000:g} kB"
    return f"{n} bytes"


def _safe_suffix(name: str) -> str:
    suffix = os.path.splitext(name)[1].lower()
    return suffix if suffix in SAFE_SUFFIXES else ""


def _too_large(limit: int) -> UploadError:
    return UploadError(413, f"upload is larger than the limit of {format_bytes(limit)}", "too_large")


class MultipartReceiver:
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
            raise _too_large(self.max_file_bytes)
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


class UploadHandler:
    """Answers ``POST /v1/classify``: one instance per app, shared by its requests (see the module's text)."""

    def __init__(self, classifier, *, max_upload_bytes: int, temp_root: str | None, metrics: Metrics):
        self.classifier = classifier
        self.max_upload_bytes = max_upload_bytes
        self.max_body_bytes = max_upload_bytes + BODY_OVERHEAD_BYTES
        self.temp_root = temp_root
        self.metrics = metrics
        # torch already spreads one forward pass over every core: parallel passes would only contend, and
        # one at a time makes the classifier's thread safety a non-question.  Uploads still stream in meanwhile.
        self.model_lock = anyio.Lock()

    async def handle(self, request: Request) -> Response:
        """The response to one request: the record (200) or ``{"error": "one line"}``."""
        self.metrics.in_progress.inc()
        try:
            return record_response(await self._classify_upload(request))
        except UploadError as exc:
            self.metrics.classify_errors.labels(exc.reason).inc()
            headers = {"Connection": "close"} if exc.status == 413 else None
            return error_response(exc.status, exc.message, headers=headers)
        finally:
            self.metrics.in_progress.dec()

    async def _classify_upload(self, request: Request) -> dict[str, Any]:
        boundary = self.check_headers(request)
        workdir = await anyio.to_thread.run_sync(
            lambda: tempfile.mkdtemp(prefix="soundscene-upload-", dir=self.temp_root))
        try:
            # A random name in the private directory; only a known audio suffix may be added later.
            fd, raw_path = tempfile.mkstemp(prefix="upload-", dir=workdir)
            os.close(fd)
            receiver = await self.receive(request, raw_path, boundary)
            if not receiver.found:
                raise UploadError(400, f'no file in the form field "{UPLOAD_FIELD}"', "missing_file")
            name = display_name(receiver.filename)
            if receiver.file_bytes == 0:
                raise UploadError(400, f"{name}: file is empty (0 bytes)", "empty")
            audio_path = raw_path + _safe_suffix(name)
            if audio_path != raw_path:
                os.replace(raw_path, audio_path)
            return await self.classify(audio_path, name)
        finally:
            await self.clean_up(workdir)

    def check_headers(self, request: Request) -> bytes:
        """The multipart boundary; UploadError for another content type or a declared size over the limit."""
        ctype, params = parse_options_header(request.headers.get("content-type", ""))
        boundary = params.get(b"boundary")
        if ctype != b"multipart/form-data" or not boundary:
            raise UploadError(400, f'send the audio as multipart/form-data with a field named "{UPLOAD_FIELD}"',
                              "bad_request")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise _too_large(self.max_upload_bytes)
        return boundary

    async def receive(self, request: Request, raw_path: str, boundary: bytes) -> MultipartReceiver:
        """Stream the body into ``raw_path`` (the file part only), counting every byte received."""
        receiver = MultipartReceiver(boundary, max_file_bytes=self.max_upload_bytes)
        received = 0
        with open(raw_path, "wb") as dest:
            try:
                async for chunk in request.stream():
                    received += len(chunk)
                    self.metrics.upload_bytes.inc(len(chunk))
                    if received > self.max_body_bytes:
                        raise _too_large(self.max_upload_bytes)
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
            raise UploadError(400, "the multipart/form-data body ends before its closing boundary", "bad_request")
        return receiver

    async def classify(self, audio_path: str, name: str) -> dict[str, Any]:
        """The prediction record of the file at ``audio_path``, which the record and errors call ``name``."""
        def work():
            start = time.perf_counter()
            with torch.no_grad():
                record = self.classifier.classify_file(audio_path, name=name).to_record()
            return record, time.perf_counter() - start

        try:
            async with self.model_lock:
                record, seconds = await anyio.to_thread.run_sync(work)
        except AudioError as exc:
            message = _scrub(str(exc), audio_path, name)
            if not await anyio.to_thread.run_sync(recognised_format, audio_path):
                raise UploadError(415, message, "unsupported_media") from None
            raise UploadError(422, message, "unusable_audio") from None
        except SoundsceneError as exc:  # e.g. ModelFileError: the model, not the upload, is at fault
            log.error("classifying %s failed: %s", name, exc)
            raise UploadError(500, _scrub(str(exc), audio_path, name), "model_error") from None
        if record.get("error"):
            raise UploadError(422, _scrub(str(record["error"]), audio_path, name), "unusable_audio")
        self.metrics.inference.observe(seconds)
        duration = record.get("duration_seconds")
        if isinstance(duration, (int, float)):
            self.metrics.audio_seconds.inc(max(float(duration), 0.0))
        return record

    async def clean_up(self, workdir: str) -> None:
        """Remove the upload's directory; shielded, so a cancelled request (client gone, shutdown) still does."""
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(lambda: shutil.rmtree(workdir, ignore_errors=True))


def _scrub(message: str, audio_path: str, name: str) -> str:
    """A guard, not the mechanism: the classifier already names the upload ``name``; should a message from
    deeper down (a decoder) still carry the temporary path, the client sees ``name`` instead."""
    return message.replace(audio_path, name)
