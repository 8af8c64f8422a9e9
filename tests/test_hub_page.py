"""The hub's page in a real browser (Debian's Chromium): three live sensors on the plan and in the fleet table,
a scene change shown within 2 s, a killed sensor greyed by its last will, a sensor's day and week."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from soundscene.apps.hub import db
from soundscene.apps.hub.messages import parse
from soundscene.apps.hub.writer import store_batch

from helpers import wait_for
from hub_support import HubProcess, encoded, full_levels, scene, topic

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PLACES = {"north": (60.1712, 24.9402), "east": (60.1695, 24.9460), "doomed": (60.1680, 24.9390)}


def _history(url: str) -> None:
    """A day of decisions (one a minute) for 'north', so its timeline and heat map have something to show."""
    engine = db.open_database(url)
    now = time.time()
    labels = ["park", "street_traffic", "metro", "park"]
    items = [parse(topic("north"), encoded(scene("north", k + 1, labels[(k // 180) % 4], t=now - 86400 + 60 * k,
                                                 hop=60.0, boot="a" * 32, level=-35.0 + 10 * ((k // 90) % 2))))
             for k in range(1430)]
    store_batch(engine, items)
    engine.dispose()


def _doomed_sensor(port: int) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import time
        from soundscene.apps.mqtt import SensorPublisher
        pub = SensorPublisher("127.0.0.1", {port}, "doomed", keepalive=1, window_seconds=10, hop_seconds=1)
        assert pub.wait_connected(10), pub.last_error
        pub.publish({{"time": 1.0, "label": "metro", "confidence": 0.7, "probabilities": {{"metro": 0.7, "park": 0.3}}}})
        assert pub.flush(10)
        time.sleep(120)
    """)
    return subprocess.Popen([sys.executable, "-c", code])


def test_the_page_shows_a_live_fleet_in_a_real_browser(tmp_path, broker):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium", pytrace=False)
    from playwright.sync_api import sync_playwright

    from soundscene.apps.mqtt import SensorPublisher

    url = f"sqlite:///{tmp_path / 'hub.db'}"
    _history(url)
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "sensor-down"\nkind = "offline"\nseconds = 1\n')
    hub = HubProcess(tmp_path, broker.port, url, "--rules", str(rules)).start()
    for sensor, (lat, lon) in PLACES.items():
        assert httpx.put(f"{hub.url}/v1/sensors/{sensor}", json={"latitude": lat, "longitude": lon}).status_code == 200
    publishers = {s: SensorPublisher("127.0.0.1", broker.port, s, keepalive=5, window_seconds=10, hop_seconds=1,
                                     model={"name": "tiny", "version": "1"}) for s in ("north", "east")}
    doomed = _doomed_sensor(broker.port)
    problems: list[str] = []
    try:
        publishers["north"].publish({"time": 1.0, "label": "park", "confidence": 0.9,
                                     "probabilities": {"park": 0.9, "metro": 0.1}})
        publishers["east"].publish({"time": 1.0, "label": "street_traffic", "confidence": 0.8,
                                    "probabilities": {"street_traffic": 0.8, "park": 0.2}})
        wait_for(lambda: sum(s["status"] == "online" for s in httpx.get(hub.url + "/v1/sensors").json()) == 3, 30,
                 "three sensors online")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
            page.goto(hub.url + "/")
            page.wait_for_selector("#live-state[data-state=live]")
            page.wait_for_function("() => document.querySelectorAll('#fleet tr[data-status=online]').length === 3")
            assert page.locator("#plan .marker").count() == 3
            assert page.get_attribute('#fleet tr[data-sensor="north"]', "data-label") == "park"

            publishers["north"].publish({"time": 2.0, "label": "metro", "confidence": 0.85,
                                         "probabilities": {"park": 0.15, "metro": 0.85},
                                         "levels": full_levels(62.0, calibrated=True)})
            publishers["east"].publish({"time": 2.0, "label": "street_traffic", "confidence": 0.8, "level_dbfs": -31.5,
                                        "probabilities": {"street_traffic": 0.8, "park": 0.2}})
            page.wait_for_selector('#fleet tr[data-sensor="north"][data-label="metro"]', timeout=2000)
            # a calibrated LAeq reads dB(A); an uncalibrated level says dBFS, never dB SPL
            page.wait_for_function("""() => document.querySelector('#fleet tr[data-sensor="east"]')
                                              .textContent.includes('-31.5 dBFS')""", timeout=2000)
            assert "62.0 dB(A)" in page.inner_text('#fleet tr[data-sensor="north"]')
            page.wait_for_selector('#plan .marker[data-sensor="north"][data-label="metro"]', timeout=2000)

            os.kill(doomed.pid, signal.SIGKILL)  # the broker publishes its last will
            page.wait_for_selector('#plan .marker[data-sensor="doomed"][data-status="offline"]', timeout=10_000)
            assert page.get_attribute('#fleet tr[data-sensor="doomed"]', "data-status") == "offline"
            fill = page.get_attribute('#plan .marker[data-sensor="doomed"] circle', "fill")
            assert fill == "#b8bec6"  # grey
            page.wait_for_selector("#alerts li.ongoing", timeout=10_000)  # the offline rule, live
            assert "sensor-down on doomed" in page.inner_text("#alerts")

            page.click('#plan .marker[data-sensor="north"]')
            page.wait_for_selector("#day-timeline svg rect.band")
            assert page.locator("#day-timeline rect.band").count() >= 8
            assert page.locator("#day-timeline path.level").count() == 1
            assert page.locator("#heatmap rect.cell").count() == 24 * 3
            shot = tmp_path / "hub-page.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            if os.environ.get("SOUNDSCENE_SCREENSHOT"):
                Path(os.environ["SOUNDSCENE_SCREENSHOT"]).write_bytes(shot.read_bytes())
            browser.close()
        assert not problems, problems
    finally:
        for pub in publishers.values():
            pub.close()
        doomed.kill()
        doomed.wait(timeout=10)
        hub.stop()
