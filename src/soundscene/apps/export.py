"""Export a model file to ONNX: raw mono waveform in, clip probabilities out.

``export_onnx("run/model.safetensors", "model.onnx")`` writes one ONNX graph
that does what :class:`soundscene.SceneClassifier` does to one window of a
mono waveform already at the model's sample rate (the window scorer; the
silence check, windowing of long recordings and smoothing stay with the
caller)::

    waveform (batch, samples) float32
      -> pad each row to the clip length (audio.pad_mode), as inference does
      -> STFT power (a strided Conv whose kernels are the windowed DFT basis)
      -> mel -> dB with the top_db floor per row -> [DCT] -> [deltas]
      -> patches every patch_hop_frames -> network -> softmax
      -> aggregation (model.aggregate)
    -> probabilities (batch, classes)

Batch and samples are dynamic.  Each row is one clip: its result is the
torch path's result for that clip alone (the dB floor, the patches and the
aggregation are per row).  Rows shorter than the model's clip length are
padded to it (tiled for pad_mode "repeat", zeros for "zeros"), as inference
pads short files, so any length >= 1 sample is accepted; all rows of one
batch have the same length, so batch only clips of equal length.

The class names, the configuration (JSON) and the package version are kept
in the ONNX model's ``metadata_props`` (``soundscene_classes``,
``soundscene_config``, ``soundscene_version``).

Why a Conv and not ONNX's STFT operator: benchmarks/bench_export.py times
both in onnxruntime beside torch (one thread, one 10-s clip at 22,050 Hz,
n_fft 1024, window 551): the front end took about 10 ms as a Conv, 17 ms
with the STFT operator and 4.5 ms in torch; with an n_fft that is not a
power of two (1000) the STFT operator took 75 ms (its DFT fallback), the
Conv still 10 ms.  At 48 kHz the two were level (38 ms).  The whole graph
(front end + network) ran in about 22 ms against 42-60 ms for torch.  The
Conv only spans the window's win_length samples (not n_fft), skips bins no
mel filter reads, and its kernels are computed in the graph rather than
stored.  ``stft="op"`` builds the STFT-operator graph for comparison.

Only mono models (audio.channels == 1) can be exported.  The network is
exported by torch.onnx's TorchScript exporter and spliced into the graph.
Needs the packages ``onnx`` and ``onnxruntime`` (``pip install onnx onnxruntime``).
"""

from __future__ import annotations

import io
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .._io import atomic_write
from .._version import __version__
from ..config import Config
from ..errors import ModelFileError, SoundsceneError
from ..core.audio import expand_inputs, load_audio
from ..core.features import AMIN, FrontEnd
from ..core.modelfile import ModelBundle, load_model_file
from ..core.onnxmodel import (DIGEST_KEY, INPUT_NAME, OUTPUT_NAME, PLACEHOLDER, load_onnx_model, runtime_session,
                              seal)
from ..core.scorer import WindowScorer

