"""What the sensors say, checked: MQTT topic + payload -> a :class:`SceneMessage`, :class:`LevelsMessage`,
:class:`HealthMessage` or :class:`StatusMessage`, or :class:`BadMessage` naming the reason in one line.

The topics are those of :mod:`soundscene.apps.mqtt`: ``soundscene/<id>/scene`` (a ``sensor_message``
record), ``soundscene/<id>/levels`` (a ``levels_message`` record), ``soundscene/<id>/health`` (a ``health``
record, numbered by the same ``boot`` and ``seq`` as the other two) and ``soundscene/<id>/status``
(``online`` / ``offline``).  Payloads are validated with the project's record schema
(:func:`soundscene.core.records.schema_of`), so the hub accepts exactly what the sensors are documented to
send.  Until the record schema describes the levels contract's ``boot`` and ``levels`` fields, they are
checked here and taken off before validation; a message without ``boot`` has boot ``""``.

:func:`parse` is a pure function (no database, no MQTT): a later ``hub import`` of batch results can build
the same messages and hand them to :func:`soundscene.apps.hub.writer.store_batch`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from ...core import records
from ...errors import SoundsceneError
from ..mqtt import TOPIC_ROOT, check_sensor_id

MAX_MESSAGE_BYTES = 65536  # a sensor_message with 50 classes is about 2 kB
EXCERPT_BYTES = 512  # of a refused payload, kept in ingest_errors
STATUSES = ("online", "offline")
KINDS = ("scene", "levels", "health", "status")  # the last topic level of what the hub subscribes to
_BOOT = re.compile(r"^[0-9A-Za-z_-]{1,64}$")
_CONTRACT_FIELDS = ("boot", "levels")  # the levels contract (issue 14); validated here until the schema has them


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


def parse(topic: str, payload: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    """The message on ``topic``, checked; BadMessage (one line) for anything that cannot be stored."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != TOPIC_ROOT or parts[2] not in KINDS:
        raise BadMessage(f"unexpected topic {records.printable(topic)!r}")
    try:
        sensor_id = check_sensor_id(parts[1])
    except SoundsceneError as exc:
        raise BadMessage(str(exc)) from None
    if len(payload) > max_bytes:
        raise BadMessage(f"message of {len(payload)} bytes is over the {max_bytes}-byte limit")
    if parts[2] == "status":
        text = payload.decode("utf-8", "replace").strip()
        if text not in STATUSES:
            raise BadMessage(f"status must be online or offline, got {text[:40]!r}")
        return StatusMessage(sensor_id, text)
    body = _json(payload)
    if body.get("sensor_id") != sensor_id:
        raise BadMessage(f"sensor_id {records.printable(body.get('sensor_id'))!r} does not match the topic's "
                         f"{sensor_id!r}")
    if parts[2] == "health":
        return _health(body, sensor_id)
    boot, level_set = _contract(body)
    if parts[2] == "scene":
        return _scene(body, sensor_id, boot, level_set)
    return _levels(body, sensor_id, boot, level_set)


