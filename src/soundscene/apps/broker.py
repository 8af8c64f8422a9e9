"""The one way soundscene reaches an MQTT broker: its address, TLS, credentials, and the paho client made from them.

Everything that speaks MQTT (the sensor's :class:`~soundscene.apps.mqtt.SensorPublisher`, the hub's
:class:`~soundscene.apps.hub.ingest.Ingest`, ``hub simulate``) builds its client with :func:`make_client` from a
:class:`BrokerSettings`, and every command takes the same options (:func:`add_broker_arguments`)::

    --mqtt mqtts://broker.local:8883 --mqtt-ca ca.crt --mqtt-user kitchen-1 --mqtt-password-file /etc/soundscene/pw

* ``--mqtt``: ``mqtts://HOST[:PORT]`` (TLS, port 8883 by default), ``mqtt://HOST[:PORT]`` or ``HOST[:PORT]``
  (plain, 1883); IPv6 addresses go in brackets (``mqtts://[fd00::5]:8883``).  A URL holds no user or password.
* ``--mqtt-ca FILE``: the CA certificate(s) that signed the broker's certificate (PEM); without it the system's
  CAs.  The broker's certificate must name the host given in ``--mqtt`` (it is checked).
* ``--mqtt-cert FILE`` and ``--mqtt-key FILE``: a client certificate and its unencrypted key (PEM), for a broker
  that asks for one (mosquitto's ``require_certificate true``).
* ``--mqtt-user NAME`` and the password: from ``--mqtt-password-file FILE`` (its first line) or the environment
  variable ``SOUNDSCENE_MQTT_PASSWORD``; never on the command line, where every user of the machine sees it.

Problems a user can cause are one-line :class:`~soundscene.errors.SoundsceneError` messages, which never show the
password.  paho-mqtt is imported only when a client is made, so this module imports without it.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .._net import LOOPBACK
from ..errors import SoundsceneError, warn

DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883
PASSWORD_ENV = "SOUNDSCENE_MQTT_PASSWORD"
_HOST_HINT = "give the MQTT broker as HOST:PORT, e.g. localhost:1883 or [::1]:1883"
_URL_HINT = "give the MQTT broker as mqtts://HOST:PORT (TLS), mqtt://HOST:PORT or HOST:PORT, e.g. mqtts://broker:8883"

# MQTT 5 reason codes of a refused CONNECT or PUBLISH: (name, what to do)
_REASONS = {
    0x80: ("Unspecified error", "see the broker's log"),
    0x81: ("Malformed Packet", "see the broker's log"),
    0x82: ("Protocol Error", "see the broker's log"),
    0x83: ("Implementation specific error", "see the broker's log"),
    0x84: ("Unsupported Protocol Version", "the broker does not speak this MQTT version"),
    0x85: ("Client Identifier not valid", "the broker does not accept this client id"),
    0x86: ("Bad User Name or Password", "check --mqtt-user and --mqtt-password-file"),
    0x87: ("Not authorized", "the broker does not accept this user: check --mqtt-user and --mqtt-password-file "
                             "(or SOUNDSCENE_MQTT_PASSWORD) and the broker's password file"),
    0x88: ("Server unavailable", "the broker is not available now"),
    0x89: ("Server busy", "the broker is busy"),
    0x8A: ("Banned", "the broker has banned this client"),
    0x8C: ("Bad authentication method", "the broker wants another authentication method"),
    0x90: ("Topic Name invalid", "the broker does not accept this topic"),
    0x95: ("Packet too large", "the message is larger than the broker accepts"),
    0x97: ("Quota exceeded", "the broker's quota for this client is used up"),
    0x99: ("Payload format invalid", "see the broker's log"),
    0x9C: ("Use another server", "the broker sends this client to another server"),
    0x9D: ("Server moved", "the broker has moved"),
    0x9F: ("Connection rate exceeded", "the client connects too often"),
}
_PUBLISH_HINTS = {0x87: "the broker's ACL does not let this user publish there (with `pattern write "
                        "soundscene/%u/#` the sensor id must be the user name)"}


@dataclass(frozen=True)
class BrokerSettings:
    """Where the broker is and how to reach it.  ``repr`` never shows the password."""

    host: str
    port: int = DEFAULT_PORT
    tls: bool = False
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        """``host:port``, an IPv6 host in brackets."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``mqtts://host:port`` or ``mqtt://host:port`` (no credentials)."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.address}"

    def __str__(self) -> str:
        return self.url


