"""What the sensors say, checked: MQTT topic + payload -> a :class:`SceneMessage`, :class:`LevelsMessage`,
:class:`HealthMessage` or :class:`StatusMessage`, or :class:`BadMessage` naming the reason in one line.

The topics are those of :mod:`soundscene.apps.protocol`: ``soundscene/<id>/scene`` (a ``sensor_message``
record), ``soundscene/<id>/levels`` (a ``levels_message`` record), ``soundscene/<id>/health`` (a ``health``
record, numbered by the same ``boot`` and ``seq`` as the other two) and ``soundscene/<id>/status``
(``online`` / ``offline``).  Payloads are validated with the project's record schema
(:func:`soundscene.core.records.schema_of`), so the hub accepts exactly what the sensors are documented to
send; a message without ``boot`` has boot ``""``.  Times are read by the protocol's one parser
(:func:`soundscene.apps.protocol.parse_time`).

One message must never stop the hub, so beyond the schema every message is held to limits that both
databases can store and the API can show (a refused message is one line in ``ingest_errors``):

* at most :data:`MAX_MESSAGE_BYTES`, and JSON nested at most :data:`MAX_DEPTH` levels (a sensor's deepest
  field, ``levels.bands``, is 3 deep);
* every number finite (``1e999`` is refused, not read as infinity) and every whole number within a signed
  64-bit integer; then per field (:data:`BOUNDS`): ``seq`` from 1 to 2**63 - 1; probabilities and
  ``confidence`` from 0 to 1; levels (``level_dbfs``, ``input_level_dbfs``, the ``levels`` object and its
  ``bands``) from -3300 to 300 dB (a real sensor's near-silent band is below -290 dBFS; nothing is above
  300 dB); ``hop_seconds`` and ``window_seconds`` above 0 and at most a day; a levels
  interval (``end - start``) at most a day; the health record's durations, sizes and temperature within
  generous physical bounds;
* ``label`` (and each class name) at most :data:`MAX_LABEL_CHARS` characters, none of them a control
  character: the length of the databases' label column, which PostgreSQL enforces and SQLite does not;
* times (``timestamp``, ``start``, ``end``) within a window around the hub's clock: at most
  :data:`MAX_FUTURE_SECONDS` (a day) ahead — a sensor's clock may be off, a date in 9999 is not a clock
  that is off — and at most :data:`MAX_PAST_SECONDS` (3,660 days: the longest ``--keep-days`` and a margin)
  behind, so a sensor whose clock never got set (1970) is said in ``ingest_errors``.  Messages inside the
  window but older than ``--keep-days`` are counted as expired by the writer, as before.

:func:`parse` is a pure function (no database, no MQTT; the clock is its ``now`` argument, by default the
hub's): a later ``hub import`` of batch results can build the same messages and hand them to
:func:`soundscene.apps.hub.writer.store_batch`.  What needs the database (a ``seq`` that jumps absurdly far
from its boot's numbering) is checked there.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ...core import records
from ...errors import SoundsceneError
from ..protocol import LEVEL_NAMES, STATUSES, TOPIC_ROOT, check_sensor_id, parse_time

MAX_MESSAGE_BYTES = 65536  # a sensor_message with 50 classes is about 2 kB
EXCERPT_BYTES = 512  # of a refused payload, kept in ingest_errors
MAX_DEPTH = 16  # nesting of objects and arrays
MAX_SEQ = 2**63 - 1  # the databases' BIGINT
MAX_LABEL_CHARS = 200  # the label columns: String(200)
MAX_FUTURE_SECONDS = 86400.0
MAX_PAST_SECONDS = 3660 * 86400.0
DAY = 86400.0
#: levels in dB: at most 300 (no sound is louder, nor is a full-scale signal in dBFS); at least what 10 log10 of
#: the smallest double gives (about -3233): a near-silent band of a real sensor is far below -200 dB
LEVEL_DB = (-3300.0, 300.0)
#: field -> (lowest, highest) of a number in a message, when the field is there and not null
BOUNDS: dict[str, tuple[float, float]] = {
    "time": (0.0, 1e10), "window_seconds": (0.0, DAY), "hop_seconds": (0.0, DAY), "confidence": (0.0, 1.0),
    "level_dbfs": LEVEL_DB, "input_level_dbfs": LEVEL_DB,
    "interval_seconds": (0.0, 1e10), "audio_seconds": (0.0, 1e10), "uptime_seconds": (0.0, 1e10),
    "cpu_percent": (0.0, 1e5), "memory_mb": (0.0, 1e9), "memory_peak_mb": (0.0, 1e9), "disk_free_mb": (0.0, 1e12),
    "clipping_fraction": (0.0, 1.0), "dc_offset": (-1.0, 1.0), "temperature_c": (-273.15, 1000.0),
}
POSITIVE = ("window_seconds", "hop_seconds")  # above their lowest, not equal to it
KINDS = ("scene", "levels", "health", "status")  # the last topic level of what the hub subscribes to
_BOOT = re.compile(r"^[0-9A-Za-z_-]{1,64}$")


class BadMessage(ValueError):
    """A message that cannot be stored; ``str()`` is the one-line reason."""


@dataclass(frozen=True)
class SceneMessage:
    sensor_id: str
    boot: str
    seq: int
    t: float  # the decision's time, seconds since 1970 UTC
    hop: float
    label: str | None
    confidence: float | None
    level: float | None  # LAeq when the decision carries levels, else its level in dBFS
    level_reference: str | None  # "dB SPL" (a calibrated LAeq) or "dBFS"; None without a level
    silent: bool
    probabilities: dict | None
    model_name: str | None
    model_version: str | None
    classes: tuple[str, ...]
    levels: dict | None


@dataclass(frozen=True)
class LevelsMessage:
    sensor_id: str
    boot: str
    seq: int
    start: float
    end: float
    laeq: float | None
    levels: dict


@dataclass(frozen=True)
class HealthMessage:
    sensor_id: str
    boot: str
    seq: int
    t: float  # the report's timestamp, seconds since 1970 UTC
    record: dict  # the health record as the sensor sent it, checked against the record schema


@dataclass(frozen=True)
class StatusMessage:
    sensor_id: str
    status: str


Message = SceneMessage | LevelsMessage | HealthMessage | StatusMessage


def subscriptions(share: str | None = None) -> list[str]:
    """The topic filters the hub subscribes to (``$share/<group>/...`` when hubs share the work)."""
    filters = [f"{TOPIC_ROOT}/+/{kind}" for kind in KINDS]
    return [f"$share/{share}/{f}" for f in filters] if share else filters


def parse(topic: str, payload: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES, now: float | None = None) -> Message:
    """The message on ``topic``, checked; BadMessage (one line) for anything that cannot be stored.

    ``now`` (seconds since 1970, default the clock) is what the message's times are held against."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != TOPIC_ROOT or parts[2] not in KINDS:
        raise BadMessage(f"unexpected topic {records.printable(topic[:200])!r}")
    try:
        sensor_id = check_sensor_id(parts[1])
    except SoundsceneError as exc:
        raise BadMessage(str(exc)) from None
    if len(payload) > max_bytes:
        raise BadMessage(f"message of {len(payload)} bytes is over the {max_bytes}-byte limit")
    if parts[2] == "status":
        text = payload.decode("utf-8", "replace").strip()
        if text not in STATUSES:
            raise BadMessage(f"status must be online or offline, got {records.printable(text[:40])!r}")
        return StatusMessage(sensor_id, text)
    body = _json(payload)
    if body.get("sensor_id") != sensor_id:
        raise BadMessage(f"sensor_id {records.printable(str(body.get('sensor_id'))[:200])!r} does not match the "
                         f"topic's {sensor_id!r}")
    clock = time.time() if now is None else now
    if parts[2] == "health":
        return _health(body, sensor_id, clock)
    if parts[2] == "scene":
        return _scene(body, sensor_id, clock)
    return _levels(body, sensor_id, clock)


