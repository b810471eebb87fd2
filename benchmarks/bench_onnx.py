"""ONNX Runtime's CPU throughput against PyTorch's on the 224 model and the demo model.

Each model (random weights: the speed does not depend on them) is exported by
``swin_unet.evaluation.onnx_export.export_onnx`` (what ``swin-unet export`` writes), then the
same batch goes through PyTorch (the inference path: ``inference_mode``, the CPU fast path) and
through an ONNX Runtime session, alternating, for ``--rounds`` pairs, both on ``--threads``
threads. Prints JSON lines: one ``machine`` line, then per model and batch size the median
milliseconds per batch, images per second, the median of the per-pair time ratios
onnxruntime / torch (below 1: ONNX Runtime is faster) and the largest logit difference as a
fraction of the logits' range.

    python benchmarks/bench_onnx.py [--models 224 demo] [--batch 8] [--rounds 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as train.py (see bench_model.py)

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import cpu_name, run_alternating  # noqa: E402
from swin_unet.config import Config, dataset_config_path, load_config  # noqa: E402
from swin_unet.evaluation.onnx_export import export_onnx, require_onnxruntime  # noqa: E402
from swin_unet.model import build_model  # noqa: E402


def model_config(name: str):
    if name == "224":
        return Config().model  # the paper's 224 x 224 Swin-T-sized model, 9 classes
    return load_config(dataset_config_path("phantom")).model  # the CPU demo's


def bench(name: str, batch: int, rounds: int, threads: int, folder: Path) -> dict:
    runtime = require_onnxruntime()
    torch.manual_seed(0)
    config = model_config(name)
    model = build_model(config).eval()
    path = export_onnx(model, folder / f"{name}.onnx")
    options = runtime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = runtime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    size = model.img_size
    x = torch.rand(batch, model.in_chans, *size)
    feed = {session.get_inputs()[0].name: x.numpy()}

    def with_torch():
        with torch.inference_mode():
            return model(x)

    def with_onnxruntime():
        return session.run(None, feed)[0]

    run_alternating({"torch": with_torch, "onnxruntime": with_onnxruntime}, 1)  # warm-up
    times, values = run_alternating({"torch": with_torch, "onnxruntime": with_onnxruntime},
                                    rounds)
    expected = values["torch"].numpy()
    span = float(expected.max() - expected.min())
    ratios = [o / t for o, t in zip(times["onnxruntime"], times["torch"])]
    row = {"model": name, "img_size": list(size), "embed_dim": config.embed_dim,
           "batch": batch, "threads": threads, "pairs": rounds}
    for engine in ("torch", "onnxruntime"):
        seconds = statistics.median(times[engine])
        row[f"{engine}_ms"] = round(seconds * 1e3, 2)
        row[f"{engine}_images_per_s"] = round(batch / seconds, 2)
    row["time_ratio_onnxruntime_over_torch"] = round(statistics.median(ratios), 3)
    row["max_abs_diff_over_range"] = float(np.abs(values["onnxruntime"] - expected).max() / span)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["224", "demo"], choices=["224", "demo"])
    parser.add_argument("--batch", type=int, nargs="+", default=[8])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runtime = require_onnxruntime()
    print(json.dumps({"machine": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
                      "onnxruntime": runtime.__version__,
                      "date": datetime.date.today().isoformat()}), flush=True)
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models:
            for batch in args.batch:
                print(json.dumps(bench(name, batch, args.rounds, args.threads, Path(folder))),
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
