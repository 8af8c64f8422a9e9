"""``soundscene hub simulate``: a fleet of simulated sensors publishing real MQTT messages.

Each simulated sensor publishes exactly what a real one does (:mod:`soundscene.apps.protocol`): a retained
``online`` status, then a ``sensor_message`` on ``soundscene/<id>/scene`` every hop and a ``levels_message``
on ``soundscene/<id>/levels`` every ``level_interval`` seconds, all numbered by one ``seq`` per boot, and
``offline`` when it stops.  Up to :data:`OWN_CONNECTION_LIMIT` sensors each have their own connection and
last will; a larger fleet shares a pool of connections (a benchmark of the hub, not of the broker).

The scene probabilities come from a classifier: with ``model`` and ``audio`` each recording is classified
once (:meth:`SceneClassifier.classify_file`) and its windows (probabilities, level, levels) are replayed,
each sensor moving from recording to recording, so scene changes, confidences and levels are those a
model really produces.  Without a model, :func:`scene_walk` makes tracks of scenes with
Dirichlet-distributed probabilities (clearly synthetic; for a demo with no model at hand).
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ...errors import SoundsceneError
from ..broker import (BrokerSettings, WarnOnce, as_settings, connect_failure, make_client, parse_broker_url,
                      refusal_text)
from ..protocol import OFFLINE, ONLINE, check_sensor_id, dumps, levels_payload, scene_payload, topics, utc_timestamp

OWN_CONNECTION_LIMIT = 50
POOL_CONNECTIONS = 16
DEFAULT_CLASSES = ("street_traffic", "park", "metro", "shopping_mall", "public_square")

Track = list[dict[str, Any]]  # window records: label, confidence, probabilities, level_dbfs, levels


def tracks_from_model(model: str | Path, audio: Sequence[str | Path]) -> tuple[list[Track], list[str], dict]:
    """Classify each recording once; its window records are a track.  Returns (tracks, classes, model info)."""
    from ...core.audio import expand_inputs
    from ...core.inference import SceneClassifier

    classifier = SceneClassifier.from_file(model)
    tracks = []
    for item in expand_inputs([str(a) for a in audio]):
        if item.problem:
            continue
        prediction = classifier.classify_file(item.path, name=item.name)
        windows = [w.to_record(classifier.classes) for w in prediction.windows]
        if windows:
            tracks.append(windows)
    if not tracks:
        raise SoundsceneError("hub simulate: none of the recordings could be classified")
    info = classifier.describe().get("model", {})
    return tracks, list(classifier.classes), {"name": info.get("name", Path(model).stem), "version": "simulated"}


def scene_walk(classes: Sequence[str], count: int, rng: np.random.Generator) -> list[Track]:
    """Synthetic tracks: ``count`` runs of one scene, 30 to 300 windows, probabilities ~ Dirichlet around it."""
    tracks = []
    for _ in range(count):
        scene = int(rng.integers(len(classes)))
        alpha = np.full(len(classes), 0.6)
        alpha[scene] = 4.0
        level = float(rng.uniform(-45, -20))
        track = []
        for probs in rng.dirichlet(alpha, size=int(rng.integers(30, 300))):
            top = int(np.argmax(probs))
            level = float(np.clip(level + rng.normal(0, 0.7), -70, -5))
            track.append({"label": classes[top], "confidence": float(probs[top]),
                          "probabilities": {c: float(p) for c, p in zip(classes, probs)},
                          "level_dbfs": round(level, 1), "silent": False})
        tracks.append(track)
    return tracks


@dataclass
class SimSensor:
    sensor_id: str
    client: Any
    boot: str = field(default_factory=lambda: uuid.uuid4().hex)
    seq: int = 0
    track: int = 0
    position: int = 0
    label: str | None = None
    decisions: int = 0
    levels: list = field(default_factory=list)


class Fleet:
    """``sensors`` simulated sensors on ``broker`` (:class:`~soundscene.apps.broker.BrokerSettings`, or a
    ``(host, port)`` pair) replaying ``tracks``; :meth:`run` publishes in real time."""

    def __init__(self, broker: BrokerSettings | tuple[str, int], sensors: int, tracks: list[Track],
                 classes: Sequence[str], model: dict, *, hop: float = 1.0, level_interval: float = 10.0,
                 prefix: str = "sim", seed: int = 0):
        if not 1 <= sensors <= 100_000:
            raise SoundsceneError(f"--sensors must be 1 to 100000, got {sensors}")
        if not 0.01 <= hop <= 3600 or not (level_interval == 0 or hop <= level_interval <= 86400):
            raise SoundsceneError("--hop must be 0.01 to 3600 s and --level-interval 0 or from the hop to 86400 s")
        check_sensor_id(f"{prefix}-1")
        self.broker, self.tracks, self.hop, self.level_interval = as_settings(broker), tracks, hop, level_interval
        self.model = {**model, "classes": list(classes)}
        self.rng = np.random.default_rng(seed)
        self.published = 0
        self._last: dict[int, Any] = {}  # client -> its newest message's MQTTMessageInfo
        self._warn_once = WarnOnce()
        own = sensors <= OWN_CONNECTION_LIMIT
        self.clients = [self._client(f"{prefix}-{k + 1}" if own else None, k)
                        for k in range(sensors if own else min(POOL_CONNECTIONS, sensors))]
        self.sensors = [SimSensor(f"{prefix}-{k + 1}", self.clients[k % len(self.clients)],
                                  track=int(self.rng.integers(len(tracks))),
                                  position=int(self.rng.integers(len(tracks[0])))) for k in range(sensors)]

    def _client(self, sensor_id: str | None, k: int):
        client = make_client(self.broker, client_id=f"soundscene-sim-{uuid.uuid4().hex[:8]}-{k}", protocol="311")
        client.on_connect = self._on_connect
        client.max_queued_messages_set(0)
        client.max_inflight_messages_set(200)
        if sensor_id is not None:  # its own connection: the broker says offline when it dies
            client.will_set(topics(sensor_id)["status"], OFFLINE, qos=1, retain=True)
        try:
            client.connect(self.broker.host, self.broker.port, keepalive=30)
        except (OSError, ValueError) as exc:
            why = connect_failure(client) or getattr(exc, "strerror", None) or str(exc)
            raise SoundsceneError(f"hub simulate: cannot connect to the MQTT broker {self.broker.address}: {why}") \
                from None
        client.loop_start()
        return client

    def _on_connect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            self._warn_once(f"MQTT broker {self.broker.address} refused the simulated sensors: "
                            f"{refusal_text(reason_code)}; retrying")

    def _publish(self, sensor: SimSensor, kind: str, payload: bytes, *, retain: bool = False) -> None:
        self._last[id(sensor.client)] = sensor.client.publish(topics(sensor.sensor_id)[kind], payload,
                                                              qos=1, retain=retain)
        self.published += 1

    def _decision(self, sensor: SimSensor, now: datetime) -> None:
        track = self.tracks[sensor.track]
        if sensor.position >= len(track):  # the recording is over: another one (usually another scene)
            sensor.track, sensor.position = int(self.rng.integers(len(self.tracks))), 0
            track = self.tracks[sensor.track]
        window = track[sensor.position]
        sensor.position += 1
        sensor.decisions += 1
        decision = {k: window.get(k) for k in ("label", "confidence", "probabilities", "level_dbfs", "silent")}
        decision["time"] = round(sensor.decisions * self.hop, 3)
        decision["changed"] = decision["label"] != sensor.label
        decision["previous"] = sensor.label if decision["changed"] else None
        if window.get("levels"):
            decision["levels"] = window["levels"]
            sensor.levels.append(window["levels"])
        sensor.label = decision["label"]
        sensor.seq += 1
        payload = scene_payload(decision, sensor_id=sensor.sensor_id, model=self.model, window_seconds=10.0,
                                hop_seconds=self.hop, seq=sensor.seq, timestamp=utc_timestamp(now), boot=sensor.boot)
        self._publish(sensor, "scene", dumps(payload), retain=True)

    def _levels(self, sensor: SimSensor, now: datetime) -> None:
        levels = sensor.levels[-1] if sensor.levels else _levels_from(self.tracks[sensor.track], sensor.position)
        sensor.levels.clear()
        sensor.seq += 1
        start = now - timedelta(seconds=self.level_interval)
        payload = levels_payload(levels, sensor_id=sensor.sensor_id, boot=sensor.boot, seq=sensor.seq,
                                 timestamp=utc_timestamp(now), start=utc_timestamp(start), end=utc_timestamp(now))
        self._publish(sensor, "levels", dumps(payload))

    def run(self, seconds: float = 0.0, stop: threading.Event | None = None) -> int:
        """Publish until ``seconds`` have passed (0: until ``stop`` is set or Ctrl-C); returns messages sent.

        Sensors are spread evenly over the hop, so the broker sees a steady rate, not bursts."""
        stop = stop or threading.Event()
        for sensor in self.sensors:
            self._publish(sensor, "status", ONLINE.encode(), retain=True)
        start = time.monotonic()
        n = len(self.sensors)
        slot = self.hop / n
        k = 0
        try:
            while not stop.is_set() and (seconds <= 0 or time.monotonic() - start < seconds):
                due = start + k * slot
                delay = due - time.monotonic()
                if delay > 0:
                    stop.wait(delay)
                sensor = self.sensors[k % n]
                now = datetime.now(timezone.utc)
                self._decision(sensor, now)
                rounds = k // n + 1
                if self.level_interval and rounds % max(1, round(self.level_interval / self.hop)) == 0:
                    self._levels(sensor, now)
                k += 1
        finally:
            self.close()
        return self.published

    def close(self) -> None:
        for sensor in self.sensors:
            self._publish(sensor, "status", OFFLINE.encode(), retain=True)
        deadline = time.monotonic() + 10
        for client in self.clients:  # each connection's messages are sent in order: its newest one last
            info = self._last.get(id(client))
            if info is not None:
                try:
                    info.wait_for_publish(max(0.0, deadline - time.monotonic()))
                except (RuntimeError, ValueError):
                    pass  # not connected: what is left is lost with the simulation
            client.disconnect()
            client.loop_stop()


def _levels_from(track: Track, position: int) -> dict:
    """A levels record for a track without measured levels: from the window levels in dBFS (uncalibrated)."""
    values = [w.get("level_dbfs") for w in track[max(0, position - 10):position + 1] if w.get("level_dbfs") is not None]
    if not values:
        return {"calibrated": False, "reference": "dBFS", "LAeq": None, "LAFmax": None, "LAFmin": None,
                "LA10": None, "LA50": None, "LA90": None, "LCeq": None, "bands": {}}
    power = 10 * math.log10(sum(10 ** (v / 10) for v in values) / len(values))
    ordered = sorted(values)

    def pct(q):
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)
    return {"calibrated": False, "reference": "dBFS", "LAeq": round(power, 1), "LAFmax": round(max(values), 1),
            "LAFmin": round(min(values), 1), "LA10": pct(0.9), "LA50": pct(0.5), "LA90": pct(0.1),
            "LCeq": round(power + 2.0, 1), "bands": {}}


def simulate(*, mqtt: str | BrokerSettings, sensors: int = 3, hop: float = 1.0, seconds: float = 0.0,
             model: str | Path | None = None, audio: Sequence[str | Path] = (), prefix: str = "sim",
             level_interval: float = 10.0, seed: int = 0, quiet: bool = False) -> int:
    """The command: build the tracks (from ``model`` and ``audio``, else a scene walk) and run the fleet."""
    broker = mqtt if isinstance(mqtt, BrokerSettings) else parse_broker_url(mqtt)
    if model is not None:
        if not audio:
            raise SoundsceneError("hub simulate --model needs --audio FILE_OR_FOLDER: the recordings to classify")
        tracks, classes, info = tracks_from_model(model, audio)
        source = f"{len(tracks)} recordings classified by {model}"
    else:
        rng = np.random.default_rng(seed)
        tracks, classes, info = scene_walk(DEFAULT_CLASSES, 64, rng), list(DEFAULT_CLASSES), {"name": "scene-walk",
                                                                                               "version": "synthetic"}
        source = "a synthetic scene walk (give --model and --audio for a classifier's probabilities)"
    fleet = Fleet(broker, sensors, tracks, classes, info, hop=hop, level_interval=level_interval, prefix=prefix,
                  seed=seed)
    if not quiet:
        print(f"simulating {sensors} sensors ({prefix}-1 ...) on {broker.url}, one decision per "
              f"{hop:g} s each, from {source}; Ctrl-C stops", flush=True)
    return fleet.run(seconds)
