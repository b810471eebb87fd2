"""2-D image data sets (PNG, JPEG, TIFF, BMP): nnU-Net v2's 2-D layout and images/ + masks/ pairs.

Each image is a volume of one slice, ``(rows, columns, 1)``, so the slice cache, resize,
augmentation, training loop, inference and metrics of volumes serve images unchanged. Images
carry no spacing: distances (HD95) are in pixels.
"""

from __future__ import annotations

import abc
import logging
import re
from collections import defaultdict
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from swin_unet.config import DataConfig
from swin_unet.errors import InputError
from swin_unet.io.paths import check_case_id
from swin_unet.io.images import (IMAGE_SUFFIXES, image_name, is_image_file, read_image,
                                read_image_header, read_mask)

from swin_unet.io.volumes import Volume

from .base import DataSource, VolumeEntry
from .cases import deterministic_split
from .folder import case_id, read_splits, read_dataset_json
from .readers import check_label_values

__all__ = ["IMAGES_HELP", "MASK_SUFFIXES", "find_nnunet_2d", "find_image_pairs",
           "ImageSource", "NnUnet2dImages", "ImagePairs"]

logger = logging.getLogger(__name__)

# A mask's name is its image's, with one of these suffixes; NAME_mask_1, NAME_mask_2, ... are
# further masks of the same image (BUSI), merged into one.
MASK_SUFFIXES = ("", "_mask", "_segmentation")
_EXTRA_MASK = re.compile(r"^(?P<name>.+)_mask_\d+$")
DEFAULT_CLASS_NAMES = ("foreground",)

IMAGES_HELP = """expected 2-D images in one of two layouts:
  nnU-Net v2, 2-D:   ROOT/dataset.json with "file_ending": ".png" (or .jpg, .tif, .bmp),
                     ROOT/imagesTr/CASE_0000.png (an RGB file is 3 channels), ROOT/labelsTr/CASE.png
  image/mask pairs:  ROOT/images/NAME.jpg|png|tif|bmp and ROOT/masks/NAME.png, NAME_mask.png or
                     NAME_segmentation.png (extra masks NAME_mask_1.png are merged); class names
                     from ROOT/dataset.json if present, else --set data.class_names=[lesion]
Masks: 0/255 or 0/1 (one class), values 0..K, palette PNGs (index = class), JPEG (thresholded)."""


def find_nnunet_2d(root: Path) -> Optional[Path]:
    """``root`` when it holds nnU-Net's 2-D layout (``dataset.json`` whose ``file_ending`` is
    an image suffix, ``imagesTr/``), else None.

    Raises
    ------
    InputError
        ``root/dataset.json`` exists but cannot be read.
    """
    root = Path(root)
    if not (root / "dataset.json").is_file() or not (root / "imagesTr").is_dir():
        return None
    ending = read_dataset_json(root / "dataset.json")["file_ending"].lower()
    return root if ending in IMAGE_SUFFIXES else None


def find_image_pairs(root: Path) -> Optional[Path]:
    """``root`` when it holds ``images/`` and ``masks/`` folders, else None."""
    root = Path(root)
    return root if (root / "images").is_dir() and (root / "masks").is_dir() else None


