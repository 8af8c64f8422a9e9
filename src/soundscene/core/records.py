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
  decision's fields plus the sensor's);
* ``health``: a sensor's periodic report on itself (process, spool, connection, input signal, board).

A sensor's health has units of its own: CPU in percent of one core and memory in MiB to 0.1, a share of
samples to 6 decimals and a DC offset (full scale 1) to 6 decimals (a few clipped samples in a minute still
show), temperatures to 0.1 degC.
"""

from __future__ import annotations

import csv
import io
import json
import math
import unicodedata
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
    "decibels": ({"type": "object", "additionalProperties": {"type": ["number", "null"]},
                  "description": "third-octave band (nominal centre in Hz) -> Leq in dB"}, 1),
    "count": ({"type": "integer", "minimum": 0}, None),
    "percent": ({"type": "number", "minimum": 0}, 1),
    "mebibytes": ({"type": "number", "minimum": 0}, 1),
    "fraction": ({"type": "number", "minimum": 0, "maximum": 1}, 6),
    "amplitude": ({"type": "number"}, 6),  # full scale is 1
    "celsius": ({"type": "number"}, 1),
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
    Field("label", "text", "the most probable scene; null for silence", nullable=True),
    Field("confidence", "probability", "the label's probability; null for silence", nullable=True),
    Field("probabilities", "probabilities", "every class's probability; null for silence", nullable=True),
)
_SILENT = Field("silent", "boolean", "below the silence threshold (measured around the mean, so a DC offset is "
                "silence too): no scene is reported")
_LEVELS = Field("levels", "record:levels", "sound levels measured on the audio as recorded (see the levels record); "
                "absent when not measured", required=False, nullable=True)
_SENSOR = (
    Field("sensor_id", "text", "the sensor's id (one MQTT topic level)"),
    Field("boot", "text", "the sensor's per-boot id (32 hex digits); with seq, what identifies a message",
          required=False),
    Field("seq", "integer", "the sensor's message number, from 1 since it started (one count for all its topics)"),
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
    _LEVELS,
    _SILENT,
)
_DB = "dB (SPL re 20 uPa when calibrated, else relative to full scale); null where there was no sound"
_LEVEL_FIELDS = (
    Field("calibrated", "boolean", "true: levels are dB SPL (the sensor's --calibration-db); false: dB re full "
          "scale, not sound pressure levels"),
    Field("reference", "text", '"dB SPL" or "dBFS": what the levels are relative to'),
    Field("LAeq", "decibel", f"A-weighted equivalent level, {_DB}", nullable=True),
    Field("LAFmax", "decibel", f"maximum A-weighted, F time-weighted level, {_DB}", nullable=True),
    Field("LAFmin", "decibel", f"minimum A-weighted, F time-weighted level, {_DB}", nullable=True),
    Field("LA10", "decibel", f"A-weighted F level exceeded 10 % of the time, {_DB}", nullable=True),
    Field("LA50", "decibel", f"A-weighted F level exceeded 50 % of the time, {_DB}", nullable=True),
    Field("LA90", "decibel", f"A-weighted F level exceeded 90 % of the time, {_DB}", nullable=True),
    Field("LCeq", "decibel", f"C-weighted equivalent level, {_DB}", nullable=True),
    Field("bands", "decibels", "third-octave band Leq from 25 Hz to the highest band below the input's Nyquist "
          "frequency: nominal centre in Hz -> dB"),
)

_HEALTH = (
    _SENSOR[0], _SENSOR[1], _SENSOR[2],
    Field("timestamp", "text", "when the report was made, at the end of its interval: ISO 8601 UTC with "
          "milliseconds and Z"),
    Field("interval_seconds", "seconds", "wall-clock seconds since the previous report (or the start): what "
          "cpu_percent and the input fields cover"),
    Field("audio_seconds", "seconds", "seconds of input audio received in the interval; well below "
          "interval_seconds when input was lost; null when the input rate is unknown", nullable=True),
    Field("uptime_seconds", "seconds", "seconds since the sensor process started"),
    Field("cpu_percent", "percent", "CPU time of the sensor process (all its threads) over the interval, in "
          "percent of one core (above 100 on several cores)", nullable=True),
    Field("memory_mb", "mebibytes", "resident memory of the sensor process now, MiB (VmRSS)", nullable=True),
    Field("memory_peak_mb", "mebibytes", "the most resident memory since the process started, MiB (VmHWM)",
          nullable=True),
    Field("spool_messages", "count", "messages waiting to be sent (in the spool, else in the MQTT queue); "
          "null without either", nullable=True),
    Field("spool_bytes", "count", "bytes the waiting messages take in the spool; null without a spool",
          nullable=True),
    Field("dropped_messages", "count", "messages dropped since the start (a full queue or spool drops the "
          "oldest); a counter", nullable=True),
    Field("refused_messages", "count", "messages the broker refused since the start; a counter", nullable=True),
    Field("disk_free_mb", "mebibytes", "free disk space where the spool lives, MiB; null without a spool",
          nullable=True),
    Field("input_level_dbfs", "decibel", "RMS level of the input over the interval, dB re full scale (all "
          "channels); null for digital silence or no input", nullable=True),
    Field("clipping_fraction", "fraction", "share of the interval's samples at full scale (|x| >= 0.999); "
          "null without input", nullable=True),
    Field("dc_offset", "amplitude", "mean of the interval's samples (full scale 1); null without input",
          nullable=True),
    Field("dead_input", "boolean", "true when every channel was digitally constant (silence or a fixed value) "
          "for the whole interval: a dead microphone or cable; null without input", nullable=True),
    Field("model", "object", "the model: name, version (the soundscene version that trained it) and sha256 (of "
          "the model file, 64 hex digits, or null)"),
    Field("soundscene_version", "text", "the sensor's soundscene version"),
    Field("temperature_c", "celsius", "the board's highest thermal zone, degC; null where there is none",
          nullable=True),
    Field("connected", "boolean", "connected to the MQTT broker now; null without MQTT", nullable=True),
    Field("last_error", "text", "the last connection or send problem, null when there is none", nullable=True),
)

FIELDS: dict[str, tuple[Field, ...]] = {
    "window": (Field("start", "seconds", "start of the window in the recording"),
               Field("end", "seconds", "end of the window"), *_TIMELINE,
               Field("level_dbfs", "decibel", "RMS level of the window in dB relative to full scale",
                     nullable=True),
               _LEVELS,
               _SILENT),
    "segment": (Field("start", "seconds", "start of the run of one scene (or of silence)"),
                Field("end", "seconds", "end of the run (segments cover the recording without gaps)"),
                Field("label", "text", "the scene; null for a run of silent windows", nullable=True),
                Field("confidence", "probability", "the scene's mean probability over the run's windows",
                      nullable=True),
                _SILENT),
    "prediction": (
        Field("path", "text", "the recording (for an upload: its sanitised name, display text only)"),
        *_TIMELINE,
        Field("level_dbfs", "decibel", "RMS level of the recording in dB relative to full scale", required=False,
              nullable=True),
        Field("duration_seconds", "seconds", "the recording's length", required=False),
        _LEVELS,
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
    "levels": _LEVEL_FIELDS,
    "day_levels": (
        Field("date", "text", "the local day (ISO 8601 date); its night is the one that starts on it"),
        Field("Lday", "decibel", f"the day period's LAeq, {_DB}", nullable=True),
        Field("Levening", "decibel", f"the evening period's LAeq, {_DB}", nullable=True),
        Field("Lnight", "decibel", f"the night period's LAeq, {_DB}", nullable=True),
        Field("Lden", "decibel", "day-evening-night level (ISO 1996-1, EU Directive 2002/49/EC; +5 dB evening, "
              "+10 dB night); null unless every period has data", nullable=True),
        Field("coverage", "object", "period -> share of its time that had a level (0..1)"),
    ),
    "levels_message": (
        _SENSOR[0], _SENSOR[1], _SENSOR[2], _SENSOR[3],
        Field("start", "text", "start of the interval: ISO 8601 UTC with milliseconds and Z"),
        Field("end", "text", "end of the interval: ISO 8601 UTC with milliseconds and Z"),
        Field("levels", "record:levels", "the levels over the interval"),
        Field("soundscene_version", "text", "the sensor's soundscene version"),
    ),
    "health": _HEALTH,
}


def _value(unit: str, value: Any, nullable: bool, where: str) -> Any:
    if value is None:
        if nullable:
            return None
        raise ValueError(f"{where}: a value is required")
    if unit.startswith("list:"):
        kind = unit[5:]
        return [v if isinstance(v, dict) else v.to_record() for v in value] if kind else list(value)
    if unit.startswith("record:"):
        return value if isinstance(value, dict) else value.to_record()
    _, digits = UNITS[unit]
    if unit == "decibels":
        return {str(k): None if v is None else _number(v, 1, f"{where}[{k}]", nullable=True)
                for k, v in value.items()}
    if unit == "probabilities":
        return {str(k): None if v is None else _number(v, 4, f"{where}[{k}]", nullable=True)
                for k, v in value.items()}
    if digits is not None:
        return _number(value, digits, where, nullable)
    if unit == "text":
        return printable(value)
    if unit == "boolean":
        return bool(value)
    if unit == "integer":
        return int(value)
    if unit == "count":
        return _count(value, where)
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


def _count(value: Any, where: str) -> int:
    """A whole number >= 0 (a count); a bool, a fraction or a negative number is a ValueError."""
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{where}: expected a count (a whole number >= 0), got {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{where}: expected a count (a whole number >= 0), got {value!r}") from None
    if number < 0:
        raise ValueError(f"{where}: expected a count (a whole number >= 0), got {value!r}")
    return number


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
            elif f.unit.startswith("record:"):
                ref = {"$ref": f"#/$defs/{f.unit[7:]}"}
                schema = {"anyOf": [ref, {"type": "null"}]} if f.nullable else ref
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


# ---- text that is safe to print ------------------------------------------------------------------------

_ESCAPED_CATEGORIES = ("Cc", "Cf", "Zl", "Zp", "Cs")  # control, format (bidi overrides), line breaks, surrogates


def printable(text: Any) -> str:
    """``text`` as one safe line: bytes of a file name that are not UTF-8 (surrogate escapes) become ``\\xNN``,
    control and formatting characters (newlines, escapes, bidi overrides) become their escapes, so a name can
    neither split nor forge an ``error:`` line nor move the terminal's cursor."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(_escaped(ch) if unicodedata.category(ch) in _ESCAPED_CATEGORIES else ch for ch in text)


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` for entry points (the CLI, a batch worker process): a SoundsceneWarning is one
    ``warning:`` line on stderr, its names escaped; other warnings keep Python's format."""
    import sys
    import warnings

    from ..errors import SoundsceneWarning

    if issubclass(category, SoundsceneWarning):
        print(f"warning: {printable(message)}", file=sys.stderr)
    else:
        print(warnings.formatwarning(message, category, filename, lineno, line), file=sys.stderr, end="")


def _escaped(ch: str) -> str:
    if 0xDC80 <= ord(ch) <= 0xDCFF:  # a byte of a file name that is not UTF-8 (Python's surrogate escape)
        return f"\\x{ord(ch) - 0xDC00:02x}"
    return ch.encode("unicode_escape", "backslashreplace").decode("ascii")


# ---- tabular forms of prediction and error records --------------------------------------------------------

CSV_LEVELS = ("LAeq", "LAFmax", "LAFmin", "LA10", "LA50", "LA90", "LCeq")


def csv_header(classes: Sequence[str], *, truth: bool = False) -> list[str]:
    """``path,[true_label,]label,confidence,<classes>,level_dbfs,LAeq,...,LCeq,levels_reference,error``
    (``levels_reference``: ``dB SPL`` or ``dBFS``, empty when levels were not measured; the bands are in JSON)."""
    return ["path", *(["true_label"] if truth else []), "label", "confidence", *classes, "level_dbfs",
            *CSV_LEVELS, "levels_reference", "error"]


def csv_row(record: Mapping[str, Any], classes: Sequence[str], *, truth: str | None = None) -> list[str]:
    """One prediction or error record as a CSV row of :func:`csv_header`'s columns."""
    known = record.get("probabilities") or {}
    probs = [_csv_number(known.get(c)) for c in classes]
    levels = record.get("levels") or {}
    return [record["path"], *([truth] if truth is not None else []), record.get("label", ""),
            _csv_number(record.get("confidence")), *probs, _csv_number(record.get("level_dbfs")),
            *[_csv_number(levels.get(name)) for name in CSV_LEVELS], levels.get("reference", ""),
            record.get("error", "")]


def csv_text(records: Iterable[Mapping[str, Any]], classes: Sequence[str], *,
             truth: Sequence[str] | None = None) -> str:
    """CSV of prediction/error records, with a ``true_label`` column when ``truth`` is given."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(csv_header(classes, truth=truth is not None))
    for k, r in enumerate(records):
        writer.writerow(csv_row(r, classes, truth=truth[k] if truth is not None else None))
    return buf.getvalue()


def _csv_number(value: Any) -> str:
    return "" if value is None else repr(value)


def table_header(*, width: int = 0, levels: bool = True) -> str:
    """The table's header line: which level is which (the RMS level is unweighted, re full scale; LAeq is
    A-weighted, in dB SPL when the microphone is calibrated)."""
    laeq = "  LAeq (A-weighted)" if levels else ""
    return f"{'path':<{width}}  {'scene':<20} {'conf.':>6}  {'RMS, unweighted':>15}{laeq}"


def table_line(record: Mapping[str, Any], *, width: int = 0) -> str:
    """A prediction record as one aligned line: path, label, confidence, level, LAeq (when measured), number
    of segments."""
    level = record.get("level_dbfs")
    level_text = f"{level:10.1f} dBFS" if level is not None else "         - dBFS"
    laeq = (record.get("levels") or {}).get("LAeq")
    if laeq is not None:
        unit = "dB SPL" if record["levels"].get("calibrated") else "dBFS"
        level_text += f"  {laeq:6.1f} {unit}"
    segments = len(record.get("segments", ()))
    timeline = f"  {segments} scene segments" if segments > 1 else ""
    label = record["label"] if record["label"] is not None else "(silence)"
    confidence = f"{record['confidence']:6.1%}" if record["confidence"] is not None else "     -"
    return f"{record['path']:<{width}}  {label:<20} {confidence}  {level_text}{timeline}"


def table_lines(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """The prediction records (not the errors) as aligned lines."""
    good = [r for r in records if "error" not in r]
    width = max([len(r["path"]) for r in good] or [0])
    return [table_line(r, width=width) for r in good]


FORMATS = ("table", "csv", "json", "jsonl")


class RecordWriter:
    """Writes prediction and error records to a text stream as each is made, flushed per record, so an
    interrupted run keeps what it finished: ``json`` (an array, closed by :meth:`close` also after an
    interruption), ``jsonl`` (a line per record), ``csv`` (a row per record, errors included) or ``table``
    (a line per prediction; errors are for the caller to report).  ``width``: the table's path column."""

    def __init__(self, out, fmt: str, classes: Sequence[str], *, width: int = 0):
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        self.out, self.fmt, self.classes, self.width = out, fmt, list(classes), width
        self.count = 0
        self._header_written = False
        self._csv = csv.writer(out, lineterminator="\n") if fmt == "csv" else None

    def write(self, record: Mapping[str, Any]) -> None:
        if self.fmt == "json":
            text = dumps(record, indent=2)
            self.out.write(("[\n" if self.count == 0 else ",\n") + "\n".join("  " + s for s in text.splitlines()))
        elif self.fmt == "jsonl":
            self.out.write(dumps(record) + "\n")
        elif self.fmt == "csv":
            if self.count == 0:
                self._csv.writerow(csv_header(self.classes))
            self._csv.writerow(csv_row(record, self.classes))
        elif "error" not in record:
            if not self._header_written:
                self.out.write(table_header(width=self.width, levels=record.get("levels") is not None) + "\n")
                self._header_written = True
            self.out.write(table_line(record, width=self.width) + "\n")
        self.count += 1
        self.out.flush()

    def close(self) -> None:
        """Finish the output (the json array's closing bracket; a csv header when nothing was written)."""
        if self.fmt == "json":
            self.out.write("\n]\n" if self.count else "[]\n")
        elif self.fmt == "csv" and self.count == 0:
            self._csv.writerow(csv_header(self.classes))
        self.out.flush()


# ---- results in memory ---------------------------------------------------------------------------------

@dataclass
class Window:
    """One analysis window: start and end in seconds, class probabilities ``(n_classes,)`` (None when the
    window is silent: below the silence threshold, it is not classified), its level in dBFS."""

    start: float
    end: float
    probabilities: np.ndarray | None
    level_dbfs: float | None = None
    levels: Any = None  # core.levels.Levels, when measured

    @property
    def silent(self) -> bool:
        return self.probabilities is None

    def to_record(self, classes: Sequence[str]) -> dict[str, Any]:
        extra = _levels(self.levels)
        if self.silent:
            return make("window", start=self.start, end=self.end, label=None, confidence=None, probabilities=None,
                        level_dbfs=self.level_dbfs, silent=True, **extra)
        top = int(np.argmax(self.probabilities))
        return make("window", start=self.start, end=self.end, label=classes[top],
                    confidence=self.probabilities[top], probabilities=named(classes, self.probabilities),
                    level_dbfs=self.level_dbfs, silent=False, **extra)


def _levels(levels: Any) -> dict[str, Any]:
    """``{"levels": record}`` when levels were measured, else nothing (the field is optional)."""
    return {} if levels is None else {"levels": levels.to_record()}


@dataclass
class Segment:
    """A run of consecutive windows with the same top class (label None: a run of silent windows)."""

    start: float
    end: float
    label: str | None
    confidence: float | None

    @property
    def silent(self) -> bool:
        return self.label is None

    def to_record(self) -> dict[str, Any]:
        return make("segment", start=self.start, end=self.end, label=self.label, confidence=self.confidence,
                    silent=self.silent)


@dataclass
class Prediction:
    """A recording's result: probabilities (mean over its windows that are not silent; None when every window
    is silent, or with ``error``), its windows and level, or the error."""

    path: str
    classes: list[str]
    probabilities: np.ndarray | None
    windows: list[Window] = field(default_factory=list)
    duration_seconds: float = 0.0
    level_dbfs: float | None = None
    error: str | None = None
    overview: np.ndarray | None = None  # (rows, columns) coarse spectrogram for plots, when asked for
    silence_dbfs: float = LOW_LEVEL_DBFS  # the threshold its windows were held against
    levels: Any = None  # core.levels.Levels of the whole recording, when measured

    @property
    def label(self) -> str | None:
        return None if self.probabilities is None else self.classes[int(np.argmax(self.probabilities))]

    @property
    def confidence(self) -> float | None:
        return None if self.probabilities is None else float(np.max(self.probabilities))

    @property
    def warning(self) -> str | None:
        """Why the prediction may be unreliable or is missing (silence), or None."""
        silent = sum(w.silent for w in self.windows)
        if self.windows and silent == len(self.windows):
            return (f"silent: every window is below {self.silence_dbfs:g} dBFS (level {self.level_dbfs:.1f} "
                    "dBFS); no scene is reported")
        if silent:
            return (f"{silent} of {len(self.windows)} windows are silent (below {self.silence_dbfs:g} dBFS) and "
                    "are left out of the result")
        if self.level_dbfs is not None and self.level_dbfs < LOW_LEVEL_DBFS:
            return (f"near-silent: level {self.level_dbfs:.1f} dBFS is below {LOW_LEVEL_DBFS:g} dBFS; "
                    "the prediction is unreliable")
        return None

    def segments(self) -> list[Segment]:
        """Merged runs of windows by top class (and of silent windows), covering 0..duration without gaps."""
        return merge_segments(self.windows, self.classes, self.duration_seconds)

    def to_record(self) -> dict[str, Any]:
        """The ``prediction`` record (or the ``error`` record): JSON-safe, rounded by the schema's rule."""
        if self.error is not None:
            return make("error", path=self.path, error=self.error)
        probabilities = None if self.probabilities is None else named(self.classes, self.probabilities)
        return make("prediction", path=self.path, label=self.label, confidence=self.confidence,
                    probabilities=probabilities, level_dbfs=self.level_dbfs,
                    duration_seconds=self.duration_seconds, **_levels(self.levels), warning=self.warning,
                    windows=[w.to_record(self.classes) for w in self.windows],
                    segments=[s.to_record() for s in self.segments()])


@dataclass
class Decision:
    """One streaming decision, made at ``time`` seconds (the end of its window).

    probabilities: this window's own; smoothed: after the moving average; label /
    confidence: the reported scene (changes only with hysteresis); changed: the
    reported scene changed at this decision (the first decision counts as a change).
    A silent window (below the silence threshold: a dead or muted microphone) gives a silent decision:
    no label, confidence or probabilities, and the reported scene is left as it was.
    """

    time: float
    label: str | None
    confidence: float | None
    probabilities: np.ndarray | None
    smoothed: np.ndarray | None
    changed: bool
    previous: str | None
    level_dbfs: float
    silent: bool = False
    levels: Any = None  # core.levels.Levels of the window, when measured

    def to_record(self, classes: Sequence[str]) -> dict[str, Any]:
        """The ``decision`` record; its probabilities are the smoothed ones that chose the label."""
        smoothed = None if self.smoothed is None else named(classes, self.smoothed)
        return make("decision", time=self.time, label=self.label, confidence=self.confidence,
                    probabilities=smoothed, changed=self.changed, previous=self.previous,
                    level_dbfs=self.level_dbfs, **_levels(self.levels), silent=self.silent)


def merge_segments(windows: Sequence[Window], classes: Sequence[str], duration: float) -> list[Segment]:
    """Runs of consecutive windows with the same top class, covering 0..duration without gaps."""
    if not windows:
        return []
    bounds = [0.0]
    for a, b in zip(windows, windows[1:]):
        bounds.append(((a.start + a.end) / 2 + (b.start + b.end) / 2) / 2)
    bounds.append(duration)
    tops = [None if w.silent else int(np.argmax(w.probabilities)) for w in windows]
    runs: list[list[int]] = []
    for k, top in enumerate(tops):
        if runs and tops[runs[-1][0]] == top:
            runs[-1].append(k)
        else:
            runs.append([k])
    out = []
    for run in runs:
        top = tops[run[0]]
        if top is None:  # a run of silent windows
            out.append(Segment(bounds[run[0]], bounds[run[-1] + 1], None, None))
            continue
        confidence = float(np.mean([windows[k].probabilities[top] for k in run]))
        out.append(Segment(bounds[run[0]], bounds[run[-1] + 1], classes[top], confidence))
    return out
