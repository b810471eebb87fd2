"""Synapse multi-organ CT: the raw BTCV NIfTI layout and TransUNet's npz/h5 release."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from swin_unet.config import DataConfig
from swin_unet.errors import InputError

from swin_unet.io.volumes import Volume

from .base import DataSource, VolumeEntry, label_lookup
from .cases import SYNAPSE_TEST, SYNAPSE_TRAIN, normalize_synapse_case
from .readers import (check_label_values, check_labelled_nifti, h5_shapes, read_h5,
                      read_labelled_nifti)
from .release import (check_slices_first, check_unit_range, ordered_slices, release_volume,
                      stack_npz_slices)

__all__ = ["SYNAPSE_CLASSES", "SYNAPSE_RAW_TO_CLASS", "SYNAPSE_HELP", "SynapseRaw",
           "SynapseRelease", "find_synapse_raw", "find_synapse_release"]

logger = logging.getLogger(__name__)

SYNAPSE_CLASSES = ("aorta", "gallbladder", "kidney_left", "kidney_right", "liver", "pancreas",
                   "spleen", "stomach")
# BTCV raw label -> class index in the community order; the other 5 raw organs -> background.
SYNAPSE_RAW_TO_CLASS = {8: 1, 4: 2, 3: 3, 2: 4, 6: 5, 11: 6, 1: 7, 7: 8}
SYNAPSE_RAW_MAX = 13
_CLASS_VALUES = range(len(SYNAPSE_CLASSES) + 1)

SYNAPSE_HELP = """expected one of these layouts:
  raw BTCV data:         ROOT/RawData/Training/img/img0001.nii.gz  and  .../label/label0001.nii.gz
                         (ROOT may also be Training/ or the folder holding img/ and label/)
  TransUNet's release:   ROOT/train_npz/case0005_slice000.npz  and  ROOT/test_vol_h5/case0001.npy.h5
