"""Evaluate Swin-Unet on whole volumes: Dice and HD95 per organ, predictions as NIfTI, your own scans.

  python test.py --volume --dataset synapse --checkpoint runs/synapse/checkpoints/last.pth
  python test.py --volume --dataset synapse --predictions DIR --labels DIR
  python test.py --volume --checkpoint ckpt.pth --input scan.nii.gz --output out/
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

# Before torch loads (as in train.py): on a CPU shared with other jobs, OpenMP threads spinning
# at barriers for a descheduled sibling slow small parallel ops ten-fold; passive ones sleep.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from swin_unet.errors import InputError, one_line

DEVICES = ("auto", "cpu", "cuda")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Metric modes: 'mm' (default) scores HD95 in mm with sound empty-mask rules; "
               "'paper' reproduces the published TransUNet / Swin-Unet procedure and numbers.")
    parser.add_argument("--volume", action="store_true",
                        help="score whole 3-D volumes (the only mode; kept for the original "
                             "command line)")
    parser.add_argument("--dataset", help="synapse, acdc, phantom or folder: the data to score "
                                          "and its class names")
    parser.add_argument("--root", help="the data set's folder (data.root)")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"),
                        help="which cases of the data set to score (default: test)")
    parser.add_argument("--checkpoint", type=Path, help="this project's checkpoint, or an "
                                                        "original Swin-Unet one (with --dataset)")
    parser.add_argument("--predictions", type=Path,
                        help="score the label files in this folder (no model) ...")
    parser.add_argument("--labels", type=Path, help="... against the same-named files here")
    parser.add_argument("--input", type=Path,
                        help="segment your own scans: a NIfTI/NRRD/MHA file, a folder of them, "
                             "or a DICOM series folder")
    parser.add_argument("--output", type=Path, help="results folder (default: "
                                                    "outputs/test_<dataset>)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results of an earlier run in --output")
    parser.add_argument("--ignore-geometry", action="store_true",
                        help="with --predictions/--labels: score a prediction whose affine "
                             "differs from its label's voxel by voxel (recorded in "
                             "summary.json) instead of refusing it")
    parser.add_argument("--save-nifti", action="store_true",
                        help="also write predictions/<case>.nii.gz (uint8, the image's geometry)")
    parser.add_argument("--metric-mode", choices=("mm", "paper"),
                        help="default: the checkpoint's inference.metric_mode (mm)")
    parser.add_argument("--batch-size", type=int, help="slices per forward pass (default 16)")
    parser.add_argument("--tta", action="store_true", help="average the four in-plane flips")
    parser.add_argument("--amp", action="store_true", help="mixed precision on CUDA")
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override the checkpoint's config, e.g. "
                                                  "--set data.test_cases=[1,2]")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def check_arguments(args: argparse.Namespace) -> str:
    """Which of the three runs the arguments ask for; InputError on a bad combination."""
    if args.predictions or args.labels:
        if not (args.predictions and args.labels):
            raise InputError("--predictions and --labels go together")
        if args.input or args.checkpoint:
            raise InputError("--predictions/--labels score existing files: drop --checkpoint "
                             "and --input")
        return "predictions"
    if args.input:
        if not args.checkpoint:
            raise InputError("--input needs --checkpoint")
        if not args.output:
            raise InputError("--input needs --output (predictions go to OUTPUT/predictions/)")
        return "input"
    if not args.dataset or not args.checkpoint:
        raise InputError("give --dataset and --checkpoint, or --predictions and --labels, or "
                         "--checkpoint and --input (see --help)")
    return "dataset"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        return run(args)
    except InputError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    # Imported here so that --help and argument errors answer at once.
    from datasets import class_names_for
    from swin_unet import evaluation
    from swin_unet.inference import resolve_device
    from swin_unet.report import format_table

    kind = check_arguments(args)
    if args.batch_size is not None and args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    progress = not args.no_progress
    if kind == "predictions":
        output = args.output or Path("outputs") / f"eval_{args.predictions.name}"
        stale = evaluation.check_output(output, args.overwrite,
                                        keep=[args.predictions, args.labels])
        names = (class_names_for(args.dataset, root=args.root) if args.dataset
                 else None)
        result = evaluation.evaluate_predictions(args.predictions, args.labels, output,
                                                 args.metric_mode or "mm", names, progress,
                                                 ignore_geometry=args.ignore_geometry,
                                                 stale=stale)
    else:
        device = resolve_device(args.device)
        overrides = list(args.overrides) + ([f"data.root={args.root}"] if args.root else [])
        loaded = evaluation.load_model(args.checkpoint, args.dataset, overrides, device)
        inference = loaded.config.inference
        batch_size = args.batch_size or inference.batch_size
        tta, amp = args.tta or inference.tta, args.amp
        if amp and device.type != "cuda":
            logging.getLogger("test").warning("--amp has an effect on CUDA only; running in "
                                              "float32 on the %s", device.type)
        if kind == "input":
            result = evaluation.segment_inputs(loaded, args.input, args.output, batch_size, tta,
                                               device, amp, args.overwrite, progress=progress,
                                               mode=args.metric_mode or inference.metric_mode)
            for path in result.written:
                print(path)
            print(f"{len(result.written)} prediction(s) in {args.output / 'predictions'}: open "
                  f"each over its scan in 3D Slicer or ITK-SNAP.")
            return 0
        from datasets import open_dataset
        output = args.output or Path("outputs") / f"test_{args.dataset}"
        stale = evaluation.check_output(output, args.overwrite)
        config = loaded.config
        source = open_dataset(args.dataset, config.data)
        source.check_integrity((args.split,))  # a bad case fails now, not after the others
        if list(source.class_names) != loaded.class_names:
            raise InputError(f"{args.checkpoint}: trained for classes "
                             f"{', '.join(loaded.class_names)}; {args.dataset} has "
                             f"{', '.join(source.class_names)}")
        evaluation.remove_results(output, stale)
        note = None
        if source.layout in ("synapse_npz", "acdc_npz"):
            note = (f"{source.layout}: the release stores no voxel spacing; unit spacing is "
                    f"used, so HD95 is in voxels even in mm mode")
        result = evaluation.evaluate_volumes(
            loaded, source.volumes(args.split), output, args.metric_mode or
            inference.metric_mode, args.save_nifti, batch_size, tta, device, amp, note,
            progress)
    print(format_table(result.summary))
    for note in result.notes:
        print(f"note: {note}")
    print(f"wrote {', '.join(str(p) for p in result.written[-2:])}"
          + (f" and {len(result.written) - 2} prediction(s)" if len(result.written) > 2 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