def parse_broker(text: str, *, default_port: int = DEFAULT_PORT, hint: str = _HOST_HINT) -> tuple[str, int]:
    """``"host:port"`` -> ``(host, port)``; the port defaults to ``default_port``, IPv6 addresses go in brackets.

    ``"broker.local"``, ``"10.0.0.5:1884"``, ``"[::1]:1883"`` and ``"[fe80::1]"`` are valid; a URL is not
    (:func:`parse_broker_url` reads those).
    """
    raw = text
    text = (text or "").strip()
    if not text:
        raise SoundsceneError(f"empty MQTT broker address: {hint}")
    if "://" in text:
        raise SoundsceneError(f"MQTT broker {raw!r}: no URL scheme, {hint}")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SoundsceneError(f"MQTT broker {raw!r}: missing ']' after the IPv6 address; {hint}")
        host, rest = text[1:end], text[end + 1:]
        if rest and not rest.startswith(":"):
            raise SoundsceneError(f"MQTT broker {raw!r}: unexpected text after ']'; {hint}")
        port_text = rest[1:] if rest else None
        if not host or ":" not in host:
            raise SoundsceneError(f"MQTT broker {raw!r}: brackets are for IPv6 addresses only; {hint}")
    elif text.count(":") > 1:
        raise SoundsceneError(f"MQTT broker {raw!r}: put an IPv6 address in brackets, e.g. [::1]:1883")
    else:
        host, sep, port_text = text.partition(":")
        if not sep:
            port_text = None
    if not host:
        raise SoundsceneError(f"MQTT broker {raw!r}: missing host; {hint}")
    if re.search(r"[\s/\[\]@]", host):
        raise SoundsceneError(f"MQTT broker {raw!r}: invalid host {host!r}; {hint}")
    if port_text is None:
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise SoundsceneError(f"MQTT broker {raw!r}: port must be a number from 1 to 65535; {hint}")
    return host, int(port_text)


def parse_broker_url(text: str) -> BrokerSettings:
    """``mqtts://HOST[:PORT]`` (TLS, default 8883), ``mqtt://HOST[:PORT]`` or ``HOST[:PORT]`` (plain, default 1883)
    -> :class:`BrokerSettings` without credentials; anything else is a one-line SoundsceneError."""
    stripped = (text or "").strip() if isinstance(text, str) else ""
    scheme, sep, rest = stripped.partition("://")
    if not sep:
        return BrokerSettings(*parse_broker(stripped, hint=_URL_HINT))
    if "@" in rest:  # user:password@host: never echo it, it may hold a password
        raise SoundsceneError("MQTT broker URL: no user or password in the URL; give --mqtt-user NAME and "
                              "--mqtt-password-file FILE (or SOUNDSCENE_MQTT_PASSWORD)")
    scheme = scheme.lower()
    if scheme not in ("mqtt", "mqtts"):
        raise SoundsceneError(f"MQTT broker {text!r}: unknown scheme {scheme + '://'!r}; {_URL_HINT}")
    if rest.endswith("/"):
        rest = rest[:-1]
    if "/" in rest or "?" in rest:
        raise SoundsceneError(f"MQTT broker {text!r}: a broker URL has no path; {_URL_HINT}")
    tls = scheme == "mqtts"
    host, port = parse_broker(rest, default_port=DEFAULT_TLS_PORT if tls else DEFAULT_PORT, hint=_URL_HINT)
    return BrokerSettings(host, port, tls=tls)


