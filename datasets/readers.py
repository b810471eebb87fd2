"""Reading NIfTI, HDF5 and npz files, and cheap checks that a file is whole and consistent."""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Optional, Sequence

import h5py
import nibabel as nib
import numpy as np

from swin_unet.errors import InputError

__all__ = [
    "NiftiHeader",
    "read_nifti",
    "read_nifti_header",
    "check_nifti_complete",
    "read_h5",
    "h5_shapes",
    "read_npz",
    "npz_shapes",
    "check_label_values",
    "check_same_geometry",
]

# zlib.error: a corrupt deflate stream (gzip, npz); HeaderDataError: a NIfTI header nibabel
# rejects (e.g. an unknown data type code). Neither derives from OSError or ValueError.
_READ_ERRORS = (OSError, EOFError, ValueError, RuntimeError, KeyError, zipfile.BadZipFile,
                zlib.error, nib.filebasedimages.ImageFileError,
                nib.spatialimages.HeaderDataError)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _missing(path: Path) -> InputError:
    return InputError(f"{path}: file not found")


class NiftiHeader:
    """What the integrity check needs from a NIfTI header, read without the voxel data."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise _missing(self.path)
        try:
            image = nib.load(str(self.path))
        except _READ_ERRORS as exc:
            raise InputError(f"{self.path}: unreadable NIfTI header ({_reason(exc)})") from None
        self.shape = _squeeze_trailing(tuple(int(v) for v in image.shape))
        self.affine = np.asarray(image.affine, dtype=np.float64)
        zooms = image.header.get_zooms()
        self.spacing = tuple(float(v) for v in (tuple(zooms[:3]) + (1.0, 1.0, 1.0))[:3])
        self.dtype = np.dtype(image.get_data_dtype())
        self.offset = int(getattr(image.dataobj, "offset", 0))


def _squeeze_trailing(shape: tuple) -> tuple:
    # Some tools write a 3-D volume as (X, Y, Z, 1); it is the same grid.
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def read_nifti_header(path: Path) -> NiftiHeader:
    """Header of a NIfTI file (shape, affine, spacing, dtype) without reading its voxels."""
    return NiftiHeader(path)


def check_nifti_complete(header: NiftiHeader) -> None:
    """Detect a truncated NIfTI file from its size alone, reading all voxels only if in doubt.

    An uncompressed file must hold offset + voxel bytes. A gzip file records its uncompressed
    size (mod 2^32) in its last four bytes; a truncated one ends with compressed data there
    instead. A mismatch can also come from a valid multi-member gzip, so it is confirmed by
    decompressing the whole file before it is reported.

    Raises
    ------
    InputError
        The file is truncated or unreadable; the message names the file.
    """
    path = header.path
    expected = header.offset + int(np.prod(header.shape)) * header.dtype.itemsize
    size = path.stat().st_size
    if path.name.endswith(".gz"):
        if size < 18:
            raise InputError(f"{path}: truncated or empty gzip file ({size} bytes)")
        with open(path, "rb") as handle:
            handle.seek(-4, os.SEEK_END)
            recorded = struct.unpack("<I", handle.read(4))[0]
        if recorded == expected % 2 ** 32:
            return
        read_nifti(path)  # raises InputError when the data really is incomplete
        return
    if size < expected:
        raise InputError(f"{path}: truncated file ({size} bytes, the header needs {expected})")


def read_nifti(path: Path, dtype=np.float32) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Voxels in the file's own order, the affine and the spacing (mm) of a NIfTI file.

    No reorientation: a prediction of the same shape saved with this affine overlays the image.

    Raises
    ------
    InputError
        Missing, unreadable or truncated file; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise _missing(path)
    try:
        from monai.transforms import LoadImage  # seconds to import: only when reading

        array, meta = LoadImage(reader="NibabelReader", image_only=False, dtype=dtype)(str(path))
    except _READ_ERRORS as exc:
        raise InputError(f"{path}: unreadable or truncated NIfTI file ({_reason(exc)})") from None
    array = np.asarray(array)
    array = array.reshape(_squeeze_trailing(array.shape))
    affine = np.asarray(meta.get("original_affine", meta["affine"]), dtype=np.float64)
    pixdim = np.asarray(meta.get("pixdim", [1.0, 1.0, 1.0, 1.0]), dtype=np.float64)
    spacing = tuple(float(v) for v in (list(pixdim[1:4]) + [1.0, 1.0, 1.0])[:3])
    return array, affine, spacing


def _open_h5(path: Path) -> h5py.File:
    if not path.is_file():
        raise _missing(path)
    try:
        return h5py.File(path, "r")
    except _READ_ERRORS as exc:
        raise InputError(f"{path}: unreadable or truncated HDF5 file ({_reason(exc)})") from None


def h5_shapes(path: Path, keys: Sequence[str] = ("image", "label")) -> dict[str, tuple]:
    """Shapes of the datasets ``keys`` of an HDF5 file, without reading them."""
    path = Path(path)
    with _open_h5(path) as handle:
        missing = [k for k in keys if k not in handle]
        if missing:
            raise InputError(f"{path}: no '{missing[0]}' dataset (found: {', '.join(handle)})")
        return {k: tuple(handle[k].shape) for k in keys}


def read_h5(path: Path, keys: Sequence[str] = ("image", "label")) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of an HDF5 file.

    Raises
    ------
    InputError
        Missing, unreadable or truncated file or a missing key; the message names the file.
    """
    path = Path(path)
    with _open_h5(path) as handle:
        missing = [k for k in keys if k not in handle]
        if missing:
            raise InputError(f"{path}: no '{missing[0]}' dataset (found: {', '.join(handle)})")
        try:
            return {k: np.asarray(handle[k][()]) for k in keys}
        except _READ_ERRORS as exc:
            raise InputError(f"{path}: unreadable or truncated HDF5 file ({_reason(exc)})") \
                from None


