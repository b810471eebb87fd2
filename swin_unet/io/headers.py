"""Image headers read without their voxels: grids, and declared sizes checked against files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Union

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from ..errors import InputError, parsing
from .validity import check_geometry

__all__ = ["NIFTI_SUFFIXES", "ITK_SUFFIXES", "DEFLATE_MAX_RATIO", "label_dtype",
           "check_declared_size", "list_folder", "itk_affine", "itk_storage", "read_geometry",
           "same_grid", "affine_difference", "check_nifti_geometry"]

NIFTI_SUFFIXES = (".nii.gz", ".nii")
ITK_SUFFIXES = (".nrrd", ".mha", ".mhd")
# Deflate (gzip, zip, HDF5's and ITK's zlib) cannot compress better than about 1032:1, so a
# compressed file of n bytes never holds more than this many times n bytes of data.
DEFLATE_MAX_RATIO = 1032


def label_dtype(num_classes: int) -> np.dtype:
    """The unsigned type of a label map with classes 0..num_classes-1: uint8, or uint16 above 256."""
    if num_classes > 65536:
        raise InputError(f"{num_classes} classes: label maps hold at most 65536 (uint16)")
    return np.dtype(np.uint8 if num_classes <= 256 else np.uint16)


def check_declared_size(path: Union[str, Path], shape, dtype, compressed: bool,
                        available: Optional[int] = None, what: str = "the header") -> None:
    """Refuse a header whose declared array the file cannot hold, before anything is allocated.

    A damaged header can declare terabytes; reading it would exhaust memory rather than fail.
    ``available`` is the number of data bytes the file holds (default: the file's size); a
    compressed file may hold up to :data:`DEFLATE_MAX_RATIO` times that.

    Raises
    ------
    InputError
        A negative dimension, or more declared bytes than the file can hold; names the file.
    """
    path = Path(path)
    shape = tuple(int(v) for v in shape)
    if any(v < 0 for v in shape):
        raise InputError(f"{path}: {what} declares a negative size {shape}", path=path)
    declared = int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize
    available = path.stat().st_size if available is None else int(available)
    limit = available * DEFLATE_MAX_RATIO if compressed else available
    if declared > limit:
        raise InputError(f"{path}: {what} declares shape {shape} of {np.dtype(dtype)} "
                         f"({declared} bytes), more than the file's {available} bytes can hold "
                         f"(a damaged or truncated file)", path=path)


def list_folder(folder: Path) -> list[Path]:
    """The entries of ``folder``, sorted; InputError naming it when it cannot be listed."""
    try:
        return sorted(folder.iterdir())
    except OSError as exc:
        raise InputError(f"{folder}: cannot list the folder ({exc.strerror or exc})",
                         path=folder) from None


def itk_affine(spacing, direction, origin) -> np.ndarray:
    """ITK's spacing, direction and origin (LPS) as a voxel-to-RAS affine."""
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(direction, dtype=np.float64).reshape(3, 3) * np.asarray(spacing)
    affine[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine  # ITK's LPS world -> RAS


def check_nifti_geometry(path: Union[str, Path], image) -> None:
    """A NIfTI file's spacing as stored (nibabel turns a stored 0 into 1 as it loads) and its
    affine, checked by :func:`~swin_unet.io.validity.check_geometry`.

    Raises
    ------
    InputError
        A stored spacing that is not finite and positive, an affine that is not finite and
        invertible; names the file.
    """
    from nibabel.openers import ImageOpener

    dims = min(len(image.shape), 3)
    with parsing(path, "NIfTI header"):
        with ImageOpener(str(path)) as handle:
            stored = type(image.header).from_fileobj(handle, check=False)
        spacing = [float(v) for v in stored["pixdim"][1:1 + dims]]
        affine = np.asarray(image.affine, dtype=np.float64)
    check_geometry(path, spacing, affine)


def read_geometry(path: Union[str, Path]) -> tuple[tuple[int, ...], np.ndarray]:
    """Spatial shape (X, Y, Z) and affine of a NIfTI/NRRD/MHA file, from its header only.

    Raises
    ------
    InputError
        The header cannot be read; names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found", path=path)
    if path.name.lower().endswith(NIFTI_SUFFIXES):
        with parsing(path, "NIfTI header"):
            image = nib.load(str(path))
            shape, affine = tuple(int(v) for v in image.shape), np.asarray(image.affine)
        check_nifti_geometry(path, image)
        return shape[:3], affine.astype(np.float64)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    with parsing(path, "image header"):
        reader.ReadImageInformation()
        size = tuple(int(v) for v in reader.GetSize())
        geometry = reader.GetSpacing(), reader.GetDirection(), reader.GetOrigin()
    if len(size) != 3:
        raise InputError(f"{path}: expected a 3-D image, got {len(size)}-D", path=path)
    check_geometry(path, geometry[0], itk_affine(*geometry))
    return size, itk_affine(*geometry)


def same_grid(path: Union[str, Path], reference: Union[str, Path], ignore_affine: bool) -> bool:
    """Whether ``path`` (a prediction) has the voxel grid of ``reference`` (its label).

    Compared from the headers: the shapes must match; affines that differ beyond float rounding
    between writers (1e-3 mm, 1e-4 relative, as the data sets' integrity check) are an error
    unless ``ignore_affine``, which returns False for them instead.

    Raises
    ------
    InputError
        The shapes differ, or (without ``ignore_affine``) the affines; names both files.
    """
    shape, affine = read_geometry(path)
    ref_shape, ref_affine = read_geometry(reference)
    if shape != ref_shape:
        raise InputError(f"{path}: shape {shape} does not match the label {reference} of "
                         f"shape {ref_shape}", path=path)
    if np.allclose(affine, ref_affine, rtol=1e-4, atol=1e-3):
        return True
    if not ignore_affine:
        difference = affine_difference(affine, ref_affine, ("the prediction", "the label"))
        raise InputError(f"{path}: geometry differs from its label {reference} ({difference}); "
                         f"pass --ignore-geometry to score voxel by voxel anyway", path=path)
    return False


def _rounded(values) -> tuple:
    return tuple(round(float(v), 4) for v in values)


def affine_difference(affine: np.ndarray, reference: np.ndarray,
                      names: tuple[str, str] = ("this file", "the reference")) -> str:
    """What differs between two voxel-to-world affines, in words, with both values: the
    spacings, else the axis directions, else the origins (mm). ``names`` name ``affine`` and
    ``reference`` in the text."""
    affine, reference = np.asarray(affine, np.float64), np.asarray(reference, np.float64)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    ref_spacing = np.linalg.norm(reference[:3, :3], axis=0)
    if not np.allclose(spacing, ref_spacing, rtol=1e-4, atol=1e-5):
        return (f"spacing {_rounded(spacing)} mm in {names[0]}, {_rounded(ref_spacing)} mm in "
                f"{names[1]}")
    if not np.allclose(affine[:3, :3], reference[:3, :3], rtol=1e-4, atol=1e-3):
        return f"the same spacing {_rounded(spacing)} mm, other axis directions"
    return (f"the same spacing and directions, origin {_rounded(affine[:3, 3])} mm in "
            f"{names[0]}, {_rounded(reference[:3, 3])} mm in {names[1]}")


def itk_storage(path: Path) -> tuple[int, bool]:
    """Bytes that can hold an NRRD/MHA/MHD file's voxels and whether they may be compressed.

    Read from the text header: a detached data file (``ElementDataFile``, ``data file``) adds
    its size; ``CompressedData = True`` or a gzip/bzip2 ``encoding`` allows compression.
    """
    with open(path, "rb") as handle:
        head = handle.read(1 << 16).decode("latin-1")
    available = path.stat().st_size
    detached = re.search(r"^(?:ElementDataFile\s*=|data ?file:)\s*(\S+)", head, re.M | re.I)
    if detached and detached.group(1).upper() not in ("LOCAL", "LIST"):
        data_file = path.parent / detached.group(1)
        if data_file.is_file():
            available += data_file.stat().st_size
    compressed = bool(re.search(r"^(CompressedData\s*=\s*True|encoding:\s*(gz|gzip|bz2|bzip2))",
                                head, re.M | re.I))
    return available, compressed
