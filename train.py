"""Train Swin-Unet: a thin command line over swin_unet.commands.train (also ``swin-unet train``).

    python train.py --dataset phantom                      # the CPU demo, a few minutes
    python train.py --dataset synapse --root /data/Synapse --output runs/synapse
    torchrun --nproc_per_node=4 train.py --dataset acdc --root /data/ACDC --amp
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

from swin_unet.commands.common import passive_openmp

passive_openmp()  # before torch loads

from swin_unet.commands import train as command  # noqa: E402


def _script(name: str) -> str:
    """``name`` beside this file, as a path from the current folder: printed commands run as
    printed from where the user stands (runs/ and data/ are relative to it as well)."""
    path = Path(__file__).resolve().parent / name
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return str(path)


def parse_args(argv: Optional[list[str]] = None):
    return command.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    return command.main(argv, train_command=f"python {_script('train.py')}",
                        test_command=f"python {_script('test.py')}")


if __name__ == "__main__":
    sys.exit(main())
