"""Plain helpers shared by the tests: constants, audio writers and data set builders (no fixtures here).

Fixtures live in conftest.py and are built from these.  Everything is small
(8 kHz, 1.5-s clips, narrow network, few epochs) so the whole suite runs in a
few minutes on two CPU cores.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

import numpy as np
import soundfile as sf

# The real recordings (../shared/data next to the checkout); may be absent, e.g. on CI.
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

TINY_CLASSES = ("street_traffic", "park", "metro", "rain")

TINY = {
    "audio": {"sample_rate": 8000, "clip_seconds": 1.5, "min_seconds": 0.2},
    "features": {"n_mels": 32, "patch_frames": 32, "patch_hop_frames": 16},
    "model": {"params": {"widths": [8, 16, 32]}},
    "train": {"epochs": 4, "batch_size": 32, "val_fraction": 0.25},
}


# --- audio files and small data sets ----------------------------------------------------------------------------

def write_tone(path: Path, *, sample_rate: int = 16000, seconds: float = 1.0, channels: int = 1,
               subtype: str = "PCM_16", frequency: float = 440.0) -> np.ndarray:
    """Write a sine (different phase per channel) and return the float64 samples written, (frames, channels)."""
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    data = np.stack([0.5 * np.sin(2 * np.pi * frequency * t + k) for k in range(channels)], axis=1)
    sf.write(str(path), data, sample_rate, subtype=subtype)
    return data


def two_class_folder(root: Path, per_class: int = 4) -> Path:
    """A class-per-folder data set: park/ and street/ with per_class 1.5-s tones at 8 kHz."""
    for label in ("park", "street"):
        (root / label).mkdir(parents=True)
        for k in range(per_class):
            write_tone(root / label / f"{k}.wav", sample_rate=8000, seconds=1.5, frequency=200 + 300 * k)
    return root


def write_labels_csv(path: Path, rows, header=("path", "label", "fold", "group")) -> Path:
    """A labels CSV with the given header and rows."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def in_memory(items, config, classes, **kwargs):
    """Features of items computed in memory by the one feature-set builder (no cache): (FeatureSet, skipped)."""
    from soundscene.training.cache import feature_sets

    sets, skipped = feature_sets({"all": items}, config, classes, use_cache=False, progress=False, **kwargs)
    return sets["all"], skipped


# --- miniature copies of the public data sets' exact layouts -----------------------------------------------------
# Real file names, separators and columns, with a few short generated WAVs.

TAU_SCENES = ("airport", "metro", "park")


def _clip(path: Path, scene: str, seed: int, *, sample_rate: int, seconds: float, channels: int, subtype: str):
    from soundscene.training.synth import synthesize_scene

    path.parent.mkdir(parents=True, exist_ok=True)
    mono = synthesize_scene({"airport": "cafe", "metro": "metro", "park": "park"}.get(scene, scene),
                            sample_rate=sample_rate, seconds=seconds, seed=seed, difficulty=0.1)
    data = np.stack([mono * (0.9 + 0.1 * k) for k in range(channels)], axis=1)
    sf.write(str(path), data, sample_rate, subtype=subtype)


