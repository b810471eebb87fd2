"""Evaluate Swin-Unet on whole volumes: Dice and HD95 per organ, predictions as NIfTI, your own scans.

  python test.py --volume --dataset synapse --checkpoint runs/synapse/checkpoints/last.pth
  python test.py --volume --dataset synapse --predictions DIR --labels DIR
  python test.py --volume --checkpoint ckpt.pth --input scan.nii.gz --output out/

A thin command line over swin_unet.commands.test (also ``swin-unet test``).
"""

from __future__ import annotations

import sys

from swin_unet.commands.common import passive_openmp

passive_openmp()  # before torch loads

from swin_unet.commands.test import build_parser, main, report  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(main())
