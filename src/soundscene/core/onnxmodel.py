"""The exported model: an ONNX graph that a sensor runs with ONNX Runtime, without torch.

``soundscene export`` writes one graph from a mono waveform at the model's rate
to clip probabilities (see :mod:`soundscene.apps.export`), and keeps in its
``metadata_props`` what a model file keeps: the class names, the configuration,
the version that wrote it, and a digest.  This module reads such a file and
scores windows with it through the same interface as the torch
:class:`~soundscene.core.scorer.WindowScorer`, so the stream classifier,
the timeline and every application run on either::

    clf = SceneClassifier.from_file("model.onnx")     # picks this module by the .onnx suffix

**The digest.**  ``soundscene_digest`` is the SHA-256 of the whole file as it
would be with the digest's own 64 hex characters written as 64 ``0``
(:data:`PLACEHOLDER`).  So it covers every byte (the graph, the weights, the
other metadata) and is checked without the ``onnx`` package: replace the
digest by the placeholder in the file's bytes and hash them.  A sensor then
reports the SHA-256 of the file's bytes (``sha256sum``) as the model it runs.

A file that is not an ONNX graph, one that soundscene did not export, one
whose digest does not match, or whose configuration or classes do not fit
this version is refused in one line (:class:`~soundscene.errors.ModelFileError`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..config import Config
from ..errors import AudioError, ConfigError, ModelFileError
from .audio import as_channels_first, fix_length, level_dbfs, score_by_length

SUFFIX = ".onnx"
INPUT_NAME = "waveform"
OUTPUT_NAME = "probabilities"
DIGEST_KEY = "soundscene_digest"
PLACEHOLDER = "0" * 64
MAX_BYTES = 1 << 30  # a scene model is a few MB; a 1-GB file is not one
KEYS = ("soundscene_classes", "soundscene_config", "soundscene_version", DIGEST_KEY)


def is_onnx_path(path: str | Path) -> bool:
    """True for a path that names an exported model (by its suffix)."""
    return Path(path).suffix.lower() == SUFFIX


def seal(data: bytes) -> bytes:
    """The file's bytes with :data:`PLACEHOLDER` (written once, as the digest's value) replaced by the digest."""
    marker = PLACEHOLDER.encode()
    if data.count(marker) != 1:
        raise ModelFileError("cannot seal the exported graph: the digest placeholder is not found exactly once")
    return data.replace(marker, hashlib.sha256(data).hexdigest().encode())


def digest_matches(data: bytes, digest: str) -> bool:
    """True when ``data`` with ``digest`` written back as the placeholder hashes to ``digest``."""
    mark = digest.encode()
    if len(digest) != 64 or data.count(mark) != 1:
        return False
    return hashlib.sha256(data.replace(mark, PLACEHOLDER.encode())).hexdigest() == digest


def runtime_session(model: bytes | str | Path, *, threads: int = 0):
    """An ONNX Runtime session (CPU) of a graph given as bytes or a path; ``threads`` 0: the runtime's choice."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1 if threads == 1 else 0
    options.log_severity_level = 3
    # no memory arena and no memory patterns: a sensor's session then holds about 35-60 MB less (measured on
    # the paper model, one 10-s window), at the same speed
    options.enable_cpu_mem_arena = False
    options.enable_mem_pattern = False
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


@dataclass
class OnnxModel:
    """An exported model, verified: its session, configuration, classes and where it came from.

    ``sha256`` is the SHA-256 of the file's bytes (what ``sha256sum`` prints); ``metadata`` has the
    ``soundscene_version`` that exported it, as a model file's metadata does."""

    session: object
    config: Config
    classes: list[str]
    path: Path | None
    sha256: str
    metadata: dict[str, str] = field(default_factory=dict)