class _OutOfRange(ValueError):
    pass


def _json(payload: bytes) -> dict:
    try:
        body = json.loads(payload.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite)
    except UnicodeDecodeError:
        raise BadMessage("payload is not UTF-8") from None
    except RecursionError:
        raise BadMessage(f"payload is JSON nested deeper than {MAX_DEPTH} levels") from None
    except _OutOfRange as exc:
        raise BadMessage(str(exc)) from None
    except ValueError as exc:
        raise BadMessage(f"payload is not JSON: {str(exc).splitlines()[0][:200]}") from None
    if not isinstance(body, dict):
        raise BadMessage(f"payload must be a JSON object, got {type(body).__name__}")
    _check_tree(body)
    return body


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _OutOfRange(f"number {text[:40]} is out of range (over 1.8e308)")
    return value


def _check_tree(body: dict) -> None:
    """Nesting at most MAX_DEPTH, whole numbers within 64 bits and text that is UTF-8 (no lone surrogate, which
    PostgreSQL refuses), walked without recursion."""
    stack: list[tuple[Any, int, str]] = [(body, 1, "message")]
    while stack:
        value, depth, where = stack.pop()
        if isinstance(value, (dict, list)) and depth > MAX_DEPTH:
            raise BadMessage(f"payload is JSON nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            stack.extend((key, depth, where) for key in value)
            stack.extend((child, depth + 1, key) for key, child in value.items())
        elif isinstance(value, list):
            stack.extend((child, depth + 1, where) for child in value)
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise BadMessage(f"text {records.printable(value[:40])!r} has a lone surrogate (\\ud800-\\udfff), "
                                 "which is not Unicode") from None
        elif isinstance(value, int) and not isinstance(value, bool) and not -MAX_SEQ - 1 <= value <= MAX_SEQ:
            raise BadMessage(f"{records.printable(where[:40])}: {str(value)[:40]} is out of range (beyond a 64-bit "
                             "integer)")


def _boot(body: dict) -> str:
    boot = body.get("boot", "")
    if boot != "" and (not isinstance(boot, str) or not _BOOT.match(boot)):
        raise BadMessage(f"boot must be up to 64 letters, digits, '-' or '_', got "
                         f"{records.printable(str(boot)[:70])!r}")
    return boot


def _number(value: Any, where: str, bounds: tuple[float, float], *, positive: bool = False) -> None:
    """``value`` (None passes) checked: a finite number within ``bounds`` (above the lowest when ``positive``)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadMessage(f"{where} must be a number or null, got {records.printable(str(value)[:40])!r}")
    low, high = bounds
    if not low <= value <= high or positive and value == low:
        span = f"above {low:g} and at most {high:g}" if positive else f"from {low:g} to {high:g}"
        raise BadMessage(f"{where} must be {span}, got {str(value)[:40]}")


def _check_numbers(body: dict) -> None:
    """The numbers of a checked record within :data:`BOUNDS`, its probabilities, levels and bands."""
    for name, bounds in BOUNDS.items():
        if name in body:
            _number(body[name], name, bounds, positive=name in POSITIVE)
    for name, value in (body.get("probabilities") or {}).items():
        _text(name, "a class name")
        _number(value, f"probabilities[{records.printable(name[:40])!r}]", (0.0, 1.0))
    level_set = body.get("levels") or {}
    for key in LEVEL_NAMES:
        _number(level_set.get(key), f"levels.{key}", LEVEL_DB)
    bands = level_set.get("bands") or {}
    for band, value in (bands.items() if isinstance(bands, dict) else ()):
        _number(value, f"levels.bands[{records.printable(str(band)[:40])!r}]", LEVEL_DB)


def _text(value: Any, what: str) -> None:
    """A label or class name: text the label columns of both databases take (at most 200 characters, no control
    characters, which PostgreSQL refuses as NUL and a page would show as garbage)."""
    if not isinstance(value, str):
        raise BadMessage(f"{what} must be text, got {type(value).__name__}")
    if len(value) > MAX_LABEL_CHARS:
        raise BadMessage(f"{what} must be text of at most {MAX_LABEL_CHARS} characters, got {len(value)} characters")
    if records.printable(value) != value:
        raise BadMessage(f"{what} {records.printable(value[:60])!r} has control characters")


def _seq(body: dict) -> int:
    """``seq``, from 1 (the schema says it is a whole number; :func:`_check_tree`, that it is at most 2**63 - 1)."""
    seq = body["seq"]
    if seq < 1:
        raise BadMessage(f"seq must be at least 1, got {seq}")
    return int(seq)


@lru_cache(maxsize=None)
def _validator(kind: str):
    import jsonschema

    return jsonschema.Draft202012Validator(records.schema_of(kind))


def _validate(kind: str, body: dict) -> dict:
    """``body`` checked against the record schema of ``kind``, then its numbers against :data:`BOUNDS`."""
    error = next(iter(_validator(kind).iter_errors(body)), None)
    if error is not None:
        where = "/".join(records.printable(str(p)[:40]) for p in error.absolute_path) or "message"
        raise BadMessage(f"{kind} schema: {where}: {records.printable(error.message[:200])}")
    _check_numbers(body)
    return body


def utc_seconds(text: Any, field: str = "timestamp", now: float | None = None) -> float:
    """An ISO 8601 time with a zone (``...Z``) as seconds since 1970; BadMessage otherwise, and for a time outside
    the window around ``now`` (when given): more than a day ahead or more than 3,660 days behind."""
    if not isinstance(text, str):
        raise BadMessage(f"{field} must be an ISO 8601 UTC time, got {records.printable(str(text)[:40])!r}")
    shown = records.printable(text[:40])
    try:
        t = parse_time(text)
    except ValueError as exc:
        raise BadMessage(f"{field} {shown!r} {exc}") from None
    if now is not None and t > now + MAX_FUTURE_SECONDS:
        raise BadMessage(f"{field} {shown} is more than {MAX_FUTURE_SECONDS / 3600:g} hours ahead of the hub's "
                         "clock (check the sensor's clock)")
    if now is not None and t < now - MAX_PAST_SECONDS:
        raise BadMessage(f"{field} {shown} is more than {MAX_PAST_SECONDS / 86400:g} days behind the hub's clock "
                         "(check the sensor's clock)")
    return t


def _scene(body: dict, sensor_id: str, now: float) -> SceneMessage:
    boot = _boot(body)
    _validate("sensor_message", body)
    level_set = body.get("levels")
    seq = _seq(body)
    silent = bool(body.get("silent"))
    label = body.get("label")
    if not silent and not label:
        raise BadMessage("a decision that is not silent needs a label")
    if not silent:
        _text(label, "label")
    model = body.get("model") or {}
    probabilities = body.get("probabilities")
    laeq = (level_set or {}).get("LAeq")
    level = laeq if laeq is not None else body.get("level_dbfs")
    calibrated = laeq is not None and bool(level_set.get("calibrated"))
    return SceneMessage(
        sensor_id=sensor_id, boot=boot, seq=seq, t=utc_seconds(body["timestamp"], now=now),
        hop=float(body["hop_seconds"]), label=None if silent else label,
        confidence=None if silent else body.get("confidence"),
        level=level, level_reference=None if level is None else ("dB SPL" if calibrated else "dBFS"), silent=silent,
        probabilities=probabilities, model_name=_short(model.get("name")), model_version=_short(model.get("version")),
        classes=tuple(str(c) for c in (probabilities or {})), levels=level_set)


def _short(value: Any) -> str | None:
    return None if value is None else records.printable(str(value)[:MAX_LABEL_CHARS])[:MAX_LABEL_CHARS]


def _levels(body: dict, sensor_id: str, now: float) -> LevelsMessage:
    boot = _boot(body)
    _validate("levels_message", body)
    level_set = body["levels"]  # required by the schema, an object
    seq = _seq(body)
    start, end = utc_seconds(body["start"], "start", now), utc_seconds(body["end"], "end", now)
    if end < start:
        raise BadMessage("levels_message ends before it starts")
    if end - start > DAY:
        raise BadMessage(f"levels_message covers {end - start:g} s, more than a day")
    return LevelsMessage(sensor_id, boot, seq, start, end, level_set.get("LAeq"), level_set)


def _health(body: dict, sensor_id: str, now: float) -> HealthMessage:
    boot = _boot(body)
    record = _validate("health", body)
    seq = _seq(body)
    return HealthMessage(sensor_id, boot, seq, utc_seconds(body["timestamp"], now=now), record)


def excerpt(payload: bytes) -> bytes:
    """The first bytes of a refused payload, as kept in ``ingest_errors``."""
    return bytes(payload[:EXCERPT_BYTES])
