"""How big and how costly a network is: parameters, multiply-accumulates, latency, the DCASE budget.

Counting rules (:func:`count_macs`), for one patch at batch 1:

* ``Conv1d`` / ``Conv2d`` / ``Conv3d``: output elements x (in_channels / groups) x kernel elements;
* ``Linear``: in_features x out_features per output row (per sample for ``(batch, features)`` input);
* biases, batch norm, activations, pooling, additions, the feature normalisation and the softmax are
  element-wise or cheap and are not counted (the usual convention, and DCASE's);
* any other module that holds parameters (an LSTM, attention...) is not counted either: its type is
  listed under ``uncounted`` so that a count that misses work never passes silently.  Work done by
  functional calls inside a module's forward (``F.conv2d``, ``@``) is invisible to the hooks.

A second of audio costs ``macs_per_patch x patches_per_second``, where patches_per_second =
1 / (patch_hop_frames x hop_seconds) — 2 at the defaults (100-frame patches every 50 frames of 10 ms),
as the network is run on a recording.  The front end is counted separately
(:func:`front_end_macs_per_second`): torch.stft runs an FFT (pocketfft on CPU), estimated at
``n_fft x log2(n_fft)`` real MACs per frame for the real-input FFT, plus the window (n_fft), the power
(2 per bin) and the dense mel matrix product (n_mels x bins), as torch does it, then the DCT and deltas
for MFCC.  The DCASE 2022+ task 1 budget (128 K parameters, 30 M MACs per second of audio) is checked on
the network alone, as DCASE does.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import Config
from ..core.features import FrontEnd
from ..core.modelfile import load_model_file
from ..core.models import build_model, predict_clips

DCASE_PARAMS_LIMIT = 128_000
DCASE_MACS_LIMIT = 30_000_000
LATENCY_SECONDS = 10.0

_ELEMENTWISE = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm, nn.PReLU)
_COUNTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def count_macs(net: nn.Module, example: torch.Tensor) -> dict[str, Any]:
    """Multiply-accumulates of one forward pass of ``example`` (see the module's counting rules).

    The network runs as it is (call it on a copy in eval mode to leave batch-norm statistics alone).

    Returns:
        {"macs": int, "layers": [{"name", "kind", "macs", "output_shape"}, ...] in call order,
         "uncounted": sorted type names of parameter-holding leaf modules that are not counted}.
    """
    layers: list[dict[str, Any]] = []

    def hook(name: str):
        def record(module: nn.Module, inputs, output: torch.Tensor) -> None:
            if isinstance(module, nn.Linear):
                macs = output.numel() * module.in_features
            else:
                kernel = math.prod(module.kernel_size)
                macs = output.numel() * (module.in_channels // module.groups) * kernel
            layers.append({"name": name, "kind": type(module).__name__, "macs": int(macs),
                           "output_shape": list(output.shape)})
        return record

    handles, uncounted = [], set()
    for name, module in net.named_modules():
        if isinstance(module, _COUNTED):
            handles.append(module.register_forward_hook(hook(name)))
        elif not isinstance(module, _ELEMENTWISE) and any(True for _ in module.parameters(recurse=False)):
            uncounted.add(type(module).__name__)
    try:
        with torch.no_grad():
            net(example)
    finally:
        for handle in handles:
            handle.remove()
    return {"macs": sum(layer["macs"] for layer in layers), "layers": layers, "uncounted": sorted(uncounted)}


def patches_per_second(config: Config) -> float:
    """Patches the network sees per second of audio: 1 / (patch_hop_frames x hop_seconds)."""
    return 1.0 / (config.features.patch_hop_frames * config.features.hop_seconds)


def front_end_macs_per_second(config: Config) -> int:
    """Estimated multiply-accumulates of the front end per second of audio (all channels).

    Per frame and channel: window n_fft + real FFT n_fft*log2(n_fft) + power 2*bins + mel n_mels*bins
    (the dense matrix product torch does); MFCC adds the DCT (n_mfcc*n_mels) and, with deltas, two
    delta filters (2*delta_width per coefficient).  The dB conversion (element-wise) is not counted.
    Frames per second = sample_rate / hop_length.
    """
    f, rate = config.features, config.audio.sample_rate
    n_fft = f.fft_size(rate)
    bins = n_fft // 2 + 1
    per_frame = n_fft + n_fft * math.log2(n_fft) + 2 * bins + f.n_mels * bins
    if f.kind == "mfcc":
        per_frame += f.n_mfcc * f.n_mels
    if f.use_deltas:
        per_frame += 2 * f.delta_width * (f.n_rows // 3)
    return int(round(per_frame * rate / f.hop_length(rate) * config.audio.channels))


def dcase_check(params: int, macs_per_second: float) -> dict[str, Any]:
    """The DCASE 2022+ task 1 budget: {"params_limit", "macs_limit", "ok", "reason" (None when ok)}."""
    over = []
    if params > DCASE_PARAMS_LIMIT:
        over.append(f"{params:,} parameters > {DCASE_PARAMS_LIMIT:,}")
    if macs_per_second > DCASE_MACS_LIMIT:
        over.append(f"{macs_per_second / 1e6:.2f} M MACs per second of audio > {DCASE_MACS_LIMIT / 1e6:.0f} M")
    return {"params_limit": DCASE_PARAMS_LIMIT, "macs_limit": DCASE_MACS_LIMIT, "ok": not over,
            "reason": "; ".join(over) or None}


def measure_latency_ms(config: Config, net: nn.Module, *, repeats: int = 5) -> float:
    """Median CPU wall time (ms) of front end + network + aggregation on one 10-s clip (batch 1).

    ``net`` must be a SceneNet in eval mode on the CPU; one warm-up run is not timed.  The number of
    torch threads is left as it is.
    """
    front = FrontEnd.from_config(config)
    generator = torch.Generator().manual_seed(0)
    samples = int(round(LATENCY_SECONDS * config.audio.sample_rate))
    waveform = 0.1 * torch.randn(1, config.audio.channels, samples, generator=generator)

    def run() -> None:
        predict_clips(net, front(waveform), features_config=config.features, aggregate=config.model.aggregate)

    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def profile_network(config: Config, n_classes: int, *, net: nn.Module | None = None, latency: bool = True,
                    repeats: int = 5) -> dict[str, Any]:
    """Size, compute and speed of the network ``config`` describes (or of ``net``, a SceneNet built for it).

    MACs are counted on a ``(1, channels, rows, patch_frames)`` patch (see the module's counting rules)
    on a CPU copy in eval mode, so ``net`` is left untouched.  latency False skips the timing
    (``latency_ms_per_10s_clip`` is then None).

    Returns a JSON-ready dict: model, n_classes, input (channels, rows, frames), params, param_bytes
    {"float32", "float16", "int8"}, macs_per_patch, patches_per_second, macs_per_second (network),
    front_end_macs_per_second, total_macs_per_second, latency_ms_per_10s_clip, dcase {"params_limit",
    "macs_limit", "ok", "reason"}, layers (per counted layer), uncounted.
    """
    if net is None:
        net = build_model(config, n_classes=n_classes)
    params = sum(p.numel() for p in net.parameters())
    work = copy.deepcopy(net).cpu().eval()
    shape = (config.audio.channels, config.features.n_rows, config.features.patch_frames)
    counted = count_macs(work, torch.zeros(1, *shape))
    per_second = patches_per_second(config)
    macs_per_second = counted["macs"] * per_second
    front_end = front_end_macs_per_second(config)
    return {
        "model": config.model.name,
        "n_classes": n_classes,
        "input": list(shape),
        "params": params,
        "param_bytes": {"float32": 4 * params, "float16": 2 * params, "int8": params},
        "macs_per_patch": counted["macs"],
        "patches_per_second": per_second,
        "macs_per_second": int(round(macs_per_second)),
        "front_end_macs_per_second": front_end,
        "total_macs_per_second": int(round(macs_per_second)) + front_end,
        "latency_ms_per_10s_clip": measure_latency_ms(config, work, repeats=repeats) if latency else None,
        "dcase": dcase_check(params, macs_per_second),
        "layers": counted["layers"],
        "uncounted": counted["uncounted"],
    }


def profile_model_file(path: str | Path, *, latency: bool = True) -> dict[str, Any]:
    """:func:`profile_network` of a model file (or a run folder's), plus its path and class names."""
    bundle = load_model_file(path)
    report = profile_network(bundle.config, len(bundle.classes), net=bundle.net, latency=latency)
    return {**report, "model_file": str(bundle.path), "classes": list(bundle.classes)}


def format_profile(report: dict[str, Any]) -> str:
    """A few lines for humans from a :func:`profile_network` report."""
    mb = report["param_bytes"]
    channels, rows, frames = report["input"]
    lines = [
        f"model        {report['model']} ({report['n_classes']} classes; patch {channels} x {rows} x {frames})",
        f"parameters   {report['params']:,} ({mb['float32'] / 1024:.1f} KiB float32, "
        f"{mb['float16'] / 1024:.1f} KiB float16, {mb['int8'] / 1024:.1f} KiB int8)",
        f"network      {report['macs_per_patch'] / 1e6:.2f} M MACs per patch x {report['patches_per_second']:g} "
        f"patches/s = {report['macs_per_second'] / 1e6:.2f} M MACs per second of audio",
        f"front end    {report['front_end_macs_per_second'] / 1e6:.2f} M MACs/s (FFT estimate); "
        f"total {report['total_macs_per_second'] / 1e6:.2f} M MACs/s",
    ]
    if report.get("latency_ms_per_10s_clip") is not None:
        lines.append(f"latency      {report['latency_ms_per_10s_clip']:.1f} ms per 10-s clip "
                     "(CPU, batch 1, front end + network, median)")
    dcase = report["dcase"]
    verdict = ("within" if dcase["ok"] else f"over: {dcase['reason']}; limits")
    lines.append(f"DCASE        {verdict} {dcase['params_limit'] / 1000:.0f} K parameters and "
                 f"{dcase['macs_limit'] / 1e6:.0f} M MACs/s (network only)")
    if report.get("uncounted"):
        lines.append(f"not counted  {', '.join(report['uncounted'])} (MACs of these layers are missing)")
    if report.get("model_file"):
        lines.insert(0, f"file         {report['model_file']}")
    return "\n".join(lines)