def _json(payload: bytes) -> dict:
    try:
        body = json.loads(payload.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise BadMessage("payload is not UTF-8") from None
    except ValueError as exc:
        raise BadMessage(f"payload is not JSON: {str(exc).splitlines()[0]}") from None
    if not isinstance(body, dict):
        raise BadMessage(f"payload must be a JSON object, got {type(body).__name__}")
    return body


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _boot(body: dict) -> str:
    boot = body.get("boot", "")
    if boot != "" and (not isinstance(boot, str) or not _BOOT.match(boot)):
        raise BadMessage(f"boot must be up to 64 letters, digits, '-' or '_', got {str(boot)[:70]!r}")
    return boot


def _contract(body: dict) -> tuple[str, dict | None]:
    boot = _boot(body)
    level_set = body.get("levels")
    if level_set is not None:
        if not isinstance(level_set, dict):
            raise BadMessage("levels must be an object or null")
        for key in ("LAeq", "LAFmax", "LAFmin", "LA10", "LA50", "LA90", "LCeq"):
            value = level_set.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise BadMessage(f"levels.{key} must be a number or null, got {str(value)[:40]!r}")
    return boot, level_set


@lru_cache(maxsize=None)
def _validator(kind: str):
    import jsonschema

    schema = records.schema_of(kind)
    return jsonschema.Draft202012Validator(schema), set(schema["properties"])


def _validate(kind: str, body: dict) -> dict:
    """``body`` checked against the record schema of ``kind`` (less contract fields the kind does not have)."""
    validator, known = _validator(kind)
    checked = {k: v for k, v in body.items() if k in known or k not in _CONTRACT_FIELDS}
    error = next(iter(validator.iter_errors(checked)), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "message"
        raise BadMessage(f"{kind} schema: {where}: {error.message[:200]}")
    return checked


def utc_seconds(text: Any, field: str = "timestamp") -> float:
    """An ISO 8601 time with a zone (``...Z``) as seconds since 1970; BadMessage otherwise."""
    if not isinstance(text, str):
        raise BadMessage(f"{field} must be an ISO 8601 UTC time, got {str(text)[:40]!r}")
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadMessage(f"{field} {text[:40]!r} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        raise BadMessage(f"{field} {text[:40]!r} has no time zone (end it with Z)")
    return when.timestamp()


def _scene(body: dict, sensor_id: str, boot: str, level_set: dict | None) -> SceneMessage:
    _validate("sensor_message", body)
    if body["seq"] < 1:
        raise BadMessage(f"seq must be at least 1, got {body['seq']}")
    silent = bool(body.get("silent"))
    label = body.get("label")
    if not silent and not label:
        raise BadMessage("a decision that is not silent needs a label")
    model = body.get("model") or {}
    probabilities = body.get("probabilities")
    laeq = (level_set or {}).get("LAeq")
    level = laeq if laeq is not None else body.get("level_dbfs")
    calibrated = laeq is not None and bool(level_set.get("calibrated"))
    return SceneMessage(
        sensor_id=sensor_id, boot=boot, seq=int(body["seq"]), t=utc_seconds(body["timestamp"]),
        hop=float(body["hop_seconds"]), label=None if silent else label,
        confidence=None if silent else body.get("confidence"),
        level=level, level_reference=None if level is None else ("dB SPL" if calibrated else "dBFS"), silent=silent,
        probabilities=probabilities, model_name=_short(model.get("name")), model_version=_short(model.get("version")),
        classes=tuple(str(c) for c in (probabilities or {})), levels=level_set)


def _short(value: Any) -> str | None:
    return None if value is None else str(value)[:200]


def _levels(body: dict, sensor_id: str, boot: str, level_set: dict | None) -> LevelsMessage:
    if "levels_message" in records.FIELDS:
        _validate("levels_message", body)
    else:  # until the record kind lands: the contract's fields, checked by hand
        for key in ("seq", "start", "end"):
            if key not in body:
                raise BadMessage(f"levels_message needs {key!r}")
        if isinstance(body["seq"], bool) or not isinstance(body["seq"], int):
            raise BadMessage(f"levels_message schema: seq: {str(body['seq'])[:40]!r} is not an integer")
    if level_set is None:
        raise BadMessage("levels_message needs its levels object")
    if body["seq"] < 1:
        raise BadMessage(f"seq must be at least 1, got {body['seq']}")
    start, end = utc_seconds(body["start"], "start"), utc_seconds(body["end"], "end")
    if end < start:
        raise BadMessage("levels_message ends before it starts")
    return LevelsMessage(sensor_id, boot, int(body["seq"]), start, end, level_set.get("LAeq"), level_set)


def _health(body: dict, sensor_id: str) -> HealthMessage:
    boot = _boot(body)
    record = _validate("health", body)
    if body["seq"] < 1:
        raise BadMessage(f"seq must be at least 1, got {body['seq']}")
    return HealthMessage(sensor_id, boot, int(body["seq"]), utc_seconds(body["timestamp"]), record)


def excerpt(payload: bytes) -> bytes:
    """The first bytes of a refused payload, as kept in ``ingest_errors``."""
    return bytes(payload[:EXCERPT_BYTES])
