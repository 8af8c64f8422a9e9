"""The shard function: one shard of one file in, its windows written, its result recorded; the same on every
engine (a local worker process, a Ray actor).

A worker loads the model once (:class:`ShardWorker`) and then runs shard after shard.  A shard's windows are
written to ``windows/`` (one atomic Parquet file per date it covers), then its result, the marker that says it
is done, to ``state/shards/<shard>.json`` (atomically, last): the windows with their unrounded probabilities
(the file's result and segments are computed from them, exactly as ``predict`` computes them), the energy,
count and peak of its own input for the file's level, and the files it wrote.  A shard that fails records
its error instead; the batch goes on.
"""

from __future__ import annotations

import copy
import io
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

import torch

from ..._io import atomic_write_json
from ...errors import AudioError, ModelFileError
from . import output

STATE = "state"


@dataclass(frozen=True)
class Settings:
    """What decides a batch's numbers: a changed one in the same DIR is refused (see run.claim)."""

    model: str
    window_seconds: float | None = None
    hop_seconds: float | None = None
    silence_dbfs: float | None = None
    calibration_db: float | None = None
    shard_minutes: float = 10.0
    levels: bool = True  # sound levels on every window (LAeq, percentiles, bands): about a fifth of the time

    def to_dict(self) -> dict:
        return asdict(self)


def load_classifier(settings: Settings, *, device: str = "cpu"):
    """The model with the batch's windowing, silence threshold and level settings (ConfigError, one line, for
    a value out of range)."""
    from ...core.inference import SceneClassifier

    return SceneClassifier.from_file(settings.model, device=device, window_seconds=settings.window_seconds,
                                     hop_seconds=settings.hop_seconds, silence_dbfs=settings.silence_dbfs,
                                     calibration_db=settings.calibration_db, levels=settings.levels)


def marker_path(out: Path, shard_id: str) -> Path:
    return out / STATE / "shards" / f"{shard_id}.json"


def read_marker(out: Path, shard_id: str) -> dict | None:
    """A shard's recorded result, or None when it is not done (or its marker cannot be read: done again)."""
    try:
        return json.loads(marker_path(out, shard_id).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def speed_up(classifier) -> str:
    """Make a worker's network faster on the CPU without changing its results beyond float rounding: the
    backbone run by ONNX Runtime (when installed: the ``batch`` extra), else frozen and optimised for
    inference by TorchScript (batch norm folded into the convolutions, oneDNN layouts), else with its weights
    in channels-last layout (max-pooling and convolutions vectorised over channels).  Each is checked against
    the original on a test batch (1e-5 on the logits) before it is used.  Returns what was done:
    ``"onnxruntime"``, ``"frozen"``, ``"channels_last"`` or ``"none"``.

    ``predict`` keeps the plain network; benchmarks/bench_batch.py measures both and their difference."""
    net = classifier.scorer.net
    if classifier.scorer.device.type != "cpu":
        return "none"
    rows = classifier.config.features.n_rows
    probe = torch.randn(2, classifier.config.audio.channels, rows, classifier.config.features.patch_frames,
                        generator=torch.Generator().manual_seed(0))
    backbone = net.backbone
    with torch.no_grad():
        expected = backbone(probe)
        for kind, make in (("onnxruntime", _onnx), ("frozen", _frozen), ("channels_last", _channels_last)):
            try:
                candidate = make(backbone, probe)
                close = torch.allclose(candidate(probe), expected, rtol=1e-5, atol=1e-5)
            except (ImportError, RuntimeError, TypeError, ValueError, AttributeError, NotImplementedError):
                close = False  # not installed, not exportable, not scriptable: the next one
            if close:
                net.backbone = _Optimised(candidate, backbone)
                return kind
    return "none"


def _onnx(backbone, probe):
    import onnxruntime  # noqa: F401 (ImportError: not installed)

    from ..export import runtime_session

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(copy.deepcopy(backbone).eval(), (probe,), buffer, dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
                          do_constant_folding=True)
    return _OnnxBackbone(runtime_session(buffer.getvalue(), threads=torch.get_num_threads()))


class _OnnxBackbone(torch.nn.Module):
    """An ONNX Runtime session as a module: patches in, logits out."""

    def __init__(self, session):
        super().__init__()
        self.session = session

    def forward(self, x):
        return torch.from_numpy(self.session.run(None, {"x": x.detach().cpu().numpy()})[0])


def _frozen(backbone, probe):
    return torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.script(copy.deepcopy(backbone).eval())))


def _channels_last(backbone, probe):
    return copy.deepcopy(backbone).to(memory_format=torch.channels_last)


class _Optimised(torch.nn.Module):
    """Runs the optimised module; holds the original too, whose parameters say where the network is."""

    def __init__(self, fast, original):
        super().__init__()
        self.fast, self.original = fast, original

    def forward(self, x):
        return self.fast(x)


class ShardWorker:
    """Loads the model once (and, with ``fast``, speeds up its network: :func:`speed_up`); each call runs one
    shard (a :meth:`Shard.to_dict`) and returns a small summary."""

    def __init__(self, settings: dict, out: str, *, threads: int = 1, device: str = "cpu",
                 setup: Callable[[], object] | None = None, fast: bool = True):
        if setup is not None:  # the entry point's process settings (the allocator), in this worker process
            setup()
        torch.set_num_threads(max(1, int(threads)))  # this process is the worker's own
        self.out = Path(out)
        self.classifier = load_classifier(Settings(**settings), device=device)
        self.network = speed_up(self.classifier) if fast else "none"
        self.schema = output.schemas(self.classifier.classes)["windows"]

    def __call__(self, shard: dict) -> dict:
        started = time.process_time()
        try:
            marker = self._run(shard)
        except (AudioError, ModelFileError) as exc:
            marker = {"status": "error", "error": str(exc), "windows": [], "energy": 0.0, "count": 0, "peak": 0.0,
                      "written": []}
        cpu = time.process_time() - started  # this worker's CPU time on the shard (its threads included)
        marker.update(shard_id=shard["shard_id"], file_id=shard["file_id"], seconds=shard["seconds"],
                      cpu_seconds=cpu)
        atomic_write_json(marker_path(self.out, shard["shard_id"]), marker)
        return {"shard_id": shard["shard_id"], "file_id": shard["file_id"], "status": marker["status"],
                "seconds": shard["seconds"], "cpu_seconds": cpu}

    def _run(self, shard: dict) -> dict:
        clf = self.classifier
        span = clf.classify_span(shard["path"], first=shard["first"], stop=shard["stop"], name=shard["name"])
        start = datetime.fromisoformat(shard["start_time"]) if shard["start_time"] else None
        rows = [output.window_row(w.to_record(clf.classes), file=shard["name"], file_id=shard["file_id"],
                                  shard=shard["index"], start=start) for w in span.windows]
        written = output.write_rows(self.out, "windows", shard["shard_id"], rows, sensor_id=shard["sensor_id"],
                                    schema=self.schema)
        windows = [[w.start, w.end, None if w.silent else [float(p) for p in w.probabilities]]
                   for w in span.windows]
        return {"status": "ok", "error": None, "windows": windows, "energy": span.energy, "count": span.count,
                "peak": span.peak if math.isfinite(span.peak) else 0.0, "written": written}
