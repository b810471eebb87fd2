"""``test.py`` and ``swin-unet test``: the options, the one call to the evaluation library, and
what the run wrote on stdout."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from ..config import Device, MetricMode, Split, choices, comma_indices, comma_names
from ..data_layer import add_dataset_option
from .common import run_command

__all__ = ["build_parser", "main", "report"]


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description='Evaluate Swin-Unet on whole volumes: Dice and HD95 per organ, predictions as NIfTI, your own scans.',
        epilog="--metric-mode paper reproduces the published TransUNet / Swin-Unet procedure "
               "(its resize and its metric conventions); mm (default) resizes bicubic and "
               "scores HD95 in mm with sound empty-mask rules.")
    parser.add_argument("--volume", action="store_true", help="whole 3-D volumes (always on)")
    add_dataset_option(parser, help="the data to score and its class names")
    parser.add_argument("--root", help="the data set's folder (data.root)")
    parser.add_argument("--split", default="test", choices=choices(Split), help="default: test")
    parser.add_argument("--checkpoint", type=Path, nargs="+",
                        help="this project's checkpoint, or an original Swin-Unet one (with "
                             "--dataset); several: an ensemble (their mean probabilities)")
    parser.add_argument("--cross-validation", type=Path, nargs="+", default=[], metavar="RUN",
                        help="each run's best checkpoint on its own validation fold, one table")
    parser.add_argument("--compare", action="store_true",
                        help="--cross-validation of several configurations (runs grouped by "
                             "parent folder): means and paired Wilcoxon tests per class")
    parser.add_argument("--predictions", type=Path,
                        help="score the label files in this folder (no model) ...")
    parser.add_argument("--labels", type=Path, help="... against the same-named files here")
    parser.add_argument("--input", type=Path,
                        help="segment your own scans: a NIfTI/NRRD/MHA file or folder of them, "
                             "a DICOM series folder, 2-D PNG/JPEG/TIFF/BMP images (file, folder)")
    parser.add_argument("--output", type=Path, help="default: outputs/test_<dataset>")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results of an earlier run in --output")
    parser.add_argument("--ignore-geometry", action="store_true",
                        help="with --predictions/--labels: score a prediction whose affine "
                             "differs from its label's voxel by voxel (noted in summary.json)")
    parser.add_argument("--save-nifti", action="store_true",
                        help="also write predictions/<case>.nii.gz (uint8, the image's geometry); "
                             "2-D images: predictions/<case>.png and overlays/<case>.png")
    parser.add_argument("--save-probabilities", action="store_true",
                        help="also write probabilities/<case>.npz (float16 (K, X, Y, Z), voxels "
                             "as the labels', the affine), with --tta uncertainty/<case>.nii.gz")
    parser.add_argument("--dicom-seg", action=argparse.BooleanOptionalAction,
                        help="DICOM series --input: also predictions/<case>_seg.dcm, a DICOM SEG "
                             "(default on; FRACTIONAL with --save-probabilities)")
    parser.add_argument("--rtstruct", action="store_true", help="DICOM series --input: also "
                        "predictions/<case>_rtstruct.dcm, an RT Structure Set (needs rt-utils)")
    parser.add_argument("--keep-orientation", action="store_true",
                        help="--input: segment scans in their stored voxel order instead of "
                             "turning them to the orientation the model was trained in")
    parser.add_argument("--metric-mode", choices=choices(MetricMode),
                        help="sets inference.resize and inference.metric_conventions together "
                             "(default: the checkpoint's, bicubic and mm)")
    parser.add_argument("--batch-size", type=int, help="slices per forward pass (default 16)")
    parser.add_argument("--tta", action="store_true", help="average the four in-plane flips")
    parser.add_argument("--amp", action="store_true",
                        help="mixed precision: bf16 on CUDA (fp16 where unsupported) and on CPUs "
                             "with native bf16 (AMX, AVX-512 BF16); float32 on other CPUs")
    parser.add_argument("--device", choices=choices(Device), default="auto",
                        help="where to run the model (default auto: CUDA when there is a GPU)")
    parser.add_argument("--max-pixels", type=int, metavar="N",
                        help="refuse 2-D images above N pixels, from their header (default "
                             "data.max_pixels, 100 million)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override the checkpoint's config")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-report", action="store_true",
                        help="skip report.html and figures/ (overlay figures of every case)")
    parser.add_argument("--figure-cases", type=comma_names, default=[], metavar="CASE,CASE",
                        help="also draw these cases as publication figures "
                             "(figures/paper_<case>.png: image, ground truth, prediction)")
    parser.add_argument("--figure-slices", type=comma_indices, metavar="Z,Z",
                        help="the slices of those figures (default: the slices where each "
                             "organ is largest and the one with the largest error)")
    return parser


def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    args = build_parser(prog).parse_args(argv)
    return run_command(lambda: _evaluate(args))


def _evaluate(args: argparse.Namespace) -> int:
    # Imported here so that --help and argument errors answer at once.
    from ..evaluation import EvaluationRequest, run_evaluation

    options = {k: v for k, v in vars(args).items()
               if k not in ("volume", "no_progress", "no_report")}
    report(run_evaluation(EvaluationRequest(**options, progress=not args.no_progress,
                                            report=not args.no_report)))
    return 0


def report(result) -> None:
    """What a run wrote, on stdout: the metrics table and notes, or the predictions' paths;
    the path of report.html last."""
    from ..report.viewer_tables import ITKSNAP_TABLE, SLICER_TABLE

    folder = result.output / "predictions"
    tables = (f"{folder / SLICER_TABLE} (3D Slicer) or {folder / ITKSNAP_TABLE} (ITK-SNAP) "
              f"name and colour the organs")
    if result.kind == "input":
        for path in result.written:
            print(path)
        if result.notes:  # 2-D images: label PNGs and overlays
            print("; ".join(result.notes))
        else:
            count = sum(1 for path in result.written
                        if path.parent.name == "predictions" and path.suffix == ".gz")
            print(f"{count} prediction(s) in {folder}: open each over its scan in 3D Slicer or "
                  f"ITK-SNAP; {tables}.")
    else:
        from ..report.tables import format_table

        print("\n".join(result.tables) if result.tables else format_table(result.summary))
        for note in result.notes:
            print(f"note: {note}")
        tables = f"; {tables}" if (folder / SLICER_TABLE).is_file() else ""
        print(f"wrote {', '.join(str(p) for p in result.written[-2:])}"
              + (f" and {len(result.written) - 2} prediction(s){tables}"
                 if len(result.written) > 2 else ""))
    if result.report is not None:
        print(f"report: {result.report}")