def _tsv(path: Path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def make_tau(root: Path, *, mobile: bool = False, segments: int = 2, seconds: float = 1.0) -> Path:
    """TAU Urban Acoustic Scenes 2019 (or 2020 Mobile) development layout.

    Cities barcelona (train) and helsinki (evaluate) x 2 locations x `segments`
    segments x 3 scenes; 48 kHz 24-bit stereo like the real files (2020: devices
    a, b, s1 as copies of each segment, mono like the real 2020 set).
    """
    devices = ("a", "b", "s1") if mobile else ("a",)
    meta, train, evaluate, test = [], [], [], []
    seed = 0
    for scene in TAU_SCENES:
        for city in ("barcelona", "helsinki"):
            for loc in (0, 1):
                for seg in range(segments):
                    seed += 1
                    for dev in devices:
                        name = f"audio/{scene}-{city}-{loc}-{seg}-{dev}.wav"
                        _clip(root / name, scene, seed, sample_rate=48000 if not mobile else 44100,
                              seconds=seconds, channels=1 if mobile else 2, subtype="PCM_24")
                        meta.append([name, scene, f"{city}-{loc}", dev])
                        (train if city == "barcelona" else evaluate).append([name, scene])
                        if city == "helsinki":
                            test.append([name])
    _tsv(root / "meta.csv", ["filename", "scene_label", "identifier", "source_label"], meta)
    _tsv(root / "evaluation_setup" / "fold1_train.csv", ["filename", "scene_label"], train)
    _tsv(root / "evaluation_setup" / "fold1_evaluate.csv", ["filename", "scene_label"], evaluate)
    _tsv(root / "evaluation_setup" / "fold1_test.csv", ["filename"], test)
    return root


US8K_FORMATS = [  # (sample rate, channels, subtype): UrbanSound8K mixes them
    (44100, 2, "PCM_16"), (48000, 1, "PCM_24"), (22050, 1, "PCM_U8"), (96000, 2, "FLOAT"), (16000, 1, "PCM_16"),
    (11025, 2, "PCM_16"), (32000, 1, "PCM_32"), (44100, 1, "PCM_24"), (8000, 1, "PCM_16"), (24000, 2, "PCM_16"),
]


def make_urbansound8k(root: Path) -> Path:
    """UrbanSound8K layout: metadata/UrbanSound8K.csv and audio/fold1..fold10, 2 classes, mixed formats."""
    classes = [(3, "dog_bark"), (7, "jackhammer")]
    rows = []
    for fold in range(1, 11):
        rate, channels, subtype = US8K_FORMATS[fold - 1]
        for class_id, name in classes:
            fs_id = 1000 + fold * 10 + class_id
            for take in range(2):
                fname = f"{fs_id}-{class_id}-0-{take}.wav"
                scene = "street_traffic" if class_id == 3 else "metro"
                _clip(root / "audio" / f"fold{fold}" / fname, scene, fs_id * 7 + take, sample_rate=rate,
                      seconds=0.6 + 0.2 * take, channels=channels, subtype=subtype)
                rows.append([fname, fs_id, 0.0, 1.0, 1, fold, class_id, name])
    path = root / "metadata" / "UrbanSound8K.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"])
        w.writerows(rows)
    return root


def make_esc50(root: Path) -> Path:
    """ESC-50 layout: meta/esc50.csv and audio/; 3 categories (2 in ESC-10), 5 folds, 2 takes per source."""
    categories = [(0, "dog", True), (10, "rain", True), (19, "thunderstorm", False)]
    rows = []
    for fold in range(1, 6):
        for target, category, esc10 in categories:
            src = 100000 + fold * 100 + target
            for take in "AB":
                fname = f"{fold}-{src}-{take}-{target}.wav"
                _clip(root / "audio" / fname, {"dog": "park", "rain": "rain"}.get(category, "street_traffic"),
                      src + ord(take), sample_rate=44100, seconds=0.5, channels=1, subtype="PCM_16")
                rows.append([fname, fold, target, category, str(esc10), src, take])
    path = root / "meta" / "esc50.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        w.writerows(rows)
    return root


# --- a real MQTT broker (Debian's mosquitto) and a subscriber ----------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")