def _by_name(folder: Path, what: str) -> dict[str, Path]:
    """Image files of ``folder`` by name (stem); two files of one name are an error."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not is_image_file(path):
            continue
        name = check_case_id(image_name(path), path)
        if name in found:
            raise InputError(f"{path}: two {what} named {name} ({found[name].name} too)",
                             path=path)
        found[name] = path
    return found


def _match_pairs(root: Path) -> dict[str, tuple[list[Path], list[Path]]]:
    """Case name -> ([image], masks) of the images/ + masks/ layout.

    Raises
    ------
    InputError
        No images, an image without a mask, or an image with two masks of different suffixes.
    """
    images = _by_name(root / "images", "images")
    if not images:
        raise InputError(f"{root / 'images'}: no image files "
                         f"({', '.join(IMAGE_SUFFIXES)}); {IMAGES_HELP}", path=root / "images")
    masks = _by_name(root / "masks", "masks")
    extras: dict[str, list[Path]] = defaultdict(list)
    for name, path in masks.items():
        match = _EXTRA_MASK.match(name)
        if match:
            extras[match.group("name")].append(path)
    pairs, used = {}, set()
    for name, image in images.items():
        base = [masks[name + s] for s in MASK_SUFFIXES if name + s in masks]
        if len(base) > 1:
            raise InputError(f"{base[1]}: a second mask for image {image} ({base[0].name} "
                             f"too)", path=base[1])
        found = base + sorted(extras.get(name, []), key=lambda p: p.name)
        if not found:
            looked = ", ".join(f"{name}{s}.png" for s in MASK_SUFFIXES)
            raise InputError(f"{image}: image without a mask (looked in {root / 'masks'} for "
                             f"{looked})", path=image)
        pairs[name] = ([image], found)
        used.update(found)
    unused = [p for p in masks.values() if p not in used]
    if unused:
        logger.warning("%s: %d mask(s) match no image, e.g. %s", root / "masks", len(unused),
                       unused[0].name)
    return pairs


def _nnunet_cases(root: Path, ending: str,
                  channels: int) -> dict[str, tuple[list[Path], list[Path]]]:
    """Case name -> (channel files, [label]) of nnU-Net's 2-D layout.

    One file ``CASE_0000`` holds all channels (RGB: 3) unless ``CASE_0001`` exists, then each
    file is one channel, as nnU-Net reads them.
    """
    images_dir, labels_dir = root / "imagesTr", root / "labelsTr"
    if not labels_dir.is_dir():
        raise InputError(f"{labels_dir}: folder not found; {IMAGES_HELP}", path=labels_dir)
    cases = {}
    for first in sorted(images_dir.glob(f"*_0000{ending}")):
        if first.name.startswith("."):
            continue
        case = check_case_id(first.name[:-len(f"_0000{ending}")], first)
        files = [first]
        if (images_dir / f"{case}_0001{ending}").is_file():
            files = [images_dir / f"{case}_{c:04d}{ending}" for c in range(channels)]
        label = labels_dir / f"{case}{ending}"
        if not label.is_file():
            raise InputError(f"{first}: image without a mask ({label} not found)", path=first)
        cases[case] = (files, [label])
    if not cases:
        raise InputError(f"{images_dir}: no *_0000{ending} images; {IMAGES_HELP}",
                         path=images_dir)
    return cases


class ImageSource(DataSource):
    """A 2-D image data set; every image is one volume of one slice, named after its file.

    Subclasses find the cases of their layout (:meth:`_find_cases`). Alpha channels are
    dropped (logged once). Images are read scaled to [0, 1] by their bit depth; intensity then
    defaults to a per-image, per-channel z-score (nnU-Net's choice for non-CT images: it evens
    out lighting and skin tone; ``data.intensity=none`` keeps the [0, 1] values). Class names:
    ``ROOT/dataset.json``'s, else one class "foreground"; ``data.class_names`` renames them (and,
    without a dataset.json, gives their number). Augmentation: flips, rot90, a small rotation
    and scaling, brightness and contrast. Distances (HD95) are in pixels.
    """

    name = "folder"
    # Per instance: from data.class_names or dataset.json.
    class_names = None
    default_intensity = "zscore"
    augmentation = "photo"
    distance_unit = "px"

    @classmethod
    def read_class_names(cls, root: Path) -> tuple[str, ...]:
        """The class names of ``root/dataset.json``, or the one class "foreground"."""
        path = Path(root) / "dataset.json"
        return read_dataset_json(path)["class_names"] if path.is_file() else DEFAULT_CLASS_NAMES

    @classmethod
    def list_cases(cls, root: Path) -> list[str]:
        """The names of the images under ``root``."""
        return sorted(cls._find_cases(Path(root))[0])

    @classmethod
    @abc.abstractmethod
    def _find_cases(cls, root: Path) -> tuple[dict[str, tuple[list[Path], list[Path]]], int]:
        """Case -> (image files, mask files), and the channel count (0: from the images)."""

    def __init__(self, root: Path, data_cfg: DataConfig, name: Optional[str] = None,
                 default_splits: Optional[dict[str, Sequence[str]]] = None):
        root = Path(root)
        if name is not None:
            self.name = name
        meta = (read_dataset_json(root / "dataset.json")
                if (root / "dataset.json").is_file() else None)
        self._cases, self.in_chans = self._find_cases(root)
        headers = [read_image_header(p) for files, _ in self._cases.values() for p in files]
        if not self.in_chans:
            self.in_chans = 3 if any(h.channels == 3 for h in headers) else 1
        alpha = [h for h in headers if h.alpha]
        if alpha and self.in_chans != 4:
            logger.info("%d image(s) have an alpha channel, dropped (e.g. %s)", len(alpha),
                        alpha[0].path.name)
        jpeg_masks = [m for _, masks in self._cases.values() for m in masks
                      if m.suffix.lower() in (".jpg", ".jpeg")]
        if jpeg_masks:
            logger.info("%d JPEG mask(s): lossy, so thresholded at half range (>= 128 is class "
                        "1), e.g. %s", len(jpeg_masks), jpeg_masks[0].name)
        self.class_names = self._class_names(meta, data_cfg)
        splits = default_splits or read_splits(root) or deterministic_split(sorted(self._cases))
        super().__init__(root, data_cfg, splits, case_id)

    @staticmethod
    def _class_names(meta: Optional[dict], data_cfg: DataConfig) -> tuple:
        """dataset.json's names; without one, ``data.class_names`` or "foreground" (the base
        class then checks an override against the number of names)."""
        if meta is not None:
            return tuple(meta["class_names"])
        return tuple(data_cfg.class_names or DEFAULT_CLASS_NAMES)

    # ----------------------------------------------------------------- DataSource hooks
    def entries_for_case(self, case: str) -> list[VolumeEntry]:
        if case not in self._cases:
            raise InputError(f"{self.root}: no image named {case!r} (data split lists)",
                             path=self.root)
        files, masks = self._cases[case]
        return [VolumeEntry(case, case, list(files), list(masks))]

    def _channels_per_file(self, entry: VolumeEntry) -> int:
        return self.in_chans if len(entry.image) == 1 else 1

    def _read_pixels(self, entry: VolumeEntry,
                     at_least: Optional[tuple[int, int]] = None) -> np.ndarray:
        per_file = self._channels_per_file(entry)
        arrays = [read_image(path, per_file, at_least) for path in entry.image]
        for path, array in zip(entry.image[1:], arrays[1:]):
            if array.shape[1:] != arrays[0].shape[1:]:
                raise InputError(f"{path}: size {_size(array.shape[1:])} differs from "
                                 f"{_size(arrays[0].shape[1:])} of {entry.image[0]}", path=path)
        return np.concatenate(arrays) if len(arrays) > 1 else arrays[0]

    def _read_labels(self, entry: VolumeEntry, shape: tuple[int, int]) -> np.ndarray:
        merged = None
        for path in entry.label:
            values, _ = read_mask(path)
            if values.shape != tuple(shape):
                raise InputError(f"{path}: mask size {_size(values.shape)} differs from the "
                                 f"image's {_size(shape)} ({entry.image[0]})", path=path)
            check_label_values(values, range(self.num_classes), path, self._classes_text())
            # A later mask's classes win where masks of one image overlap.
            merged = values if merged is None else np.where(values > 0, values, merged)
        return merged.astype(np.uint8)

    def _classes_text(self) -> str:
        names = ", ".join(self.class_names)
        return (f"classes ({names}; a one-class mask holds 0/255 or 0/1)"
                if self.num_classes == 2 else f"classes ({names})")

    def _load_for_cache(self, entry: VolumeEntry,
                        size: Optional[tuple[int, int]]) -> Volume:
        """The cache holds images at the model's size only, so JPEGs decode at a reduced
        scale (see ``read_image``'s ``at_least``): on ISIC-sized photographs a fraction of a
        full decode and normalisation (``benchmarks/bench_data.py``). Masks are read in full."""
        return self._load(entry, size)

    def load(self, entry: VolumeEntry) -> Volume:
        return self._load(entry, None)

    def _load(self, entry: VolumeEntry, at_least: Optional[tuple[int, int]]) -> Volume:
        pixels = self._read_pixels(entry, at_least)
        shape = (pixels.shape[1:] if at_least is None
                 else read_image_header(entry.image[0]).shape)
        label = self._read_labels(entry, shape)
        image = pixels[0] if self.in_chans == 1 else pixels
        return Volume(entry.name, image[..., None], (1.0, 1.0, 1.0), np.eye(4), entry.image[0],
                      label=label[..., None], distance_unit="px")

    def _slice_count(self, entry: VolumeEntry) -> Optional[int]:
        return 1

    def sampling_spacing(self) -> None:
        """Images keep their pixels in patch mode: they carry no spacing to resample by."""
        return None

    def check_entry(self, entry: VolumeEntry, read_image: bool) -> None:
        shape = read_image_header(entry.image[0]).shape
        for path in entry.image[1:] + entry.label:
            other = read_image_header(path).shape
            if other != shape:
                what = "mask" if path in entry.label else "image"
                raise InputError(f"{path}: {what} size {_size(other)} differs from the "
                                 f"image's {_size(shape)} ({entry.image[0]})", path=path)
        self._read_labels(entry, shape)
        if read_image:
            self._read_pixels(entry)


def _size(shape: Sequence[int]) -> str:
    """(rows, columns) as an image size, columns first: "640x480"."""
    return f"{shape[1]}x{shape[0]}"


class NnUnet2dImages(ImageSource):
    """nnU-Net v2's 2-D layout: ``dataset.json`` (an image ``file_ending``), ``imagesTr/``,
    ``labelsTr/``; as many channels as ``dataset.json`` names (an RGB file is three)."""

    layout = "nnunet_2d"

    @classmethod
    def _find_cases(cls, root: Path) -> tuple[dict[str, tuple[list[Path], list[Path]]], int]:
        meta = read_dataset_json(root / "dataset.json")
        channels = len(meta["modalities"])
        if channels > 4:
            raise InputError(f"{root / 'dataset.json'}: {channels} channels; a 2-D image data "
                             f"set has 1 to 4", path=root / 'dataset.json')
        if meta["file_ending"].lower() in (".jpg", ".jpeg"):
            logger.warning("%s: JPEG labels are lossy (nnU-Net refuses them); each is "
                           "thresholded at half range", root)
        return _nnunet_cases(root, meta["file_ending"], channels), channels


class ImagePairs(ImageSource):
    """``images/NAME.ext`` with ``masks/NAME[_mask|_segmentation].ext`` (extra masks
    ``NAME_mask_1.ext`` merged); RGB (3 channels) if any image is in colour, else grayscale."""

    layout = "image_pairs"

    @classmethod
    def _find_cases(cls, root: Path) -> tuple[dict[str, tuple[list[Path], list[Path]]], int]:
        return _match_pairs(root), 0
