"""The data-source interface every layout implements: cases, volumes, training slices, checks."""

from __future__ import annotations

import abc
import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, Union

import numpy as np

from swin_unet.config import DataConfig
from swin_unet.config.checks import check_choices
from swin_unet.errors import InputError
from swin_unet.io.paths import inside
from swin_unet.io.volumes import Volume
from swin_unet.sizes import as_pair, patch_pair

from . import native
from .cases import SPLITS, resolve_splits
from .intensity import normalize_intensity, resolve_intensity
from .readers import read_nifti_header
from .slice_store import SliceStore, StoreBuilder, file_stamp, resolve_cache_dir

if TYPE_CHECKING:
    from .slices import SliceDataset, VolumeDataset

__all__ = ["VolumeEntry", "DataSource", "label_lookup", "override_class_names"]

logger = logging.getLogger(__name__)


@dataclass
class VolumeEntry:
    """One volume of a case, before reading: where its files are.

    ``case`` is the normalised case (patient) id; ``name`` the volume's contract name
    (Synapse ``case0001``, ACDC ``patient002_frame01``, folder: the case id). ``image`` is one
    path or, for releases stored slice by slice or channel by channel, a list of paths.
    """

    case: str
    name: str
    image: Union[Path, list[Path]]
    label: Union[Path, list[Path], None]
    info: dict = field(default_factory=dict)

    @property
    def image_path(self) -> Path:
        """The file that stands for the image (the first one if there are several)."""
        return self.image[0] if isinstance(self.image, list) else self.image


def label_lookup(mapping: dict[int, int], max_raw: int) -> np.ndarray:
    """Lookup table raw label -> class index (unlisted raw labels -> 0).

    MONAI's MapLabelValue keeps unlisted values and makes one pass per label; the table makes
    one pass (docs/performance.md).
    """
    table = np.zeros(max_raw + 1, dtype=np.uint8)
    for raw, target in mapping.items():
        table[raw] = target
    return table


def override_class_names(names: Sequence[str],
                         override: Optional[Sequence[str]]) -> Sequence[str]:
    """``names`` (a layout's foreground class names), or ``override`` (``data.class_names``).

    Raises
    ------
    InputError
        ``override`` does not name every foreground class once.
    """
    if override is None:
        return names
    if len(override) != len(names):
        raise InputError(f"config key 'data.class_names': {len(override)} names given, but the "
                         f"data has {len(names)} foreground classes (background not counted; "
                         f"its own names: {', '.join(names)})")
    if any(not str(n).strip() for n in override) or len(set(override)) != len(override):
        raise InputError(f"config key 'data.class_names': names must be non-empty and distinct, "
                         f"got {list(override)}")
    return tuple(str(n) for n in override)


