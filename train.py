"""Train Swin-Unet: a thin command line over swin_unet.training.train_from_layers.

    python train.py --dataset phantom                      # the CPU demo, a few minutes
    python train.py --dataset synapse --root /data/Synapse --output runs/synapse
    torchrun --nproc_per_node=4 train.py --dataset acdc --root /data/ACDC --amp
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

# Read by the OpenMP runtime when torch loads, so set before the first import of torch. On a
# CPU shared with other jobs, threads that spin at every barrier for a descheduled sibling slow
# training many times over (docs/performance.md); passive threads sleep instead.
# Set OMP_WAIT_POLICY=ACTIVE to override on a dedicated machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from swin_unet.config import Device, choices
from swin_unet.data_layer import add_dataset_option
from swin_unet.errors import InputError, format_error


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train Swin-Unet on a 2-D slice data set; validation on whole volumes.",
        epilog="The config is read in layers: configs/<dataset>.yaml (or, with --resume, the "
               "checkpoint's own config), then --config, then --set. The learning rate is "
               "train.base_lr x train.batch_size / train.base_batch_size (linear scaling with "
               "the global batch).")
    add_dataset_option(parser, required=True,
                       help="data set layout; phantom generates a synthetic CT set on first use")
    parser.add_argument("--root", help="data folder (sets data.root)")
    parser.add_argument("--config", help="a YAML config layered over the data set's one")
    parser.add_argument("--output", help="run folder (default: runs/<dataset>, with --fold "
                                          "runs/<dataset>/fold_K)")
    parser.add_argument("--fold", metavar="K|all",
                        help="cross-validation: validate on fold K (0-based) of the labelled "
                             "non-test cases split into data.folds folds (default 5; a folder's "
                             "splits_final.json when present), train on the rest; all: train "
                             "on every one, no validation")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a config key with a YAML value, e.g. "
                             "--set train.epochs=20 --set model.depths=[2,2,2,2] (repeatable)")
    parser.add_argument("--pretrained", help="ImageNet Swin (T, S, B; any window) or Swin-Unet "
                                             "checkpoint to start from")
    parser.add_argument("--resume", nargs="?", const="", default=None, metavar="PATH",
                        help="continue a run (default PATH: OUTPUT/checkpoints/last.pth)")
    parser.add_argument("--overwrite", action="store_true",
                        help="the output folder holds an earlier run: delete its config, log, "
                             "checkpoints and TensorBoard events and start afresh")
    parser.add_argument("--device", default="auto", choices=choices(Device),
                        help="where to train (default auto: CUDA when there is a GPU)")
    parser.add_argument("--amp", action="store_true",
                        help="mixed precision: on CUDA bf16 where supported, else fp16 with a "
                             "scaler; on CPUs with native bf16 (AMX, AVX-512 BF16) bf16; float32 "
                             "on other CPUs (train.amp_dtype=bf16 forces bf16)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--quiet", action="store_true", help="log to train.log only")
    parser.add_argument("--prepare-only", action="store_true",
                        help="check the training data, build its slice cache (data.cache_dir) "
                             "and exit")
    return parser.parse_args(argv)


def _script(name: str) -> str:
    """``name`` beside this file, as a path from the current folder: printed commands run as
    printed from where the user stands (runs/ and data/ are relative to it as well)."""
    path = Path(__file__).resolve().parent / name
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return str(path)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    output = Path(args.output or Path("runs") / args.dataset
                  / (f"fold_{args.fold}" if args.fold is not None else ""))
    rank = int(os.environ.get("RANK", "0"))
    try:
        from swin_unet.training import TrainingDiverged, prepare_from_layers, train_from_layers

        if args.prepare_only:
            store = prepare_from_layers(args.dataset, config_file=args.config,
                                        overrides=args.overrides, root=args.root,
                                        verbose=not args.quiet)
            print(f"slice cache ready: {len(store)} slices at {store.path}")
            return 0
        try:
            result = train_from_layers(
                args.dataset, output, config_file=args.config, overrides=args.overrides,
                root=args.root, resume=args.resume, pretrained=args.pretrained,
                device=args.device, amp=args.amp, compile=args.compile, verbose=not args.quiet,
                overwrite=args.overwrite, fold=args.fold)
        except TrainingDiverged as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    except InputError as exc:
        print(format_error(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if result.already_finished:
        if rank == 0:
            print(f"{output}: all {result.epochs_done} epochs of this run are done already; "
                  f"nothing to do (to train longer: --resume --set train.epochs=N)")
        return 0
    if result.interrupted:
        if rank == 0:
            print(f"stopped; continue with: python {_script('train.py')} --dataset "
                  f"{args.dataset} --output {output} --resume", file=sys.stderr)
        return 130
    if rank == 0:
        best = output / "checkpoints" / "best.pth"
        root = result.config.data.root
        print(f"done: {best}\n"
              f"  evaluate: python {_script('test.py')} --volume --dataset {args.dataset} "
              f"{'--root ' + str(root) + ' ' if root else ''}"
              f"--checkpoint {best} --output {output / 'test'}\n"
              f"  curves:   {output / 'curves.png'} (or tensorboard --logdir "
              f"{output / 'tensorboard'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