DEFAULT_OPSET = 17
OPSETS = (17, 18, 19, 20)  # 17: the first with STFT; 20: the newest torch's TorchScript exporter writes
TOLERANCE = 1e-4  # largest |probability difference| accepted between ONNX and torch for a float export
STFT_METHODS = ("conv", "op")
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")  # op types of the network that dynamic int8 quantisation rewrites
_NET_PREFIX = "net/"


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how well it matches the torch model.

    max_abs_diff: largest |ONNX - torch| over every class probability of every
        verification clip (None when no clips were given).
    quantized_*: the int8 file (None unless quantize=True); its differences are
        against the torch (float) model on the same clips, top1_agreement is the
        share of clips whose top class is unchanged.
    accuracy / quantized_accuracy: top-1 accuracy on the verification clips
        when labels were given.
    """

    path: Path
    opset: int
    size_bytes: int
    classes: list[str]
    sample_rate: int
    stft: str = "conv"
    n_verified: int = 0
    max_abs_diff: float | None = None
    accuracy: float | None = None
    quantized: bool = False
    quantized_path: Path | None = None
    quantized_size_bytes: int | None = None
    quantized_max_abs_diff: float | None = None
    quantized_mean_abs_diff: float | None = None
    quantized_top1_agreement: float | None = None
    quantized_accuracy: float | None = None

    def summary(self) -> str:
        """A few human-readable lines (what the CLI prints)."""
        lines = [f"wrote {self.path} ({self.size_bytes / 1e6:.2f} MB, opset {self.opset}, "
                 f"input '{INPUT_NAME}' (batch, samples) at {self.sample_rate} Hz, "
                 f"output '{OUTPUT_NAME}' (batch, {len(self.classes)}))"]
        if self.max_abs_diff is not None:
            acc = "" if self.accuracy is None else f", accuracy {self.accuracy:.3f}"
            lines.append(f"verified on {self.n_verified} clip(s): max |ONNX - torch| = {self.max_abs_diff:.2e}{acc}")
        if self.quantized_path is not None:
            lines.append(f"wrote {self.quantized_path} ({self.quantized_size_bytes / 1e6:.2f} MB, dynamic int8)")
            if self.quantized_max_abs_diff is not None:
                acc = "" if self.quantized_accuracy is None else f", accuracy {self.quantized_accuracy:.3f}"
                lines.append(f"int8 vs float on {self.n_verified} clip(s): max |diff| = "
                             f"{self.quantized_max_abs_diff:.2e}, mean |diff| = {self.quantized_mean_abs_diff:.2e}, "
                             f"top-1 agreement {self.quantized_top1_agreement:.3f}{acc}")
        return "\n".join(lines)


def export_onnx(model_path: str | Path | ModelBundle, out_path: str | Path, *, opset: int = DEFAULT_OPSET,
                quantize: bool = False, verify_with: Sequence[np.ndarray] | None = None,
                labels: Sequence[str | int] | None = None, quantized_path: str | Path | None = None,
                stft: str = "conv", tolerance: float = TOLERANCE) -> ExportReport:
    """Write ``model_path``'s model as an ONNX graph from mono waveform to clip probabilities.

    Args:
        model_path: a model file (or a run folder holding one), or the ModelBundle already loaded from it.
        out_path: where the .onnx file goes (written atomically; nothing is
            written when verification fails).
        opset: ONNX opset, one of :data:`OPSETS`.
        quantize: also write a dynamically int8-quantised copy (the network's
            Conv/MatMul/Gemm weights; the front end stays float) to
            ``quantized_path`` (default: ``out_path`` with ``.int8.onnx``).
        verify_with: clips ``(samples,)`` (or ``(1, samples)``) at the model's
            sample rate; each is run through onnxruntime and through the torch
            model and the probabilities compared.
        labels: optional true class (name or index) of each verification clip,
            for the accuracy before and after quantisation.
        stft: "conv" (default) or "op" (ONNX's STFT operator; for comparison).
        tolerance: largest accepted |ONNX - torch| probability difference.

    Returns:
        An :class:`ExportReport`.

    Raises:
        ModelFileError: unreadable model or a model with audio.channels != 1.
        SoundsceneError: missing onnx/onnxruntime, a bad opset, labels or clips,
            or an export that does not match the torch model within tolerance.
    """
    _require_onnx()
    if opset not in OPSETS:
        raise SoundsceneError(f"unsupported ONNX opset {opset}; use one of {', '.join(map(str, OPSETS))}")
    if stft not in STFT_METHODS:
        raise SoundsceneError(f"unknown STFT method '{stft}'; use one of {', '.join(STFT_METHODS)}")
    bundle = model_path if isinstance(model_path, ModelBundle) else load_model_file(model_path)
    model_path = bundle.path or model_path
    check_exportable(bundle.config, source=str(model_path))
    clips = _prepare_clips(verify_with)
    targets = _prepare_labels(labels, clips, bundle.classes)

    model = build_onnx_model(bundle, opset=opset, stft=stft)
    data = seal(model.SerializeToString())
    report = ExportReport(path=Path(out_path), opset=opset, size_bytes=len(data), classes=list(bundle.classes),
                          sample_rate=bundle.config.audio.sample_rate, stft=stft, n_verified=len(clips))
    reference = None
    if clips:
        reference = torch_probabilities(bundle, clips)
        got = onnx_probabilities(data, clips)
        report.max_abs_diff = float(np.abs(got - reference).max())
        if targets is not None:
            report.accuracy = float(np.mean(reference.argmax(1) == targets))
        if not report.max_abs_diff <= tolerance:
            raise SoundsceneError(f"ONNX export of {model_path} does not match the torch model: max |difference| "
                                  f"of probabilities {report.max_abs_diff:.2e} > {tolerance:g} on "
                                  f"{len(clips)} clip(s); nothing was written")
    atomic_write(out_path, lambda tmp: tmp.write_bytes(data))

    if quantize:
        qpath = Path(quantized_path) if quantized_path is not None else default_quantized_path(out_path)
        atomic_write(qpath, lambda tmp: _quantize(Path(out_path), tmp, model))
        report.quantized = True
        report.quantized_path = qpath
        report.quantized_size_bytes = qpath.stat().st_size
        if clips:
            q = onnx_probabilities(qpath.read_bytes(), clips)
            diff = np.abs(q - reference)
            report.quantized_max_abs_diff = float(diff.max())
            report.quantized_mean_abs_diff = float(diff.mean())
            report.quantized_top1_agreement = float(np.mean(q.argmax(1) == reference.argmax(1)))
            if targets is not None:
                report.quantized_accuracy = float(np.mean(q.argmax(1) == targets))
    return report


def default_quantized_path(out_path: str | Path) -> Path:
    """``model.onnx`` -> ``model.int8.onnx``."""
    out_path = Path(out_path)
    stem = out_path.name[:-5] if out_path.name.lower().endswith(".onnx") else out_path.name
    return out_path.with_name(f"{stem}.int8.onnx")


def check_exportable(config: Config, *, source: str = "model") -> None:
    """Refuse, in one line, a model the ONNX graph cannot represent (only mono models can be exported)."""
    if config.audio.channels != 1:
        raise ModelFileError(f"{source}: only mono models can be exported to ONNX; this one takes "
                             f"{config.audio.channels} channels (audio.channels = {config.audio.channels})")
    if config.audio.clip_samples is None:
        raise ModelFileError(f"{source}: the model's configuration has no clip length; the file is incomplete")


# --------------------------------------------------------------------------- the torch reference

def torch_probabilities(bundle, clips: Sequence[np.ndarray]) -> np.ndarray:
    """Clip probabilities ``(clips, classes)`` from the torch model: the core's window scorer, which is what
    inference runs (pad to the clip length, front end, patches, network, aggregation)."""
    scorer = WindowScorer(bundle.net, bundle.config, n_classes=len(bundle.classes))
    return scorer.score_clips([np.asarray(c, dtype=np.float32).reshape(1, -1) for c in clips])


def verification_clips(bundle: ModelBundle, inputs: Sequence[str | Path] = ()) -> tuple[list[np.ndarray],
                                                                                 list[str] | None]:
    """Mono clips at the model's rate to verify an export on, and their labels when every file sits in a
    folder named after a class.  From ``inputs`` (files and folders), or without them four synthetic clips:
    tones over noise, something for every band of the front end."""
    if not inputs:
        rng = np.random.default_rng(0)
        n = bundle.config.audio.clip_samples
        t = np.arange(n) / bundle.config.audio.sample_rate
        return [(0.3 * np.sin(2 * np.pi * (110 * 2 ** k) * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)
                for k in range(4)], None
    found = expand_inputs(inputs)
    for item in found:
        if item.problem:
            raise SoundsceneError(item.problem)
    files = [item.path for item in found]
    clips = [load_audio(f, sample_rate=bundle.config.audio.sample_rate, channels=1,
                        min_seconds=bundle.config.audio.min_seconds)[0] for f in files]
    labels = [f.parent.name for f in files if f.parent.name in bundle.classes]
    return clips, labels if len(labels) == len(clips) else None


def onnx_probabilities(model: bytes | str | Path, clips: Sequence[np.ndarray], *, threads: int = 0) -> np.ndarray:
    """Run an exported model on clips (batched by equal length); ``(clips, classes)`` probabilities."""
    session = runtime_session(model, threads=threads)
    clips = [np.asarray(c, dtype=np.float32).reshape(-1) for c in clips]
    out: list[np.ndarray | None] = [None] * len(clips)
    by_length: dict[int, list[int]] = {}
    for k, c in enumerate(clips):
        by_length.setdefault(c.shape[0], []).append(k)
    for indices in by_length.values():
        probs = session.run([OUTPUT_NAME], {INPUT_NAME: np.stack([clips[k] for k in indices])})[0]
        for k, p in zip(indices, probs):
            out[k] = p
    return np.stack(out)


# --------------------------------------------------------------------------- the graph

def build_onnx_model(bundle, *, opset: int = DEFAULT_OPSET, stft: str = "conv", until: str = "probabilities"):
    """The ONNX model (an ``onnx.ModelProto``) for a loaded model bundle.

    until: "probabilities" (the whole graph) or "features" (the front end only:
        output ``features`` (batch, rows, frames), for benchmarks and tests).
    """
    import onnx
    from onnx import TensorProto, helper

    config = bundle.config
    check_exportable(config)
    g = _Graph(opset)
    feats = _front_end(g, config, stft=stft)
    if until == "features":
        g.op("Identity", [feats], output="features")
        outputs = [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", "rows", "frames"])]
    else:
        n_classes = len(bundle.classes)
        net_in = _patches(g, config, feats)
        net_out = _network(g, bundle.net, config, opset, net_in)
        _aggregate(g, config, net_out, n_classes)
        outputs = [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", n_classes])]
    graph = helper.make_graph(
        g.nodes, "soundscene",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", "samples"])],
        outputs, initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="soundscene", producer_version=__version__)
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))  # readable by older runtimes
    model.doc_string = (f"soundscene scene classifier: '{INPUT_NAME}' float32 (batch, samples) mono at "
                        f"{config.audio.sample_rate} Hz -> '{OUTPUT_NAME}' (batch, classes); rows shorter than "
                        f"{config.audio.clip_samples} samples are padded ({config.audio.pad_mode})")
    onnx.helper.set_model_props(model, {
        "soundscene_classes": json.dumps(list(bundle.classes)),
        "soundscene_config": config.to_json(),
        "soundscene_version": __version__,
        "soundscene_sample_rate": str(config.audio.sample_rate),
        DIGEST_KEY: PLACEHOLDER,  # sealed when the bytes are final (core.onnxmodel.seal)
    })
    onnx.checker.check_model(model)
    return model


class _Graph:
    """Nodes and initializers being assembled, with unique names and opset-aware helpers."""

    def __init__(self, opset: int):
        self.opset = opset
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"fe/{hint}_{self._count}"

    def const(self, value, hint: str, dtype=np.float32) -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.array(value, dtype=dtype, order="C"), name))  # keeps 0-d
        return name

    def ints(self, values, hint: str = "i") -> str:
        return self.const(np.asarray(values, dtype=np.int64), hint, dtype=np.int64)

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, *, output: str | None = None,
           **attrs) -> str:
        """Add a node; returns its output's name (``output``, or a fresh one made from hint)."""
        from onnx import helper

        name = self.name(hint or op_type.lower())
        out = output or name
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=name, **attrs))
        return out

    def reduce(self, op_type: str, x: str, axes: list[int], keepdims: int, hint: str | None = None, *,
               output: str | None = None) -> str:
        """ReduceX over axes; axes moved from an attribute to an input in opset 18 (ReduceSum: 13)."""
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, [x, self.ints(axes, "axes")], hint, output=output, keepdims=keepdims)
        return self.op(op_type, [x], hint, output=output, axes=axes, keepdims=keepdims)


