"""Command line: ``python -m swin_unet.explain --output DIR`` writes the figures and the page."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from typing import Optional, Sequence

import torch

from ..commands.common import run_command
from ..errors import InputError
from ..model import SwinUnet
from .analysis import explain_model
from .document import write_explanation
from .figures import require_matplotlib

log = logging.getLogger("swin_unet.explain")

# The paper's model with 3 input channels, the one whose 27.17 M parameters everyone quotes.
DEFAULTS = dict(img_size=224, window_size=7, patch_size=4, in_chans=3, num_classes=9,
                embed_dim=96, depths=[2, 2, 2, 2], num_heads=[3, 6, 12, 24])


def _size(text: str):
    parts = text.lower().replace(",", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or HxW, got '{text}'") from None
    if len(values) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected N or HxW, got '{text}'")
    return values[0] if len(values) == 1 else values


def parse_args(argv: Optional[Sequence[str]] = None,
               prog: str = "python -m swin_unet.explain") -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Draw Swin-Unet's patches and windows per stage, the cyclic shift and its "
                    "attention masks (the model's own buffers), and tabulate MSA vs W-MSA cost "
                    "from the formulas against FLOPs counted on the model. Writes PNG figures, "
                    "a Markdown page and a JSON file. Needs matplotlib.")
    parser.add_argument("--output", required=True, help="folder for the figures and the page")
    parser.add_argument("--config", help="YAML config whose model section sets the defaults "
                                         "(the flags below override it)")
    parser.add_argument("--img-size", type=_size, help="input size, N or HxW (default 224)")
    parser.add_argument("--window-size", type=int, help="attention window M (default 7)")
    parser.add_argument("--patch-size", type=int, help="patch size (default 4)")
    parser.add_argument("--in-chans", type=int, help="input channels (default 3, the paper's "
                                                     "27.17 M-parameter model)")
    parser.add_argument("--num-classes", type=int, help="output classes (default 9)")
    parser.add_argument("--embed-dim", type=int, help="channels of stage 0 (default 96)")
    parser.add_argument("--depths", type=int, nargs="+", help="blocks per stage (default 2 2 2 2)")
    parser.add_argument("--num-heads", type=int, nargs="+", help="heads per stage "
                                                                 "(default 3 6 12 24)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where the traced forward pass runs (FLOP counts do not depend on it)")
    return parser.parse_args(argv)


def model_settings(args: argparse.Namespace) -> dict:
    """The model's settings: defaults, then ``--config``'s model section, then the flags."""
    settings = dict(DEFAULTS)
    if args.config:
        from ..config import load_config
        model = load_config(args.config).model
        settings.update({key: getattr(model, key) for key in DEFAULTS})
    for key in DEFAULTS:
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    return settings


def build(settings: dict, device: str) -> SwinUnet:
    """The model to explain, on ``device``; a bad setting becomes an :class:`InputError`."""
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: CUDA is not available on this machine")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        model = SwinUnet(**settings, attention="explicit")
    except ValueError as exc:
        raise InputError(f"model settings: {exc}") from None
    return model.to(device)


def command_line(settings: dict, output: str) -> str:
    """The command that regenerates the page with these settings."""
    size = settings["img_size"]
    size = size if isinstance(size, int) else "x".join(map(str, size))
    words = ["python", "-m", "swin_unet.explain", "--output", output, "--img-size", str(size),
             "--window-size", str(settings["window_size"])]
    for key in ("patch_size", "in_chans", "num_classes", "embed_dim", "depths", "num_heads"):
        if settings[key] != DEFAULTS[key]:
            value = settings[key]
            words += [f"--{key.replace('_', '-')}"] + (
                [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)])
    return shlex.join(words)


def main(argv: Optional[Sequence[str]] = None,
         prog: str = "python -m swin_unet.explain") -> int:
    args = parse_args(argv, prog)
    return run_command(lambda: _explain(args), log_format="%(message)s")


def _explain(args: argparse.Namespace) -> int:
    require_matplotlib()  # before any work: the figures are the point of the command
    settings = model_settings(args)
    model = build(settings, args.device)
    explanation = explain_model(model)
    files = write_explanation(explanation, args.output, command_line(settings, args.output))
    log.info("%.2f M parameters, %.2f G multiply-adds per image; wrote %d files to %s",
             explanation.params / 1e6, explanation.flops / 2e9, len(files), args.output)
    for path in files:
        log.info("  %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
