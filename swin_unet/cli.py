"""``swin-unet``: the installed command, one subcommand per job.

    swin-unet train --dataset phantom              (= python train.py, the same flags)
    swin-unet prepare --dataset synapse --root DIR (= python train.py --prepare-only)
    swin-unet test --volume --dataset ... --checkpoint ...   (= python test.py)
    swin-unet predict --checkpoint C --input SCAN --output DIR
    swin-unet export --checkpoint C --output model.onnx
    swin-unet explain --output DIR                 (= python -m swin_unet.explain)
"""

from __future__ import annotations

import importlib
import sys
from typing import Optional, Sequence

__all__ = ["main", "COMMANDS"]

COMMANDS = {
    "train": "train a network (the flags of train.py)",
    "prepare": "check a data set and build its slice cache, then exit (train --prepare-only)",
    "test": "score a data set, existing predictions, or segment scans (the flags of test.py)",
    "predict": "segment scans or 2-D images with a checkpoint (PyTorch or ONNX Runtime)",
    "export": "write a checkpoint's network as ONNX and check it against PyTorch",
    "explain": "draw the model's patches, windows and shifts (python -m swin_unet.explain)",
}

# Each command's module and its main(argv, prog=...), imported only when the command runs.
_MAINS = {
    "train": ("swin_unet.commands.train", "main"),
    "prepare": ("swin_unet.commands.train", "prepare_main"),
    "test": ("swin_unet.commands.test", "main"),
    "predict": ("swin_unet.commands.deploy", "predict_main"),
    "export": ("swin_unet.commands.deploy", "export_main"),
    "explain": ("swin_unet.explain.__main__", "main"),
}


def _usage() -> str:
    lines = ["usage: swin-unet COMMAND [options]   (swin-unet COMMAND --help for its options)",
             "", "commands:"]
    lines += [f"  {name:<9}{text}" for name, text in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .commands.common import passive_openmp

    passive_openmp()  # before torch loads, as in train.py
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    if args[0] == "--version":
        from . import __version__
        print(f"swin-unet {__version__}")
        return 0
    command, rest = args[0], args[1:]
    if command not in _MAINS:
        print(f"{_usage()}\nswin-unet: error: unknown command '{command}'", file=sys.stderr)
        return 2
    module, function = _MAINS[command]
    return getattr(importlib.import_module(module), function)(rest, prog=f"swin-unet {command}")


if __name__ == "__main__":
    sys.exit(main())