def _front_end(g: _Graph, config: Config, *, stft: str) -> str:
    """waveform (B, S) -> features (B, rows, frames), as FrontEnd after inference's padding."""
    fc = config.features
    fe = FrontEnd(fc, sample_rate=config.audio.sample_rate)
    n_fft, hop, win = fe.n_fft, fe.hop_length, fe.win_length
    half = n_fft // 2
    mel = fe.mel.double().numpy()  # (n_mels, n_fft // 2 + 1)
    clip = config.audio.clip_samples

    x = INPUT_NAME
    samples = g.op("Gather", [g.op("Shape", [x]), g.ints(1, "one")], "samples", axis=0)  # scalar int64
    clip_c = g.ints(clip, "clip")
    wanted = g.op("Max", [samples, clip_c], "wanted")  # rows shorter than a clip are padded to it
    if config.audio.pad_mode == "repeat":
        at_least_one = g.op("Max", [samples, g.ints(1, "one")])  # no integer division by zero for empty rows
        reps = g.op("Div", [g.op("Sub", [g.op("Add", [clip_c, at_least_one]), g.ints(1, "one")]), at_least_one],
                    "reps")
        tiled = g.op("Tile", [x, g.op("Concat", [g.ints([1], "one"), g.op("Unsqueeze", [reps, g.ints([0])])],
                                      axis=0)], "tiled")
        x = g.op("Slice", [tiled, g.ints([0]), g.op("Unsqueeze", [wanted, g.ints([0])]), g.ints([1])], "clip")
        extra_right = None
    else:  # zeros: fold the clip padding into the STFT padding below
        extra_right = g.op("Unsqueeze", [g.op("Sub", [wanted, samples]), g.ints([0])], "extra")

    # window (win samples) sits centred in the n_fft frame, as torch.stft places it
    left = (n_fft - win) // 2
    window = fe.window.double().numpy()
    if stft == "conv":
        # frame t covers padded[t*hop + left : t*hop + left + win] of the centred-padded signal, so pad by
        # (half - left) and (half - (n_fft - left - win)) and convolve with win-long kernels, stride hop
        used = np.flatnonzero(np.abs(mel).sum(0) > 0)  # bins no mel filter reads cannot change the output
        kernels = _dft_kernels(g, used, np.arange(win) + left, n_fft, window)
        pad_l, pad_r = half - left, half - (n_fft - left - win)
        y = g.op("Unsqueeze", [x, g.ints([1])], "mono")  # (B, 1, S)
        pads = [0, 0, pad_l, 0, 0, pad_r]
        if extra_right is None:
            pads_name = g.ints(pads, "pads")
        else:
            pads_name = g.op("Concat", [g.ints(pads[:5], "pads"),
                                        g.op("Add", [extra_right, g.ints([pad_r])])], "pads", axis=0)
        y = g.op("Pad", [y, pads_name], "centred", mode="constant")
        spec = g.op("Conv", [y, kernels], "dft", strides=[hop], kernel_shape=[win])  # (B, 2K, T)
        square = g.op("Mul", [spec, spec], "square")
        # |X|^2 summed into the mel bands in one product: [mel | mel] @ [re^2 ; im^2]
        mel_used = g.const(mel[:, used], "mel")
        mel_power = g.op("MatMul", [g.op("Concat", [mel_used, mel_used], "mel2", axis=1), square], "mel_power")
    elif stft == "op":
        padded_window = np.zeros(n_fft)
        padded_window[left:left + win] = window
        pads = [0, half, 0, half]
        if extra_right is None:
            pads_name = g.ints(pads, "pads")
        else:
            pads_name = g.op("Concat", [g.ints(pads[:3], "pads"), g.op("Add", [extra_right, g.ints([half])])],
                             "pads", axis=0)
        y = g.op("Pad", [x, pads_name], "centred", mode="constant")
        y = g.op("Unsqueeze", [y, g.ints([2])], "signal")  # (B, S, 1)
        spec = g.op("STFT", [y, g.ints(hop, "hop"), g.const(padded_window, "window"), g.ints(n_fft, "n_fft")],
                    "stft", onesided=1)  # (B, T, K, 2)
        power = g.reduce("ReduceSum", g.op("Mul", [spec, spec], "square"), [3], 0, "power")  # (B, T, K)
        mel_power = g.op("MatMul", [power, g.const(mel.T, "melT")], "mel_power_t")  # (B, T, n_mels)
        mel_power = g.op("Transpose", [mel_power], "mel_power", perm=[0, 2, 1])
    else:
        raise SoundsceneError(f"unknown STFT method '{stft}'; use one of {', '.join(STFT_METHODS)}")

    # 10 log10(max(p, amin)), floored top_db below each row's (clip's) peak
    db = g.op("Mul", [g.op("Log", [g.op("Max", [mel_power, g.const(AMIN, "amin")])]),
                      g.const(10.0 / math.log(10.0), "db_scale")], "db")
    if fc.top_db is not None:
        peak = g.reduce("ReduceMax", db, [1, 2], 1, "peak")
        db = g.op("Max", [db, g.op("Sub", [peak, g.const(float(fc.top_db), "top_db")])], "floored")
    feats = db
    if fc.kind == "mfcc":
        feats = g.op("MatMul", [g.const(fe.dct.numpy(), "dct"), feats], "mfcc")
    if fc.use_deltas:
        parts = [feats]
        for order, op in ((1, fe.delta1), (2, fe.delta2)):
            parts.append(_deltas(g, feats, op.double().numpy(), order))
        feats = g.op("Concat", parts, "with_deltas", axis=1)
    return feats


