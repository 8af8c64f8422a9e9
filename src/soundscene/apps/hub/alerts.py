"""Alert rules (a TOML file) evaluated as messages are stored, and their notifications.

A rules file::

    [defaults]                       # optional: webhook retry policy
    retries = 4                      # attempts after the first
    backoff_seconds = 0.5            # first wait, doubled after each failure...
    max_backoff_seconds = 30         # ...up to this

    [[rule]]
    name = "night-traffic"           # letters, digits, '-' and '_' (it is an MQTT topic level)
    kind = "scene"                   # a scene from a label set...
    labels = ["street_traffic"]
    sensors = ["kerb-1", "kerb-2"]   # optional: every sensor when left out
    min_seconds = 60                 # held at least this long
    window = "22:00-06:00"           # optional: only at these times of day...
    timezone = "Europe/Helsinki"     # ...on this clock (IANA name; default UTC)
    webhook = "http://ops.example/hook"
    mqtt = true                      # publish on soundscene/alerts/<name>

    [[rule]]
    name = "loud"
    kind = "level"                   # LAeq (or the level in dBFS of sensors without levels) above L for N s
    above = 70.0
    seconds = 30

    [[rule]]
    name = "silent-sensor"
    kind = "offline"                 # offline (last will, or a clean stop) for N s
    seconds = 120

Every mistake is reported at start, one line each (:class:`RulesError`).  An alert is one row of the
``alerts`` table from start to end; its start and its end are each notified once (webhook: a JSON POST,
retried with bounded exponential backoff; MQTT: QoS 1 on ``soundscene/alerts/<rule>``), and the time
each was notified is stored.  Alerts open when the hub stops stay open and are not notified again when
it returns.
"""

from __future__ import annotations

import difflib
import queue
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import insert, select, update

from ...core import records
from ...errors import SoundsceneError, warn
from .db import alerts, sensors
from .timeutil import iso

KINDS = ("scene", "level", "offline")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
TICK_SECONDS = 1.0


