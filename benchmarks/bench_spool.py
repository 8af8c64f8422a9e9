"""Benchmark of the spool on disk (soundscene.apps.spool.Spool) against the in-memory Outbox.

    python benchmarks/bench_spool.py [--messages 2000] [--payload 600] [--dir DIR]

Prints the cost per message of ``put`` + ``hand_over`` + ``acknowledged`` (what a sensor pays for each message
it publishes), median and 90th percentile over ``--messages`` messages of ``--payload`` bytes (a sensor
message in JSON), measured in interleaved rounds so that drift hits all alike, for:

* the spool with ``synchronous=FULL``, its policy: each put's transaction is fsynced;
* the spool with ``synchronous=NORMAL`` (WAL: commits are not fsynced, a power cut may lose the last ones);
* the in-memory Outbox of soundscene.apps.mqtt, for reference;

then the spool's bytes on disk per message (``spool.db`` holding ``--messages`` unacknowledged messages,
checkpointed) against the payload's.  An fsync costs what the file system and the device make it cost:
``--dir`` puts the spools on the sensor's own storage (default: the system's temporary folder).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from _timing import interleaved_times

from soundscene.apps.mqtt import Outbox
from soundscene.apps.spool import FILE_NAME, Spool

TOPIC = "soundscene/pole-7/scene"
CLASSES = ("airport", "bus", "metro", "metro_station", "park", "public_square", "shopping_mall",
           "street_pedestrian", "street_traffic", "tram")


def payload(seq: int, size: int) -> bytes:
    """A sensor_message-like JSON payload of ``size`` bytes (padded in its model name)."""
    message = {"sensor_id": "pole-7", "boot": "6f1d2c9a0b8e4f3aa1c2d3e4f5a6b7c8", "seq": seq,
               "timestamp": "2026-05-09T07:35:25.123Z", "window_seconds": 10.0, "hop_seconds": 1.0,
               "model": {"name": "", "version": "3"}, "soundscene_version": "1.0", "time": seq * 1.0,
               "label": "street_traffic", "confidence": 0.8123, "changed": False, "previous": None,
               "probabilities": {c: round(0.0187 * (k + 1), 4) for k, c in enumerate(CLASSES)},
               "level_dbfs": -31.4, "silent": False}
    short = size - len(json.dumps(message, separators=(",", ":")))
    message["model"]["name"] = "x" * max(short, 0)
    return json.dumps(message, separators=(",", ":")).encode()


class Sender:
    """send(topic, payload, retain) -> a new message id; ``mid`` is the last one given."""

    def __init__(self):
        self.mid = 0

    def __call__(self, topic, data, retain):
        self.mid += 1
        return self.mid


def one_message(box, payloads: list[bytes]):
    """A function that publishes the next of ``payloads`` through ``box``: put, hand over, acknowledge."""
    send, todo = Sender(), iter(payloads)

    def publish():
        box.put([(TOPIC, next(todo), True)])
        if not box.hand_over(send, 20):
            raise RuntimeError("the message was not handed over")
        box.acknowledged(send.mid)

    return publish


def bytes_on_disk(folder: Path, messages: int, size: int) -> int:
    spool = Spool(folder)
    for seq in range(1, messages + 1):
        spool.put([(TOPIC, payload(seq, size), True)])
    spool.close()  # checkpointed: everything in spool.db
    return (folder / FILE_NAME).stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--payload", type=int, default=600, help="payload bytes per message")
    parser.add_argument("--dir", default=None, help="where the spools go (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench_spool-") as tmp:
        root = Path(tmp)
        full, normal = Spool(root / "full"), Spool(root / "normal")
        normal._connection.execute("PRAGMA synchronous=NORMAL")
        boxes = {"spool, synchronous=FULL": full, "spool, synchronous=NORMAL": normal,
                 "outbox (in memory)": Outbox(10 * args.messages)}
        payloads = [payload(seq, args.payload) for seq in range(1, args.messages + 3)]  # 2 rounds of warm-up
        times = interleaved_times({name: one_message(box, payloads) for name, box in boxes.items()},
                                  repeats=args.messages, warmup=2)
        for box in boxes.values():
            box.close()
        on_disk = bytes_on_disk(root / "size", args.messages, args.payload)
    print(f"put + hand_over + acknowledged, per message ({args.messages} messages of {args.payload} bytes, "
          f"in {Path(tmp).parent}):")
    for name, runs in times.items():
        runs = sorted(runs)
        print(f"  {name:28s} median {1e6 * statistics.median(runs):8.1f} us   "
              f"p90 {1e6 * runs[int(0.9 * len(runs))]:8.1f} us")
    print(f"spool on disk: {args.messages} unacknowledged messages in {on_disk:,} bytes = "
          f"{on_disk / args.messages:.0f} bytes per message (payload {args.payload})")


if __name__ == "__main__":
    main()
