"""The hub as one process: :class:`Hub` wires the database, the ingest, the live feed, the alert rules
and the metrics; :func:`run_hub` checks the options, binds the address and serves the API and page.

``soundscene hub --mqtt URL [--mqtt-ca F --mqtt-user NAME --mqtt-password-file F ...] [--db URL]
[--host 127.0.0.1] [--port 8100] [--token-file F] [--rules F] [--site-plan IMAGE]`` calls :func:`run_hub`.

``GET /healthz`` (:meth:`Hub.health`) is 200 while the database answers, the broker is connected and the
ingest worker runs; a dead ingest worker makes it 503 (``"ingest": "degraded: <why>"``) and ends
:func:`run_hub` with a one-line error (``soundscene hub`` exits 2), for a supervisor to restart the hub.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import text

from ..._version import __version__
from ..._net import listen
from ...errors import SoundsceneError, warn
from ..broker import BrokerSettings, as_settings, parse_broker_url
from . import store
from .db import open_database
from .ingest import DEFAULT_CLIENT_ID, Ingest
from .live import Live
from .metrics import HubMetrics
from .timeutil import iso
from .writer import DEFAULT_KEEP_DAYS, BatchResult, prune

LOOPBACK = ("127.0.0.1", "localhost", "::1")
PRUNE_EVERY_SECONDS = 3600.0
MAX_SITE_PLAN_BYTES = 20_000_000
SITE_PLAN_TYPES = {b"\x89PNG": "image/png", b"\xff\xd8\xff": "image/jpeg", b"<svg": "image/svg+xml",
                   b"<?xm": "image/svg+xml", b"RIFF": "image/webp"}


class Hub:
    """Everything the hub runs, for the API to read (``engine``, ``live``, ``token``...)."""

    def __init__(self, engine, *, broker: BrokerSettings | tuple[str, int], client_id: str = DEFAULT_CLIENT_ID,
                 share: str | None = None, keep_days: float = DEFAULT_KEEP_DAYS, token: str | None = None,
                 writes_open: bool = True, alerts=None, site_plan: tuple[bytes, str] | None = None):
        self.engine, self.token, self.writes_open = engine, token, writes_open
        self.keep_days, self.site_plan = keep_days, site_plan
        self.live, self.metrics = Live(), HubMetrics()
        self.ingest = Ingest(engine, as_settings(broker), client_id=client_id, share=share, keep_days=keep_days)
        self.alerts = alerts
        if alerts is not None:
            alerts.attach(self)
        self.ingest.listen(self._on_batch)
        self._stop = threading.Event()
        self._pruner: threading.Thread | None = None

    def start(self) -> "Hub":
        self.ingest.start()
        if self.alerts is not None:
            self.alerts.start()
        self._pruner = threading.Thread(target=self._prune_loop, name="hub-prune", daemon=True)
        self._pruner.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self.alerts is not None:
            self.alerts.stop()
        self.ingest.stop()

    def _prune_loop(self) -> None:
        while not self._stop.is_set():
            try:
                prune(self.engine, keep_days=self.keep_days)
            except Exception as exc:  # noqa: BLE001 - a failed prune is retried next hour, never fatal
                warn(f"pruning old decisions failed: {str(exc).splitlines()[0]}")
            self._stop.wait(PRUNE_EVERY_SECONDS)

    def _on_batch(self, result: BatchResult) -> None:
        self.metrics.observe(result)
        for event in result.events:
            self.publish_live({"type": event.kind, "sensor_id": event.sensor_id, **_timed(event.data)})
        if self.alerts is not None:
            self.alerts.observe(result.events)

    def publish_live(self, event: dict[str, Any]) -> None:
        self.live.publish(event)

    def health(self) -> dict[str, Any]:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            database = "ok"
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            database = str(exc).splitlines()[0][:200]
        mqtt = "connected" if self.ingest.connected.is_set() else "disconnected"
        failure = self.ingest.failure
        ingest = "ok" if failure is None else f"degraded: {failure}"
        return {"ok": database == "ok" and mqtt == "connected" and failure is None, "mqtt": mqtt,
                "database": database, "ingest": ingest, "version": __version__, "waiting": self.ingest.waiting}

    def metrics_text(self) -> bytes:
        return self.metrics.exposition(store.counts(self.engine), self.ingest.waiting)


def _timed(data: dict) -> dict:
    out = dict(data)
    for key in ("t", "start", "end", "since"):
        if isinstance(out.get(key), float):
            out[key] = iso(out[key])
    return out


def read_token(path: str | Path) -> str:
    """The bearer token in ``path`` (one line, at least 16 characters)."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SoundsceneError(f"--token-file {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    if len(token) < 16 or any(c.isspace() for c in token):
        raise SoundsceneError(f"--token-file {path}: the token must be one word of at least 16 characters")
    return token


def read_site_plan(path: str | Path) -> tuple[bytes, str]:
    """The site plan image (PNG, JPEG, SVG or WebP, at most 20 MB) and its media type."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SoundsceneError(f"--site-plan {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_SITE_PLAN_BYTES:
        raise SoundsceneError(f"--site-plan {path}: over {MAX_SITE_PLAN_BYTES // 1_000_000} MB")
    for magic, media in SITE_PLAN_TYPES.items():
        if data.lstrip()[:len(magic)] == magic:
            return data, media
    raise SoundsceneError(f"--site-plan {path}: not a PNG, JPEG, SVG or WebP image")


def run_hub(*, mqtt: str | BrokerSettings, db: str | None = None, host: str = "127.0.0.1", port: int = 8100,
            token_file: str | None = None, no_auth: bool = False, rules: str | None = None,
            site_plan: str | None = None, client_id: str = DEFAULT_CLIENT_ID, share: str | None = None,
            keep_days: float = DEFAULT_KEEP_DAYS, log_level: str = "warning") -> None:
    """Check the options, open (and migrate) the database, start the ingest and serve until Ctrl-C.

    ``mqtt`` is the broker's settings (:func:`~soundscene.apps.broker.settings_from_args`) or its URL."""
    import uvicorn

    from .alerts import AlertEngine, check_labels, known_labels, load_rules
    from .api import create_app

    broker = mqtt if isinstance(mqtt, BrokerSettings) else parse_broker_url(mqtt)
    if not (0 <= int(port) <= 65535):
        raise SoundsceneError(f"--port must be in 0..65535, got {port}")
    if not 0 < keep_days <= 3650:
        raise SoundsceneError(f"--keep-days must be in (0, 3650], got {keep_days:g}")
    if token_file and no_auth:
        raise SoundsceneError("--token-file and --no-auth contradict each other: give one")
    if host not in LOOPBACK and not token_file and not no_auth:
        raise SoundsceneError(f"--host {host} is reachable from other machines: give --token-file (writes need its "
                              "token) or --no-auth")
    token = read_token(token_file) if token_file else None
    engine_rules = AlertEngine(load_rules(rules)) if rules else None
    plan = read_site_plan(site_plan) if site_plan else None
    engine = open_database(db)
    if engine_rules is not None:
        check_labels(engine_rules.rules, known_labels(engine), where=f"--rules {rules}")
    hub = Hub(engine, broker=broker, client_id=client_id, share=share, keep_days=keep_days, token=token,
              writes_open=token is None and (no_auth or host in LOOPBACK), alerts=engine_rules, site_plan=plan)
    sock = listen(host, int(port))
    shown = f"[{host}]" if ":" in host else host
    hub.start()
    print(f"soundscene {__version__}: hub on http://{shown}:{sock.getsockname()[1]}/ storing "
          f"{engine.url.render_as_string(hide_password=True)} from MQTT {broker.url} (Ctrl-C stops)",
          flush=True)
    app = create_app(hub)
    config = uvicorn.Config(app, log_level=log_level, server_header=False, proxy_headers=False,
                            timeout_keep_alive=5, timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    hub.ingest.when_failed(lambda: setattr(server, "should_exit", True))  # a dead ingest ends the process
    try:
        server.run(sockets=[sock])
    finally:
        hub.stop()
        engine.dispose()
    if hub.ingest.failure is not None:
        raise SoundsceneError(f"the hub's ingest stopped ({hub.ingest.failure}): exiting so that its supervisor "
                              "restarts it")
