"""ACDC cardiac cine MRI: the raw per-patient NIfTI layout and MT-UNet's npz release."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from swin_unet.config import DataConfig
from swin_unet.errors import InputError

from swin_unet.io.volumes import Volume

from .base import DataSource, VolumeEntry
from .cases import ACDC_TEST, ACDC_VAL, acdc_train_default, normalize_acdc_case
from .readers import (check_label_values, check_labelled_nifti, npz_shapes, read_labelled_nifti,
                      read_npz)
from .release import check_slices_first, ordered_slices, release_volume, stack_npz_slices

__all__ = ["ACDC_CLASSES", "ACDC_HELP", "AcdcRaw", "AcdcRelease", "find_acdc_raw",
           "find_acdc_release", "read_info_cfg"]

logger = logging.getLogger(__name__)

ACDC_CLASSES = ("RV", "Myo", "LV")
_LABELS = range(len(ACDC_CLASSES) + 1)
_KEYS = ("img", "label")  # the arrays of MT-UNet's npz files

ACDC_HELP = """expected one of these layouts:
  raw ACDC data:       ROOT/training/patient001/Info.cfg, patient001_frame01.nii.gz and
                       patient001_frame01_gt.nii.gz (ED and ES frames named in Info.cfg)
                       (ROOT may also be database/'s parent or training/ itself)
  MT-UNet's release:   ROOT/train/case_001_sliceED_0.npz, ROOT/valid/..., ROOT/test/case_002_volume_ED.npz
The raw data is published by the ACDC challenge (https://www.creatis.insa-lyon.fr/Challenge/acdc/,
free registration); the preprocessed release is linked from https://github.com/Dootmaan/MT-UNet.
Point --root (data.root) at it."""

_SLICE_FILE = re.compile(r"^case_?(\d+)_slice_?(ED|ES)_?(\d+)\.npz$", re.IGNORECASE)
_VOLUME_FILE = re.compile(r"^case_?(\d+)_volume_?(ED|ES)\.npz$", re.IGNORECASE)
_RELEASE_SPLITS = {"train": "train", "valid": "val", "test": "test"}


def _default_splits() -> dict[str, Sequence[str]]:
    return {"train": acdc_train_default(), "val": ACDC_VAL, "test": ACDC_TEST}


def _has_patients(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_dir() and p.name.startswith("patient")
                                   for p in folder.iterdir())


def find_acdc_raw(root: Path) -> Optional[Path]:
    """The folder holding the ``patientNNN/`` folders under ``root``, or None."""
    for candidate in (root / "training", root / "database" / "training", root):
        if _has_patients(candidate):
            return candidate
    return None


def find_acdc_release(root: Path) -> Optional[Path]:
    """The folder holding MT-UNet's ``train/``, ``valid/``, ``test/`` under ``root``, or None."""
    for candidate in (root, root / "ACDC"):
        if any((candidate / sub).is_dir() and any((candidate / sub).glob("case*.npz"))
               for sub in _RELEASE_SPLITS):
            return candidate
    return None


def read_info_cfg(path: Path) -> dict[str, str]:
    """``Info.cfg`` (``ED: 1`` lines) as a dict.

    Raises
    ------
    InputError
        Missing or unreadable file, or no integer ED and ES entries.
    """
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: unreadable ({exc})") from None
    info = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    for key in ("ED", "ES"):
        if not re.fullmatch(r"\d+", info.get(key, "")):
            raise InputError(f"{path}: no integer '{key}' entry")
    return info


class AcdcRaw(DataSource):
    """``training/patientNNN/`` with ED and ES frames (from ``Info.cfg``) and ``_gt`` labels.

    Intensities are z-scored per volume: MRI has no absolute scale, and unlike min-max the
    z-score is not set by a few bright voxels. In-plane sizes vary and are not square;
    anisotropic spacing (about 1.5 x 1.5 x 5-10 mm) is kept in each volume's metadata.
    """

    layout = "acdc_raw"
    class_names = ACDC_CLASSES
    default_intensity = "zscore"

    def __init__(self, root: Path, data_cfg: DataConfig, name: str = "acdc",
                 default_splits: Optional[dict] = None):
        folder = find_acdc_raw(Path(root))
        if folder is None:
            raise InputError(f"{root}: no ACDC raw data here", path=root, details=ACDC_HELP)
        self.name = name
        self.folder = folder
        self._entries: dict[str, list[VolumeEntry]] = {}
        super().__init__(folder, data_cfg, default_splits or _default_splits(),
                         normalize_acdc_case)

    @classmethod
    def list_cases(cls, folder: Path) -> list[str]:
        """The ``patientNNN`` folders of ``folder``."""
        return sorted(p.name for p in folder.iterdir()
                      if p.is_dir() and p.name.startswith("patient"))

    def entries_for_case(self, case: str) -> list[VolumeEntry]:
        if case not in self._entries:
            patient = self.folder / case
            if not patient.is_dir():
                raise InputError(f"{patient}: patient folder not found")
            info = read_info_cfg(patient / "Info.cfg")
            frames = sorted({int(info["ED"]), int(info["ES"])})
            entries = []
            for frame in frames:
                stem = f"{case}_frame{frame:02d}"
                entries.append(VolumeEntry(case, stem, _nifti(patient, stem),
                                           _nifti(patient, f"{stem}_gt"),
                                           {"phase": "ED" if frame == int(info["ED"]) else "ES"}))
            self._entries[case] = entries
        return list(self._entries[case])

    def load(self, entry: VolumeEntry) -> Volume:
        image, label, affine, spacing = read_labelled_nifti(entry.image, entry.label, _LABELS,
                                                            "ACDC label map")
        return Volume(entry.name, image, spacing, affine, entry.image,
                      label=label.astype(np.uint8))

    def check_entry(self, entry: VolumeEntry, read_image: bool) -> None:
        check_labelled_nifti(entry.image, entry.label, _LABELS, "ACDC label map", read_image)


def _nifti(folder: Path, stem: str) -> Path:
    if (folder / f"{stem}.nii").is_file() and not (folder / f"{stem}.nii.gz").is_file():
        return folder / f"{stem}.nii"
    return folder / f"{stem}.nii.gz"


class AcdcRelease(DataSource):
    """MT-UNet's release: 2-D slices in ``train/`` and ``valid/``, volumes in ``test/``.

    Keys ``img`` and ``label``; no spacing stored (unit spacing used). The default split is the
    release's own folders. Test volumes are read slices first, [D, H, W], as the release stores
    them (a shape that does not fit is an error). Slices of one patient and phase stack into a
    volume in slice-number order, every number from 0 present (or ``data.allow_slice_gaps``),
    named ``patientNNN_ED`` / ``patientNNN_ES`` (the release does not keep frame numbers), and
    are z-scored per volume like the raw data.
    """

    name = "acdc"
    layout = "acdc_npz"
    stores_spacing = False
    class_names = ACDC_CLASSES
    default_intensity = "zscore"

    def __init__(self, root: Path, data_cfg: DataConfig):
        folder = find_acdc_release(Path(root))
        if folder is None:
            raise InputError(f"{root}: no MT-UNet ACDC release here", path=root,
                             details=ACDC_HELP)
        self.folder = folder
        self._files: dict[tuple[str, str], dict] = {}
        self._ordered: dict[tuple[str, str], list[Path]] = {}
        splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
        for sub, split in _RELEASE_SPLITS.items():
            for path in sorted((folder / sub).glob("*.npz")):
                slice_match, volume_match = _SLICE_FILE.match(path.name), _VOLUME_FILE.match(
                    path.name)
                match = slice_match or volume_match
                if not match:
                    continue
                case = normalize_acdc_case(match.group(1))
                record = self._files.setdefault((case, match.group(2).upper()),
                                                {"slices": [], "volume": None})
                if slice_match:
                    record["slices"].append((int(slice_match.group(3)), path))
                else:
                    record["volume"] = path
                if case not in splits[split]:
                    splits[split].append(case)
        logger.warning("%s: MT-UNet's ACDC release stores no voxel spacing; unit spacing "
                       "(1, 1, 1) and an identity affine are used", folder)
        super().__init__(folder, data_cfg, splits, normalize_acdc_case)

    def entries_for_case(self, case: str) -> list[VolumeEntry]:
        entries = []
        for phase in ("ED", "ES"):
            record = self._files.get((case, phase))
            if record is None:
                continue
            name = f"{case}_{phase}"
            if record["volume"] is not None:
                entries.append(VolumeEntry(case, name, record["volume"], record["volume"],
                                           {"kind": "volume"}))
            else:
                if (case, phase) not in self._ordered:
                    self._ordered[case, phase] = ordered_slices(
                        f"{case} {phase}", record["slices"], self.data_cfg.allow_slice_gaps)
                files = self._ordered[case, phase]
                entries.append(VolumeEntry(case, name, files, files, {"kind": "slices"}))
        if not entries:
            number = case[len("patient"):]
            raise InputError(f"{self.folder}: no files for {case} (expected "
                             f"train/case_{number}_sliceED_0.npz or "
                             f"test/case_{number}_volume_ED.npz)")
        return entries

    def _read(self, entry: VolumeEntry) -> tuple[np.ndarray, np.ndarray]:
        if entry.info["kind"] == "volume":
            return release_volume(entry.image, read_npz(entry.image, _KEYS), _KEYS, _LABELS,
                                  "ACDC label map")
        return stack_npz_slices(entry.image, _KEYS, _LABELS, "ACDC label map")

    def load(self, entry: VolumeEntry) -> Volume:
        image, label = self._read(entry)
        return Volume(entry.name, image.astype(np.float32), (1.0, 1.0, 1.0), np.eye(4),
                      entry.image_path, label=label.astype(np.uint8))

    def check_entry(self, entry: VolumeEntry, read_image: bool) -> None:
        if read_image:
            self.load(entry)
            return
        if entry.info["kind"] == "slices":
            stack_npz_slices(entry.image, _KEYS, _LABELS, "ACDC label map", read_images=False)
            return
        shapes = npz_shapes(entry.image, _KEYS)
        check_slices_first(entry.image, shapes["img"], shapes["label"], _KEYS)
        check_label_values(read_npz(entry.image, ("label",))["label"], _LABELS, entry.image,
                           "ACDC label map")
