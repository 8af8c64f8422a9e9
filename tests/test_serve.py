"""The HTTP service (soundscene serve): the API, upload limits and safety, metrics, and the web page in a
real browser (headless Debian Chromium driven by Playwright)."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import math
import os
import shutil
import re
import socket
import threading
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

with warnings.catch_warnings():  # starlette >= 1.x asks for httpx2; httpx still works
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from fastapi.testclient import TestClient

from soundscene.errors import ConfigError, SoundsceneError
from soundscene.core.inference import SceneClassifier
from soundscene.apps.serve import create_app, display_name, run_server

CLASSES = ["metro", "park", "rain", "street_traffic"]
TINY = {"audio": {"sample_rate": 8000, "clip_seconds": 1.5, "min_seconds": 0.2},
        "features": {"n_mels": 32, "patch_frames": 32, "patch_hop_frames": 16}}
WIDTHS = [8, 16, 32]
TUT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tut2018-samples"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


# ---- fixtures -------------------------------------------------------------------------------------------------
def _tiny_config():
    from soundscene.config import Config

    try:  # configuration format 2: the network's own parameters under model.params
        return Config.from_dict({**TINY, "model": {"params": {"widths": WIDTHS}}})
    except ConfigError:
        return Config.from_dict({**TINY, "model": {"widths": WIDTHS}})


def _tiny_net(cfg):
    from soundscene.core.models import build_model

    try:
        return build_model(cfg, n_classes=len(CLASSES)).eval()
    except TypeError:  # the older signature
        return build_model(cfg.model, in_channels=1, n_rows=cfg.features.n_rows, n_classes=len(CLASSES)).eval()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    import torch

    from soundscene.core.modelfile import save_model_file

    torch.manual_seed(0)
    cfg = _tiny_config()
    path = tmp_path_factory.mktemp("serve_model") / "m.safetensors"
    save_model_file(path, _tiny_net(cfg), cfg, CLASSES)
    return path


@pytest.fixture(scope="module")
def classifier(model_file):
    return SceneClassifier.from_file(model_file)


@pytest.fixture
def upload_dir(tmp_path) -> Path:
    path = tmp_path / "uploads"
    path.mkdir()
    return path


@pytest.fixture
def client(classifier, upload_dir):
    return TestClient(create_app(classifier, max_upload_bytes=5_000_000, temp_dir=upload_dir))


def _wav_bytes(tmp_path: Path, seconds: float = 2.0, *, rate: int = 16000, name: str = "clip.wav",
               scenes: bool = False) -> bytes:
    """Noise plus a tone; with ``scenes``, four different 5-s textures in turn (for a timeline)."""
    rng = np.random.default_rng(1)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.1 * rng.standard_normal(t.size) + 0.2 * np.sin(2 * np.pi * 440 * t)
    if scenes:
        part = (t // 5).astype(int) % 4
        x = np.where(part == 1, 0.4 * np.sin(2 * np.pi * 120 * t) + 0.02 * rng.standard_normal(t.size), x)
        x = np.where(part == 2, 0.3 * rng.standard_normal(t.size) * (np.sin(2 * np.pi * 3 * t) > 0), x)
        x = np.where(part == 3, 0.2 * np.sin(2 * np.pi * (300 + 2000 * (t % 1)) * t), x)
    path = tmp_path / name
    sf.write(str(path), x.astype(np.float32), rate, subtype="PCM_16")
    return path.read_bytes()


def _multipart(filename: bytes, data: bytes, *, field: bytes = b"file", boundary: bytes = b"XyZbOuNdArY"):
    """A multipart/form-data body built by hand, so that file names reach the server byte for byte."""
    body = (b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"" + field + b"\"; filename=\""
            + filename + b"\"\r\nContent-Type: audio/wav\r\n\r\n" + data + b"\r\n--" + boundary + b"--\r\n")
    return body, {"Content-Type": "multipart/form-data; boundary=" + boundary.decode()}


def _assert_error(response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str)
    assert body["error"] and "\n" not in body["error"]
    return body["error"]


# ---- classification ------------------------------------------------------------------------------------------
def test_classify_returns_the_record(client, tmp_path, upload_dir):
    data = _wav_bytes(tmp_path, 2.0)
    r = client.post("/v1/classify", files={"file": ("street.wav", data, "audio/wav")})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    rec = r.json()
    assert {"path", "label", "confidence", "probabilities", "level_dbfs", "duration_seconds", "warning",
            "windows", "segments"} <= set(rec)
    assert rec["path"] == "street.wav"
    assert set(rec["probabilities"]) == set(CLASSES)
    assert math.isclose(sum(rec["probabilities"].values()), 1.0, abs_tol=1e-4)
    assert rec["label"] == max(rec["probabilities"], key=rec["probabilities"].get)
    assert math.isclose(rec["confidence"], rec["probabilities"][rec["label"]], abs_tol=1e-6)
    assert math.isclose(rec["duration_seconds"], 2.0, abs_tol=0.01)
    assert math.isfinite(rec["level_dbfs"]) and rec["level_dbfs"] < 0
    assert rec["windows"] and rec["segments"]
    assert list(upload_dir.iterdir()) == []  # the upload's private directory is gone


def test_long_upload_gets_a_timeline(client, tmp_path):
    r = client.post("/v1/classify", files={"file": ("long.wav", _wav_bytes(tmp_path, 20.0, scenes=True))})
    assert r.status_code == 200, r.text
    rec = r.json()
    for w in rec["windows"]:
        assert {"start", "end", "probabilities"} <= set(w)
    for s in rec["segments"]:
        assert {"start", "end", "label", "confidence"} <= set(s) and s["label"] in CLASSES
    assert len(rec["windows"]) > 1
    segs = rec["segments"]
    assert segs[0]["start"] == pytest.approx(0.0, abs=1e-6)
    assert segs[-1]["end"] == pytest.approx(rec["duration_seconds"], abs=0.1)
    for a, b in zip(segs, segs[1:]):
        assert a["end"] == pytest.approx(b["start"], abs=1e-6)


def test_model_runs_off_the_event_loop(classifier, upload_dir, tmp_path):
    seen = []

    class Probe:
        def describe(self):
            return classifier.describe()

        def classify_file(self, path, *, name=None):
            try:
                asyncio.get_running_loop()
                seen.append("event loop")
            except RuntimeError:
                seen.append("worker thread")
            return classifier.classify_file(path, name=name)

    c = TestClient(create_app(Probe(), max_upload_bytes=5_000_000, temp_dir=upload_dir))
    assert c.post("/v1/classify", files={"file": ("a.wav", _wav_bytes(tmp_path))}).status_code == 200
    assert seen == ["worker thread"]


# ---- refused uploads -----------------------------------------------------------------------------------------
def test_upload_over_the_limit_is_413_whatever_the_header_says(classifier, upload_dir, tmp_path):
    c = TestClient(create_app(classifier, max_upload_bytes=10_000, temp_dir=upload_dir))
    data = _wav_bytes(tmp_path, 1.6)  # about 51 kB
    assert len(data) > 50_000
    _assert_error(c.post("/v1/classify", files={"file": ("big.wav", data)}), 413)
    body, headers = _multipart(b"big.wav", data)
    # no Content-Length at all (chunked)
    r = c.post("/v1/classify", content=iter([body[k:k + 4096] for k in range(0, len(body), 4096)]), headers=headers)
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert "limit" in _assert_error(r, 413)
    # a Content-Length that lies (says small)
    r = c.post("/v1/classify", content=body, headers={**headers, "Content-Length": "100"})
    _assert_error(r, 413)
    assert list(upload_dir.iterdir()) == []


def test_reading_stops_as_soon_as_the_limit_is_passed(classifier, upload_dir, tmp_path):
    """Drive the ASGI app directly: a 1-MB body in 10-kB chunks, no Content-Length, a 20-kB limit."""
    app = create_app(classifier, max_upload_bytes=20_000, temp_dir=upload_dir)
    body, headers = _multipart(b"huge.wav", b"RIFF" + bytes(1_000_000))
    chunks = [body[k:k + 10_000] for k in range(0, len(body), 10_000)]
    sent = {"chunks": 0}
    messages = []

    async def receive():
        if sent["chunks"] < len(chunks):
            sent["chunks"] += 1
            return {"type": "http.request", "body": chunks[sent["chunks"] - 1],
                    "more_body": sent["chunks"] < len(chunks)}
        return {"type": "http.disconnect"}

    async def send(message):
        messages.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/classify", "raw_path": b"/v1/classify", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"test"), (b"content-type", headers["Content-Type"].encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))
    assert messages[0]["status"] == 413
    assert sent["chunks"] <= 4, f"read {sent['chunks']} of {len(chunks)} chunks"
    assert list(upload_dir.iterdir()) == []


def test_text_file_named_wav_is_415(client, upload_dir):
    r = client.post("/v1/classify", files={"file": ("notes.wav", b"just some text, not audio\n" * 40, "audio/wav")})
    message = _assert_error(r, 415)
    assert "notes.wav" in message and str(upload_dir) not in message
    assert list(upload_dir.iterdir()) == []


def test_empty_file_is_400(client):
    assert "empty" in _assert_error(client.post("/v1/classify", files={"file": ("e.wav", b"")}), 400)


def test_missing_field_and_wrong_content_type_are_400(client, tmp_path):
    _assert_error(client.post("/v1/classify", files={"audio": ("a.wav", _wav_bytes(tmp_path))}), 400)
    _assert_error(client.post("/v1/classify", json={"file": "a.wav"}), 400)
    _assert_error(client.post("/v1/classify"), 400)
    body, headers = _multipart(b"a.wav", _wav_bytes(tmp_path))
    _assert_error(client.post("/v1/classify", content=body[:-30], headers=headers), 400)  # cut short


def test_unusable_audio_is_422_with_the_reason(client, tmp_path, upload_dir):
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(16000, dtype=np.float32), 16000, subtype="PCM_16")
    message = _assert_error(client.post("/v1/classify", files={"file": ("quiet.wav", silent.read_bytes())}), 422)
    assert "silence" in message and message.startswith("quiet.wav") and str(upload_dir) not in message
    short = tmp_path / "short.wav"
    sf.write(str(short), 0.1 * np.ones(400, dtype=np.float32), 16000, subtype="PCM_16")
    assert "shorter" in _assert_error(client.post("/v1/classify", files={"file": ("s.wav", short.read_bytes())}), 422)


@pytest.mark.parametrize("raw, shown", [
    (b"../../etc/passwd.wav", "passwd.wav"),
    (b"..\\..\\x.wav", "x.wav"),
    (b"/tmp/../../abs.wav", "abs.wav"),
    (b"ctl\x00na\x1bme\x07\xe2\x80\xae.wav", "ctlname.wav"),
    (b"..", "upload"),
    (b"", "upload"),
])
def test_client_file_names_are_display_text_only(classifier, tmp_path, raw, shown, monkeypatch):
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    c = TestClient(create_app(classifier, max_upload_bytes=5_000_000, temp_dir=uploads))
    body, headers = _multipart(raw, _wav_bytes(tmp_path, name="src.wav"))
    name = raw.decode("utf-8", "replace")
    # wherever the client's name could land if it were used as a path
    targets = {(base / part).resolve() for base in (work, uploads, uploads / "d", tmp_path)
               for part in (name, name.replace("\\", "/"), shown) if part and "\x00" not in part}
    existing = {t for t in targets if t.exists()}
    def snapshot():  # this test's folder, recursively, and the two folders above it
        return {*tmp_path.rglob("*"), *tmp_path.parent.iterdir(), *tmp_path.parent.parent.iterdir()}

    everything = snapshot()
    r = c.post("/v1/classify", content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["path"] == shown
    assert list(uploads.iterdir()) == []
    assert list(work.iterdir()) == []
    assert {t for t in targets if t.exists()} == existing
    assert snapshot() == everything


def test_display_name():
    assert display_name("../../etc/passwd.wav") == "passwd.wav"
    assert display_name("..\\..\\x.wav") == "x.wav"
    assert display_name("a\x00b\nc\r\td.wav") == "abcd.wav"
    assert display_name("evil\u202egnp.wav") == "evilgnp.wav"
    assert display_name("a   b.wav") == "a b.wav"
    assert display_name(None) == display_name("") == display_name("dir/") == display_name(".") == "upload"
    long = display_name("x" * 1000 + ".flac")
    assert len(long) <= 120 and long.endswith(".flac")


# ---- the other endpoints ---------------------------------------------------------------------------------------
def test_healthz_model_and_limits(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.head("/healthz").status_code == 200
    model = client.get("/v1/model").json()
    assert model["classes"] == CLASSES
    assert model["sample_rate"] == 8000
    assert {"config", "model"} <= set(model)
    assert client.get("/v1/limits").json() == {"max_upload_bytes": 5_000_000}


def test_metrics_count_requests_errors_and_latency(client, tmp_path):
    client.get("/healthz")
    client.post("/v1/classify", files={"file": ("a.wav", _wav_bytes(tmp_path))})
    client.post("/v1/classify", files={"file": ("e.wav", b"")})
    client.get("/no/such/page")
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    assert 'soundscene_http_requests_total{endpoint="/healthz",method="GET",status="200"} 1.0' in text
    assert 'soundscene_http_requests_total{endpoint="/v1/classify",method="POST",status="200"} 1.0' in text
    assert 'soundscene_http_requests_total{endpoint="/v1/classify",method="POST",status="400"} 1.0' in text
    assert 'soundscene_http_requests_total{endpoint="other",method="GET",status="404"} 1.0' in text
    assert 'soundscene_classify_errors_total{reason="empty"} 1.0' in text
    assert "soundscene_classify_inference_seconds_count 1.0" in text
    assert 'soundscene_http_request_duration_seconds_bucket{endpoint="/v1/classify",le="+Inf"} 2.0' in text
    assert "soundscene_build_info{" in text


def _openapi_validator(doc: dict, *pointer: str):
    """A validator of the schema at ``pointer`` (path parts) in the OpenAPI document ``doc``, its ``#/...``
    references resolved in ``doc`` (OpenAPI 3.1 schemas are JSON Schema 2020-12)."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    uri = "urn:soundscene:openapi"
    registry = Registry().with_resource(uri, Resource.from_contents(doc, default_specification=DRAFT202012))
    where = "/".join(part.replace("~", "~0").replace("/", "~1") for part in pointer)
    return Draft202012Validator({"$ref": f"{uri}#/{where}"}, registry=registry)


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_openapi_documents_classify(client):
    doc = client.get("/openapi.json").json()
    op = doc["paths"]["/v1/classify"]["post"]
    assert {"200", "400", "413", "415", "422", "500"} <= set(op["responses"])
    assert {"/v1/model", "/healthz", "/metrics"} <= set(doc["paths"])
    form = op["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form == {"$ref": "#/components/schemas/upload"}
    assert "file" in doc["components"]["schemas"]["upload"]["properties"]
    assert "5 MB" in doc["components"]["schemas"]["upload"]["properties"]["file"]["description"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/prediction"}


def test_openapi_document_is_self_consistent(client):
    """Every reference in /openapi.json points at something in it, and the schemas there are valid JSON Schema."""
    from jsonschema import Draft202012Validator

    doc = client.get("/openapi.json").json()
    refs = set(_refs(doc))
    assert "#/components/schemas/prediction" in refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        node = doc
        for part in ref[2:].split("/"):
            assert part in node, f"{ref} does not resolve"
            node = node[part]
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    assert "$defs" not in json.dumps(doc)  # no reference left relative to a nested schema


def test_classify_response_validates_against_the_published_schema(client, tmp_path):
    from jsonschema import Draft202012Validator

    from soundscene.core import records

    doc = client.get("/openapi.json").json()
    response = ("paths", "/v1/classify", "post", "responses", "{}", "content", "application/json", "schema")
    published = _openapi_validator(doc, *(part.format(200) for part in response))
    error_body = _openapi_validator(doc, *(part.format(415) for part in response))
    generated = Draft202012Validator(records.schema_of("prediction"))
    r = client.post("/v1/classify", files={"file": ("long.wav", _wav_bytes(tmp_path, 12.0, scenes=True))})
    assert r.status_code == 200, r.text
    assert "NaN" not in r.text and "Infinity" not in r.text
    record = r.json()
    assert len(record["windows"]) > 1 and record["segments"]
    published.validate(record)
    generated.validate(record)
    for bad in ({**record, "extra": 1}, {k: v for k, v in record.items() if k != "label"},
                {**record, "windows": [{"start": 0}]}):
        assert not published.is_valid(bad) and not generated.is_valid(bad)
    error_body.validate(client.post("/v1/classify", files={"file": ("n.wav", b"not audio" * 50)}).json())


def test_the_route_table_lists_exactly_the_routes_served(client):
    from soundscene.apps.serve import ROUTES

    app = client.app
    builtin = {app.openapi_url, app.docs_url, app.docs_url + "/oauth2-redirect", app.redoc_url}
    served = {(method, route.path) for route in app.routes for method in getattr(route, "methods", ())
              if route.path not in builtin}
    table = {(route.method, route.path) for route in ROUTES}
    assert len(table) == len(ROUTES)  # each (method, path) once
    assert served == table
    for method, path in sorted(table):
        if method in ("GET", "HEAD"):
            r = client.request(method, path.replace("{name}", "app.js"))
            assert r.status_code == 200, (method, path, r.text)
    documented = {(m.upper(), p) for p, ops in client.get("/openapi.json").json()["paths"].items() for m in ops}
    assert documented == {(r.method, r.path) for r in ROUTES if r.options.get("include_in_schema", True)}


def test_errors_are_one_line_json(client):
    _assert_error(client.get("/nowhere"), 404)
    _assert_error(client.get("/v1/classify"), 405)
    _assert_error(client.get("/static/../serve.py"), 404)
    _assert_error(client.get("/static/nothing.js"), 404)


def test_a_failing_model_is_a_500_with_one_line(classifier, upload_dir, tmp_path):
    from soundscene.errors import ModelFileError

    class Broken:
        def describe(self):
            return classifier.describe()

        def classify_file(self, path, *, name=None):
            raise ModelFileError(f"{name}: the model gives non-finite probabilities")

    c = TestClient(create_app(Broken(), max_upload_bytes=5_000_000, temp_dir=upload_dir))
    message = _assert_error(c.post("/v1/classify", files={"file": ("a.wav", _wav_bytes(tmp_path))}), 500)
    assert message.startswith("a.wav:") and str(upload_dir) not in message
    assert list(upload_dir.iterdir()) == []


def test_the_page_and_its_files_are_served(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert 'id="file-input"' in r.text and "/static/app.js" in r.text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", r.text)  # nothing from a CDN
    for name, kind in [("app.js", "javascript"), ("style.css", "css"), ("recorder-worklet.js", "javascript")]:
        f = client.get(f"/static/{name}")
        assert f.status_code == 200 and kind in f.headers["content-type"]


def test_run_server_refuses_bad_input_in_one_line(tmp_path, model_file):
    with pytest.raises(SoundsceneError):
        run_server(tmp_path / "missing.safetensors", port=0)
    with pytest.raises(SoundsceneError, match="max-upload-mb"):
        run_server(model_file, port=0, max_upload_mb=0)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        with pytest.raises(SoundsceneError, match="cannot listen"):
            run_server(model_file, port=busy.getsockname()[1])
    finally:
        busy.close()


# ---- the real server and the browser ---------------------------------------------------------------------------
@contextlib.contextmanager
def _running(app):
    """``app`` served by uvicorn on a free port of 127.0.0.1 in a thread; yields the port once it listens."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            ready.set()

    ready = threading.Event()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        assert ready.wait(15), "uvicorn did not start"
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def live_server(classifier, tmp_path_factory):
    uploads = tmp_path_factory.mktemp("live_uploads")
    with _running(create_app(classifier, max_upload_bytes=20_000_000, temp_dir=uploads)) as port:
        yield SimpleNamespace(url=f"http://127.0.0.1:{port}", port=port, uploads=uploads)


def test_real_server_refuses_a_chunked_upload_over_the_limit(classifier, tmp_path_factory):
    """Over a real socket: no Content-Length, chunked transfer, 2 MB against a 100-kB limit -> 413 early."""
    app = create_app(classifier, max_upload_bytes=100_000, temp_dir=tmp_path_factory.mktemp("chunked"))
    with _running(app) as port:
        body, headers = _multipart(b"big.wav", b"RIFF" + bytes(2_000_000))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.putrequest("POST", "/v1/classify")
        conn.putheader("Content-Type", headers["Content-Type"])
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        sent = 0
        try:
            for k in range(0, len(body), 16_384):
                piece = body[k:k + 16_384]
                conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
            conn.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the whole body went out
        response = conn.getresponse()
        assert response.status == 413
        assert "limit" in json.loads(response.read())["error"]
        conn.close()


def _tut_clip() -> Path | None:
    audio = TUT / "audio"
    clips = sorted(audio.glob("*.wav")) if audio.is_dir() else []
    return clips[0] if clips else None


def test_the_page_classifies_an_upload_in_a_real_browser(live_server, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (the browser test drives Debian's Chromium)")
    from playwright.sync_api import sync_playwright

    clip = _tut_clip()
    if clip is None:  # the shared data is absent: a generated WAV instead
        clip = tmp_path / "generated.wav"
        _wav_bytes(tmp_path, 10.0, rate=48000, name="generated.wav")
    long_clip = tmp_path / "twenty-seconds.wav"
    _wav_bytes(tmp_path, 20.0, rate=16000, name=long_clip.name, scenes=True)
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("this is text\n" * 20)
    hush = tmp_path / "hush.wav"  # a muted microphone: 1-LSB dither, about -100 dBFS
    import soundfile as sf
    sf.write(str(hush), (np.random.default_rng(0).integers(-1, 2, 32000) / 32768).astype(np.float32), 16000,
             subtype="PCM_16")

    problems: list[str] = []
    with sync_playwright() as p:
        # a fake microphone (a beeping test signal) for the recording path, granted without a prompt
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            *CHROMIUM_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(f"console: {m.text}")
                    if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
            page.goto(live_server.url + "/")
            page.wait_for_function("() => document.querySelectorAll('#class-chips .chip').length === 4")

            page.set_input_files("#file-input", str(clip))
            page.click("#classify-btn")
            page.wait_for_selector("#result[data-state=done]", timeout=30_000)
            label = page.get_attribute("#result", "data-label")
            assert label in CLASSES
            assert page.inner_text("#result-label") == label.replace("_", " ")
            assert page.locator("#bars .bar").count() == len(CLASSES)
            assert page.inner_text("#result-file") == clip.name
            assert "dBFS" in page.inner_text("#fact-level")
            assert "uncalibrated" in page.inner_text("#fact-laeq")  # levels are never shown as dB SPL unless so
            assert "/" in page.inner_text("#fact-spread")
            shot = tmp_path / "page.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            if os.environ.get("SOUNDSCENE_SCREENSHOTS"):  # to look at the page: a folder to copy it into
                shutil.copy(shot, os.environ["SOUNDSCENE_SCREENSHOTS"])

            page.set_input_files("#file-input", str(long_clip))
            page.click("#classify-btn")
            page.wait_for_function("() => document.getElementById('result-file').textContent === 'twenty-seconds.wav'"
                                   " && document.getElementById('result').dataset.state === 'done'", timeout=30_000)
            windows = int(page.inner_text("#fact-windows"))
            if windows > 1:
                assert page.is_visible("#timeline svg")
                assert page.locator("#timeline svg rect").count() >= windows
            page.screenshot(path=str(tmp_path / "long.png"), full_page=True)

            page.set_input_files("#file-input", str(hush))
            page.click("#classify-btn")
            page.wait_for_function("() => document.getElementById('result-file').textContent === 'hush.wav'"
                                   " && document.getElementById('result').dataset.state === 'done'", timeout=30_000)
            assert page.inner_text("#result-label") == "silence" and "no scene" in page.inner_text("#warning-text")
            assert page.inner_text("#confidence") == "\u2013"

            page.set_input_files("#file-input", str(not_audio))
            page.click("#classify-btn")
            page.wait_for_selector("#result[data-state=error]", timeout=30_000)
            assert "notes.wav" in page.inner_text("#error-text")
            assert "415" in page.inner_text("#error-title")

            # record from the (fake) microphone: captured, encoded as 16-bit WAV in the page, uploaded
            page.click("#record-btn")
            page.wait_for_function("() => document.getElementById('rec-time').textContent === '0:01'",
                                   timeout=10_000)
            page.click("#record-btn")
            page.wait_for_selector("#result[data-state=done]", timeout=30_000)
            assert page.inner_text("#result-file").startswith("recording-")
            assert page.get_attribute("#result", "data-label") in CLASSES
        finally:
            browser.close()
    assert problems == []  # no script errors, no Content-Security-Policy violations
    assert list(live_server.uploads.iterdir()) == []


# ---- every error is one JSON line, a bug included (issue 23, item 10) ----------------------------------------
def test_an_unexpected_exception_is_a_json_500_logged_once(classifier, upload_dir, tmp_path, caplog):
    class Buggy:
        def describe(self):
            return classifier.describe()

        def classify_file(self, path, *, name=None):
            raise RuntimeError("a bug\nover two lines")

    c = TestClient(create_app(Buggy(), max_upload_bytes=5_000_000, temp_dir=upload_dir))  # raises what escapes
    with caplog.at_level("ERROR", logger="soundscene.serve"):
        got = c.post("/v1/classify", files={"file": ("a.wav", _wav_bytes(tmp_path))})
    assert got.headers["content-type"].startswith("application/json")
    assert _assert_error(got, 500) == "internal server error; see the server log"
    logged = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(logged) == 1 and logged[0].exc_info[0] is RuntimeError
    assert list(upload_dir.iterdir()) == []
    assert 'status="500"' in c.get("/metrics").text


@pytest.mark.parametrize("body", [b"[" * 5000 + b"]" * 5000, b'{"file": ' + b"[" * 5000 + b"]" * 5000 + b"}"])
def test_a_deeply_nested_json_body_is_a_one_line_4xx(client, body):
    got = client.post("/v1/classify", content=body, headers={"Content-Type": "application/json"})
    assert 400 <= got.status_code < 500 and got.headers["content-type"].startswith("application/json")
    assert "multipart/form-data" in _assert_error(got, got.status_code)