def _dft_kernels(g: _Graph, bins: np.ndarray, taps: np.ndarray, n_fft: int, window: np.ndarray) -> str:
    """Conv kernels ``(2 * len(bins), 1, len(taps))``: window * cos and window * -sin of 2 pi bin tap / n_fft.

    Computed by the graph from the bin and tap numbers (onnxruntime folds them
    into constants when the session is created: same speed as stored kernels)
    so that the file does not hold the basis, which at 22,050 Hz would be
    2.3 MB of 2.8 MB.  bin * tap is reduced modulo n_fft in integers first, so
    the float32 phase stays in [0, 2 pi) and cos/sin keep float32 accuracy.
    """
    product = g.op("Mod", [g.op("Mul", [g.ints(bins[:, None], "bins"), g.ints(taps[None, :], "taps")]),
                           g.ints(n_fft, "n_fft")], "bin_tap")
    phase = g.op("Mul", [g.op("Cast", [product], to=1), g.const(2 * np.pi / n_fft, "rad")], "phase")
    win = g.const(window[None, :], "window")
    real = g.op("Mul", [g.op("Cos", [phase]), win], "cos")
    imag = g.op("Mul", [g.op("Neg", [g.op("Sin", [phase])]), win], "sin")
    return g.op("Unsqueeze", [g.op("Concat", [real, imag], axis=0), g.ints([1])], "dft")


