"""soundscene: acoustic scene classification, from a recording to a trained, evaluated model.

The public API (imported lazily, so ``import soundscene`` stays fast):

* :class:`Config` — every setting, validated; stored in each model file.
* :func:`train` — train and evaluate a classifier on a folder or CSV manifest.
* :class:`SceneClassifier` — load a model file and predict files or waveforms.
* :func:`load_audio`, :class:`FrontEnd` — the audio input and the torch front end.
* :func:`write_synthetic_dataset` — the built-in synthetic scene data set.
"""

from __future__ import annotations

from importlib import import_module

from ._version import __version__

_EXPORTS = {
    "Config": "config", "AudioConfig": "config", "FeatureConfig": "config", "ModelConfig": "config",
    "TrainConfig": "config",
    "SoundsceneError": "errors", "AudioError": "errors", "ConfigError": "errors", "DataError": "errors",
    "ModelFileError": "errors",
    "load_audio": "core.audio", "load_clip": "core.audio", "audio_info": "core.audio",
    "FrontEnd": "core.features",
    "load_manifest": "training.data", "split_manifest": "training.data",
    "build_model": "core.models", "register_model": "core.models", "available_models": "core.models",
    "load_model_file": "core.modelfile", "save_model_file": "core.modelfile",
    "train": "training.loop", "TrainResult": "training.loop",
    "compute_metrics": "training.evaluation", "evaluate": "training.evaluation",
    "SceneClassifier": "core.inference", "Prediction": "core.inference",
    "synthesize_scene": "training.synth", "write_synthetic_dataset": "training.synth", "SCENE_CLASSES": "training.synth",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'soundscene' has no attribute {name!r}")
