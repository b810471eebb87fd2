"""A user's own data in the Medical Segmentation Decathlon / nnU-Net layout."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Optional

import numpy as np

from swin_unet.config import DataConfig, check_class_names
from swin_unet.errors import InputError, parsing
from swin_unet.io.paths import check_case_id
from swin_unet.io.volumes import Volume, label_dtype

from .base import DataSource, VolumeEntry
from .cases import deterministic_split
from .readers import (check_label_values, check_nifti_complete, check_same_geometry,
                      read_nifti, read_nifti_header)

__all__ = ["FOLDER_HELP", "FolderDataset", "find_folder_dataset", "read_dataset_json", "read_splits",
           "case_id"]

logger = logging.getLogger(__name__)

FOLDER_HELP = """expected the Medical Segmentation Decathlon / nnU-Net layout:
  ROOT/dataset.json      with "labels" ({"0": "background", "1": "liver"} or {"background": 0, ...})
                         and "modality" or "channel_names" ({"0": "CT"})
  ROOT/imagesTr/         CASE.nii.gz (several channels: 4-D) or CASE_0000.nii.gz, CASE_0001.nii.gz
  ROOT/labelsTr/         CASE.nii.gz
  ROOT/imagesTs/         optional; ROOT/splits.json optional ({"train": [...], "val": [...], "test": [...]})
See http://medicaldecathlon.com/ and nnU-Net's dataset_format documentation. Point --root at it."""


def case_id(value: object, key: str) -> str:
    # Folder data keeps its own case ids; only YAML's number-for-string reading is undone.
    return check_case_id(value.strip() if isinstance(value, str) else value, key)


def read_dataset_json(path: Path) -> dict:
    """``dataset.json`` as class names (index 1..K), channel modalities and file ending.

    Raises
    ------
    InputError
        Missing or invalid file, region-based labels, or labels that are not 0..K.
    """
    if not path.is_file():
        raise InputError(f"{path}: file not found", path=path, details=FOLDER_HELP)
    meta = read_json(path)
    labels = meta.get("labels") if isinstance(meta, dict) else None
    if not isinstance(labels, dict) or not labels:
        raise InputError(f"{path}: no 'labels' mapping", path=path)
    index_to_name: dict[int, str] = {}
    for key, value in labels.items():
        # MSD writes {"1": "liver"}, nnU-Net v2 {"liver": 1}.
        if isinstance(value, (list, tuple)):
            raise InputError(f"{path}: region-based label '{key}' is not supported (one "
                             f"integer per class)", path=path)
        index, name = (key, value) if re.fullmatch(r"\d+", str(key)) else (value, key)
        if isinstance(index, str) and re.fullmatch(r"\d+", index):
            index = int(index)
        if not isinstance(index, int) or isinstance(index, bool):
            raise InputError(f"{path}: label entry {key!r}: {value!r} has no integer "
                             f"index", path=path)
        if index in index_to_name:
            raise InputError(f"{path}: label index {index} given twice ({index_to_name[index]!r} "
                             f"and {str(name)!r})", path=path)
        index_to_name[index] = str(name)
    if sorted(index_to_name) != list(range(len(index_to_name))):
        raise InputError(f"{path}: label indices {sorted(index_to_name)} are not 0..K",
                         path=path)
    channels = meta.get("channel_names") or meta.get("modality") or {"0": "image"}
    if not isinstance(channels, dict):
        raise InputError(f"{path}: 'channel_names' / 'modality' must be a mapping", path=path)
    try:
        order = sorted(channels, key=lambda k: int(k))
    except (TypeError, ValueError):
        raise InputError(f"{path}: 'channel_names' / 'modality' keys must be channel numbers "
                         f"(\"0\", \"1\", ...), got {', '.join(map(str, channels))}",
                         path=path) from None
    modalities = [str(channels[k]) for k in order]
    if not modalities:
        raise InputError(f"{path}: 'channel_names' / 'modality' lists no channel", path=path)
    ending = meta.get("file_ending", ".nii.gz")
    if not isinstance(ending, str) or not ending.startswith("."):
        raise InputError(f"{path}: 'file_ending' must be a suffix like \".nii.gz\", got "
                         f"{ending!r}", path=path)
    names = check_class_names([index_to_name[i] for i in range(len(index_to_name))],
                              f"{path} 'labels'")
    return {"class_names": tuple(names[1:]),
            "modalities": modalities,
            "file_ending": ending}


def read_json(path: Path):
    """A JSON file's content; InputError naming the file when it is not JSON text."""
    with parsing(path, "JSON file"):
        return json.loads(path.read_text(encoding="utf-8"))


def find_folder_dataset(root: Path) -> Optional[Path]:
    """``root`` when it holds a ``dataset.json``, else None."""
    return root if (root / "dataset.json").is_file() else None


def read_splits(root: Path) -> Optional[dict[str, list]]:
    for name in ("splits.json", "splits_final.json"):
        path = root / name
        if not path.is_file():
            continue
        data = read_json(path)
        if isinstance(data, list) and data and isinstance(data[0], dict):
            data = data[0]  # nnU-Net's splits_final.json: a list of folds; fold 0
        if not isinstance(data, dict) or not set(data) & {"train", "val", "test"}:
            raise InputError(f"{path}: expected {{\"train\": [...], \"val\": [...], "
                             f"\"test\": [...]}} or a list of such folds", path=path)
        splits = {}
        for key in ("train", "val", "test"):
            cases = data.get(key)
            if cases is None:
                cases = []  # "val": null or no "val": no validation cases
            if not isinstance(cases, list) or not all(isinstance(c, (str, int)) and
                                                      not isinstance(c, bool) for c in cases):
                raise InputError(f"{path}: '{key}' must be a list of case names, got "
                                 f"{str(cases)[:80]}", path=path)
            splits[key] = [check_case_id(c, f"{path} '{key}'") for c in cases]
        logger.info("split from %s", path)
        return splits
    return None