def _readable(option: str, path: str | Path | None) -> Path | None:
    if path is None:
        return None
    path = Path(path)
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise SoundsceneError(f"{option} {path}: cannot read it ({exc.strerror or exc})") from None
    return path


def _password_from(password_file: Path | None, environ: Mapping[str, str]) -> str | None:
    if password_file is None:
        return environ.get(PASSWORD_ENV) or None
    try:
        text = password_file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SoundsceneError(f"--mqtt-password-file {password_file}: not UTF-8 text") from None
    except OSError as exc:
        raise SoundsceneError(f"--mqtt-password-file {password_file}: cannot read it ({exc.strerror or exc})") from None
    lines = text.splitlines()
    if not lines or not lines[0]:
        raise SoundsceneError(f"--mqtt-password-file {password_file}: its first line (the password) is empty")
    return lines[0]


def broker_settings(url: str, *, ca: str | Path | None = None, cert: str | Path | None = None,
                    key: str | Path | None = None, username: str | None = None,
                    password_file: str | Path | None = None,
                    environ: Mapping[str, str] = os.environ) -> BrokerSettings:
    """The checked settings of ``--mqtt URL`` and its options; the password comes from ``password_file`` (its
    first line) or, with a user name and no file, the environment variable ``SOUNDSCENE_MQTT_PASSWORD``."""
    base = parse_broker_url(url)
    if (cert is None) != (key is None):
        raise SoundsceneError("--mqtt-cert and --mqtt-key go together: give the client certificate and its key")
    if not base.tls:
        for option, value in (("--mqtt-ca", ca), ("--mqtt-cert", cert)):
            if value is not None:
                raise SoundsceneError(f"{option} is for TLS: give the broker as mqtts://HOST:PORT, not {base.url}")
    if username is not None and (not username or re.search(r"[\x00-\x1f\x7f]", username)):
        raise SoundsceneError("--mqtt-user must be a non-empty name without control characters")
    if password_file is not None and username is None:
        raise SoundsceneError("--mqtt-password-file needs --mqtt-user NAME")
    ca, cert, key = _readable("--mqtt-ca", ca), _readable("--mqtt-cert", cert), _readable("--mqtt-key", key)
    password = _password_from(Path(password_file) if password_file is not None else None, environ) \
        if username is not None else None
    if password is not None and not base.tls and base.host not in LOOPBACK:
        warn(f"MQTT: the password for {username} goes unencrypted to {base.address}; use mqtts:// (TLS)")
    return BrokerSettings(base.host, base.port, tls=base.tls, ca=ca, cert=cert, key=key, username=username,
                          password=password)


def as_settings(broker: BrokerSettings | tuple[str, int] | str, port: int | None = None, *,
                username: str | None = None, password: str | None = None) -> BrokerSettings:
    """``broker`` as :class:`BrokerSettings`: settings as they are, or a ``(host, port)`` pair, or a host and
    ``port``, with ``username`` and ``password`` (which may not come with settings)."""
    if isinstance(broker, BrokerSettings):
        if port is not None or username is not None or password is not None:
            raise SoundsceneError("give the MQTT broker either as BrokerSettings or as host, port and credentials")
        return broker
    if isinstance(broker, tuple):
        broker, port = broker
    return BrokerSettings(broker, DEFAULT_PORT if port is None else port, username=username, password=password)


# ---- the paho client -------------------------------------------------------------------------------------------

def import_paho():
    """paho.mqtt.client (2.x), or a one-line SoundsceneError saying how to install it."""
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise SoundsceneError("publishing over MQTT needs paho-mqtt: pip install 'paho-mqtt>=2'") from None
    if not hasattr(mqtt, "CallbackAPIVersion"):
        raise SoundsceneError("publishing over MQTT needs paho-mqtt 2.x: pip install -U 'paho-mqtt>=2'")
    return mqtt


