"""The record schema: what every output of soundscene says, in one set of names, units and rounding.

Results live in memory as :class:`Window`, :class:`Segment`, :class:`Prediction` (one recording) and
:class:`Decision` (one hop of a live stream), holding numpy arrays.  What leaves the process — ``predict``
JSON, CSV and table, ``evaluate``'s ``predictions.csv``, ``listen`` lines, MQTT payloads, the HTTP
service's responses and OpenAPI document, and what the hub stores — is a *record*: a plain dict built by
:func:`make` from the field lists in :data:`FIELDS`, which are also the source of the JSON Schema
(:func:`json_schema`, printed by ``soundscene schema``).  A field added here is added everywhere.

One rounding rule (:data:`UNITS`): probabilities and confidences to 4 decimals, levels to 0.1 dB, times
and durations to 1 ms.  A value that is not finite (the level of digital silence) is ``null``; output is
strict JSON (:func:`dumps` never writes NaN).  Record kinds:

* ``window``, ``segment``: parts of a recording's timeline;
* ``prediction``: one recording (``error`` absent); ``error``: an input that could not be used;
* ``decision``: one streaming decision; ``sensor_message``: a decision as a sensor publishes it (the
  decision's fields plus the sensor's).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .._version import __version__
from .audio import LOW_LEVEL_DBFS

#: unit -> (JSON Schema of one value, decimals or None)
UNITS: dict[str, tuple[dict, int | None]] = {
    "probability": ({"type": "number", "minimum": 0, "maximum": 1}, 4),
    "probabilities": ({"type": "object", "additionalProperties": {"type": ["number", "null"]},
                       "description": "class -> probability, in the model's class order"}, 4),
    "decibel": ({"type": "number"}, 1),
    "seconds": ({"type": "number", "minimum": 0}, 3),
    "text": ({"type": "string"}, None),
    "boolean": ({"type": "boolean"}, None),
    "integer": ({"type": "integer"}, None),
    "object": ({"type": "object"}, None),
}


@dataclass(frozen=True)
class Field:
    """One field of a record: its name, unit (a key of UNITS, or ``list:KIND`` of nested records), meaning."""

    name: str
    unit: str
    doc: str
    required: bool = True
    nullable: bool = False


_TIMELINE = (
    Field("label", "text", "the most probable scene"),
    Field("confidence", "probability", "the label's probability"),
    Field("probabilities", "probabilities", "every class's probability"),
)
_SENSOR = (
    Field("sensor_id", "text", "the sensor's id (one MQTT topic level)"),
    Field("seq", "integer", "the sensor's message number, from 1 since it started"),
    Field("timestamp", "text", "when the decision was made: ISO 8601 UTC with milliseconds and Z"),
    Field("window_seconds", "seconds", "the analysis window"),
    Field("hop_seconds", "seconds", "the hop between decisions"),
    Field("model", "object", "the model: name and the soundscene version that trained it"),
    Field("soundscene_version", "text", "the sensor's soundscene version"),
)
_DECISION = (
    Field("time", "seconds", "seconds since the stream started, at the end of this decision's window"),
    *_TIMELINE,
    Field("changed", "boolean", "the reported scene changed at this decision (the first one counts)"),
    Field("previous", "text", "the scene reported before a change, null otherwise", nullable=True),
    Field("level_dbfs", "decibel", "RMS level of the window in dB relative to full scale", nullable=True),
)

FIELDS: dict[str, tuple[Field, ...]] = {
    "window": (Field("start", "seconds", "start of the window in the recording"),
               Field("end", "seconds", "end of the window"), *_TIMELINE),
    "segment": (Field("start", "seconds", "start of the run of one scene"),
                Field("end", "seconds", "end of the run (segments cover the recording without gaps)"),
                Field("label", "text", "the scene"),
                Field("confidence", "probability", "the scene's mean probability over the run's windows")),
    "prediction": (
        Field("path", "text", "the recording (for an upload: its sanitised name, display text only)"),
        *_TIMELINE,
        Field("level_dbfs", "decibel", "RMS level of the recording in dB relative to full scale", required=False,
              nullable=True),
        Field("duration_seconds", "seconds", "the recording's length", required=False),
        Field("warning", "text", "why the result may be unreliable (near-silent input), or null", required=False,
              nullable=True),
        Field("windows", "list:window", "one per analysis window", required=False),
        Field("segments", "list:segment", "runs of one scene covering the recording", required=False),
        Field("plot", "text", "the timeline picture written for this recording", required=False),
    ),
    "error": (Field("path", "text", "the input that could not be used"),
              Field("error", "text", "why, in one line")),
    "decision": _DECISION,
    "sensor_message": (*_SENSOR, *_DECISION),
}


def _value(unit: str, value: Any, nullable: bool, where: str) -> Any:
    if value is None:
        if nullable:
            return None
        raise ValueError(f"{where}: a value is required")
    if unit.startswith("list:"):
        kind = unit[5:]
        return [v if isinstance(v, dict) else v.to_record() for v in value] if kind else list(value)
    _, digits = UNITS[unit]
    if unit == "probabilities":
        return {str(k): None if v is None else _number(v, 4, f"{where}[{k}]", nullable=True)
                for k, v in value.items()}
    if digits is not None:
        return _number(value, digits, where, nullable)
    if unit == "text":
        return str(value)
    if unit == "boolean":
        return bool(value)
    if unit == "integer":
        return int(value)
    return dict(value)


def _number(value: Any, digits: int, where: str, nullable: bool) -> float | None:
    if isinstance(value, bool):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a number, got {value!r}") from None
    if math.isfinite(number):
        return round(number, digits)
    if nullable:
        return None
    raise ValueError(f"{where}: {number} is not finite")


def make(kind: str, **values: Any) -> dict[str, Any]:
    """The record of ``kind`` from ``values`` (numpy numbers and arrays welcome), in schema order, rounded.

    Unknown names and missing required fields raise ValueError: a record never carries a field the schema
    does not describe."""
    fields = FIELDS[kind]
    unknown = set(values) - {f.name for f in fields}
    if unknown:
        raise ValueError(f"{kind} record has no field {sorted(unknown)}")
    out: dict[str, Any] = {}
    for f in fields:
        if f.name not in values:
            if f.required:
                raise ValueError(f"{kind} record needs {f.name!r}")
            continue
        out[f.name] = _value(f.unit, values[f.name], f.nullable, f"{kind}.{f.name}")
    return out


def named(classes: Sequence[str], probabilities: Sequence[float]) -> dict[str, float]:
    """``{class: probability}`` in the model's class order."""
    return {str(c): float(p) for c, p in zip(classes, probabilities)}


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of every record kind, generated from :data:`FIELDS`."""
    defs = {}
    for kind, fields in FIELDS.items():
        props = {}
        for f in fields:
            if f.unit.startswith("list:"):
                schema: dict[str, Any] = {"type": "array", "items": {"$ref": f"#/$defs/{f.unit[5:]}"}}
            else:
                schema = dict(UNITS[f.unit][0])
                if f.nullable:
                    schema["type"] = [schema["type"], "null"]
            schema["description"] = f.doc
            props[f.name] = schema
        defs[kind] = {"type": "object", "properties": props, "required": [f.name for f in fields if f.required],
                      "additionalProperties": False}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://soundscene.invalid/schema/{__version__}/records.json",
            "title": "soundscene records", "$defs": defs}


def schema_of(kind: str) -> dict[str, Any]:
    """A self-contained JSON Schema of one record kind (its ``$defs`` included), e.g. for OpenAPI."""
    full = json_schema()
    return {**full["$defs"][kind], "$defs": full["$defs"]}


def dumps(record: Any, *, indent: int | None = None) -> str:
    """Strict JSON text (ValueError on NaN or infinity; UTF-8 characters kept)."""
    separators = None if indent else (",", ":")
    return json.dumps(record, allow_nan=False, ensure_ascii=False, indent=indent, separators=separators)


# ---- tabular forms of prediction and error records --------------------------------------------------------

def csv_text(records: Iterable[Mapping[str, Any]], classes: Sequence[str], *,
             truth: Sequence[str] | None = None) -> str:
    """CSV of prediction/error records: ``path,[true_label,]label,confidence,<classes>,level_dbfs,error``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", *(["true_label"] if truth is not None else []), "label", "confidence", *classes,
                     "level_dbfs", "error"])
    for k, r in enumerate(records):
        good = "error" not in r
        probs = [_csv_number(r["probabilities"].get(c)) for c in classes] if good else [""] * len(classes)
        writer.writerow([r["path"], *([truth[k]] if truth is not None else []), r.get("label", ""),
                         _csv_number(r.get("confidence")), *probs, _csv_number(r.get("level_dbfs")),
                         r.get("error", "")])
    return buf.getvalue()


