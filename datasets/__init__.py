"""Data sets for Swin-Unet: Synapse, ACDC, a user's own folder and phantoms, as slices or volumes.

Usage::

    from datasets import open_dataset, DATASET_NAMES, normalize_intensity
    src = open_dataset("synapse", config.data)   # or "acdc", "phantom", "folder", "phantom2d"
    src.check_integrity()                        # InputError naming the file on any problem
    train = src.train_slices(img_size=224, seed=1234)   # torch Dataset of 2-D slices
    train.set_epoch(epoch)                       # before each epoch's DataLoader iterator
    for volume in src.volumes("val"):            # whole volumes, original size and geometry
        volume.case, volume.array, volume.label, volume.spacing, volume.affine

Attributes of a source: ``name``, ``layout`` (synapse_raw, synapse_npz, acdc_raw, acdc_npz,
folder; 2-D images: nnunet_2d, image_pairs), ``class_names`` (foreground, class i+1 ->
class_names[i]), ``num_classes``, ``in_chans``, ``intensity`` (resolved: ct, zscore, minmax or
none), ``augmentation`` (recipe or photo), ``distance_unit`` (mm, or px for 2-D images) and
``cases(split)``.

Training items: {"image": float32 (in_chans, H, W), "label": int64 (1, H, W)}.
Training items are dicts because MONAI's dictionary transforms and torch's collation take them;
everything else is typed. Volumes are :class:`swin_unet.io.volumes.Volume`: ``case``, ``array``
float32 (X, Y, Z) or (C, X, Y, Z) normalised as in training, ``label`` uint8 (X, Y, Z) class
indices (uint16 above 255) or None, ``spacing`` (x, y, z) in ``distance_unit``, ``affine`` 4x4
float64, ``path``. :meth:`DataSource.load` gives the same type before normalisation. Arrays keep
the file's voxel order (no reorientation), so a prediction of the same shape saved with
``affine`` overlays the image. A 2-D image is a volume of one slice: (rows, columns, 1).
"""

from .base import DataSource, VolumeEntry
from .intensity import INTENSITY_MODES, normalize_intensity, resolve_intensity
from .folds import make_folds, read_splits_final, resolve_fold, write_splits_final
from .phantom import generate_phantom
from .registry import (DATASET_NAMES, DATASETS, LAYOUTS, DatasetEntry, Layout, class_names_for,
                       dataset_entry, default_intensity_for, default_root, open_dataset)

# torch and MONAI come with these: loaded on first use, so that a command that only reads the
# data-set table (test.py --help, --predictions) does not pay seconds of imports.
_LAZY = {"SliceDataset": ".slices", "VolumeDataset": ".slices", "resize_slices": ".transforms"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "DATASET_NAMES",
    "DATASETS",
    "DatasetEntry",
    "Layout",
    "dataset_entry",
    "LAYOUTS",
    "INTENSITY_MODES",
    "DataSource",
    "VolumeEntry",
    "SliceDataset",
    "VolumeDataset",
    "default_root",
    "class_names_for",
    "default_intensity_for",
    "generate_phantom",
    "make_folds",
    "read_splits_final",
    "resolve_fold",
    "write_splits_final",
    "normalize_intensity",
    "resolve_intensity",
    "open_dataset",
    "resize_slices",
]
