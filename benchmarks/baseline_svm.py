"""The classical baseline: per-clip feature statistics with scikit-learn's RBF SVM, on a data set's folds.

    python benchmarks/baseline_svm.py ../shared/data/esc10/labels.csv

What a user could do in a few seconds instead of training a CNN: for each clip, librosa's 13 MFCCs, their
deltas and 40 log-mel bands (22,050 Hz, 25-ms windows, 10-ms hop, as soundscene's front end), summarised by
mean and standard deviation over time (2 x 106 = 212 numbers); standardised; an RBF SVM (C=10,
gamma="scale").  Every predefined fold is held out once (the same folds as ``soundscene cv``); nothing is
tuned on the test fold.  Prints accuracy per fold and mean ± sd.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def clip_features(path, *, sample_rate: int = 22050) -> np.ndarray:
    import librosa

    from soundscene.core.audio import load_audio

    y = load_audio(path, sample_rate=sample_rate)[0]
    n_fft, hop, win = 1024, 220, 551
    mel = librosa.feature.melspectrogram(y=y, sr=sample_rate, n_fft=n_fft, hop_length=hop, win_length=win,
                                         n_mels=40, power=2.0)
    logmel = librosa.power_to_db(mel, top_db=80.0)
    mfcc = librosa.feature.mfcc(S=logmel, n_mfcc=13)
    rows = np.concatenate([mfcc, librosa.feature.delta(mfcc), librosa.feature.delta(mfcc, order=2), logmel])
    return np.concatenate([rows.mean(axis=1), rows.std(axis=1)])


def main() -> int:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from soundscene.training.datasets import resolve_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="a data set with folds (e.g. ../shared/data/esc10/labels.csv)")
    args = parser.parse_args()
    manifest = resolve_dataset(args.data)
    if not manifest.has_folds:
        print("error: the data set has no folds", file=sys.stderr)
        return 2
    started = time.perf_counter()
    X = np.stack([clip_features(i.path) for i in manifest.items])
    y = np.array([manifest.classes.index(i.label) for i in manifest.items])
    folds = np.array([i.fold for i in manifest.items])
    accs = []
    for fold in sorted(set(folds)):
        model = make_pipeline(StandardScaler(), SVC(C=10.0, gamma="scale"))
        model.fit(X[folds != fold], y[folds != fold])
        accs.append(float(np.mean(model.predict(X[folds == fold]) == y[folds == fold])))
        print(f"fold {fold}: accuracy {accs[-1]:.3f}")
    print(f"mean ± sd: {np.mean(accs):.3f} ± {np.std(accs, ddof=1):.3f}  "
          f"({len(manifest)} clips, {time.perf_counter() - started:.0f} s including feature extraction)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
