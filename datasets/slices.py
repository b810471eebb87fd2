"""Training slices (a torch Dataset over a slice store) and lazily read whole volumes.

Training reads slices from the on-disk cache (:class:`~datasets.slice_store.SliceStore`);
:class:`SliceCache` holds the same in memory, for small sets built in code (tests, benchmarks).
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from collections.abc import Sequence
from typing import TYPE_CHECKING, Callable, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from swin_unet.io.volumes import label_dtype

if TYPE_CHECKING:
    from .slice_store import SliceStore

from .transforms import apply_seeded, build_augmentation, resize_slices, volume_to_slices

__all__ = ["SliceCache", "prepare_volume", "build_slice_cache", "SliceDataset", "VolumeDataset"]

logger = logging.getLogger(__name__)


@dataclass
class SliceCache:
    """Training volumes as compact 2-D slices at the model's size, in memory.

    ``images[v]`` is (Z, C, H, W) float16 or float32 and ``labels[v]`` (Z, H, W) uint8 or uint16
    for volume ``names[v]``. It reads like a :class:`~datasets.slice_store.SliceStore`:
    ``len(cache)``, ``cache.slice(i)``, ``cache.locate(i)``, ``cache.volume(v)``.
    """

    names: list[str]
    images: list[np.ndarray]
    labels: list[np.ndarray]

    def __post_init__(self):
        self.lengths = [len(a) for a in self.labels]
        self.offsets = np.cumsum([0] + self.lengths)

    @property
    def nbytes(self) -> int:
        """Memory held by the cached arrays."""
        return sum(a.nbytes for a in self.images) + sum(a.nbytes for a in self.labels)

    @property
    def num_slices(self) -> int:
        """Total number of cached slices."""
        return len(self)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """(volume number, slice number in it) of slice ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"slice index {index} out of range for {len(self)} slices")
        volume = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return volume, int(index - self.offsets[volume])

    def volume(self, v: int) -> tuple[np.ndarray, np.ndarray]:
        """Volume ``v``'s (Z, C, H, W) images and (Z, H, W) labels."""
        return self.images[v], self.labels[v]

    def slice(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Slice ``index``'s (C, H, W) image and (H, W) label."""
        v, z = self.locate(index)
        return self.images[v][z], self.labels[v][z]


def prepare_volume(volume: np.ndarray, label: np.ndarray, size: tuple[int, int],
                   dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """(C, )X, Y, Z volume and X, Y, Z label -> (Z, C, H, W) ``dtype`` and (Z, H, W) labels.

    Labels are uint8, or uint16 when a class index exceeds 255.
    """
    channels = volume.ndim == 4
    image = resize_slices(volume_to_slices(volume, channels), size).astype(dtype)
    # Labels travel as float32 through the resize (exact for class indices < 2^24).
    label_slices = volume_to_slices(label.astype(np.float32), False)[:, 0]
    wide = label_dtype(int(label.max()) + 1 if label.size else 1)
    labels = resize_slices(label_slices, size, is_label=True).astype(wide)
    return image, labels


def build_slice_cache(entries: Sequence, load: Callable, size: tuple[int, int],
                      dtype: np.dtype, workers: int = 1) -> SliceCache:
    """Read, normalise and resize every volume once (threads), keeping compact slices.

    ``load(entry)`` returns the normalised (C, )X, Y, Z image and the X, Y, Z class-index label.
    This plays the role of MONAI's CacheDataset, whose ``apply_transform`` wraps every error in
    a RuntimeError: here an InputError naming a bad file reaches the command line as it is.
    """
    start = time.perf_counter()

    def one(entry):
        image, label = load(entry)
        return prepare_volume(image, label, size, dtype)

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(entries)))) as pool:
        results = list(pool.map(one, entries))
    cache = SliceCache([e.name for e in entries], [r[0] for r in results],
                       [r[1] for r in results])
    logger.info("cached %d training volumes (%d slices at %dx%d, %s): %.1f MB in %.1f s",
                len(entries), cache.num_slices, size[0], size[1], np.dtype(dtype).name,
                cache.nbytes / 1e6, time.perf_counter() - start)
    return cache


class SliceDataset(Dataset):
    """Every cached training slice is one sample per epoch.

    Items are {"image": float32 tensor (C, H, W), "label": int64 tensor (1, H, W)}. With
    ``augment``, each item's randomness is seeded from (seed, epoch, index) alone, so batches
    do not depend on ``num_workers``, worker order, the sampler or resuming. ``augmentation``
    names the chain (:data:`~datasets.transforms.AUGMENTATIONS`). Call
    :meth:`set_epoch` before creating each epoch's DataLoader iterator; the epoch lives in
    shared memory so persistent workers see it too.
    """

    def __init__(self, cache: Union[SliceCache, "SliceStore"], augment: bool = True,
                 seed: int = 0, augmentation: str = "recipe"):
        self.cache = cache
        self.augment = bool(augment)
        self.seed = int(seed) % 2 ** 32
        # Shared with DataLoader workers (fork or spawn), unlike a plain attribute.
        self._epoch = multiprocessing.Value("q", 0, lock=False)
        shape = cache.slice(0)[1].shape if len(cache) else (1, 1)
        self._augmentation = build_augmentation(square=shape[0] == shape[1],
                                                kind=augmentation) if self.augment else None

    def __len__(self) -> int:
        return len(self.cache)

    @property
    def epoch(self) -> int:
        """The epoch whose randomness :meth:`__getitem__` uses."""
        return int(self._epoch.value)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch that seeds augmentation (like DistributedSampler.set_epoch)."""
        self._epoch.value = int(epoch)

    def locate(self, index: int) -> tuple[str, int]:
        """(volume name, slice index) of sample ``index``."""
        volume, z = self.cache.locate(index)
        return self.cache.names[volume], z

    def sample_seed(self, index: int) -> int:
        """The augmentation seed of sample ``index`` in the current epoch."""
        sequence = np.random.SeedSequence([self.seed, self.epoch, int(index)])
        return int(sequence.generate_state(1)[0])

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"slice index {index} out of range for {len(self)} slices")
        image, label = self.cache.slice(index)
        image = torch.from_numpy(image.astype(np.float32))
        label = torch.from_numpy(label[None].astype(np.float32))
        if self._augmentation is not None:
            out = apply_seeded(self._augmentation, {"image": image, "label": label},
                               self.sample_seed(index))
            image, label = out["image"], out["label"]
        # MONAI returns MetaTensors; the training loop gets plain tensors.
        image = torch.as_tensor(image).as_subclass(torch.Tensor).contiguous()
        label = torch.as_tensor(label).as_subclass(torch.Tensor).round().to(torch.int64)
        return {"image": image.float(), "label": label.contiguous()}


class VolumeDataset(Sequence):
    """Whole volumes of a split, read and normalised lazily, one per ``__getitem__``.

    Items are :class:`~swin_unet.io.volumes.Volume` (see the package docstring). ``names``
    lists the volumes' case names without reading anything.
    """

    def __init__(self, entries: Sequence, read: Callable):
        self._entries = list(entries)
        self._read = read

    @property
    def names(self) -> list[str]:
        """Contract names of the volumes, in order."""
        return [e.name for e in self._entries]

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self._read(self._entries[index])