class Certificates:
    """TLS material made by the test with ``cryptography`` (EC P-256 keys, valid from a day ago for two days), in
    ``folder``: ``ca`` (the CA certificate), ``server_cert``/``server_key`` (for 127.0.0.1, ::1 and localhost,
    signed by the CA), ``client_cert``/``client_key`` (CN ``client``, signed by the CA) and ``other_ca`` (a CA
    that signed nothing here: a broker checked against it is not trusted)."""

    def __init__(self, folder: Path):
        from cryptography.hazmat.primitives.asymmetric import ec

        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = self._certificate("soundscene test CA", ca_key.public_key(), None, ca_key)
        self.ca = self._write("ca.crt", ca)
        other_key = ec.generate_private_key(ec.SECP256R1())
        self.other_ca = self._write("other-ca.crt", self._certificate("another CA", other_key.public_key(), None,
                                                                      other_key))
        self.server_cert, self.server_key = self._leaf("server", ca, ca_key, server=True)
        self.client_cert, self.client_key = self._leaf("client", ca, ca_key, server=False)

    def _leaf(self, name: str, ca, ca_key, *, server: bool) -> tuple[Path, Path]:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._certificate(name, key.public_key(), ca, ca_key, server=server)
        key_path = self.folder / f"{name}.key"
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        key_path.chmod(0o600)
        return self._write(f"{name}.crt", cert), key_path

    @staticmethod
    def _certificate(name: str, public_key, issuer, issuer_key, *, server: bool | None = None):
        """A CA certificate (``issuer`` None: self-signed) or a server/client certificate signed by ``issuer``."""
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        is_ca = issuer is None
        builder = (x509.CertificateBuilder().subject_name(subject)
                   .issuer_name(subject if is_ca else issuer.subject).public_key(public_key)
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
                   .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                                  critical=False)
                   .add_extension(x509.KeyUsage(digital_signature=not is_ca, content_commitment=False,
                                                key_encipherment=False, data_encipherment=False,
                                                key_agreement=not is_ca, key_cert_sign=is_ca, crl_sign=is_ca,
                                                encipher_only=False, decipher_only=False), critical=True))
        if server is True:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1"))]), critical=False)
        if server is not None:
            usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def _write(self, name: str, cert) -> Path:
        from cryptography.hazmat.primitives import serialization

        path = self.folder / name
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path


# An ACL for mosquitto's acl_file: each sensor writes only under its own user name, the hub reads everything
# (and writes its alerts).
SENSOR_ACL = """pattern write soundscene/%u/#
user hub
topic read soundscene/#
topic write soundscene/alerts/#
"""


class Broker:
    """A mosquitto process on 127.0.0.1:port; start() waits until the port accepts, stop() kills it.

    With ``users`` it asks for a user name and password (a password file made with mosquitto_passwd), with
    ``acl`` (the text of an ``acl_file``) it checks who may read and write what.  With ``certificates``
    (:class:`Certificates`) it also has a TLS listener on ``tls_port`` with the server certificate, which asks
    clients for a certificate signed by the CA when ``require_certificate``.  The plain listener stays.
    """

    def __init__(self, folder: Path, port: int, users: dict[str, str] | None = None, *,
                 certificates: Certificates | None = None, require_certificate: bool = False,
                 acl: str | None = None):
        self.port, self.folder, self.proc = port, folder, None
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.access(binary, os.X_OK):
            pytest.fail("the MQTT tests need the mosquitto broker: apt-get install -y mosquitto", pytrace=False)
        self.binary = binary
        self.passwords = folder / "passwords"
        auth = "allow_anonymous true\n"
        if users:  # mosquitto_passwd comes with the mosquitto package
            for k, (user, password) in enumerate(users.items()):
                self.set_password(user, password, create=k == 0)
            auth = f"allow_anonymous false\npassword_file {self.passwords}\n"
        if acl is not None:
            (folder / "acl").write_text(acl)
            auth += f"acl_file {folder / 'acl'}\n"
        if (users or acl is not None or certificates) and os.geteuid() == 0:
            auth += "user root\n"  # else it drops to user mosquitto, who cannot read pytest's tmp_path
        self.tls_port = free_port() if certificates else None
        listeners = f"listener {port} 127.0.0.1\n"
        if certificates:
            listeners += (f"listener {self.tls_port} 127.0.0.1\ncafile {certificates.ca}\n"
                          f"certfile {certificates.server_cert}\nkeyfile {certificates.server_key}\n"
                          f"require_certificate {'true' if require_certificate else 'false'}\n")
        self.config = folder / "mosquitto.conf"
        self.config.write_text(f"{auth}persistence false\nlog_dest stderr\n{listeners}")
        self.log = folder / "mosquitto.log"

    def set_password(self, user: str, password: str, *, create: bool = False) -> None:
        """Set ``user``'s password in the password file (a running broker reads it again at :meth:`reload`)."""
        subprocess.run(["mosquitto_passwd", "-b"] + (["-c"] if create else []) + [str(self.passwords), user, password],
                       check=True, capture_output=True, timeout=30)

    def reload(self) -> None:
        """SIGHUP: mosquitto reads its password and ACL files again."""
        self.proc.send_signal(signal.SIGHUP)

    def start(self) -> "Broker":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        for port in [self.port] + ([self.tls_port] if self.tls_port else []):
            while True:
                if self.proc.poll() is not None:
                    pytest.fail(f"mosquitto exited at start: {self.log.read_text()[-2000:]}", pytrace=False)
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        self.stop()
                        pytest.fail(f"mosquitto did not accept connections on port {port} within 10 s",
                                    pytrace=False)
                    time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def log_lines(self, text: str) -> int:
        """How many lines of the broker's log contain ``text``."""
        return sum(text in line for line in self.log.read_text(errors="replace").splitlines())