def _deltas(g: _Graph, feats: str, op: np.ndarray, order: int) -> str:
    """features.deltas in ONNX: a Conv along time for the middle frames, the edge fits as MatMuls."""
    width = op.shape[0]
    half = width // 2
    x4 = g.op("Unsqueeze", [feats, g.ints([1])], f"d{order}_in")  # (B, 1, rows, T)
    middle = g.op("Conv", [x4, g.const(op[half].reshape(1, 1, 1, width), f"d{order}_kernel")],
                  f"d{order}_conv", kernel_shape=[1, width])
    middle = g.op("Squeeze", [middle, g.ints([1])], f"d{order}_middle")  # (B, rows, T - width + 1)
    head = g.op("Slice", [feats, g.ints([0]), g.ints([width]), g.ints([2])], f"d{order}_head")
    tail = g.op("Slice", [feats, g.ints([-width]), g.ints([np.iinfo(np.int64).max]), g.ints([2])], f"d{order}_tail")
    first = g.op("MatMul", [head, g.const(op[:half].T, f"d{order}_first")], f"d{order}_first")
    last = g.op("MatMul", [tail, g.const(op[width - half:].T, f"d{order}_last")], f"d{order}_last")
    return g.op("Concat", [first, middle, last], f"d{order}", axis=2)


