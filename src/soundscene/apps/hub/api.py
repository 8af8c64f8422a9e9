"""The hub's HTTP API and page (FastAPI).  :func:`create_app` takes a running :class:`~.service.Hub`.

Every error is ``{"error": "one line"}``.  Reads are open to whoever can reach the hub (it binds 127.0.0.1
unless told otherwise); writes (``PUT /v1/sensors/{id}``) need ``Authorization: Bearer <token>`` when the
hub has a token, compared in constant time.  Sensor ids and every query parameter are checked; bodies are
limited to :data:`MAX_BODY_BYTES`.
"""

from __future__ import annotations

import asyncio
import csv
import hmac
import io
import json
import logging
import math
import tempfile
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..._version import __version__
from ...core import records
from ...errors import SoundsceneError
from ..protocol import check_sensor_id, parse_datetime
from ..http import CatchAll
from ..http import error_response as error  # one error shape for the service and the hub
from . import page, store
from .timeutil import time_range

log = logging.getLogger("soundscene.hub")

MAX_BODY_BYTES = 16384
MAX_TZ_CHARS = 64
KEEPALIVE_SECONDS = 15.0
_SENSOR_FIELDS = {"name": str, "latitude": float, "longitude": float, "x": float, "y": float, "tags": list}
_LIMITS = {"latitude": (-90.0, 90.0), "longitude": (-180.0, 180.0), "x": (-1e7, 1e7), "y": (-1e7, 1e7)}


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def create_app(hub) -> FastAPI:
    app = FastAPI(title="soundscene hub", version=__version__,
                  summary="A fleet of sound sensors: their scenes, levels, timelines and alerts.")
    app.state.hub = hub

    _errors(app)
    _reads(app, hub)
    _health(app, hub)
    _writes(app, hub)
    _exports(app, hub)
    _live(app, hub)
    page.register(app, hub)
    _openapi(app)
    return app


_DATABASE_DOWN = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)