class Subscriber:
    """A paho client on soundscene/<sensor>/#, recording (topic, payload, retain) in arrival order.

    With ``ca`` it connects over TLS (checking the broker's certificate against it; ``cert`` and ``key`` give a
    client certificate), with ``username`` and ``password`` it logs in."""

    def __init__(self, port: int, sensor_id: str, *, ca: Path | None = None, cert: Path | None = None,
                 key: Path | None = None, username: str | None = None, password: str | None = None):
        self.messages: list[tuple[str, str, bool]] = []
        self.sensor_id = sensor_id
        self._subscribed = threading.Event()
        import paho.mqtt.client as mqtt

        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub-{time.monotonic_ns()}")
        if ca is not None:
            self.client.tls_set(ca_certs=str(ca), certfile=cert and str(cert), keyfile=key and str(key))
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"soundscene/{sensor_id}/#", qos=1)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload.decode(), m.retain))
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self._subscribed.wait(10), "subscriber did not subscribe within 10 s"

    def on(self, kind: str) -> list[tuple[str, bool]]:
        return [(payload, retain) for topic, payload, retain in list(self.messages) if topic.endswith("/" + kind)]

    def json(self, kind: str) -> list[dict]:
        return [json.loads(payload) for payload, _ in self.on(kind)]

    def wait(self, kind: str, count: int, timeout: float = 10.0) -> list:
        wait_for(lambda: len(self.on(kind)) >= count, timeout, f"{count} message(s) on {kind}: {self.messages}")
        return self.on(kind)

    def mark(self, timeout: float = 10.0) -> None:
        """Publish a marker to soundscene/<sensor>/marker and wait until it comes back.

        The broker sends a client its messages in order, so whatever it had for this subscriber before the
        marker (the retained messages sent at subscription, say) has arrived by then."""
        token = f"marker-{time.monotonic_ns()}"
        self.client.publish(f"soundscene/{self.sensor_id}/marker", token, qos=1)
        wait_for(lambda: token in [p for p, _ in self.on("marker")], timeout, "the marker")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()




# --- the command line in a fresh, memory-capped process ----------------------------------------------------------

_MANY = """
import contextlib, io, json, sys
from soundscene.cli import main
out = []
for argv in json.loads(sys.argv[1]):
    err, std = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
        code = main(argv)
    out.append({"code": code, "stderr": err.getvalue(), "stdout": std.getvalue()})
print(json.dumps(out))
"""


def run_cli_capped(commands: list[list], *, timeout: float = 240) -> list[dict]:
    """Run each command line (``soundscene.cli.main(argv)``) in ONE fresh process whose address space is capped
    at 4 GiB, so that a missing bound fails the test (MemoryError) instead of exhausting the machine, and the
    interpreter starts once.  Returns ``{"code", "stderr", "stdout"}`` per command."""
    import resource
    import sys

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    argvs = json.dumps([[str(a) for a in argv] for argv in commands])
    result = subprocess.run([sys.executable, "-c", _MANY, argvs], capture_output=True, text=True, timeout=timeout,
                            preexec_fn=cap)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