def load_onnx_model(path: str | Path, *, threads: int = 1) -> OnnxModel:
    """Read, verify and open an exported model; ModelFileError (one line) for anything else."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ModelFileError(f"{path}: {size / 1e9:.1f} GB is too large for an exported scene model")
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"{path}: model file does not exist") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path}: is a folder, not an exported model (.onnx)") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    session = _open_session(path, data, threads)
    try:
        props = dict(session.get_modelmeta().custom_metadata_map)
    except UnicodeDecodeError:  # a damaged byte in the metadata's text
        raise ModelFileError(f"{path}: its metadata is not readable text; the file is damaged") from None
    missing = [k for k in KEYS if k not in props]
    if len(missing) == len(KEYS):
        raise ModelFileError(f"{path}: is an ONNX model but not one soundscene exported (no soundscene metadata)")
    if missing:
        raise ModelFileError(f"{path}: exported without {missing[0]} (by an older soundscene?); export it again "
                             "with `soundscene export`")
    if not digest_matches(data, props[DIGEST_KEY]):
        raise ModelFileError(f"{path}: its contents do not match the digest stored in it; the file is damaged "
                             "or was edited")
    config, classes = _described(path, props)
    _check_signature(path, session, len(classes))
    return OnnxModel(session=session, config=config, classes=classes, path=path,
                     sha256=hashlib.sha256(data).hexdigest(),
                     metadata={"soundscene_version": props["soundscene_version"]})


def _open_session(path: Path, data: bytes, threads: int):
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ModelFileError(f"{path}: running an exported model needs onnxruntime: "
                             "pip install 'soundscene[sensor]'") from None
    try:
        return runtime_session(data, threads=threads)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own Fail/InvalidGraph/... types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelFileError(f"{path}: not a readable ONNX model ({first[:200]})") from None


def _described(path: Path, props: dict[str, str]) -> tuple[Config, list[str]]:
    try:
        config = Config.from_json(props["soundscene_config"])
        classes = json.loads(props["soundscene_classes"])
    except (ConfigError, ValueError) as exc:
        raise ModelFileError(f"{path}: its stored configuration does not fit this version of soundscene "
                             f"({str(exc).splitlines()[0]})") from None
    if (not isinstance(classes, list) or not classes or len(set(classes)) != len(classes)
            or not all(isinstance(c, str) and c for c in classes)):
        raise ModelFileError(f"{path}: its class names are missing, empty or repeated")
    if config.audio.channels != 1:
        raise ModelFileError(f"{path}: an exported model is mono; its configuration says "
                             f"{config.audio.channels} channels")
    return config, classes


def _check_signature(path: Path, session, n_classes: int) -> None:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if [i.name for i in inputs] != [INPUT_NAME] or [o.name for o in outputs] != [OUTPUT_NAME]:
        raise ModelFileError(f"{path}: its graph does not take '{INPUT_NAME}' to '{OUTPUT_NAME}'")
    width = outputs[0].shape[-1] if outputs[0].shape else None
    if isinstance(width, int) and width != n_classes:
        raise ModelFileError(f"{path}: its graph gives {width} probabilities for {n_classes} classes")


class OnnxScorer:
    """The window scorer of an exported model: windows at the model's rate in, probabilities out.

    The same interface as :class:`~soundscene.core.scorer.WindowScorer` (``mix``, ``prepare``, ``score``,
    ``score_heard``, ``score_clips``), so streams and timelines use either.  The graph pads each window to
    the clip length itself; windows have no coarse spectrogram here (``overview`` gets none)."""

    def __init__(self, model: OnnxModel):
        self.model, self.config = model, model.config
        self.n_classes = len(model.classes)
        self.channels = 1

    def mix(self, block: np.ndarray) -> np.ndarray:
        """``(channels, n)`` -> mono: the mean of every channel."""
        return block.mean(axis=0, keepdims=True) if block.shape[0] > 1 else block

    def prepare(self, waveform: np.ndarray) -> np.ndarray:
        """One clip at the model's rate -> ``(1, >= clip samples)`` float32, padded as in training."""
        w = self.mix(as_channels_first(waveform))
        if w.shape[-1] < self.config.audio.clip_samples:
            w = fix_length(w, length=self.config.audio.clip_samples, pad_mode=self.config.audio.pad_mode)
        return np.ascontiguousarray(w, dtype=np.float32)

    def score(self, batch: np.ndarray, overview: list | None = None) -> np.ndarray:
        """``(n, 1, samples)`` windows -> ``(n, n_classes)`` probabilities; ModelFileError when not finite."""
        x = np.ascontiguousarray(np.asarray(batch, dtype=np.float32).reshape(len(batch), -1))
        if not np.isfinite(x).all():
            raise AudioError("samples are not finite")
        probs = self.model.session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        if not np.isfinite(probs).all():
            raise ModelFileError("the exported model gives non-finite probabilities; its weights are damaged")
        return probs

    def score_heard(self, windows: Sequence[np.ndarray], *, silence_dbfs: float,
                    overview: list | None = None) -> list[np.ndarray | None]:
        """Each window's probabilities, or None for a silent one (level around its mean below ``silence_dbfs``),
        as :meth:`WindowScorer.score_heard <soundscene.core.scorer.WindowScorer.score_heard>` decides."""
        silent = [level_dbfs(w, remove_dc=True) < silence_dbfs for w in windows]
        heard = [w for w, quiet in zip(windows, silent) if not quiet]
        scores = iter(self.score(np.stack(heard)) if heard else ())
        return [None if quiet else np.array(next(scores), dtype=np.float32) for quiet in silent]

    def score_clips(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities ``(n, n_classes)`` of clips at the model's rate, each one window (equal lengths batched)."""
        return score_by_length([self.prepare(w) for w in clips], self.score, self.n_classes)