The raw data is published on Synapse (https://www.synapse.org/#!Synapse:syn3193805, "Multi-Atlas
Labeling Beyond the Cranial Vault", free registration); the preprocessed release is linked from
https://github.com/Beckschen/TransUNet. Point --root (data.root) at it."""

_SLICE_FILE = re.compile(r"^(case\d+)_slice(\d+)\.npz$")
_VOLUME_FILE = re.compile(r"^(case\d+)(?:\.npy)?\.h5$")


def _default_splits() -> dict[str, Sequence[str]]:
    # The standard protocol has no validation split (best = last epoch in the trainer).
    return {"train": SYNAPSE_TRAIN, "val": (), "test": SYNAPSE_TEST}


def find_synapse_raw(root: Path) -> Optional[Path]:
    """The folder holding ``img/`` and ``label/`` under ``root``, or None."""
    for candidate in (root / "RawData" / "Training", root / "Training", root,
                      root / "Abdomen" / "RawData" / "Training"):
        if (candidate / "img").is_dir() and (candidate / "label").is_dir():
            return candidate
    return None


def find_synapse_release(root: Path) -> Optional[Path]:
    """The folder holding ``train_npz/`` or ``test_vol_h5/`` under ``root``, or None."""
    for candidate in (root, root / "Synapse"):
        if (candidate / "train_npz").is_dir() or (candidate / "test_vol_h5").is_dir():
            return candidate
    return None


def _nifti_path(folder: Path, stem: str) -> Path:
    for suffix in (".nii.gz", ".nii"):
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return folder / f"{stem}.nii.gz"


class SynapseRaw(DataSource):
    """BTCV ``img/imgNNNN.nii.gz`` + ``label/labelNNNN.nii.gz``: raw labels -> 8 organs, CT window."""

    layout = "synapse_raw"
    class_names = SYNAPSE_CLASSES
    default_intensity = "ct"

    def __init__(self, root: Path, data_cfg: DataConfig, name: str = "synapse",
                 default_splits: Optional[dict] = None):
        folder = find_synapse_raw(Path(root))
        if folder is None:
            raise InputError(f"{root}: no Synapse raw data here", path=root,
                             details=SYNAPSE_HELP)
        self.name = name
        self.folder = folder
        self._lookup = label_lookup(SYNAPSE_RAW_TO_CLASS, SYNAPSE_RAW_MAX)
        super().__init__(folder, data_cfg, default_splits or _default_splits(),
                         normalize_synapse_case)

    @classmethod
    def list_cases(cls, folder: Path) -> list[str]:
        """The cases of the ``img/`` and ``label/`` folder ``folder``, from the image names."""
        return sorted(f"case{p.name[3:7]}" for p in (folder / "img").glob("img*.nii*"))

    def entries_for_case(self, case: str) -> list[VolumeEntry]:
        number = case[len("case"):]
        return [VolumeEntry(case, case, _nifti_path(self.folder / "img", f"img{number}"),
                            _nifti_path(self.folder / "label", f"label{number}"))]

    def load(self, entry: VolumeEntry) -> Volume:
        image, label, affine, spacing = read_labelled_nifti(
            entry.image, entry.label, range(SYNAPSE_RAW_MAX + 1), "Synapse raw label map")
        return Volume(entry.name, image, spacing, affine, entry.image,
                      label=self._lookup[label.astype(np.intp)])

    def check_entry(self, entry: VolumeEntry, read_image: bool) -> None:
        check_labelled_nifti(entry.image, entry.label, range(SYNAPSE_RAW_MAX + 1),
                             "Synapse raw label map", read_image)


class SynapseRelease(DataSource):
    """TransUNet's ``train_npz/`` slices and ``test_vol_h5/`` volumes (no spacing stored).

    Volumes are stored (slices, H, W) and become (H, W, slices); slices of one case stack to
    (H, W, slices) in slice-number order, every number from 0 present (a gap is an error, or
    with ``data.allow_slice_gaps`` a logged warning). Images are already CT-windowed to [0, 1]
    in the release and are not normalised again; values outside [0, 1] are an error unless
    ``data.intensity`` is set explicitly. Labels are class indices 0..8, read in the community
    order (argued, not proven: FACTS.md); ``data.class_names`` renames them for data made
    otherwise.
    """

    name = "synapse"
    layout = "synapse_npz"
    stores_spacing = False
    class_names = SYNAPSE_CLASSES
    default_intensity = "ct"

    def __init__(self, root: Path, data_cfg: DataConfig):
        folder = find_synapse_release(Path(root))
        if folder is None:
            raise InputError(f"{root}: no TransUNet Synapse release here", path=root,
                             details=SYNAPSE_HELP)
        self.folder = folder
        self._slices: dict[str, list[tuple[int, Path]]] = {}
        for path in sorted((folder / "train_npz").glob("*.npz")):
            match = _SLICE_FILE.match(path.name)
            if match:
                self._slices.setdefault(normalize_synapse_case(match.group(1)), []).append(
                    (int(match.group(2)), path))
        self._ordered: dict[str, list[Path]] = {}
        self._volumes = {}
        for path in sorted((folder / "test_vol_h5").glob("*.h5")):
            match = _VOLUME_FILE.match(path.name)
            if match:
                self._volumes[normalize_synapse_case(match.group(1))] = path
        logger.warning("%s: TransUNet's release stores no voxel spacing; unit spacing (1, 1, 1) "
                       "and an identity affine are used (distances are in voxels)", folder)
        super().__init__(folder, data_cfg, _default_splits(), normalize_synapse_case)

    def entries_for_case(self, case: str) -> list[VolumeEntry]:
        if case in self._volumes:
            path = self._volumes[case]
            return [VolumeEntry(case, case, path, path, {"kind": "h5"})]
        if case in self._slices:
            if case not in self._ordered:
                self._ordered[case] = ordered_slices(case, self._slices[case],
                                                     self.data_cfg.allow_slice_gaps)
            files = self._ordered[case]
            return [VolumeEntry(case, case, files, files, {"kind": "slices"})]
        missing = self.folder / "test_vol_h5" / f"{case}.npy.h5"
        return [VolumeEntry(case, case, missing, missing, {"kind": "missing"})]

    def _raise_missing(self, entry: VolumeEntry) -> None:
        raise InputError(f"{entry.image}: file not found, and no "
                         f"{self.folder / 'train_npz' / (entry.case + '_slice*.npz')} "
                         f"slices either ({entry.case})")

    def _read(self, entry: VolumeEntry) -> tuple[np.ndarray, np.ndarray]:
        kind = entry.info["kind"]
        if kind == "missing":
            self._raise_missing(entry)
        if kind == "h5":
            return release_volume(entry.image, read_h5(entry.image), ("image", "label"),
                                  _CLASS_VALUES, "Synapse class map")
        return stack_npz_slices(entry.image, ("image", "label"), _CLASS_VALUES,
                                "Synapse class map")

    def load(self, entry: VolumeEntry) -> Volume:
        image, label = self._read(entry)
        image = image.astype(np.float32)
        windowed = check_unit_range(image, entry.image_path, self.data_cfg.intensity)
        return Volume(entry.name, image, (1.0, 1.0, 1.0), np.eye(4), entry.image_path,
                      label=label.astype(np.uint8), prenormalised="ct" if windowed else None)

    def check_entry(self, entry: VolumeEntry, read_image: bool) -> None:
        kind = entry.info["kind"]
        if kind == "missing":
            self._raise_missing(entry)
        if read_image:
            self.load(entry)
            return
        if kind == "h5":
            shapes = h5_shapes(entry.image)
            check_slices_first(entry.image, shapes["image"], shapes["label"], ("image", "label"))
            label = read_h5(entry.image, ("label",))["label"]
            check_label_values(label, _CLASS_VALUES, entry.image, "Synapse class map")
            return
        stack_npz_slices(entry.image, ("image", "label"), _CLASS_VALUES, "Synapse class map",
                         read_images=False)