def _csv_number(value: Any) -> str:
    return "" if value is None else repr(value)


def table_lines(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """One aligned line per prediction record: path, label, confidence, level, number of segments."""
    good = [r for r in records if "error" not in r]
    width = max([len(r["path"]) for r in good] or [0])
    lines = []
    for r in good:
        level = r.get("level_dbfs")
        level_text = f"{level:7.1f} dBFS" if level is not None else "     - dBFS"
        segments = len(r.get("segments", ()))
        timeline = f"  {segments} scene segments" if segments > 1 else ""
        lines.append(f"{r['path']:<{width}}  {r['label']:<20} {r['confidence']:6.1%}  {level_text}{timeline}")
    return lines


# ---- results in memory ---------------------------------------------------------------------------------

@dataclass
class Window:
    """One analysis window: start and end in seconds, class probabilities ``(n_classes,)``."""

    start: float
    end: float
    probabilities: np.ndarray

    def to_record(self, classes: Sequence[str]) -> dict[str, Any]:
        top = int(np.argmax(self.probabilities))
        return make("window", start=self.start, end=self.end, label=classes[top],
                    confidence=self.probabilities[top], probabilities=named(classes, self.probabilities))


@dataclass
class Segment:
    """A run of consecutive windows with the same top class, from start to end seconds."""

    start: float
    end: float
    label: str
    confidence: float

    def to_record(self) -> dict[str, Any]:
        return make("segment", start=self.start, end=self.end, label=self.label, confidence=self.confidence)


@dataclass
class Prediction:
    """A recording's result: probabilities (mean over windows), its windows and level, or the error."""

    path: str
    classes: list[str]
    probabilities: np.ndarray | None
    windows: list[Window] = field(default_factory=list)
    duration_seconds: float = 0.0
    level_dbfs: float | None = None
    error: str | None = None
    overview: np.ndarray | None = None  # (rows, columns) coarse spectrogram for plots, when asked for

    @property
    def label(self) -> str | None:
        return None if self.probabilities is None else self.classes[int(np.argmax(self.probabilities))]

    @property
    def confidence(self) -> float | None:
        return None if self.probabilities is None else float(np.max(self.probabilities))

    @property
    def warning(self) -> str | None:
        """Why the prediction may be unreliable (near-silent input), or None."""
        if self.level_dbfs is not None and self.level_dbfs < LOW_LEVEL_DBFS:
            return (f"near-silent: level {self.level_dbfs:.1f} dBFS is below {LOW_LEVEL_DBFS:g} dBFS; "
                    "the prediction is unreliable")
        return None

    def segments(self) -> list[Segment]:
        """Merged runs of windows by top class, covering 0..duration without gaps."""
        from .timeline import merge_segments

        return merge_segments(self.windows, self.classes, self.duration_seconds)

    def to_record(self) -> dict[str, Any]:
        """The ``prediction`` record (or the ``error`` record): JSON-safe, rounded by the schema's rule."""
        if self.error is not None:
            return make("error", path=self.path, error=self.error)
        return make("prediction", path=self.path, label=self.label, confidence=self.confidence,
                    probabilities=named(self.classes, self.probabilities), level_dbfs=self.level_dbfs,
                    duration_seconds=self.duration_seconds, warning=self.warning,
                    windows=[w.to_record(self.classes) for w in self.windows],
                    segments=[s.to_record() for s in self.segments()])


@dataclass
class Decision:
    """One streaming decision, made at ``time`` seconds (the end of its window).

    probabilities: this window's own; smoothed: after the moving average; label /
    confidence: the reported scene (changes only with hysteresis); changed: the
    reported scene changed at this decision (the first decision counts as a change).
    """

    time: float
    label: str
    confidence: float
    probabilities: np.ndarray
    smoothed: np.ndarray
    changed: bool
    previous: str | None
    level_dbfs: float

    def to_record(self, classes: Sequence[str]) -> dict[str, Any]:
        """The ``decision`` record; its probabilities are the smoothed ones that chose the label."""
        return make("decision", time=self.time, label=self.label, confidence=self.confidence,
                    probabilities=named(classes, self.smoothed), changed=self.changed, previous=self.previous,
                    level_dbfs=self.level_dbfs)