@functools.lru_cache(maxsize=None)
def _client_class(mqtt):
    class Client(mqtt.Client):
        """paho's client, saying why its last connection attempt failed when TLS is the reason
        (``connect_problem``: one line, or None)."""

        connect_problem: str | None = None

        def reconnect(self):
            try:
                result = super().reconnect()
            except OSError as exc:  # the text, not the exception: it would keep paho's failed socket alive
                self.connect_problem = _tls_problem(exc) if self._ssl else None
                raise
            self.connect_problem = None
            return result

    return Client


def _tls_problem(exc: OSError) -> str | None:
    import ssl

    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: the broker's certificate is not trusted ({exc.verify_message}: check --mqtt-ca and the host)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({_ssl_reason(exc)}: is it a TLS listener? does it want --mqtt-cert?)"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)):  # connected, then cut during the handshake
        return "TLS handshake failed (the broker closed the connection: is it a TLS listener?)"
    return None


def _ssl_reason(exc: OSError) -> str:
    text = getattr(exc, "reason", None) or exc.strerror or str(exc)
    return re.sub(r"\s*\(_ssl\.c:\d+\)", "", str(text))


def _refuse_passphrase(*_args) -> bytes:
    raise SoundsceneError("the key is encrypted: give an unencrypted key (readable by this user only)")


def tls_context(settings: BrokerSettings):
    """The client's TLS context: the broker's certificate is checked against ``ca`` (else the system's CAs) and
    must name ``host``; with ``cert`` and ``key``, a client certificate."""
    import ssl

    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                             cafile=str(settings.ca) if settings.ca is not None else None)
    except (ssl.SSLError, OSError) as exc:
        raise SoundsceneError(f"--mqtt-ca {settings.ca}: not a usable CA certificate "
                              f"({_ssl_reason(exc)})") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.cert is not None:
        try:
            context.load_cert_chain(str(settings.cert), str(settings.key), password=_refuse_passphrase)
        except SoundsceneError as exc:
            raise SoundsceneError(f"--mqtt-key {settings.key}: {exc}") from None
        except (ssl.SSLError, OSError) as exc:
            raise SoundsceneError(f"--mqtt-cert {settings.cert} and --mqtt-key {settings.key}: not a certificate and "
                                  f"its key ({_ssl_reason(exc)})") from None
    return context


def make_client(settings: BrokerSettings, *, client_id: str, protocol: str = "5", clean_session: bool = True):
    """A paho 2 client for ``settings``: TLS when ``settings.tls``, the user name and password when given.

    ``protocol`` is ``"5"`` (MQTT 5; pass ``clean_start`` to ``connect_async``) or ``"311"`` (MQTT 3.1.1 with
    ``clean_session``).  Nothing is connected yet.  Why its last connection attempt failed, when TLS is the
    reason, is :func:`connect_failure`.
    """
    mqtt = import_paho()
    if protocol == "5":
        options: dict[str, Any] = {"protocol": mqtt.MQTTv5}
    elif protocol == "311":
        options = {"protocol": mqtt.MQTTv311, "clean_session": clean_session}
    else:
        raise ValueError(f"protocol must be '5' or '311', got {protocol!r}")
    client = _client_class(mqtt)(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, **options)
    if settings.tls:
        client.tls_set_context(tls_context(settings))
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password)
    return client


def connect_failure(client) -> str | None:
    """Why the last connection attempt of a :func:`make_client` client failed, when TLS is the reason (else None:
    the broker is simply unreachable)."""
    return getattr(client, "connect_problem", None)


def closed_early_text(settings: BrokerSettings) -> str:
    """What to say when the broker closed the connection before its CONNACK (a TLS listener spoken to in plain
    MQTT, a broker that wants a client certificate)."""
    if not settings.tls:
        return "the broker closed the connection before accepting it (is it a TLS listener? then use mqtts://)"
    if settings.cert is None:
        return "the broker closed the connection before accepting it (does it want a client certificate, --mqtt-cert?)"
    return "the broker closed the connection before accepting it (see the broker's log)"


