"""The abdominal phantom written in the Medical Segmentation Decathlon / nnU-Net folder layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from swin_unet.errors import InputError

from .base import label_lookup
from .phantom import _abdomen_affine, abdomen_case
from .phantom_shapes import save_nifti
from .synapse import SYNAPSE_CLASSES, SYNAPSE_RAW_MAX, SYNAPSE_RAW_TO_CLASS

__all__ = ["write_phantom_folder"]


def write_phantom_folder(root: Union[str, Path], n_cases: int = 16, seed: int = 0,
                         shape: Sequence[int] = (64, 64, 12)) -> Path:
    """Write ``n_cases`` abdominal phantom cases as ``root/dataset.json``, ``imagesTr/`` and
    ``labelsTr/`` (``abdomen_NNN.nii.gz``, labels 0..8 in Synapse's organ order); returns ``root``.

    The voxels are those of the ``phantom`` data set's cases of the same seed and shape, so a
    folder data set of a known answer can be made in seconds (e.g. to try cross-validation).

    Raises
    ------
    InputError
        ``root`` holds files already, or a bad size.
    """
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise InputError(f"{root}: phantom target exists and is not an empty folder", path=root)
    shape = tuple(int(v) for v in shape)
    if len(shape) != 3 or min(shape) < 4 or int(n_cases) < 1:
        raise InputError(f"phantom: need a 3-D shape of at least 4 voxels per axis and >= 1 "
                         f"case, got shape {shape} and n_cases {n_cases}")
    for sub in ("imagesTr", "labelsTr"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps({
        "name": "AbdomenPhantom", "channel_names": {"0": "CT"}, "file_ending": ".nii.gz",
        "labels": {"background": 0, **{name: i for i, name in enumerate(SYNAPSE_CLASSES, 1)}},
        "numTraining": int(n_cases)}, indent=1))
    for index in range(1, int(n_cases) + 1):
        image, raw, spacing = abdomen_case(seed, index, shape)
        label = label_lookup(SYNAPSE_RAW_TO_CLASS, SYNAPSE_RAW_MAX)[raw]
        affine = _abdomen_affine(shape, spacing)
        name = f"abdomen_{index:03d}.nii.gz"
        save_nifti(image, affine, root / "imagesTr" / name)
        save_nifti(label.astype(np.uint8), affine, root / "labelsTr" / name)
    return root
