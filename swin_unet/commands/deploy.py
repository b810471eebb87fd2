"""``swin-unet predict`` (``test.py --input`` with an engine choice) and ``swin-unet export``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from ..config import Device, choices
from ..errors import InputError
from .common import run_command

__all__ = ["build_predict_parser", "predict_main", "build_export_parser", "export_main",
           "EXPORT_TOLERANCE"]

# The largest difference allowed between ONNX Runtime's and the network's logits, as a
# fraction of the logits' range.
EXPORT_TOLERANCE = 1e-4


def build_predict_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Segment scans or 2-D images with a trained checkpoint: "
                               "OUTPUT/predictions/<case>.nii.gz in each scan's geometry, or "
                               "label PNGs and overlays (as test.py --volume --input).")
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="this project's checkpoint (best.pth)")
    parser.add_argument("--input", type=Path, required=True,
                        help="a NIfTI/NRRD/MHA file, a folder of them, a DICOM series folder, "
                             "or a PNG/JPEG/TIFF/BMP image or a folder of them")
    parser.add_argument("--output", type=Path, required=True, help="results folder")
    parser.add_argument("--device", choices=choices(Device), default="auto",
                        help="where to run the network (default auto: CUDA when there is a GPU)")
    parser.add_argument("--tta", action="store_true", help="average the four in-plane flips")
    parser.add_argument("--amp", action="store_true", help="mixed precision (as test.py --amp)")
    parser.add_argument("--batch-size", type=int, help="slices per forward pass (default: the "
                                                       "checkpoint's inference.batch_size)")
    parser.add_argument("--engine", choices=("torch", "onnxruntime"), default="torch",
                        help="run the network in PyTorch (default) or its ONNX graph (--onnx) "
                             "in ONNX Runtime on the CPU")
    parser.add_argument("--onnx", type=Path, help="with --engine onnxruntime: the graph "
                                                  "written by swin-unet export")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results of an earlier run in --output")
    parser.add_argument("--save-probabilities", action="store_true",
                        help="also write probabilities/<case>.npz (see test.py --help)")
    parser.add_argument("--keep-orientation", action="store_true",
                        help="segment scans in their stored voxel order")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-report", action="store_true", help="skip report.html")
    return parser


def predict_main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    args = build_predict_parser(prog).parse_args(argv)
    return run_command(lambda: _predict(args))


def _predict(args: argparse.Namespace) -> int:
    if args.engine == "onnxruntime" and args.onnx is None:
        raise InputError("--engine onnxruntime needs --onnx MODEL.onnx (from swin-unet export)")
    if args.onnx is not None and args.engine != "onnxruntime":
        raise InputError("--onnx is the graph of --engine onnxruntime: add it")
    from ..evaluation import EvaluationRequest, run_evaluation
    from .test import report

    report(run_evaluation(EvaluationRequest(
        checkpoint=args.checkpoint, input=args.input, output=args.output,
        overwrite=args.overwrite, save_probabilities=args.save_probabilities,
        keep_orientation=args.keep_orientation, batch_size=args.batch_size, tta=args.tta,
        amp=args.amp, device=args.device, onnx=args.onnx, progress=not args.no_progress,
        report=not args.no_report)))
    return 0


def build_export_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Write a checkpoint's network as an ONNX graph (dynamic batch "
                               "axis; the channels and size it was trained with) and check "
                               "ONNX Runtime's logits against PyTorch's.")
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="this project's checkpoint (best.pth)")
    parser.add_argument("--output", type=Path, required=True, help="the .onnx file to write")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    return parser


def export_main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    args = build_export_parser(prog).parse_args(argv)
    return run_command(lambda: _export(args), log_format=None)


def _export(args: argparse.Namespace) -> int:
    from ..evaluation.onnx_export import check_onnx, export_onnx, require_onnxruntime
    from ..evaluation.trained import load_model

    require_onnxruntime()  # before the work: the check after writing needs it
    import torch

    loaded = load_model(args.checkpoint, device=torch.device("cpu"))
    path = export_onnx(loaded.model, args.output, args.opset)
    check = check_onnx(loaded.model, path)
    sizes = ", ".join(map(str, check.batch_sizes))
    print(f"{path}: onnxruntime's logits differ from PyTorch's by at most "
          f"{check.max_abs_difference:.3g} = {check.relative_difference:.2e} of the logits' "
          f"range {check.logits_range:.3g} (batch sizes {sizes}; allowed "
          f"{EXPORT_TOLERANCE:g})")
    if not check.relative_difference <= EXPORT_TOLERANCE:
        print(f"error: {path}: the ONNX graph does not reproduce the network", file=sys.stderr)
        return 1
    print(f"  use it: swin-unet predict --engine onnxruntime --onnx {path} "
          f"--checkpoint {args.checkpoint} --input SCAN --output DIR")
    return 0
