"""Patch sampling: random native-resolution crops of cached slices, a share centred on foreground.

Patch mode (``data.sampling: patch``) caches slices at their own size (resampled in-plane to
``data.spacing`` when set) and draws one ``data.patch_size`` crop per sample, as nnU-Net does:
a share ``data.foreground_share`` of the samples is centred on a random pixel of a random
foreground class present, the others are uniform over the slice. Slices smaller than a patch
are padded (image 0, label 0) first. The crop and the augmentation of sample ``i`` in epoch
``e`` draw from one seed of (seed, e, i), so batches and resumed runs are reproducible.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import torch
from monai.data import get_track_meta, set_track_meta
from monai.transforms import RandCropByLabelClasses, RandSpatialCropd, SpatialPadd
from monai.transforms.utils import map_classes_to_indices

from swin_unet.sizes import as_pair

from .slices import SliceDataset
from .transforms import KEYS, apply_seeded, build_augmentation

__all__ = ["PatchDataset"]


class PatchDataset(SliceDataset):
    """One random ``patch_size`` crop of cached slice ``index`` per sample.

    Items are {"image": float32 (C, h, w), "label": int64 (1, h, w)} with (h, w) the patch
    size, like :class:`~datasets.slices.SliceDataset`'s at the model's size, so the loop and
    the sampler (``train.iters_per_epoch`` included) serve both modes. A foreground draw on a
    slice without foreground takes a random slice of the same volume that has some (nnU-Net
    picks a foreground slice of the case the same way), and stays uniform when the volume has
    none.
    """

    def __init__(self, cache, patch_size: Union[int, Sequence[int]], num_classes: int,
                 foreground_share: float = 1 / 3, augment: bool = True, seed: int = 0,
                 augmentation: str = "recipe"):
        super().__init__(cache, augment=False, seed=seed, augmentation=augmentation)
        self.patch_size = as_pair(patch_size, "data.patch_size")
        self.num_classes = int(num_classes)
        self.foreground_share = float(foreground_share)
        self.augment = bool(augment)
        self._augmentation = build_augmentation(
            square=self.patch_size[0] == self.patch_size[1],
            kind=augmentation) if self.augment else None
        self._pad = SpatialPadd(KEYS, spatial_size=self.patch_size, mode="constant", value=0)
        self._uniform = RandSpatialCropd(KEYS, roi_size=self.patch_size, random_size=False)
        self._foreground_slices: dict[int, np.ndarray] = {}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_foreground_slices"] = {}
        return state

    def foreground_slices(self, volume: int) -> np.ndarray:
        """Slice numbers of ``volume`` holding any foreground (read once per process)."""
        found = self._foreground_slices.get(volume)
        if found is None:
            labels = np.asarray(self.cache.volume(volume)[1])
            found = np.flatnonzero(labels.reshape(len(labels), -1).max(axis=1) > 0)
            self._foreground_slices[volume] = found
        return found

    def _pick(self, index: int, rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray,
                                                                    bool]:
        """The slice to crop from and whether the crop is centred on foreground."""
        image, label = self.cache.slice(index)
        if rng.random_sample() >= self.foreground_share:
            return image, label, False
        if label.any():
            return image, label, True
        volume, _ = self.cache.locate(index)
        candidates = self.foreground_slices(volume)
        if not len(candidates):
            return image, label, False
        z = int(candidates[rng.randint(len(candidates))])
        images, labels = self.cache.volume(volume)
        return images[z], labels[z], True

    def crop(self, index: int, seed: int) -> dict:
        """Sample ``index``'s padded crop (before augmentation), drawn from ``seed``."""
        rng = np.random.RandomState(seed)
        image, label, foreground = self._pick(index, rng)
        data = {"image": torch.from_numpy(image.astype(np.float32)),
                "label": torch.from_numpy(label[None].astype(np.float32))}
        tracking = get_track_meta()
        set_track_meta(False)
        try:
            data = self._pad(data)
            if not foreground:
                self._uniform.set_random_state(state=rng)
                return self._uniform(data)
            indices = map_classes_to_indices(data["label"], self.num_classes)
            ratios = [0] + [1 if len(found) else 0 for found in indices[1:]]
            crop = RandCropByLabelClasses(self.patch_size, ratios=ratios,
                                          num_classes=self.num_classes, num_samples=1,
                                          warn=False)
            crop.set_random_state(state=rng)
            crop.randomize(label=data["label"], indices=indices)
            return {key: crop(data[key], randomize=False)[0] for key in KEYS}
        finally:
            set_track_meta(tracking)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"slice index {index} out of range for {len(self)} slices")
        seed = self.sample_seed(index)
        out = self.crop(index, seed)
        if self._augmentation is not None:
            # Another stream than the crop's: the same crop whether or not augmentation runs.
            out = apply_seeded(self._augmentation, {"image": out["image"], "label": out["label"]},
                               (seed + 1) % 2 ** 32)
        image = torch.as_tensor(out["image"]).as_subclass(torch.Tensor).contiguous()
        label = torch.as_tensor(out["label"]).as_subclass(torch.Tensor).round().to(torch.int64)
        return {"image": image.float(), "label": label.contiguous()}
