"""The MQTT protocol between the sensors and the hub, in one place: topics, payloads, times and level names.

What a sensor publishes (:class:`soundscene.apps.mqtt.SensorPublisher`), what ``hub simulate`` publishes and
what the hub reads (:mod:`soundscene.apps.hub.messages`) are all built from this module:

* the topics, :data:`TOPIC_ROOT` ``/<sensor id>/<kind>`` for each of :data:`KINDS` (:func:`topics`), and the
  sensor id that may be one topic level (:func:`check_sensor_id`);
* the status values :data:`ONLINE` and :data:`OFFLINE` (``soundscene/<id>/status``, retained);
* the payloads: :func:`scene_payload` (a ``sensor_message`` record), :func:`levels_payload` (a
  ``levels_message`` record) and :func:`health_payload` (a ``health`` record), as strict JSON in UTF-8
  (:func:`dumps`);
* times: :func:`utc_timestamp` writes ISO 8601 UTC with milliseconds and ``Z``; :func:`parse_datetime` and
  :func:`parse_time` read ISO 8601 back (the one parser of the project's MQTT and hub code);
* :data:`LEVEL_NAMES`: the single-number levels of a ``levels`` record (LAeq ... LCeq), as
  :data:`soundscene.core.records.CSV_LEVELS` defines them.

It imports neither paho-mqtt nor anything of the hub.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any, Mapping

from .._version import __version__
from ..core import records
from ..errors import SoundsceneError

TOPIC_ROOT = "soundscene"
ONLINE, OFFLINE = "online", "offline"
STATUSES = (ONLINE, OFFLINE)
KINDS = ("scene", "event", "status", "levels", "health")  # the last topic level of a sensor's topics
LEVEL_NAMES = records.CSV_LEVELS  # LAeq, LAFmax, LAFmin, LA10, LA50, LA90, LCeq
_SENSOR_ID_BAD = re.compile(r"[/+#\s\x00-\x1f\x7f]")
_DECISION_FIELDS = tuple(f.name for f in records.FIELDS["decision"])


def check_sensor_id(sensor_id: Any) -> str:
    """Return the sensor id if it can be one MQTT topic level, else raise a one-line SoundsceneError."""
    if not isinstance(sensor_id, str) or not sensor_id:
        raise SoundsceneError(f"sensor id must be a non-empty string, got {sensor_id!r}")
    if _SENSOR_ID_BAD.search(sensor_id):
        raise SoundsceneError(f"invalid sensor id {sensor_id!r}: it may not contain '/', '+', '#', "
                              "spaces or control characters (e.g. kitchen-1)")
    if len(sensor_id.encode("utf-8")) > 200:
        raise SoundsceneError("sensor id is too long (at most 200 bytes)")
    return sensor_id


def topics(sensor_id: str) -> dict[str, str]:
    """The sensor's topics: ``{"scene": ..., "event": ..., "status": ..., "levels": ..., "health": ...}``."""
    base = f"{TOPIC_ROOT}/{check_sensor_id(sensor_id)}"
    return {kind: f"{base}/{kind}" for kind in KINDS}


