"""``train.py`` and ``swin-unet train``: the options and the one call to the training library."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from ..config import Device, choices
from ..data_layer import add_dataset_option
from .common import INTERRUPTED, run_command

__all__ = ["build_parser", "parse_args", "main", "prepare_main"]


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
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
    return parser


def parse_args(argv: Optional[Sequence[str]] = None,
               prog: Optional[str] = None) -> argparse.Namespace:
    return build_parser(prog).parse_args(argv)


def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None,
         train_command: str = "swin-unet train",
         test_command: str = "swin-unet test") -> int:
    """Train as the options say; print the run's checkpoint and the commands that follow.

    ``train_command`` and ``test_command`` are how the user starts the two commands from the
    current folder (``python train.py`` in a clone), for the commands printed at the end.
    """
    args = parse_args(argv, prog)
    # Training sets up its own log (train.log and the console).
    return run_command(lambda: _train(args, train_command, test_command), log_format=None)


def prepare_main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    """``swin-unet prepare``: ``train --prepare-only`` (check the data, build its slice cache)."""
    return main(["--prepare-only", *(argv or [])], prog=prog)


def _train(args: argparse.Namespace, train_command: str, test_command: str) -> int:
    output = Path(args.output or Path("runs") / args.dataset
                  / (f"fold_{args.fold}" if args.fold is not None else ""))
    rank = int(os.environ.get("RANK", "0"))
    from ..training import TrainingDiverged, prepare_from_layers, train_from_layers

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
    if result.already_finished:
        if rank == 0:
            print(f"{output}: all {result.epochs_done} epochs of this run are done already; "
                  f"nothing to do (to train longer: --resume --set train.epochs=N)")
        return 0
    if result.interrupted:
        if rank == 0:
            print(f"stopped; continue with: {train_command} --dataset "
                  f"{args.dataset} --output {output} --resume", file=sys.stderr)
        return INTERRUPTED
    if rank == 0:
        best = output / "checkpoints" / "best.pth"
        root = result.config.data.root
        print(f"done: {best}\n"
              f"  evaluate: {test_command} --volume --dataset {args.dataset} "
              f"{'--root ' + str(root) + ' ' if root else ''}"
              f"--checkpoint {best} --output {output / 'test'}\n"
              f"  curves:   {output / 'curves.png'} (or tensorboard --logdir "
              f"{output / 'tensorboard'})")
    return 0