class FolderDataset(DataSource):
    """``dataset.json`` + ``imagesTr/`` + ``labelsTr/``: class names, channels and modality.

    Intensity: "ct" (window ``data.ct_window``) when the first channel's modality is CT, else a
    per-volume, per-channel z-score; ``data.intensity`` overrides. The split is ``splits.json``
    (or nnU-Net's ``splits_final.json``, fold 0) when present, else a deterministic 70/10/20
    split of the labelled cases. Volumes are named after the case (the label file's name).
    """

    name = "folder"
    layout = "folder"
    # Both come from dataset.json (per instance): the class knows neither.
    class_names = None
    default_intensity = None

    @classmethod
    def read_class_names(cls, root: Path) -> tuple[str, ...]:
        """The class names in ``root/dataset.json`` (InputError if it cannot be read)."""
        return read_dataset_json(root / "dataset.json")["class_names"]

    def __init__(self, root: Path, data_cfg: DataConfig):
        root = Path(root)
        meta = read_dataset_json(root / "dataset.json")
        self.class_names = meta["class_names"]
        self.modalities = meta["modalities"]
        self.in_chans = len(self.modalities)
        self.file_ending = meta["file_ending"]
        self.default_intensity = "ct" if self.modalities[0].strip().upper() == "CT" else "zscore"
        labels_dir = root / "labelsTr"
        if not labels_dir.is_dir():
            raise InputError(f"{labels_dir}: folder not found", path=labels_dir,
                             details=FOLDER_HELP)
        # MSD archives carry macOS "._name" files next to the real ones.
        self._labelled = sorted(check_case_id(p.name[:-len(self.file_ending)], p)
                                for p in labels_dir.glob(f"*{self.file_ending}")
                                if not p.name.startswith("."))
        if not self._labelled:
            raise InputError(f"{labels_dir}: no *{self.file_ending} label files")
        splits = read_splits(root) or deterministic_split(self._labelled)
        # nnU-Net's folds, for train.py --fold (read_splits takes fold 0 as the plain split).
        final = root / "splits_final.json"
        self.splits_final = final if final.is_file() else None
        super().__init__(root, data_cfg, splits, case_id)

    def _image_files(self, case: str) -> list[Path]:
        folder = self.root / "imagesTr"
        per_channel = [folder / f"{case}_{c:04d}{self.file_ending}" for c in range(self.in_chans)]
        if per_channel[0].is_file():
            return per_channel
        return [folder / f"{case}{self.file_ending}"]

    def entries_for_case(self, case: str) -> list[VolumeEntry]:
        label = self.root / "labelsTr" / f"{case}{self.file_ending}"
        return [VolumeEntry(case, case, self._image_files(case),
                            label if label.is_file() else None)]

    def _read_image(self, entry: VolumeEntry) -> tuple[np.ndarray, np.ndarray, tuple]:
        arrays, affine, spacing = [], None, None
        for path in entry.image:
            array, file_affine, file_spacing = read_nifti(path, np.float32)
            affine = file_affine if affine is None else affine
            spacing = file_spacing if spacing is None else spacing
            arrays.append(array)
        if len(arrays) == 1:
            image = arrays[0]
            if image.ndim == 4:  # MSD stores channels as the 4th axis
                image = np.moveaxis(image, -1, 0)
        else:
            for path, array in zip(entry.image[1:], arrays[1:]):
                if array.shape != arrays[0].shape:
                    raise InputError(f"{path}: shape {array.shape} differs from "
                                     f"{arrays[0].shape} of {entry.image[0]}")
            image = np.stack(arrays)
        channels = image.shape[0] if image.ndim == 4 else 1
        if image.ndim not in (3, 4) or channels != self.in_chans:
            raise InputError(f"{entry.image[0]}: expected {self.in_chans} channel(s) of a 3-D "
                             f"volume (dataset.json), got shape {image.shape}")
        return image, affine, spacing

    def load(self, entry: VolumeEntry) -> Volume:
        image, affine, spacing = self._read_image(entry)
        label = None
        if entry.label is not None:
            values, _, _ = read_nifti(entry.label, dtype=None)
            if values.shape != image.shape[-3:]:
                raise InputError(f"{entry.label}: label shape {values.shape} does not match the "
                                 f"image shape {image.shape[-3:]} of {entry.image[0]}")
            check_label_values(values, range(self.num_classes), entry.label,
                               "labels of dataset.json")
            label = values.astype(label_dtype(self.num_classes))
        return Volume(entry.name, image, spacing, affine, entry.image[0], label=label)

    def check_entry(self, entry: VolumeEntry, read_image: bool) -> None:
        if entry.label is None:
            raise InputError(f"{self.root / 'labelsTr' / (entry.case + self.file_ending)}: "
                             f"file not found (case {entry.case})")
        label = read_nifti_header(entry.label)
        for path in entry.image:
            image = read_nifti_header(path)
            check_nifti_complete(image)
            check_same_geometry(image, label, spatial_dims=3)
        values, _, _ = read_nifti(entry.label, dtype=None)
        check_label_values(values, range(self.num_classes), entry.label,
                           "labels of dataset.json")
        if read_image:
            image, _, _ = self._read_image(entry)
            if not np.isfinite(image).all():
                raise InputError(f"{entry.image[0]}: image contains NaN or infinite values")
