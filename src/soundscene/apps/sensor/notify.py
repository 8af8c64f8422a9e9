"""systemd's notify protocol (``sd_notify``) without the systemd package: one datagram per message.

A service of ``Type=notify`` is started when it sends ``READY=1``; with ``WatchdogSec=`` it must send
``WATCHDOG=1`` more often than that or systemd kills and restarts it (a hung input or a deadlock is then a
restart, not a silent sensor).  systemd gives the socket in ``NOTIFY_SOCKET`` (a path, or ``@name`` for an
abstract socket) and the watchdog period in ``WATCHDOG_USEC`` (for the process ``WATCHDOG_PID``, when set)::

    notifier = Notifier.from_environ()
    notifier.ready()
    for block in blocks:
        ...
        notifier.watchdog()        # sends at most every WATCHDOG_USEC / 2
    notifier.stopping()

Without ``NOTIFY_SOCKET`` (not under systemd, or a service of another type) every call does nothing.  A
message that cannot be sent is dropped: the first such failure is one warning, the rest are silent (counted
in :attr:`Notifier.failures`); notification never stops the sensor.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Callable, Mapping

from ...core.records import printable
from ...errors import warn


class Notifier:
    """Sends notify messages to ``address`` (a socket path, or ``@name``: an abstract socket; None: do nothing).

    ``watchdog_usec``: systemd's watchdog period in microseconds (None: no watchdog); :meth:`watchdog` sends
    at most once per half of it.  ``clock``: monotonic seconds (replaceable in tests)."""

    def __init__(self, address: str | None, *, watchdog_usec: int | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.address = address or None
        self.watchdog_seconds = watchdog_usec / 2e6 if watchdog_usec and watchdog_usec > 0 else None
        self.clock = clock
        self.failures = 0
        self._last_watchdog: float | None = None
        self._socket: socket.socket | None = None
        self._target: str | bytes | None = None
        if self.address is not None:
            self._target = _target(self.address)
            if self._target is None:
                warn(f"NOTIFY_SOCKET {printable(self.address)!r} is neither a path nor an abstract socket "
                     "(@name): systemd will not be notified")
                self.address = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ, **kwargs) -> "Notifier":
        """The notifier systemd asks for in ``environ``: NOTIFY_SOCKET, and WATCHDOG_USEC unless WATCHDOG_PID
        names another process.  A WATCHDOG_USEC that is not a whole number is ignored."""
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        return cls(environ.get("NOTIFY_SOCKET") or None,
                   watchdog_usec=int(usec) if usec.isdigit() and mine else None, **kwargs)

    @property
    def enabled(self) -> bool:
        """True when messages go somewhere."""
        return self.address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` lines as one message; True when it was sent."""
        if self._target is None or self.address is None:
            return False
        message = "\n".join(assignments).encode("utf-8", "surrogateescape")
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._socket.sendto(message, self._target)
        except OSError as exc:
            self.failures += 1
            if self.failures == 1:
                warn(f"cannot notify systemd at {printable(self.address)} ({exc.strerror or exc}); further "
                     "failures are not reported")
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1`` (with a STATUS line when given): the service is up."""
        return self.notify("READY=1", *([_status(status)] if status is not None else []))

    def status(self, text: str) -> bool:
        """``STATUS=text``, shown by ``systemctl status`` (made one safe line)."""
        return self.notify(_status(text))

    def stopping(self) -> bool:
        """``STOPPING=1``: the service is shutting down."""
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        """``WATCHDOG=1``, when systemd asked for a watchdog and half its period has passed since the last one
        sent (call it as often as you like); True when sent."""
        if self.watchdog_seconds is None or not self.enabled:
            return False
        now = self.clock()
        if self._last_watchdog is not None and now - self._last_watchdog < self.watchdog_seconds:
            return False
        self._last_watchdog = now  # also after a failure: a broken socket is not retried in a busy loop
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        """Close the socket (a later message opens it again)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> "Notifier":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _target(address: str) -> str | bytes | None:
    """The sendto address: a path as it is, ``@name`` as the abstract name (a leading NUL byte)."""
    if address.startswith("@") and len(address) > 1:
        return b"\0" + address[1:].encode("utf-8", "surrogateescape")
    if address.startswith("/"):
        return address
    return None


def _status(text: str) -> str:
    return f"STATUS={printable(text)}"