def _patches(g: _Graph, config: Config, feats: str) -> str:
    """features (B, rows, T) -> patches (B * n, 1, rows, patch_frames), n = 1 + (T - P) // hop, as cut_patches.

    The clip padding makes T >= P, so cut_patches' tiling of shorter input never applies.
    """
    fc = config.features
    frames = g.op("Gather", [g.op("Shape", [feats]), g.ints(2, "two")], "frames", axis=0)
    n = g.op("Add", [g.op("Div", [g.op("Sub", [frames, g.ints(fc.patch_frames, "P")]),
                                  g.ints(fc.patch_hop_frames, "H")]), g.ints(1, "one")], "n_patches")
    starts = g.op("Mul", [g.op("Range", [g.ints(0, "zero"), n, g.ints(1, "one")]), g.ints(fc.patch_hop_frames, "H")])
    index = g.op("Add", [g.op("Unsqueeze", [starts, g.ints([1])]),
                         g.ints(np.arange(fc.patch_frames)[None, :], "offsets")], "patch_index")  # (n, P)
    patches = g.op("Gather", [feats, index], "gathered", axis=2)  # (B, rows, n, P)
    patches = g.op("Transpose", [patches], "patches_t", perm=[0, 2, 1, 3])  # (B, n, rows, P)
    return g.op("Reshape", [patches, g.ints([-1, 1, fc.n_rows, fc.patch_frames], "shape")],
                output=_NET_PREFIX + "patches")  # the spliced network's input


