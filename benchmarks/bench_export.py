"""Benchmark of the ONNX export: the STFT as a Conv with DFT kernels vs ONNX's STFT operator, beside torch.

    python benchmarks/bench_export.py [--model MODEL | --set KEY=VALUE ...] [--seconds 10] [--repeats 15]
                                      [--threads 1]

Without --model, a paper CNN with random weights and the default configuration
(22,050 Hz, 40 mels, 100-frame patches), changed by any --set (e.g.
``--set features.n_fft=1000``), is built and saved to a temporary file.
One clip of --seconds seconds of noise (batch 1) goes through:

* torch: FrontEnd, then patches + SceneNet + aggregation (the path inference uses);
* onnxruntime, STFT as a strided Conv with the windowed DFT basis (what export_onnx writes);
* onnxruntime, the same graph with ONNX's STFT operator instead;
* onnxruntime, the Conv graph with the network's weights dynamically quantised to int8.

Each is timed as the front end alone (waveform -> features) and as the whole
graph (waveform -> clip probabilities), torch and onnxruntime both on
--threads threads.  Figures are medians of --repeats runs in interleaved rounds,
printed in ms per clip beside the torch figure of the same row.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _timing import interleaved_times


def _times(fns: dict, repeats: int, warmup: int = 3) -> dict:
    return interleaved_times(fns, repeats, warmup)


def _random_model(path: Path, seconds: float, overrides: list[str]) -> Path:
    import torch

    from soundscene.config import Config, parse_override
    from soundscene.core.modelfile import save_model_file
    from soundscene.core.models import build_model

    config = Config().with_overrides({"audio.clip_seconds": seconds, **dict(map(parse_override, overrides))})
    torch.manual_seed(0)
    net = build_model(config, n_classes=10).eval()
    return save_model_file(path, net, config, [f"scene{k}" for k in range(10)])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model file (default: a random paper CNN, default configuration)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="configuration change for the random model, e.g. audio.sample_rate=48000")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import numpy as np
    import onnxruntime as ort
    import torch

    from soundscene.apps.export import (INPUT_NAME, _quantize, runtime_session, build_onnx_model, onnx_probabilities,
                                   torch_probabilities)
    from soundscene.core.features import FrontEnd
    from soundscene.core.modelfile import load_model_file

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_path = (Path(args.model) if args.model
                      else _random_model(tmp / "model.safetensors", args.seconds, args.set))
        bundle = load_model_file(model_path)
        config = bundle.config
        sr = config.audio.sample_rate
        clip = (0.1 * np.random.default_rng(0).standard_normal(int(args.seconds * sr))).astype(np.float32)
        batch = clip[None]

        graphs = {}
        for stft in ("conv", "op"):
            for until in ("features", "probabilities"):
                graphs[stft, until] = build_onnx_model(bundle, stft=stft, until=until).SerializeToString()
        float_path = tmp / "model.onnx"
        float_path.write_bytes(graphs["conv", "probabilities"])
        int8_path = tmp / "model.int8.onnx"
        _quantize(float_path, int8_path, build_onnx_model(bundle))
        graphs["int8", "probabilities"] = int8_path.read_bytes()
        sessions = {key: runtime_session(data, threads=args.threads) for key, data in graphs.items()}

        front_end = FrontEnd(config.features, sample_rate=sr)
        wave = torch.from_numpy(batch)

        def torch_features():
            with torch.no_grad():
                front_end(wave)

        def run(key):
            return lambda: sessions[key].run(None, {INPUT_NAME: batch})

        # sanity: every graph gives torch's numbers
        ref = torch_probabilities(bundle, [clip])
        feats_ref = front_end(wave).numpy()
        checks = {
            "conv features": np.abs(sessions["conv", "features"].run(None, {INPUT_NAME: batch})[0] - feats_ref).max(),
            "op features": np.abs(sessions["op", "features"].run(None, {INPUT_NAME: batch})[0] - feats_ref).max(),
            "conv probabilities": np.abs(onnx_probabilities(graphs["conv", "probabilities"], [clip]) - ref).max(),
            "op probabilities": np.abs(onnx_probabilities(graphs["op", "probabilities"], [clip]) - ref).max(),
            "int8 probabilities": np.abs(onnx_probabilities(graphs["int8", "probabilities"], [clip]) - ref).max(),
        }

        feats = _times({"torch": torch_features, "ort conv-DFT": run(("conv", "features")),
                        "ort STFT op": run(("op", "features"))}, args.repeats)
        full = _times({"torch": lambda: torch_probabilities(bundle, [clip]),
                       "ort conv-DFT": run(("conv", "probabilities")),
                       "ort STFT op": run(("op", "probabilities")),
                       "ort conv-DFT int8": run(("int8", "probabilities"))}, args.repeats)

    fe = FrontEnd(config.features, sample_rate=sr)
    print(f"onnxruntime {ort.__version__}, torch {torch.__version__}, {args.threads} thread(s); "
          f"one {args.seconds:g}-s clip at {sr} Hz (batch 1), n_fft {fe.n_fft}, window {fe.win_length}, "
          f"hop {fe.hop_length}, {config.features.kind}, {config.features.n_rows} rows; "
          f"medians of {args.repeats} runs, ms per clip")
    for title, table in (("front end (waveform -> features)", feats),
                         ("whole model (waveform -> probabilities)", full)):
        base = statistics.median(table["torch"]) * 1e3
        print(f"\n{title}")
        for name, times in table.items():
            ms = statistics.median(times) * 1e3
            print(f"  {name:<20} {ms:8.2f} ms   {ms / base:5.2f}x torch ({base:.2f} ms)")
    sizes = {k: len(v) for k, v in graphs.items() if k[1] == "probabilities"}
    print("\nfile sizes: " + ", ".join(f"{k[0]} {v / 1e6:.2f} MB" for k, v in sizes.items()))
    print("max |ONNX - torch|: " + ", ".join(f"{k} {v:.1e}" for k, v in checks.items()))


if __name__ == "__main__":
    main()
