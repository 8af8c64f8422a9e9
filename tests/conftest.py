"""Shared fixtures: a tiny configuration, a tiny synthetic data set, one tiny trained run, TAU-format clips.

The plain helpers (constants, audio writers, data set builders) live in helpers.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundscene.config import Config

from helpers import SHARED, TINY, TINY_CLASSES, Broker, Certificates, Subscriber, free_port


@pytest.fixture
def tiny_config() -> Config:
    return Config.from_dict(TINY)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """labels.csv of 4 easy synthetic classes x 10 clips of 1.5 s at 8 kHz (folds 1-5)."""
    from soundscene.training.synth import write_synthetic_dataset

    root = tmp_path_factory.mktemp("tiny_data")
    return write_synthetic_dataset(root, clips_per_class=10, seconds=1.5, sample_rate=8000, seed=3,
                                   difficulty=0.2, classes=TINY_CLASSES, progress=False)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_dataset):
    """One trained tiny run (fold 5 held out), shared by the tests that only read it."""
    from soundscene.training.loop import train

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    return train(tiny_dataset, run_dir=run_dir, config=Config.from_dict(TINY), test_fold=5, progress=False)


@pytest.fixture(autouse=True, scope="session")
def _private_feature_cache(tmp_path_factory):
    """Tests never touch the user's ~/.cache: the default feature cache goes to a temporary folder."""
    import os

    old = os.environ.get("SOUNDSCENE_CACHE")
    os.environ["SOUNDSCENE_CACHE"] = str(tmp_path_factory.mktemp("feature_cache"))
    yield
    if old is None:
        os.environ.pop("SOUNDSCENE_CACHE", None)
    else:
        os.environ["SOUNDSCENE_CACHE"] = old


@pytest.fixture(scope="session")
def tau_scene_clips(tmp_path_factory) -> Path:
    """A folder of 10-s, 48-kHz, 24-bit stereo scene WAVs (the TAU 2019 format): the real TUT 2018 clips in
    ../shared/data/tut2018-samples when that folder is there, else three synthetic scenes written in that format,
    so the tests that use it run everywhere."""
    real = SHARED / "tut2018-samples"
    if real.is_dir() and any(real.rglob("*.wav")):
        return real
    from soundscene.training.synth import synthesize_scene

    root = tmp_path_factory.mktemp("tau_format")
    for k, scene in enumerate(("street_traffic", "metro", "park")):
        mono = synthesize_scene(scene, sample_rate=48000, seconds=10.0, seed=70 + k)
        sf.write(str(root / f"{scene}.wav"), np.stack([mono, 0.8 * mono], axis=1), 48000, subtype="PCM_24")
    return root


@pytest.fixture
def broker_factory(tmp_path):
    """broker_factory(port=None, users=None, **options) -> a Broker not yet started (options: certificates,
    require_certificate, acl); every one is killed afterwards."""
    brokers = []

    def make(port: int | None = None, users: dict[str, str] | None = None, **options) -> Broker:
        folder = tmp_path / f"broker{len(brokers)}"
        folder.mkdir()
        brokers.append(Broker(folder, port or free_port(), users, **options))
        return brokers[-1]

    yield make
    for b in brokers:
        b.stop()


@pytest.fixture
def broker(broker_factory) -> Broker:
    return broker_factory().start()



@pytest.fixture(scope="session")
def certificates(tmp_path_factory) -> Certificates:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, made once for the session."""
    return Certificates(tmp_path_factory.mktemp("certificates"))


@pytest.fixture
def subscribers():
    made = []

    def make(port: int, sensor_id: str, **tls_and_login) -> Subscriber:
        made.append(Subscriber(port, sensor_id, **tls_and_login))
        return made[-1]

    yield make
    for s in made:
        s.close()


# -- without a broker ----------------------------------------------------------------------------------