def _open_npz(path: Path):
    if not path.is_file():
        raise _missing(path)
    try:
        return np.load(path, allow_pickle=False)
    except _READ_ERRORS as exc:
        raise InputError(f"{path}: unreadable or truncated npz file ({_reason(exc)})") from None


def npz_shapes(path: Path, keys: Sequence[str]) -> dict[str, tuple]:
    """Shapes of the arrays ``keys`` in an npz file, from the .npy headers only."""
    path = Path(path)
    shapes = {}
    with _open_npz(path) as archive:
        for key in keys:
            if key not in archive.files:
                raise InputError(f"{path}: no '{key}' array (found: {', '.join(archive.files)})")
            try:
                with archive.zip.open(f"{key}.npy") as member:
                    version = np.lib.format.read_magic(member)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, _ = read_header(member)
            except _READ_ERRORS as exc:
                raise InputError(f"{path}: unreadable '{key}' array ({_reason(exc)})") from None
            shapes[key] = tuple(int(v) for v in shape)
    return shapes


def read_npz(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of an npz file.

    Raises
    ------
    InputError
        Missing, unreadable or truncated file or a missing key; the message names the file.
    """
    path = Path(path)
    with _open_npz(path) as archive:
        out = {}
        for key in keys:
            if key not in archive.files:
                raise InputError(f"{path}: no '{key}' array (found: {', '.join(archive.files)})")
            try:
                out[key] = np.asarray(archive[key])
            except _READ_ERRORS as exc:
                raise InputError(f"{path}: unreadable or truncated '{key}' array "
                                 f"({_reason(exc)})") from None
        return out


def check_label_values(label: np.ndarray, allowed: Sequence[int], path: Path,
                       what: str = "label map") -> None:
    """Labels must be finite integers from ``allowed``.

    Raises
    ------
    InputError
        NaN, a non-integer or a value outside ``allowed``; the message names the file.
    """
    if np.issubdtype(label.dtype, np.floating):
        if np.isnan(label).any():
            raise InputError(f"{path}: label contains NaN")
        if not np.array_equal(label, np.round(label)):
            bad = label[label != np.round(label)].flat[0]
            raise InputError(f"{path}: label value {bad:g} is not an integer")
    if label.size == 0:
        raise InputError(f"{path}: label volume is empty (shape {label.shape})")
    allowed = sorted(int(v) for v in allowed)
    # min/max first: one cheap pass settles contiguous label maps (the usual case).
    low, high = label.min(), label.max()
    bad = high if high > allowed[-1] else low if low < allowed[0] else None
    if bad is None and allowed != list(range(allowed[0], allowed[-1] + 1)):
        outside = np.setdiff1d(np.unique(label), np.asarray(allowed))
        bad = outside[0] if outside.size else None
    if bad is not None:
        raise InputError(f"{path}: label value {bad:g} is outside the {what} "
                         f"(allowed: {_ranges(allowed)})")


def _ranges(values: Sequence[int]) -> str:
    values = sorted(int(v) for v in values)
    if values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}-{values[-1]}"
    return ", ".join(str(v) for v in values)


def check_same_geometry(image: NiftiHeader, label: NiftiHeader,
                        spatial_dims: Optional[int] = None) -> None:
    """Image and label must have the same voxel grid: shape and affine.

    ``spatial_dims`` compares only the first dimensions (a 4-D multi-channel image against its
    3-D label). The affine tolerance (1e-3 mm, 1e-4 relative) absorbs float rounding in
    headers written by different tools.

    Raises
    ------
    InputError
        The grids differ; the message names the label file and both values.
    """
    image_shape = image.shape[:spatial_dims] if spatial_dims else image.shape
    if tuple(image_shape) != tuple(label.shape):
        raise InputError(f"{label.path}: label shape {label.shape} does not match the image "
                         f"shape {tuple(image_shape)} of {image.path}")
    if not np.allclose(image.affine, label.affine, rtol=1e-4, atol=1e-3):
        raise InputError(f"{label.path}: label affine differs from that of {image.path} "
                         f"(image spacing {image.spacing}, label spacing {label.spacing})")


def read_labelled_nifti(image_path: Path, label_path: Path, allowed: Sequence[int],
                        what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple]:
    """Image and label of one case: ``(image, label, affine, spacing)``, checked as a pair.

    Raises
    ------
    InputError
        Either file unreadable, their shapes differ, or a label value outside ``allowed``.
    """
    image, affine, spacing = read_nifti(image_path, np.float32)
    label, _, _ = read_nifti(label_path, dtype=None)
    if label.shape != image.shape:
        raise InputError(f"{label_path}: label shape {label.shape} does not match the image "
                         f"shape {image.shape} of {image_path}")
    check_label_values(label, allowed, label_path, what)
    return image, label, affine, spacing


def check_labelled_nifti(image_path: Path, label_path: Path, allowed: Sequence[int], what: str,
                         read_image: bool) -> None:
    """The integrity check of one image/label NIfTI pair.

    Both files complete, the same voxel grid, label values inside ``allowed``; with
    ``read_image`` also a finite image (a full read of the image).

    Raises
    ------
    InputError
        The first problem found, naming the file.
    """
    image = read_nifti_header(image_path)
    check_nifti_complete(image)
    check_same_geometry(image, read_nifti_header(label_path))
    values, _, _ = read_nifti(label_path, dtype=None)
    check_label_values(values, allowed, label_path, what)
    if read_image:
        array, _, _ = read_nifti(image_path, np.float32)
        if not np.isfinite(array).all():
            raise InputError(f"{image_path}: image contains NaN or infinite values")