def _code(reason_code: Any) -> tuple[int, str]:
    value = int(getattr(reason_code, "value", reason_code))
    name = _REASONS.get(value, (None,))[0]
    if hasattr(reason_code, "getName"):
        name = reason_code.getName()
    return value, name or "Unknown reason"


def refusal_text(reason_code: Any, *, publish: bool = False) -> str:
    """A short line for a broker's refusal (a CONNACK's reason, or with ``publish`` a PUBACK's): its name, code and
    what to do, e.g. ``Not authorized (0x87): the broker does not accept this user: check --mqtt-user ...``."""
    value, name = _code(reason_code)
    hint = (_PUBLISH_HINTS.get(value) if publish else None) or _REASONS.get(value, (None, "see the broker's log"))[1]
    return f"{name} (0x{value:02X}): {hint}"


class WarnOnce:
    """Warns each distinct line once (thread-safe): a refusal repeated at every reconnect is said once."""

    def __init__(self):
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, line: str) -> bool:
        with self._lock:
            if line in self._seen:
                return False
            self._seen.add(line)
        warn(line)
        return True


# ---- the command line ------------------------------------------------------------------------------------------

def add_broker_arguments(parser, *, required: bool = False, dest: str = "mqtt", help: str | None = None) -> None:
    """Add ``--mqtt URL`` and ``--mqtt-ca``, ``--mqtt-cert``, ``--mqtt-key``, ``--mqtt-user``,
    ``--mqtt-password-file`` to an argparse parser; their values go to ``dest``, ``dest_ca``... (the files as
    Paths; read them all with :func:`settings_from_args`).  ``help`` says what the broker is for."""
    parser.add_argument("--mqtt", dest=dest, metavar="URL", required=required,
                        help=(f"{help}: " if help else "the MQTT broker: ") + "mqtts://HOST:PORT (TLS, port 8883 by "
                             "default), mqtt://HOST:PORT or HOST:PORT (plain, 1883)")
    parser.add_argument("--mqtt-ca", dest=f"{dest}_ca", metavar="FILE", type=Path,
                        help="with mqtts://, the CA certificate (PEM) that signed the broker's (default: the system's)")
    parser.add_argument("--mqtt-cert", dest=f"{dest}_cert", metavar="FILE", type=Path,
                        help="with mqtts://, a client certificate (PEM), for a broker that asks for one")
    parser.add_argument("--mqtt-key", dest=f"{dest}_key", metavar="FILE", type=Path,
                        help="the unencrypted key (PEM) of --mqtt-cert")
    parser.add_argument("--mqtt-user", dest=f"{dest}_user", metavar="NAME", help="the MQTT user name")
    parser.add_argument("--mqtt-password-file", dest=f"{dest}_password_file", metavar="FILE", type=Path,
                        help=f"a file whose first line is the MQTT password (else ${PASSWORD_ENV}; never on the "
                             "command line)")


def settings_from_args(args, dest: str = "mqtt", *, environ: Mapping[str, str] = os.environ) -> BrokerSettings | None:
    """The :class:`BrokerSettings` of the options :func:`add_broker_arguments` added; None without ``--mqtt``
    (then the other options are a mistake)."""
    url = getattr(args, dest, None)
    extra = {name: getattr(args, f"{dest}_{name}", None) for name in ("ca", "cert", "key", "user", "password_file")}
    if url is None:
        given = [f"--mqtt-{name.replace('_', '-')}" for name, value in extra.items() if value is not None]
        if given:
            raise SoundsceneError(f"{given[0]} needs --mqtt URL")
        return None
    return broker_settings(url, ca=extra["ca"], cert=extra["cert"], key=extra["key"], username=extra["user"],
                           password_file=extra["password_file"], environ=environ)