class _Probabilities(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(patches), dim=-1)


def _network(g: _Graph, net: nn.Module, config: Config, opset: int, net_in: str) -> str:
    """Export SceneNet + softmax with torch.onnx and splice its graph in; returns its output name."""
    import onnx
    from onnx import compose

    fc = config.features
    dummy = torch.zeros(2, 1, fc.n_rows, fc.patch_frames)
    buffer = io.BytesIO()
    wrapped = _Probabilities(net).eval().cpu()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapped, (dummy,), buffer, dynamo=False, opset_version=opset,
                              input_names=["patches"], output_names=["patch_probabilities"],
                              dynamic_axes={"patches": {0: "patches"}, "patch_probabilities": {0: "patches"}},
                              do_constant_folding=True)
    except Exception as exc:  # noqa: BLE001 - any exporter failure becomes one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SoundsceneError(f"torch.onnx could not export the network '{config.model.name}' "
                              f"(opset {opset}): {first}") from None
    sub = compose.add_prefix(onnx.load_from_string(buffer.getvalue()), _NET_PREFIX)
    if [i.name for i in sub.graph.input] != [net_in]:
        raise SoundsceneError(f"unexpected inputs of the exported network: {[i.name for i in sub.graph.input]}")
    g.nodes.extend(sub.graph.node)
    g.initializers.extend(sub.graph.initializer)
    return sub.graph.output[0].name


def _aggregate(g: _Graph, config: Config, patch_probs: str, n_classes: int) -> None:
    """(B * n, classes) patch probabilities -> (B, classes), as models.aggregate_patches."""
    batch = g.op("Slice", [g.op("Shape", [INPUT_NAME]), g.ints([0]), g.ints([1]), g.ints([0])], "batch")
    shape = g.op("Concat", [batch, g.ints([-1, n_classes], "shape")], "shape", axis=0)
    p = g.op("Reshape", [patch_probs, shape], "per_clip")  # (B, n, classes)
    how = config.model.aggregate
    if how == "mean":
        g.reduce("ReduceMean", p, [1], 0, output=OUTPUT_NAME)
        return
    if how == "log_mean":
        logs = g.op("Log", [g.op("Max", [p, g.const(1e-12, "eps")])])
        out = g.op("Exp", [g.reduce("ReduceMean", logs, [1], 0, "log_mean")])
    elif how == "max":
        out = g.reduce("ReduceMax", p, [1], 0, "max")
    elif how == "vote":
        winners = g.op("ArgMax", [p], "winners", axis=2, keepdims=0)
        one_hot = g.op("OneHot", [winners, g.ints(n_classes, "depth"), g.const([0.0, 1.0], "onehot_values")],
                       "votes", axis=-1)
        out = g.reduce("ReduceMean", one_hot, [1], 0, "vote")
    else:
        raise SoundsceneError(f"model.aggregate '{how}' cannot be exported")
    total = g.reduce("ReduceSum", out, [1], 1, "total")
    g.op("Div", [out, total], "normalise", output=OUTPUT_NAME)