class RulesError(SoundsceneError):
    """The rules file's mistakes, one line each in :attr:`mistakes`."""

    def __init__(self, mistakes: list[str]):
        super().__init__(mistakes[0] if len(mistakes) == 1 else f"{len(mistakes)} mistakes in the rules file: "
                         + "; ".join(mistakes))
        self.mistakes = mistakes


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str
    seconds: float = 0.0
    labels: frozenset = frozenset()
    sensors: frozenset | None = None
    window: tuple[int, int] | None = None  # minutes of the day [start, end), may wrap midnight
    timezone: str = "UTC"
    above: float | None = None
    webhook: str | None = None
    mqtt: bool = False

    def applies(self, sensor_id: str) -> bool:
        return self.sensors is None or sensor_id in self.sensors

    def in_window(self, t: float) -> bool:
        if self.window is None:
            return True
        if self.timezone == "UTC":
            minute = int(t // 60) % 1440
        else:
            local = datetime.fromtimestamp(t, ZoneInfo(self.timezone))
            minute = local.hour * 60 + local.minute
        start, end = self.window
        return start <= minute < end if start <= end else minute >= start or minute < end


@dataclass(frozen=True)
class Policy:
    retries: int = 4
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0
    timeout_seconds: float = 5.0


@dataclass
class Rules:
    rules: list[Rule]
    policy: Policy = field(default_factory=Policy)


def load_rules(path: str | Path) -> Rules:
    """Read and check a rules file; RulesError lists every mistake."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise RulesError([f"--rules {path}: {exc.strerror or exc}"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RulesError([f"--rules {path}: not TOML: {exc}"]) from None
    except RecursionError:  # a = [[[[... 100,000 deep
        raise RulesError([f"--rules {path}: nested too deeply to be a rules file"]) from None
    return parse_rules(data, where=str(path))


def parse_rules(data: dict, *, where: str = "rules") -> Rules:
    mistakes: list[str] = []
    unknown = set(data) - {"rule", "defaults"}
    if unknown:
        mistakes.append(f"{where}: unknown table(s) {sorted(unknown)}; use [defaults] and [[rule]]")
    policy = _policy(data.get("defaults", {}), where, mistakes)
    rules, names = [], set()
    raw_rules = data.get("rule", [])
    if not isinstance(raw_rules, list) or not raw_rules:
        mistakes.append(f"{where}: no [[rule]] tables")
        raw_rules = []
    for k, raw in enumerate(raw_rules, start=1):
        rule = _rule(raw, f"{where}: rule {k}", mistakes)
        if rule is not None:
            if rule.name in names:
                mistakes.append(f"{where}: rule {k}: the name {rule.name!r} is used twice")
            names.add(rule.name)
            rules.append(rule)
    if mistakes:
        raise RulesError(mistakes)
    return Rules(rules, policy)


def known_labels(engine) -> set[str]:
    """Every class name the hub's sensors have sent so far (empty for a new database)."""
    with engine.connect() as conn:
        return {str(c) for (classes,) in conn.execute(select(sensors.c.classes)) for c in (classes or [])}


def check_labels(rules: Rules, known: set[str], *, where: str = "rules") -> None:
    """RulesError naming each scene rule's label that no sensor of this hub has among its classes (a typo would
    never match); nothing to check while no sensor has reported its classes."""
    if not known:
        return
    mistakes = []
    for rule in rules.rules:
        for label in sorted(rule.labels - known):
            close = difflib.get_close_matches(label, sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            mistakes.append(f"{where} ({rule.name}): no sensor knows the scene {label!r}{hint}")
    if mistakes:
        raise RulesError(mistakes)


def _policy(raw: Any, where: str, mistakes: list[str]) -> Policy:
    limits = {"retries": (0, 20), "backoff_seconds": (0.001, 60.0), "max_backoff_seconds": (0.001, 3600.0),
              "timeout_seconds": (0.1, 60.0)}
    values = {}
    for key, value in (raw.items() if isinstance(raw, dict) else []):
        if key not in limits:
            mistakes.append(f"{where}: [defaults] has no {key!r}; use {', '.join(limits)}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not \
                limits[key][0] <= value <= limits[key][1]:
            mistakes.append(f"{where}: [defaults] {key} must be a number from {limits[key][0]} to {limits[key][1]}")
        else:
            values[key] = int(value) if key == "retries" else float(value)
    return Policy(**values)


_ALLOWED = {"scene": {"labels", "sensors", "min_seconds", "window", "timezone"}, "level": {"above", "seconds", "sensors"},
            "offline": {"seconds", "sensors"}}


def _rule(raw: Any, where: str, mistakes: list[str]) -> Rule | None:
    if not isinstance(raw, dict):
        mistakes.append(f"{where}: must be a table")
        return None
    before = len(mistakes)
    name, kind = raw.get("name"), raw.get("kind")
    if not isinstance(name, str) or not _NAME.match(name):
        mistakes.append(f"{where}: name must be 1 to 64 letters, digits, '-' or '_'")
        name = "?"
    where = f"{where} ({name})"
    if kind not in KINDS:
        mistakes.append(f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
        return None
    allowed = _ALLOWED[kind] | {"name", "kind", "webhook", "mqtt"}
    for key in sorted(set(raw) - allowed, key=str):
        close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f"; it may have {', '.join(sorted(allowed))}"
        mistakes.append(f"{where}: a {kind} rule has no {str(key)!r}{hint}")
    values: dict[str, Any] = {"name": name, "kind": kind}
    seconds_key = "min_seconds" if kind == "scene" else "seconds"
    seconds = raw.get(seconds_key, 0 if kind == "scene" else None)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= 30 * 86400:
        mistakes.append(f"{where}: {seconds_key} must be a number of seconds from 0 to 2592000")
    else:
        values["seconds"] = float(seconds)
    if kind == "scene":
        labels = raw.get("labels")
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x for x in labels):
            mistakes.append(f"{where}: labels must be a non-empty list of scene names")
        else:
            values["labels"] = frozenset(labels)
        window = raw.get("window")
        if window is not None:
            match = _WINDOW.match(window) if isinstance(window, str) else None
            if match is None or match.group(1, 2) == match.group(3, 4):
                clock = raw.get("timezone", "UTC")
                mistakes.append(f"{where}: window must be HH:MM-HH:MM on the rule's timezone clock "
                                f"({clock if isinstance(clock, str) else 'UTC'}), e.g. 22:00-06:00")
            else:
                h1, m1, h2, m2 = (int(g) for g in match.groups())
                values["window"] = (h1 * 60 + m1, h2 * 60 + m2)
        zone = raw.get("timezone", "UTC")
        try:
            ZoneInfo(zone)
            values["timezone"] = zone
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            mistakes.append(f"{where}: timezone must be an IANA time zone such as Europe/Helsinki, got {zone!r}")
    if kind == "level":
        above = raw.get("above")
        if isinstance(above, bool) or not isinstance(above, (int, float)) or not -200 <= above <= 200:
            mistakes.append(f"{where}: above must be a level in dB from -200 to 200")
        else:
            values["above"] = float(above)
    chosen = raw.get("sensors")
    if chosen is not None:
        if not isinstance(chosen, list) or not all(isinstance(s, str) and s for s in chosen):
            mistakes.append(f"{where}: sensors must be a list of sensor ids")
        else:
            values["sensors"] = frozenset(chosen)
    webhook = raw.get("webhook")
    if webhook is not None and (not isinstance(webhook, str) or not re.match(r"^https?://[^\s]+$", webhook)):
        mistakes.append(f"{where}: webhook must be an http:// or https:// URL")
    elif webhook is not None:
        values["webhook"] = webhook
    if not isinstance(raw.get("mqtt", False), bool):
        mistakes.append(f"{where}: mqtt must be true or false")
    else:
        values["mqtt"] = raw.get("mqtt", False)
    return Rule(**values) if len(mistakes) == before else None


# ---- evaluation ----------------------------------------------------------------------------------------

class AlertEngine:
    """Evaluates :class:`Rules` on the stored events (:meth:`observe`) and a 1-s tick (offline rules).

    State per (rule, sensor): since when the condition holds, and the open alert's row id.  A condition
    held for the rule's seconds opens an alert (``started`` = when the condition began); the condition
    ending closes it.  Start and end are each handed once to the :class:`Notifier`.
    """

    def __init__(self, rules: Rules):
        self.rules = rules
        self.hub = None
        self.notifier = Notifier(rules.policy)
        self._since: dict[tuple[str, str], float] = {}
        self._open: dict[tuple[str, str], tuple[int, float]] = {}  # -> (alert id, started)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def attach(self, hub) -> None:
        self.hub = hub
        self.notifier.hub = hub

    def start(self) -> None:
        with self.hub.engine.connect() as conn:
            for row in conn.execute(select(alerts).where(alerts.c.ended.is_(None))).mappings():
                self._open[(row["rule"], row["sensor_id"])] = (row["id"], row["started"])
                self._since[(row["rule"], row["sensor_id"])] = row["started"]
        self.notifier.start()
        self._ticker = threading.Thread(target=self._tick_loop, name="hub-alerts", daemon=True)
        self._ticker.start()

    def stop(self) -> None:
        self._stop.set()
        self.notifier.stop()

    def observe(self, events) -> None:
        """Feed a committed batch's events (decisions and levels; out-of-order decisions are not current)."""
        with self._lock:
            for event in events:
                if event.kind == "decision" and event.data.get("current"):
                    for rule in self.rules.rules:
                        if rule.applies(event.sensor_id) and rule.kind == "scene":
                            held = event.data["label"] in rule.labels and rule.in_window(event.data["t"])
                            self._condition(rule, event.sensor_id, held, event.data["t"], event.data)
                        elif rule.applies(event.sensor_id) and rule.kind == "level" and event.data["level"] is not None:
                            self._condition(rule, event.sensor_id, event.data["level"] > rule.above, event.data["t"],
                                            event.data)
                elif event.kind == "levels" and event.data.get("laeq") is not None:
                    for rule in self.rules.rules:
                        if rule.kind == "level" and rule.applies(event.sensor_id):
                            self._condition(rule, event.sensor_id, event.data["laeq"] > rule.above,
                                            event.data["end"], event.data)

    def _tick_loop(self) -> None:
        offline = [r for r in self.rules.rules if r.kind == "offline"]
        while not self._stop.wait(TICK_SECONDS):
            if not offline:
                continue
            try:
                self._tick(offline)
            except Exception as exc:  # noqa: BLE001 - the database is away: the next tick tries again
                warn(f"alert rules: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")

    def _tick(self, offline: list[Rule]) -> None:
        with self.hub.engine.connect() as conn:
            rows = conn.execute(select(sensors.c.id, sensors.c.status, sensors.c.status_since)).all()
        now = time.time()
        with self._lock:
            for sensor_id, status, since in rows:
                for rule in offline:
                    if rule.applies(sensor_id):
                        self._condition(rule, sensor_id, status == "offline", now, {"status": status}, since=since)

    def _condition(self, rule: Rule, sensor_id: str, held: bool, t: float, data: dict,
                   since: float | None = None) -> None:
        key = (rule.name, sensor_id)
        if held:
            start = self._since.setdefault(key, since if since is not None else t)
            if key not in self._open and t - start >= rule.seconds:
                self._open[key] = (self._record_start(rule, sensor_id, start, data), start)
        else:
            self._since.pop(key, None)
            if key in self._open:
                alert_id, started = self._open.pop(key)
                self._record_end(rule, sensor_id, alert_id, started, t)

    def _record_start(self, rule: Rule, sensor_id: str, started: float, data: dict) -> int:
        detail = {k: v for k, v in data.items() if k in ("label", "confidence", "level", "laeq", "status")}
        with self.hub.engine.begin() as conn:
            alert_id = conn.execute(insert(alerts).values(rule=rule.name, kind=rule.kind, sensor_id=sensor_id,
                                                          started=started, detail=detail)
                                    .returning(alerts.c.id)).scalar_one()
        self._announce(rule, {"id": alert_id, "phase": "start", "rule": rule.name, "kind": rule.kind,
                              "sensor_id": sensor_id, "started": iso(started), "ended": None, "detail": detail})
        return alert_id

    def _record_end(self, rule: Rule, sensor_id: str, alert_id: int, started: float, ended: float) -> None:
        with self.hub.engine.begin() as conn:
            conn.execute(update(alerts).where(alerts.c.id == alert_id).values(ended=ended))
        self._announce(rule, {"id": alert_id, "phase": "end", "rule": rule.name, "kind": rule.kind,
                              "sensor_id": sensor_id, "started": iso(started), "ended": iso(ended)})

    def _announce(self, rule: Rule, body: dict) -> None:
        self.hub.publish_live({"type": "alert", **body})
        self.notifier.put(rule, body)


class Notifier:
    """Sends notifications in its own thread, so a slow webhook never holds up the ingest."""

    def __init__(self, policy: Policy):
        self.policy, self.hub = policy, None
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hub-notify", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def put(self, rule: Rule, body: dict) -> None:
        self._queue.put((rule, body))

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                self._send(*job)
            except Exception as exc:  # noqa: BLE001 - one failed notification never stops the next ones
                warn(f"alert {job[0].name}: notification failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")

    def _send(self, rule: Rule, body: dict) -> None:
        delivered = not rule.webhook and not rule.mqtt  # nothing to send: stored is notified
        payload = records.dumps(body).encode()
        if rule.mqtt:
            self.hub.ingest.publish(f"soundscene/alerts/{rule.name}", payload)
            self.hub.metrics.alerts.labels("mqtt", "sent").inc()
            delivered = True
        if rule.webhook:
            delivered = self.post(rule.webhook, payload) or delivered
        if delivered:
            column = alerts.c.start_notified if body["phase"] == "start" else alerts.c.end_notified
            with self.hub.engine.begin() as conn:
                conn.execute(update(alerts).where(alerts.c.id == body["id"]).values({column: time.time()}))

    def post(self, url: str, payload: bytes) -> bool:
        """POST ``payload`` (JSON) to ``url``; retried with exponential backoff, bounded.  True when a 2xx came."""
        p = self.policy
        delay = p.backoff_seconds
        for attempt in range(p.retries + 1):
            request = urllib.request.Request(url, data=payload, method="POST",
                                             headers={"Content-Type": "application/json",
                                                      "User-Agent": "soundscene-hub"})
            try:
                with urllib.request.urlopen(request, timeout=p.timeout_seconds) as response:  # noqa: S310 (http/https only)
                    if 200 <= response.status < 300:
                        self.hub.metrics.alerts.labels("webhook", "sent").inc()
                        return True
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = str(getattr(exc, "code", None) or getattr(exc, "reason", None) or exc)
                self.hub.metrics.alerts.labels("webhook", "retry").inc()
                if attempt == p.retries:
                    warn(f"alert webhook {url}: gave up after {p.retries + 1} attempts ({reason})")
            if attempt < p.retries:
                time.sleep(delay)
                delay = min(delay * 2, p.max_backoff_seconds)
        self.hub.metrics.alerts.labels("webhook", "failed").inc()
        return False
