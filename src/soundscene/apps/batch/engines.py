"""Engines: where the shards run.  Each yields every shard's summary as it is done, in any order.

* ``local``: a pool of worker processes on this machine (started fresh, ``spawn``), each loading the model
  once (:class:`~.shards.ShardWorker`) and running one shard at a time on one thread.
* ``ray``: the same shard function on Ray: a Ray Data set of the shards through ``map_batches`` with a class
  that loads the model once per actor (``num_cpus`` per actor and, on a cluster with GPUs, one GPU each), on
  ``ray.init(address=...)``.  Ray is an optional extra, imported only here, only by this engine.

Outputs are written by the workers themselves (on a cluster, DIR must be on a file system every node sees).
"""

from __future__ import annotations

import json
import multiprocessing
import signal
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterator, Sequence

import numpy as np

from ...core.records import show_warning
from ...errors import SoundsceneError, SoundsceneWarning
from .shards import ShardWorker

ENGINES = ("local", "ray")
RAY_INSTALL = "the ray engine needs Ray: pip install 'soundscene[ray]'"

_worker: ShardWorker | None = None


def _start_worker(settings: dict, out: str, threads: int, setup) -> None:
    """A pool process: Ctrl-C is the driver's to handle (it lets the shards in flight finish, then stops)."""
    global _worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warnings.showwarning = show_warning  # a worker's warnings are one line each, as the driver's
    with warnings.catch_warnings():  # what the model file warrants was said once, by the driver that read it first
        warnings.simplefilter("ignore", SoundsceneWarning)
        _worker = ShardWorker(settings, out, threads=threads, setup=setup)


def _run_one(shard: dict) -> dict:
    return _worker(shard)


def run_local(shards: Sequence[dict], *, settings: dict, out: str, workers: int, threads: int = 1,
              setup: Callable[[], object] | None = None) -> Iterator[dict]:
    """The shards on ``workers`` processes; at most two shards per worker are queued at a time, so an
    interrupted run has little in flight.  (Processes are spawned: a script that calls this needs the
    ``if __name__ == "__main__":`` guard.)"""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_start_worker,
                             initargs=(settings, out, threads, setup)) as pool:
        todo = iter(shards)
        running = set()
        try:
            while True:
                for shard in todo:
                    running.add(pool.submit(_run_one, shard))
                    if len(running) >= 2 * workers:
                        break
                if not running:
                    return
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        except BrokenProcessPool:
            raise SoundsceneError("a worker process ended abruptly (killed, or out of memory); what was done is "
                                  "kept: rerun the same command to resume") from None
        finally:
            for future in running:
                future.cancel()


class RayShardWorker:
    """The Ray actor: a :class:`ShardWorker` over batches of shards as JSON text (one column, ``shard``)."""

    def __init__(self, settings: dict, out: str, threads: int, device: str, setup=None):
        self.worker = ShardWorker(settings, out, threads=threads, device=device, setup=setup)

    def __call__(self, batch: dict) -> dict:
        results = [json.dumps(self.worker(json.loads(str(text)))) for text in batch["shard"]]
        return {"result": np.array(results, dtype=object)}


def run_ray(shards: Sequence[dict], *, settings: dict, out: str, workers: int, address: str | None = None,
            threads: int = 1, setup: Callable[[], object] | None = None) -> Iterator[dict]:
    """The shards on Ray: ``workers`` actors of ``threads`` CPUs each (and a GPU each where the cluster has
    GPUs).  Uses the Ray instance this process is connected to, else ``ray.init(address=address)`` (None:
    a local instance)."""
    try:
        import ray
    except ImportError:
        raise SoundsceneError(RAY_INSTALL) from None
    items = [{"shard": json.dumps(s)} for s in shards]
    if not items:
        return
    if not ray.is_initialized():
        try:
            ray.init(address=address, log_to_driver=False, include_dashboard=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SoundsceneError(f"--ray-address {address or '(local)'}: cannot start or reach Ray ({first})") \
                from None
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    data = ray.data.from_items(items, override_num_blocks=len(items))
    results = data.map_batches(RayShardWorker, batch_size=1, concurrency=workers, num_cpus=threads, num_gpus=gpus,
                               fn_constructor_kwargs={"settings": settings, "out": out, "threads": threads,
                                                      "device": "cuda" if gpus else "cpu", "setup": setup})
    for row in results.iter_rows():
        yield json.loads(row["result"])