def utc_timestamp(when: datetime | None = None) -> str:
    """ISO-8601 UTC time with milliseconds and a ``Z``: ``2025-05-01T12:00:00.123Z`` (default: now)."""
    when = datetime.now(timezone.utc) if when is None else when.astimezone(timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def parse_datetime(text: str, *, assume_utc: bool = False) -> datetime:
    """An ISO 8601 time (``2025-05-01T12:00:00.123Z``, ``...+02:00``) as an aware datetime.

    A time without a zone is UTC with ``assume_utc``, else refused.  ValueError otherwise, whose text completes
    ``f"{text!r} {error}"``: ``is not an ISO 8601 time`` or ``has no time zone (end it with Z)``."""
    try:
        when = datetime.fromisoformat(text)  # Python 3.11 reads the Z
    except (TypeError, ValueError):
        raise ValueError("is not an ISO 8601 time") from None
    if when.tzinfo is None:
        if not assume_utc:
            raise ValueError("has no time zone (end it with Z)")
        when = when.replace(tzinfo=timezone.utc)
    return when


def parse_time(text: str, *, assume_utc: bool = False) -> float:
    """An ISO 8601 time as seconds since 1970 (:func:`parse_datetime`); ValueError also ``is out of range``."""
    when = parse_datetime(text, assume_utc=assume_utc)
    try:
        return when.timestamp()
    except (OverflowError, ValueError):
        raise ValueError("is out of range") from None


def scene_payload(decision: Mapping[str, Any], *, sensor_id: str, model: Mapping[str, Any],
                  window_seconds: float, hop_seconds: float, seq: int, timestamp: str,
                  boot: str | None = None) -> dict[str, Any]:
    """The ``sensor_message`` record published for one decision (on ``scene``, and on ``event`` at a change).

    Example::

        {"sensor_id": "kitchen-1", "seq": 42, "timestamp": "2025-05-01T12:00:00.123Z", "window_seconds": 10.0,
         "hop_seconds": 1.0, "model": {"name": "cnn", "version": "3"}, "soundscene_version": "0.1.0",
         "time": 12.5, "label": "park", "confidence": 0.81,
         "probabilities": {"park": 0.81, "street_traffic": 0.12, "metro": 0.07}, "changed": false,
         "previous": null, "level_dbfs": -32.1, "silent": false}

    The decision's fields (those of a ``decision`` record) are taken from ``decision``: ``confidence``
    defaults to the label's probability, ``changed`` and ``silent`` to false, ``previous`` and ``level_dbfs``
    to null.  A silent decision (a dead or muted microphone) is published with no label, confidence or
    probabilities.
    Probabilities come in the order of ``model["classes"]`` when given.  A malformed decision (not a dict,
    no label, no time, no finite confidence) raises ValueError.
    """
    if not isinstance(decision, Mapping):
        raise ValueError(f"a decision must be a dict, got {type(decision).__name__}")
    if decision.get("silent"):  # a dead or muted microphone: published, with no scene
        fields = {"changed": False, "previous": None, "time": decision.get("time"),
                  "level_dbfs": decision.get("level_dbfs"), "label": None, "confidence": None,
                  "probabilities": None, "silent": True,
                  **({"levels": decision["levels"]} if decision.get("levels") is not None else {})}
        return _sensor_message(fields, sensor_id=sensor_id, model=model, window_seconds=window_seconds,
                               hop_seconds=hop_seconds, seq=seq, timestamp=timestamp, boot=boot)
    label = decision.get("label")
    if not isinstance(label, str) or not label:
        raise ValueError(f"a decision needs a non-empty string 'label', got {label!r}")
    raw_probs = decision.get("probabilities") or {}
    if not isinstance(raw_probs, Mapping):
        raise ValueError("a decision's 'probabilities' must be a dict of label -> probability")
    classes = [str(c) for c in model.get("classes") or ()]
    order = [c for c in classes if c in raw_probs] + [c for c in raw_probs if c not in classes]
    probabilities = {c: raw_probs[c] for c in order}  # null (not finite) stays null
    confidence = decision.get("confidence", raw_probs.get(label))
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not math.isfinite(confidence):
        raise ValueError(f"a decision with a label needs a finite confidence, got {confidence!r}")
    fields = {"changed": False, "previous": None, "level_dbfs": None, "silent": False,
              **{k: decision[k] for k in _DECISION_FIELDS if k in decision},
              "confidence": confidence, "probabilities": probabilities}
    return _sensor_message(fields, sensor_id=sensor_id, model=model, window_seconds=window_seconds,
                           hop_seconds=hop_seconds, seq=seq, timestamp=timestamp, boot=boot)


def levels_payload(levels: Mapping[str, Any], *, sensor_id: str, boot: str | None, seq: int, timestamp: str,
                   start: str, end: str) -> dict[str, Any]:
    """The ``levels_message`` record of one interval: its ``start`` and ``end`` (ISO 8601 UTC) and ``levels``
    (a ``levels`` record: LAeq, LAFmax, LA10/50/90, LCeq, bands, and whether they are calibrated)."""
    return records.make("levels_message", sensor_id=sensor_id, **({"boot": boot} if boot else {}), seq=seq,
                        timestamp=timestamp, start=start, end=end, levels=dict(levels),
                        soundscene_version=__version__)


def health_payload(measured: Mapping[str, Any], *, sensor_id: str, boot: str | None, seq: int,
                   timestamp: str) -> dict[str, Any]:
    """The ``health`` record of one report: ``measured`` (its fields less the message's identity) numbered."""
    return records.make("health", sensor_id=sensor_id, **({"boot": boot} if boot else {}), seq=seq,
                        timestamp=timestamp, **measured)


def _sensor_message(fields: dict, *, sensor_id, model, window_seconds, hop_seconds, seq, timestamp,
                    boot=None) -> dict:
    if boot:
        fields = {**fields, "boot": boot}
    return records.make("sensor_message", **fields, sensor_id=sensor_id, seq=seq, timestamp=timestamp,
                        window_seconds=window_seconds, hop_seconds=hop_seconds,
                        model={"name": model.get("name"), "version": model.get("version")},
                        soundscene_version=__version__)


def dumps(payload: Mapping[str, Any]) -> bytes:
    """Strict compact JSON in UTF-8 (raises ValueError on NaN or infinity): :func:`records.dumps` as bytes."""
    return records.dumps(payload).encode("utf-8")