# --------------------------------------------------------------------------- quantisation and checks

def _quantize(float_path: Path, tmp: Path, model) -> None:
    """Dynamic int8 quantisation of the network's weights (the front end's DFT, mel and DCT stay float)."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = [n.name for n in model.graph.node if n.name.startswith(_NET_PREFIX) and n.op_type in QUANTIZED_OPS]
    # quantize_dynamic logs advice through the root logger (logging.warning, which also installs a handler
    # when there is none): keep it quiet and leave the root logger as it was
    root = logging.getLogger()
    level, quiet = root.level, logging.NullHandler()
    root.addHandler(quiet)
    root.setLevel(logging.ERROR)
    try:
        # unsigned weights: onnxruntime's ConvInteger with signed int8 weights was slower and less exact here
        quantize_dynamic(str(float_path), str(tmp), nodes_to_quantize=nodes, weight_type=QuantType.QUInt8)
    except Exception as exc:  # noqa: BLE001 - any quantiser failure becomes one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SoundsceneError(f"int8 quantisation of {float_path} failed: {first}") from None
    finally:
        root.removeHandler(quiet)
        root.setLevel(level)
    _reseal(tmp)


def _reseal(path: Path) -> None:
    """The int8 copy carries the float file's metadata: give it a digest of its own."""
    import onnx

    quantized = onnx.load(str(path))
    onnx.helper.set_model_props(quantized, {**{p.key: p.value for p in quantized.metadata_props},
                                            DIGEST_KEY: PLACEHOLDER})
    path.write_bytes(seal(quantized.SerializeToString()))


def _prepare_clips(clips: Sequence[np.ndarray] | None) -> list[np.ndarray]:
    out = []
    for k, clip in enumerate(clips or []):
        w = np.asarray(clip, dtype=np.float32)
        if w.ndim == 2 and w.shape[0] == 1:
            w = w[0]
        if w.ndim != 1 or w.shape[0] == 0:
            raise SoundsceneError(f"verification clip {k} must be mono, (samples,) or (1, samples) with samples > 0; "
                                  f"got shape {w.shape}")
        if not np.isfinite(w).all():
            raise SoundsceneError(f"verification clip {k} contains NaN or infinite samples")
        out.append(np.ascontiguousarray(w))
    return out


def _prepare_labels(labels: Sequence[Any] | None, clips: list, classes: list[str]) -> np.ndarray | None:
    if labels is None:
        return None
    labels = list(labels)
    if len(labels) != len(clips):
        raise SoundsceneError(f"got {len(labels)} label(s) for {len(clips)} verification clip(s)")
    out = []
    for label in labels:
        if isinstance(label, (int, np.integer)) and not isinstance(label, bool) and 0 <= label < len(classes):
            out.append(int(label))
        elif isinstance(label, str) and label in classes:
            out.append(classes.index(label))
        else:
            raise SoundsceneError(f"label {label!r} is not one of the model's classes ({', '.join(classes)})")
    return np.asarray(out)


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise SoundsceneError(f"ONNX export needs the packages onnx and onnxruntime ({exc.name} is missing): "
                              "pip install onnx onnxruntime") from None


def read_onnx_metadata(path: str | Path) -> dict[str, Any]:
    """Classes, configuration, version and SHA-256 of a verified exported model (see core.onnxmodel)."""
    model = load_onnx_model(path)
    return {"classes": model.classes, "config": model.config, "version": model.metadata["soundscene_version"],
            "sha256": model.sha256}
