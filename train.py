"""Train Swin-Unet: a thin command line over swin_unet.training.train.

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
# CPU shared with other jobs, threads that spin at every barrier for a descheduled sibling made
# a training step of the demo model 29x slower (2.0 vs 58 slices/s, 2 cores at load 4.4);
# passive threads sleep instead. Set OMP_WAIT_POLICY=ACTIVE to override on a dedicated machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from swin_unet.config import Config, apply_overrides, config_from_dict, load_config
from swin_unet.errors import InputError, one_line

DATASETS = ("synapse", "acdc", "phantom", "folder")
CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train Swin-Unet on a 2-D slice data set; validation on whole volumes.",
        epilog="The config is read in layers: configs/<dataset>.yaml (or, with --resume, the "
               "checkpoint's own config), then --config, then --set. The learning rate is "
               "train.base_lr x train.batch_size / train.base_batch_size (linear scaling with "
               "the global batch).")
    parser.add_argument("--dataset", required=True, choices=DATASETS,
                        help="data set layout; phantom generates a synthetic CT set on first use")
    parser.add_argument("--root", help="data folder (sets data.root)")
    parser.add_argument("--config", help="a YAML config layered over the data set's one")
    parser.add_argument("--output", help="run folder (default: runs/<dataset>)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a config key with a YAML value, e.g. "
                             "--set train.epochs=20 --set model.depths=[2,2,2,2] (repeatable)")
    parser.add_argument("--pretrained", help="ImageNet Swin-T or Swin-Unet checkpoint to start "
                                             "from")
    parser.add_argument("--resume", nargs="?", const="", default=None, metavar="PATH",
                        help="continue a run (default PATH: OUTPUT/checkpoints/last.pth)")
    parser.add_argument("--overwrite", action="store_true",
                        help="the output folder holds an earlier run: delete its config, log, "
                             "checkpoints and TensorBoard events and start afresh")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--amp", action="store_true",
                        help="mixed precision (bf16 where supported, else fp16 with a scaler)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--quiet", action="store_true", help="log to train.log only")
    return parser.parse_args(argv)


def resolve_config(args: argparse.Namespace, output: Path) -> tuple[Config, Optional[Path]]:
    """The run's config and the checkpoint to resume from (None for a fresh run).

    Raises
    ------
    InputError
        An unreadable config or checkpoint, an unknown key or a bad value.
    """
    from swin_unet.training import default_resume_path, read_resume_checkpoint

    resume = None
    if args.resume is not None:
        resume = Path(args.resume) if args.resume else default_resume_path(output)
        stored = read_resume_checkpoint(resume)["config"]
        if stored.get("dataset") != args.dataset:
            raise InputError(f"{resume}: a checkpoint of the '{stored.get('dataset')}' data "
                             f"set, not '{args.dataset}'")
        # Continue the run as it was configured; --config and --set may still change it.
        base = config_from_dict(stored)
    else:
        dataset_yaml = CONFIG_DIR / f"{args.dataset}.yaml"
        base = load_config(dataset_yaml if dataset_yaml.is_file() else None)
    config = load_config(args.config, base=base) if args.config else base
    config.dataset = args.dataset
    config = apply_overrides(config, args.overrides)
    if args.root is not None:
        config.data.root = str(args.root)
    if args.amp:
        config.train.amp = True
    if args.compile:
        config.train.compile = True
    return config, resume


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    output = Path(args.output or Path("runs") / args.dataset)
    rank = int(os.environ.get("RANK", "0"))
    try:
        config, resume = resolve_config(args, output)
        from swin_unet.training import TrainingDiverged, train

        try:
            result = train(config, output, resume=resume, pretrained=args.pretrained,
                           device=args.device, verbose=not args.quiet,
                           overwrite=args.overwrite)
        except TrainingDiverged as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    except InputError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if result.interrupted:
        if rank == 0:
            print(f"stopped; continue with: python train.py --dataset {args.dataset} "
                  f"--output {output} --resume", file=sys.stderr)
        return 130
    if rank == 0:
        best = output / "checkpoints" / "best.pth"
        print(f"done: {best}\n"
              f"  evaluate: python test.py --volume --dataset {args.dataset} "
              f"{'--root ' + str(config.data.root) + ' ' if config.data.root else ''}"
              f"--checkpoint {best} --output {output / 'test'}\n"
              f"  curves:   tensorboard --logdir {output / 'tensorboard'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
