"""The live feed: events of committed batches, fanned out to every ``GET /v1/live`` client.

:class:`Live` is fed from the ingest's worker thread (:meth:`Live.publish`) and read by asyncio handlers
(:meth:`Live.subscribe`).  Each client has a bounded queue; a client too slow to keep up loses its oldest
events (counted), never the hub's memory.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

QUEUE_LIMIT = 1000


class Live:
    def __init__(self):
        self._lock = threading.Lock()
        self._clients: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = []
        self.dropped = 0

    def subscribe(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(QUEUE_LIMIT)
        with self._lock:
            self._clients.append((asyncio.get_running_loop(), queue))
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        with self._lock:
            self._clients = [(loop, q) for loop, q in self._clients if q is not queue]

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._clients)

    def publish(self, event: dict[str, Any]) -> None:
        """Hand ``event`` (``{"type": ..., ...}``) to every client; safe from any thread."""
        with self._lock:
            clients = list(self._clients)
        for loop, queue in clients:
            try:
                loop.call_soon_threadsafe(self._put, queue, event)
            except RuntimeError:  # the client's loop has closed
                self.unsubscribe(queue)

    def _put(self, queue: asyncio.Queue, event: dict) -> None:
        if queue.full():
            queue.get_nowait()
            self.dropped += 1
        queue.put_nowait(event)
