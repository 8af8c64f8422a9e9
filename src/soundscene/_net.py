"""The listening socket of soundscene's servers (``serve``, ``hub``): one place, importable without torch."""

from __future__ import annotations

import socket

from .errors import SoundsceneError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def listen(host: str, port: int) -> socket.socket:
    """A bound, listening socket on ``host:port`` (IPv6 addresses also take IPv4), or SoundsceneError naming the
    address and the reason."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        sock.listen(128)
        sock.set_inheritable(True)
    except OSError as exc:
        raise SoundsceneError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock
