"""The sensor's loop: live input -> decisions and levels (``listen``), health reports, systemd's watchdog.

:func:`run_sensor` is what ``soundscene listen`` runs once its parts are made (the classifier, the input
blocks, the MQTT publisher with its spool)::

    made = run_sensor(classifier, blocks, input_rate=48000, channels=1, publisher=publisher,
                      health_interval=60.0, notifier=Notifier.from_environ())

Every block that arrives is measured for the health record (input level, clipping, DC offset, a dead input)
and pats the watchdog; every ``health_interval`` seconds (of audio or of wall-clock time) the publisher
sends a ``health`` record.  ``READY=1`` goes to systemd once the model is loaded and the input is open,
``STOPPING=1`` when the input ends.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ...config import HEALTH_INTERVAL
from ...errors import SoundsceneError
from ..listen import listen, print_json_line
from .health import HealthReporter
from .notify import Notifier

DEFAULT_HEALTH_INTERVAL = 60.0  # seconds (listen --health-interval)


def model_description(classifier) -> dict[str, Any]:
    """The model a sensor runs, as its messages name it: ``name``, ``version``, ``sha256`` (of the file's bytes,
    as ``sha256sum`` prints it) and ``classes``."""
    return {"name": classifier.config.model.name, "version": classifier.metadata.get("soundscene_version"),
            "sha256": classifier.sha256, "classes": list(classifier.classes)}


def run_sensor(classifier, blocks: Iterable[np.ndarray], *, input_rate: int, channels: int, publisher=None,
               print_lines: bool = True, smoothing: float = 0.5, dwell: float | None = None,
               level_interval: float = 60.0, health_interval: float = DEFAULT_HEALTH_INTERVAL,
               notifier: Notifier | None = None, out=None) -> int:
    """Classify ``blocks`` live; print each decision as a JSON line (``print_lines``), publish decisions,
    levels and health with ``publisher`` (a :class:`~soundscene.apps.mqtt.SensorPublisher`, or None).
    Returns the number of decisions."""
    problem = HEALTH_INTERVAL.refusal(health_interval)
    if problem:
        raise SoundsceneError(f"--health-interval {problem}")
    notifier = notifier or Notifier(None)
    on_decision: list[Callable[[dict], None]] = []
    if print_lines:
        on_decision.append(lambda record: print_json_line(record, out=out or sys.stdout))
    on_levels = []
    reporter = None
    if publisher is not None:
        on_decision.append(publisher.publish)
        on_levels.append(publisher.publish_levels)
        reporter = HealthReporter(publisher.sensor_id, model_description(classifier), health_interval, publisher,
                                  rate=input_rate, spool_path=getattr(publisher.spool, "path", None))
    try:
        return listen(classifier, _watched(blocks, reporter, publisher, notifier), input_rate=input_rate,
                      channels=channels, on_decision=on_decision, smoothing=smoothing, min_dwell_seconds=dwell,
                      on_levels=on_levels, level_interval=level_interval)
    finally:
        notifier.stopping()


def _watched(blocks: Iterable[np.ndarray], reporter: HealthReporter | None, publisher,
             notifier: Notifier) -> Iterator[np.ndarray]:
    """The blocks, each measured for health and patting the watchdog; a health record when one is due."""
    source = iter(blocks)
    first = next(source, None)  # the input is open (a microphone that cannot be opened has said so by now)
    if first is None:
        return
    notifier.ready(status="listening" + (f" as {publisher.sensor_id}" if publisher is not None else ""))
    for block in _chain(first, source):
        notifier.watchdog()
        if reporter is not None:
            reporter.push(block)
            if reporter.due():
                publisher.publish_health(reporter.measure())
        yield block


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest
