"""Reading NIfTI, HDF5 and npz files, and cheap checks that a file is whole and consistent."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Optional, Sequence

import h5py
import nibabel as nib
import numpy as np

from swin_unet.errors import InputError, parsing
from swin_unet.io.headers import affine_difference, check_declared_size, check_nifti_geometry
from swin_unet.io.validity import check_finite, check_memory

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


def _missing(path: Path) -> InputError:
    return InputError(f"{path}: file not found", path=path)


def _check_numeric(path: Path, key: str, dtype: np.dtype) -> None:
    if not (np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.bool_)):
        raise InputError(f"{path}: '{key}' holds {dtype} values, not numbers", path=path)


class NiftiHeader:
    """What the integrity check needs from a NIfTI header, read without the voxel data."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise _missing(self.path)
        with parsing(self.path, "NIfTI header"):
            image = nib.load(str(self.path))
            shape = tuple(int(v) for v in image.shape)
            affine = np.asarray(image.affine, dtype=np.float64)
            zooms = image.header.get_zooms()
            dtype = np.dtype(image.get_data_dtype())
            offset = int(getattr(image.dataobj, "offset", 0))
        self.shape = _squeeze_trailing(shape)
        self.affine = affine
        self.spacing = tuple(float(v) for v in (tuple(zooms[:3]) + (1.0, 1.0, 1.0))[:3])
        self.dtype = dtype
        self.offset = offset
        self.compressed = self.path.name.lower().endswith(".gz")
        if not self.shape or min(self.shape) < 1:
            raise InputError(f"{self.path}: empty image (shape {self.shape})", path=self.path)
        check_nifti_geometry(self.path, image)
        _check_numeric(self.path, "voxel data", self.dtype)


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
    expected = header.offset + int(np.prod(header.shape, dtype=object)) * header.dtype.itemsize
    size = path.stat().st_size
    if header.compressed:
        if size < 18:
            raise InputError(f"{path}: truncated or empty gzip file ({size} bytes)", path=path)
        with open(path, "rb") as handle:
            handle.seek(-4, os.SEEK_END)
            recorded = struct.unpack("<I", handle.read(4))[0]
        if recorded == expected % 2 ** 32:
            return
        read_nifti(path)  # raises InputError when the data really is incomplete
        return
    if size < expected:
        raise InputError(f"{path}: truncated file ({size} bytes, the header needs {expected})",
                         path=path)


def read_nifti(path: Path, dtype=np.float32) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Voxels in the file's own order, the affine and the spacing (mm) of a NIfTI file.

    No reorientation: a prediction of the same shape saved with this affine overlays the image.

    Raises
    ------
    InputError
        Missing, unreadable or truncated file; the message names the file.
    """
    path = Path(path)
    header = NiftiHeader(path)  # reads the header only: the sizes are checked before reading
    check_memory(path, header.shape)
    if header.compressed:
        check_declared_size(path, header.shape, header.dtype, compressed=True)
    else:
        check_nifti_complete(header)
    from monai.transforms import LoadImage  # seconds to import: only when reading

    with parsing(path, "or truncated NIfTI file"):
        array, meta = LoadImage(reader="NibabelReader", image_only=False, dtype=dtype)(str(path))
    array = np.asarray(array)
    array = array.reshape(_squeeze_trailing(array.shape))
    if dtype is not None:
        check_finite(array, path)
    affine = np.asarray(meta.get("original_affine", meta["affine"]), dtype=np.float64)
    pixdim = np.asarray(meta.get("pixdim", [1.0, 1.0, 1.0, 1.0]), dtype=np.float64)
    spacing = tuple(float(v) for v in (list(pixdim[1:4]) + [1.0, 1.0, 1.0])[:3])
    return array, affine, spacing


def _open_h5(path: Path) -> h5py.File:
    if not path.is_file():
        raise _missing(path)
    with parsing(path, "or truncated HDF5 file"):
        return h5py.File(path, "r")


def _h5_datasets(handle: h5py.File, path: Path, keys: Sequence[str]) -> dict:
    """The datasets ``keys`` of an open file, their shapes and types checked against the file."""
    with parsing(path, "or truncated HDF5 file"):
        found = {k: handle.get(k) for k in keys}
        names = list(handle)
    datasets = {}
    for key, item in found.items():
        if item is None:
            raise InputError(f"{path}: no '{key}' dataset (found: {', '.join(names)})",
                             path=path)
        if not isinstance(item, h5py.Dataset):
            raise InputError(f"{path}: '{key}' is a {type(item).__name__}, not a dataset",
                             path=path)
        with parsing(path, "or truncated HDF5 file"):
            shape, dtype, chunked = tuple(item.shape or ()), item.dtype, item.chunks is not None
        _check_numeric(path, key, dtype)
        # Chunked storage may be compressed (or hold unwritten chunks): the deflate bound.
        check_declared_size(path, shape, dtype, compressed=chunked, what=f"'{key}'")
        check_memory(path, shape)
        datasets[key] = item
    return datasets


def h5_shapes(path: Path, keys: Sequence[str] = ("image", "label")) -> dict[str, tuple]:
    """Shapes of the datasets ``keys`` of an HDF5 file, without reading them."""
    path = Path(path)
    with _open_h5(path) as handle:
        return {k: tuple(d.shape) for k, d in _h5_datasets(handle, path, keys).items()}


def read_h5(path: Path, keys: Sequence[str] = ("image", "label")) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of an HDF5 file.

    Raises
    ------
    InputError
        Missing, unreadable or truncated file, a missing key, a group or text where an array
        should be, or a declared shape the file cannot hold; the message names the file.
    """
    path = Path(path)
    with _open_h5(path) as handle:
        out = {}
        for key, dataset in _h5_datasets(handle, path, keys).items():
            with parsing(path, f"or truncated HDF5 dataset '{key}'"):
                out[key] = np.asarray(dataset[()])
            check_finite(out[key], path, f"'{key}'")
        return out


def _open_npz(path: Path):
    if not path.is_file():
        raise _missing(path)
    with parsing(path, "or truncated npz file"):
        archive = np.load(path, allow_pickle=False)
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise InputError(f"{path}: not an npz archive (a single .npy array)", path=path)
    return archive


def _npz_member(archive, path: Path, key: str) -> tuple[str, tuple, np.dtype]:
    """Zip member name, shape and dtype of array ``key``, from its .npy header alone.

    Raises
    ------
    InputError
        No such array, an unreadable header, a non-numeric type, or a shape the member's
        stored size cannot hold.
    """
    if key not in archive.files:
        raise InputError(f"{path}: no '{key}' array (found: {', '.join(archive.files)})",
                         path=path)
    names = archive.zip.namelist()
    member = f"{key}.npy" if f"{key}.npy" in names else key
    with parsing(path, f"'{key}' array"):
        info = archive.zip.getinfo(member)
        with archive.zip.open(member) as stream:
            version = np.lib.format.read_magic(stream)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(stream)
            header_bytes = stream.tell()
    _check_numeric(path, key, dtype)
    check_declared_size(path, shape, dtype, compressed=False,
                        available=info.file_size - header_bytes, what=f"'{key}'")
    check_memory(path, shape)
    return member, tuple(int(v) for v in shape), dtype


def npz_shapes(path: Path, keys: Sequence[str]) -> dict[str, tuple]:
    """Shapes of the arrays ``keys`` in an npz file, from the .npy headers only."""
    path = Path(path)
    with _open_npz(path) as archive:
        return {key: _npz_member(archive, path, key)[1] for key in keys}


def read_npz(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of an npz file.

    Raises
    ------
    InputError
        Missing, unreadable or truncated file, a missing key, a non-numeric array, or a
        declared shape the archive cannot hold; the message names the file.
    """
    path = Path(path)
    with _open_npz(path) as archive:
        out = {}
        for key in keys:
            member, _, _ = _npz_member(archive, path, key)
            with parsing(path, f"or truncated '{key}' array"):
                with archive.zip.open(member) as stream:
                    out[key] = np.lib.format.read_array(stream, allow_pickle=False)
            check_finite(out[key], path, f"'{key}'")
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
        if not np.isfinite(label).all():
            raise InputError(f"{path}: label contains NaN or infinite values", path=path)
        if not np.array_equal(label, np.round(label)):
            bad = label[label != np.round(label)].flat[0]
            raise InputError(f"{path}: label value {bad:g} is not an integer", path=path)
    elif not (np.issubdtype(label.dtype, np.integer) or label.dtype == np.bool_):
        raise InputError(f"{path}: label holds {label.dtype} values, not integers", path=path)
    if label.size == 0:
        raise InputError(f"{path}: label volume is empty (shape {label.shape})", path=path)
    allowed = sorted(int(v) for v in allowed)
    # min/max first: one cheap pass settles contiguous label maps (the usual case).
    low, high = label.min(), label.max()
    bad = high if high > allowed[-1] else low if low < allowed[0] else None
    if bad is None and allowed != list(range(allowed[0], allowed[-1] + 1)):
        outside = np.setdiff1d(np.unique(label), np.asarray(allowed))
        bad = outside[0] if outside.size else None
    if bad is not None:
        raise InputError(f"{path}: label value {bad:g} is outside the {what} "
                         f"(allowed: {_ranges(allowed)})", path=path)


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
        difference = affine_difference(label.affine, image.affine, ("the label", "the image"))
        raise InputError(f"{label.path}: label affine differs from that of {image.path} "
                         f"({difference})", path=label.path)


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