class DataSource(abc.ABC):
    """A data set on disk: its classes, splits, whole volumes and cached training slices.

    Subclasses set ``name``, ``layout``, ``class_names``, ``in_chans``, ``default_intensity``,
    ``default_splits`` and implement :meth:`entries_for_case`, :meth:`load` and
    :meth:`check_entry`.
    """

    name: str = ""
    layout: str = ""
    class_names: tuple[str, ...] = ()
    in_chans: int = 1
    # False for releases without voxel spacing (unit spacing is used: HD95 in voxels).
    stores_spacing: bool = True
    default_intensity: str = "zscore"
    # The training augmentation (datasets.transforms.AUGMENTATIONS): "recipe" is the published
    # one for CT and MRI slices, "photo" the one for 2-D photographs and ultrasound.
    augmentation: str = "recipe"
    # The unit of distances (HD95) with the data's spacing: mm, or px for 2-D images.
    distance_unit: str = "mm"
    # An nnU-Net splits_final.json whose folds train.py --fold uses (folder data sets).
    splits_final: Optional[Path] = None

    def __init__(self, root: Path, data_cfg: DataConfig,
                 default_splits: dict[str, Sequence[str]], normalize_case):
        self.root = Path(root)
        self.data_cfg = data_cfg
        check_choices(data_cfg, "data")
        self.intensity = resolve_intensity(data_cfg.intensity, self.default_intensity)
        self.ct_window = tuple(float(v) for v in data_cfg.ct_window)
        if len(self.ct_window) != 2 or not self.ct_window[1] > self.ct_window[0]:
            raise InputError(f"config key 'data.ct_window': {list(data_cfg.ct_window)} is not "
                             f"a [low, high] window")
        self.class_names = override_class_names(self.class_names, data_cfg.class_names)
        self._median_spacing: Optional[tuple[float, float]] = None
        self._splits = resolve_splits(default_splits, {
            "train": data_cfg.train_cases, "val": data_cfg.val_cases,
            "test": data_cfg.test_cases}, normalize_case)

    @property
    def num_classes(self) -> int:
        """Number of classes including background."""
        return len(self.class_names) + 1

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={len(self._splits[s])}" for s in SPLITS)
        return (f"{type(self).__name__}(name={self.name!r}, layout={self.layout!r}, "
                f"root='{self.root}', {sizes})")

    # ----------------------------------------------------------------- per-layout hooks
    @abc.abstractmethod
    def entries_for_case(self, case: str) -> list[VolumeEntry]:
        """The volumes of ``case`` (one, or ACDC's two frames), in a fixed order."""

    @abc.abstractmethod
    def load(self, entry: VolumeEntry) -> Volume:
        """Read one volume; raises InputError naming the file on any problem."""

    @abc.abstractmethod
    def check_entry(self, entry: VolumeEntry, read_image: bool) -> None:
        """Check one volume's files without normalising them (headers; labels fully read)."""

    # ----------------------------------------------------------------- public API
    def cases(self, split: str) -> list[str]:
        """Normalised case ids of ``split`` ("train", "val" or "test")."""
        if split not in SPLITS:
            raise InputError(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
        return list(self._splits[split])

    def entries(self, split: str) -> list[VolumeEntry]:
        """Every volume of every case of ``split``; each file under the data set's root."""
        entries = [entry for case in self.cases(split) for entry in self.entries_for_case(case)]
        for entry in entries:
            for value in (entry.image, entry.label):
                for path in value if isinstance(value, list) else [value]:
                    if path is not None:
                        inside(path, self.root, "the data set's folder (--root)")
        return entries

    def check_integrity(self, splits: Sequence[str] = SPLITS, read_images: bool = False) -> None:
        """Check that every listed case is present, readable and consistent.

        Images are checked from their headers (and, for gzip files, their recorded size, which
        reveals truncation) unless ``read_images``, which also reads them to look for NaN;
        labels are always read (value range, NaN, shape and geometry against the image).

        Raises
        ------
        InputError
            The first problem found, naming the file.
        """
        unique: dict[str, VolumeEntry] = {}
        for split in splits:
            for entry in self.entries(split):
                unique.setdefault(entry.name, entry)
        start = time.perf_counter()
        # Threads: decompressing labels releases the GIL. map() returns in order, so the
        # error raised is that of the first bad volume in split order, as in a serial loop.
        workers = max(1, min(int(self.data_cfg.num_workers), len(unique)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda e: self.check_entry(e, read_image=read_images),
                          unique.values()))
        logger.info("%s (%s): integrity check passed for %d volumes of %s in %.1f s",
                    self.name, self.layout, len(unique), ", ".join(splits),
                    time.perf_counter() - start)

    def geometry_headers(self, split: str = "train") -> list[tuple[np.ndarray, tuple]]:
        """(affine, spatial shape) of each image of ``split``, from NIfTI headers only.

        Empty when the layout stores no geometry (TransUNet's and MT-UNet's npz and HDF5).
        """
        headers = []
        for entry in self.entries(split):
            if not entry.image_path.name.lower().endswith((".nii", ".nii.gz")):
                return []
            header = read_nifti_header(entry.image_path)
            headers.append((header.affine, tuple(header.shape[:3])))
        return headers

    def volume_item(self, entry: VolumeEntry) -> Volume:
        """One whole volume, normalised as in training, at its original size and geometry."""
        raw = self.load(entry)
        return replace(raw, array=self._normalised(raw), prenormalised=self.intensity,
                       spacing=tuple(float(v) for v in raw.spacing),
                       affine=np.asarray(raw.affine, dtype=np.float64),
                       distance_unit=self.distance_unit)

    def volumes(self, split: str) -> VolumeDataset:
        """Whole volumes of ``split``, read lazily one at a time (see :meth:`volume_item`)."""
        # torch and MONAI load with the slices module, not with the data-set table.
        from .slices import VolumeDataset

        return VolumeDataset(self.entries(split), self.volume_item)

    def slice_cache(self, img_size: Union[int, Sequence[int]]) -> StoreBuilder:
        """The on-disk cache of every training slice (nothing read yet).

        Resize mode (``data.sampling: resize``) stores slices at ``img_size``; patch mode at
        their own size, resampled in-plane to :meth:`sampling_spacing` when it is set.
        ``.open()`` reuses it or builds it; its folder name carries a fingerprint of the
        source files (path, size, modification time), the layout, the intensity settings, the
        size (patch mode: the spacing) and dtype.
        """
        entries = self.entries("train")
        if not entries:
            raise InputError(f"{self.name}: the training split is empty "
                             f"(set data.train_cases)")
        dtype = np.dtype(self.data_cfg.cache_dtype)
        key = {"kind": "resize", "dataset": self.name, "layout": self.layout,
               "source": type(self).__qualname__, "intensity": self.intensity,
               "ct_window": list(self.ct_window), "size": None, "dtype": dtype.name,
               "in_chans": self.in_chans, "allow_slice_gaps": self.data_cfg.allow_slice_gaps,
               "volumes": [_entry_stamp(e) for e in entries]}
        cache_dir = resolve_cache_dir(self.data_cfg.cache_dir)
        workers = max(1, int(self.data_cfg.num_workers))
        if self.data_cfg.sampling == "patch":
            spacing = self.sampling_spacing()
            key.pop("size")
            key.update(kind="patch", spacing=None if spacing is None else list(spacing))
            tag = "native" if spacing is None else "x".join(f"{v:g}" for v in spacing)
            return StoreBuilder(cache_dir, f"{self.name}-{self.layout}-patch-{tag}-{dtype.name}",
                                key, entries,
                                functools.partial(self._patch_slices, spacing, dtype),
                                workers=workers)
        size = as_pair(img_size)
        key["size"] = list(size)
        return StoreBuilder(cache_dir,
                            f"{self.name}-{self.layout}-{size[0]}x{size[1]}-{dtype.name}", key,
                            entries, functools.partial(self._training_slices, size, dtype),
                            workers=workers,
                            estimate_bytes=self._estimate_bytes(entries, size, dtype))

    def sampling_spacing(self) -> Optional[tuple[float, float]]:
        """The in-plane spacing (mm) patch mode resamples slices to, or None to keep them as
        stored: ``data.spacing``'s numbers, or for ``auto`` the median in-plane spacing of the
        training volumes (headers where the format has them), as nnU-Net chooses it."""
        spacing = self.data_cfg.spacing
        if spacing is None or (spacing == "auto" and not self.stores_spacing):
            return None  # a release without spacing: its volumes are not read for unit ones
        if spacing != "auto":
            return (float(spacing[0]), float(spacing[1]))
        if self._median_spacing is None:
            found = np.array([native.inplane_spacing(self, e) for e in self.entries("train")])
            # Headers store float32: 0.8 reads 0.800000011920929, recorded as 0.8.
            self._median_spacing = tuple(round(float(v), 6) for v in np.median(found, axis=0))
        return self._median_spacing

    def train_slices(self, img_size: Union[int, Sequence[int]], seed: int = 0,
                     store: Optional[SliceStore] = None) -> SliceDataset:
        """Every slice of every training volume at ``img_size``, as a torch Dataset.

        Items are {"image": float32 (in_chans, H, W), "label": int64 (1, H, W)}; augmentation
        (``data_cfg.augment``; the kind is :attr:`augmentation`) derives its randomness from
        (seed, epoch, index) only. Slices are read from ``store``, by default
        :meth:`slice_cache`'s, reused or built now.
        """
        from .slices import SliceDataset

        if store is None:
            store = self.slice_cache(img_size).open()
        if self.data_cfg.sampling == "patch":
            from .patches import PatchDataset

            return PatchDataset(store, patch_pair(self.data_cfg.patch_size, img_size),
                                self.num_classes, self.data_cfg.foreground_share,
                                augment=self.data_cfg.augment, seed=seed,
                                augmentation=self.augmentation)
        return SliceDataset(store, augment=self.data_cfg.augment, seed=seed,
                            augmentation=self.augmentation)

    # ----------------------------------------------------------------- helpers
    def _normalised(self, raw: Volume) -> np.ndarray:
        if not np.isfinite(raw.array).all():
            raise InputError(f"{raw.path}: image contains NaN or infinite values")
        if raw.prenormalised == self.intensity:
            return np.asarray(raw.array, dtype=np.float32)
        return normalize_intensity(raw.array, self.intensity, self.ct_window,
                                   channels_first=raw.array.ndim == 4)

    def _load_for_cache(self, entry: VolumeEntry,
                        size: Optional[tuple[int, int]]) -> Volume:
        """:meth:`load` for the cache at ``size``; a layout may read less (reduced decodes)."""
        return self.load(entry)

    def _cached_volume(self, entry: VolumeEntry,
                       size: Optional[tuple[int, int]] = None) -> tuple[np.ndarray, np.ndarray]:
        raw = self._load_for_cache(entry, size)
        if raw.label is None:
            raise InputError(f"{entry.image_path}: training case {entry.case} has no label")
        return self._normalised(raw), raw.label

    def _training_slices(self, size: tuple[int, int], dtype: np.dtype,
                         entry: VolumeEntry) -> tuple[np.ndarray, np.ndarray]:
        from .slices import prepare_volume

        return prepare_volume(*self._cached_volume(entry, size), size, dtype)

    def _patch_slices(self, spacing: Optional[tuple[float, float]], dtype: np.dtype,
                      entry: VolumeEntry) -> tuple[np.ndarray, np.ndarray]:
        return native.patch_slices(self, spacing, dtype, entry)

    def _slice_count(self, entry: VolumeEntry) -> Optional[int]:
        """Slices of ``entry`` from its header, or None when that needs the whole file."""
        if isinstance(entry.image, Path) and entry.image.name.lower().endswith((".nii",
                                                                                ".nii.gz")):
            shape = read_nifti_header(entry.image).shape
            return int(shape[2]) if len(shape) >= 3 else 1
        return None

    def _estimate_bytes(self, entries: Sequence[VolumeEntry], size: tuple[int, int],
                        dtype: np.dtype) -> Optional[int]:
        """The cache's size from the headers, or None when one volume's depth is unknown."""
        counts = [self._slice_count(e) for e in entries]
        if any(c is None for c in counts):
            return None
        label_bytes = 1 if self.num_classes <= 256 else 2
        per_slice = size[0] * size[1] * (self.in_chans * dtype.itemsize + label_bytes)
        return sum(counts) * per_slice + 256 * len(entries)


def _entry_stamp(entry: VolumeEntry) -> dict:
    """What of a volume's files goes into the cache's fingerprint."""
    def stamps(paths):
        if paths is None:
            return None
        return [file_stamp(p) for p in (paths if isinstance(paths, list) else [paths])]

    return {"name": entry.name, "case": entry.case, "image": stamps(entry.image),
            "label": stamps(entry.label), "info": entry.info}