def _errors(app: FastAPI) -> None:
    """Every error the hub answers is ``{"error": "one line"}``: its own (:class:`ApiError`), a bad parameter
    (SoundsceneError: 400), FastAPI's refusals (404, 405, 422), a database that does not answer (503) and,
    through :class:`_CatchAll`, any bug (500, logged once)."""

    @app.exception_handler(ApiError)
    async def _api_error(_request, exc: ApiError):
        return error(exc.status, exc)

    @app.exception_handler(SoundsceneError)
    async def _bad_request(_request, exc: SoundsceneError):
        return error(400, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request, exc: StarletteHTTPException):
        return error(exc.status_code, exc.detail if isinstance(exc.detail, str) else "request refused",
                     headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body", "header")]
        return error(422, f"{'.'.join(where) or 'request'}: {first.get('msg', 'invalid')}")

    async def _database_down(request: Request, exc: Exception):
        log.warning("database unavailable in %s %s: %s", request.method, request.url.path,
                    str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
        return error(503, "the database is unavailable; try again later")

    for kind in _DATABASE_DOWN:
        app.add_exception_handler(kind, _database_down)
    app.add_middleware(CatchAll, message="internal error")


def _sensor_id(sensor_id: str) -> str:
    try:
        return check_sensor_id(sensor_id)
    except SoundsceneError as exc:
        raise ApiError(400, str(exc)) from None


def _known(hub, sensor_id: str) -> dict:
    found = store.sensor(hub.engine, _sensor_id(sensor_id))
    if found is None:
        raise ApiError(404, f"no sensor {sensor_id!r}")
    return found


def _reads(app: FastAPI, hub) -> None:
    @app.get("/v1/sensors", summary="Every sensor: status, current scene, confidence, level, last seen, location")
    def sensors() -> list[dict[str, Any]]:
        return store.fleet(hub.engine)

    @app.get("/v1/sensors/{sensor_id}", summary="One sensor, with its latest health record (null before any)")
    def one(sensor_id: str) -> dict[str, Any]:
        found = store.sensor_detail(hub.engine, _sensor_id(sensor_id))
        if found is None:
            raise ApiError(404, f"no sensor {sensor_id!r}")
        return found

    @app.get("/v1/sensors/{sensor_id}/timeline",
             summary="Segments and the level series (at most 2,000 points) of one sensor over a range")
    def timeline(sensor_id: str, request: Request) -> dict[str, Any]:
        _known(hub, sensor_id)
        frm, to = time_range(request.query_params.get("from"), request.query_params.get("to"), time.time())
        return store.timeline(hub.engine, sensor_id, frm, to)

    @app.get("/v1/sensors/{sensor_id}/day-levels",
             summary="Lday, Levening, Lnight, Lden and their coverage per day, from the sensor's interval LAeqs")
    def day_levels(sensor_id: str, request: Request, tz: str = "UTC", day: int = 7, evening: int = 19,
                   night: int = 23) -> dict[str, Any]:
        from ...core.daylevels import Periods

        _known(hub, sensor_id)
        zone = _zone(tz)
        try:
            periods = Periods(day=day, evening=evening, night=night)
        except ValueError as exc:
            raise ApiError(400, f"day, evening, night: {exc}") from None
        frm, to = time_range(request.query_params.get("from"), request.query_params.get("to"), time.time(),
                             default_days=7.0)
        return store.day_levels(hub.engine, sensor_id, frm, to, periods=periods, zone=zone)

    @app.get("/v1/summary", summary="Share of time per scene per hour or day, and the hour-of-day profile")
    def summary(request: Request, sensor: str | None = None, bucket: str = "hour") -> dict[str, Any]:
        if bucket not in ("hour", "day"):
            raise ApiError(400, "bucket must be hour or day")
        if sensor is not None:
            _sensor_id(sensor)
        frm, to = time_range(request.query_params.get("from"), request.query_params.get("to"), time.time())
        return store.summary(hub.engine, frm, to, sensor_id=sensor, bucket=bucket)

    @app.get("/v1/alerts", summary="Alerts that started or were ongoing in the range, newest first")
    def alerts(request: Request) -> list[dict[str, Any]]:
        frm, to = time_range(request.query_params.get("from"), request.query_params.get("to"), time.time(),
                             default_days=7.0)
        return store.alert_list(hub.engine, frm, to)

    @app.get("/v1/config", summary="What the page needs to know: the site plan, the version")
    def config() -> dict[str, Any]:
        return {"site_plan": hub.site_plan is not None, "version": __version__}

    @app.get("/healthz", summary="Whether the hub is connected to its broker and database and its ingest runs "
             "(503 when not)")
    def healthz() -> JSONResponse:
        state = hub.health()
        return JSONResponse(state, status_code=200 if state["ok"] else 503)

    @app.get("/metrics", summary="Prometheus metrics")
    def metrics() -> Response:
        return Response(hub.metrics_text(), media_type="text/plain; version=0.0.4; charset=utf-8")


def _zone(tz: str):
    """The ``tz`` query parameter as a ZoneInfo; a 400 naming ``tz`` alone when it is not a time zone."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if len(tz) > MAX_TZ_CHARS:
        raise ApiError(400, f"tz: too long for a time zone (at most {MAX_TZ_CHARS} characters)")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder of the database, e.g. "Europe"
        raise ApiError(400, f"tz: unknown time zone {tz!r}") from None


def _health(app: FastAPI, hub) -> None:
    @app.get("/v1/sensors/{sensor_id}/health",
             summary="One sensor's health records over a range, oldest first (at most 2,000: the newest)")
    def health(sensor_id: str, request: Request, limit: str | None = None) -> dict[str, Any]:
        _known(hub, sensor_id)
        count = _limit(limit, store.MAX_HEALTH)
        frm, to = time_range(request.query_params.get("from"), request.query_params.get("to"), time.time())
        return store.health_list(hub.engine, sensor_id, frm, to, limit=count)


def _limit(text: str | None, most: int) -> int:
    """A ``limit`` query parameter: a whole number from 1 to ``most`` (``most`` when absent)."""
    if text is None or text == "":
        return most
    if len(text) > 9 or not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= most:
        raise ApiError(400, f"limit must be a whole number from 1 to {most}")
    return int(text)


def _writes(app: FastAPI, hub) -> None:
    @app.put("/v1/sensors/{sensor_id}", summary="Set a sensor's name, location and tags (needs the token)")
    async def put_sensor(sensor_id: str, request: Request) -> dict[str, Any]:
        _authorise(hub, request)
        sensor_id = _sensor_id(sensor_id)
        body = await _body(request)
        return store.update_sensor(hub.engine, sensor_id, _sensor_values(body), now=time.time())


def _authorise(hub, request: Request) -> None:
    if hub.token is None:
        if hub.writes_open:
            return
        raise ApiError(403, "writes are disabled: start the hub with --token-file")
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), hub.token.encode()):
        raise ApiError(401, "this needs the hub's token: Authorization: Bearer <token>")


async def _body(request: Request) -> dict:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise ApiError(413, f"the body is over the {MAX_BODY_BYTES}-byte limit")
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_BODY_BYTES:
            raise ApiError(413, f"the body is over the {MAX_BODY_BYTES}-byte limit")
    try:
        body = json.loads(data or b"{}")
    except ValueError:
        raise ApiError(400, "the body must be JSON") from None
    except RecursionError:
        raise ApiError(400, "the body's JSON is nested too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def _sensor_values(body: dict) -> dict[str, Any]:
    """The checked fields of a PUT body: name (text), latitude/longitude or x/y (numbers), tags (texts)."""
    unknown = set(body) - set(_SENSOR_FIELDS)
    if unknown:
        raise ApiError(400, f"unknown field(s) {sorted(unknown)}; use {sorted(_SENSOR_FIELDS)}")
    values: dict[str, Any] = {}
    for key, value in body.items():
        if value is None and key != "name":
            values[key] = None
        elif key == "name":
            if value is not None and (not isinstance(value, str) or not 0 < len(value) <= 200):
                raise ApiError(400, "name must be text of 1 to 200 characters")
            values[key] = None if value is None else records.printable(value)
        elif key == "tags":
            if not isinstance(value, list) or len(value) > 50 or not all(
                    isinstance(t, str) and 0 < len(t) <= 64 for t in value):
                raise ApiError(400, "tags must be a list of at most 50 texts of 1 to 64 characters")
            values[key] = [records.printable(t) for t in value]
        else:
            low, high = _LIMITS[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not low <= value <= high:
                raise ApiError(400, f"{key} must be a number from {low:g} to {high:g}")
            values[key] = float(value)
    return values


def _exports(app: FastAPI, hub) -> None:
    def _range(request: Request, sensor: str | None):
        if sensor is not None:
            _sensor_id(sensor)
        return time_range(request.query_params.get("from"), request.query_params.get("to"), time.time())

    @app.get("/v1/segments.csv", summary="Segments in a range as CSV")
    def segments_csv(request: Request, sensor: str | None = None) -> StreamingResponse:
        frm, to = _range(request, sensor)

        def rows():
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow(store.SEGMENT_COLUMNS)
            for k, seg in enumerate(store.iter_segments(hub.engine, frm, to, sensor_id=sensor)):
                writer.writerow([_cell(seg[c]) for c in store.SEGMENT_COLUMNS])
                if k % 1000 == 999:
                    yield buf.getvalue()
                    buf.seek(0)
                    buf.truncate()
            yield buf.getvalue()
        return StreamingResponse(rows(), media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": 'attachment; filename="segments.csv"'})

    @app.get("/v1/segments.parquet", summary="Segments in a range as Parquet")
    def segments_parquet(request: Request, sensor: str | None = None) -> Response:
        frm, to = _range(request, sensor)
        return Response(_parquet(store.iter_segments(hub.engine, frm, to, sensor_id=sensor)),
                        media_type="application/vnd.apache.parquet",
                        headers={"Content-Disposition": 'attachment; filename="segments.parquet"'})


def _cell(value) -> Any:
    """A CSV cell: empty for None, ``true``/``false`` for booleans (as JSON writes them), else the value."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _parquet(segments) -> bytes:
    """Segments as a Parquet file, written in row groups of 10,000 through a spooled temporary file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("sensor_id", pa.string()), ("start", pa.timestamp("ms", tz="UTC")),
                        ("end", pa.timestamp("ms", tz="UTC")), ("label", pa.string()), ("confidence", pa.float64()),
                        ("decisions", pa.int64()), ("silent", pa.bool_())])
    with tempfile.SpooledTemporaryFile(max_size=32 << 20) as out:
        with pq.ParquetWriter(out, schema) as writer:
            chunk: list[dict] = []
            for seg in segments:
                chunk.append(seg)
                if len(chunk) == 10000:
                    writer.write_table(_table(chunk, schema))
                    chunk = []
            writer.write_table(_table(chunk, schema))
        out.seek(0)
        return out.read()


def _table(chunk: list[dict], schema):
    import pyarrow as pa

    columns = {name: [s[name] for s in chunk] for name in schema.names}
    columns["start"] = [parse_datetime(t) for t in columns["start"]]
    columns["end"] = [parse_datetime(t) for t in columns["end"]]
    return pa.table(columns, schema=schema)


def _live(app: FastAPI, hub) -> None:
    @app.get("/v1/live", summary="Server-sent events: decisions, status changes and alerts as they are stored")
    async def live(request: Request) -> StreamingResponse:
        queue = hub.live.subscribe()

        async def events():
            try:
                yield "retry: 2000\n\n"
                while True:
                    try:
                        event = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                    except asyncio.TimeoutError:
                        if await request.is_disconnected():
                            return
                        yield ": keep-alive\n\n"
                        continue
                    yield f"event: {event['type']}\ndata: {records.dumps(event)}\n\n"
            finally:
                hub.live.unsubscribe(queue)
        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _openapi(app: FastAPI) -> None:
    """The record schema's kinds in the OpenAPI components, as the service does."""
    original = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        defs = records.json_schema()["$defs"]
        text = json.dumps(defs).replace("#/$defs/", "#/components/schemas/")
        schema.setdefault("components", {}).setdefault("schemas", {}).update(json.loads(text))
        app.openapi_schema = schema
        return schema
    app.openapi = openapi

