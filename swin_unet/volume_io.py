"""Reading scans (NIfTI, other ITK formats, DICOM series) and writing label volumes in their geometry."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from .errors import InputError, parsing

__all__ = ["Volume", "read_volume", "find_inputs", "write_labels", "case_name", "NIFTI_SUFFIXES",
           "ITK_SUFFIXES", "check_declared_size", "label_dtype", "list_folder", "read_geometry",
           "same_grid"]

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


@dataclass
class Volume:
    """A scan (or label map) read from disk, with what is needed to write results back.

    Attributes
    ----------
    case : str
        Name used for outputs (file name without suffix, or the DICOM folder's name).
    array : np.ndarray
        Voxels indexed (X, Y, Z) in file order (nibabel's), or (C, X, Y, Z) for a 4-D file.
    spacing : tuple of float
        Voxel size in mm along X, Y, Z.
    affine : np.ndarray
        4x4 voxel-to-world (RAS+) matrix.
    path : Path
        The file or DICOM folder read.
    reference : Any
        The nibabel image or SimpleITK image the geometry comes from; None when only the
        affine is known (a data set's volume): then predictions get that affine.
    """

    case: str
    array: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    path: Path
    reference: Any


def case_name(path: Union[str, Path]) -> str:
    """File name without its image suffix (``img0001.nii.gz`` -> ``img0001``)."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES + ITK_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _is_image_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(NIFTI_SUFFIXES + ITK_SUFFIXES)


def _dicom_series(folder: Path) -> list[str]:
    reader = sitk.ImageSeriesReader()
    try:
        return list(reader.GetGDCMSeriesIDs(str(folder)))
    except RuntimeError:
        return []


def find_inputs(path: Union[str, Path]) -> list[tuple[str, Path, Optional[str]]]:
    """The volumes under ``path``: (case name, file or folder, DICOM series id or None).

    ``path`` may be an image file, a folder of image files, a DICOM series folder, or a folder
    of DICOM series folders.

    Raises
    ------
    InputError
        ``path`` does not exist, or holds no image file and no DICOM series.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file():
        if not _is_image_file(path):
            raise InputError(f"{path}: not an image file (expected "
                             f"{', '.join(NIFTI_SUFFIXES + ITK_SUFFIXES)})")
        return [(case_name(path), path, None)]
    entries = list_folder(path)
    files = [p for p in entries if _is_image_file(p)]
    if files:
        return [(case_name(p), p, None) for p in files]
    found = []
    for folder in [path] + [p for p in entries if p.is_dir()]:
        series = _dicom_series(folder)
        for series_id in series:
            name = folder.name if len(series) == 1 else f"{folder.name}_{series_id[-8:]}"
            found.append((name, folder, series_id))
    if not found:
        raise InputError(f"{path}: empty input folder (no NIfTI, NRRD or MHA file and no DICOM "
                         f"series)")
    return found


def _itk_to_volume(image: sitk.Image, case: str, path: Path) -> Volume:
    """SimpleITK image -> Volume with nibabel's (X, Y, Z) axis order and RAS+ affine."""
    if image.GetDimension() != 3:
        raise InputError(f"{path}: expected a 3-D image, got {image.GetDimension()}-D", path=path)
    array = sitk.GetArrayFromImage(image)  # (Z, Y, X[, C])
    array = np.moveaxis(array, -1, 0) if image.GetNumberOfComponentsPerPixel() > 1 else array[None]
    array = np.transpose(array, (0, 3, 2, 1))
    array = array[0] if array.shape[0] == 1 else array
    spacing = tuple(float(s) for s in image.GetSpacing())
    affine = _itk_affine(spacing, image.GetDirection(), image.GetOrigin())
    return Volume(case, array, spacing, affine, path, image)


def _itk_affine(spacing, direction, origin) -> np.ndarray:
    """ITK's spacing, direction and origin (LPS) as a voxel-to-RAS affine."""
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(direction, dtype=np.float64).reshape(3, 3) * np.asarray(spacing)
    affine[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine  # ITK's LPS world -> RAS


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
        return shape[:3], affine.astype(np.float64)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    with parsing(path, "image header"):
        reader.ReadImageInformation()
        size = tuple(int(v) for v in reader.GetSize())
        geometry = reader.GetSpacing(), reader.GetDirection(), reader.GetOrigin()
    if len(size) != 3:
        raise InputError(f"{path}: expected a 3-D image, got {len(size)}-D", path=path)
    return size, _itk_affine(*geometry)


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
        worst = float(np.max(np.abs(affine - ref_affine)))
        raise InputError(f"{path}: geometry differs from its label {reference} (affines differ "
                         f"by up to {worst:.4g} mm); pass --ignore-geometry to score voxel by "
                         f"voxel anyway", path=path)
    return False


def _itk_storage(path: Path) -> tuple[int, bool]:
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


def _read_itk(path: Path, case: str) -> Volume:
    """An NRRD/MHA/MHD file, its declared size checked before the voxels are read."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    with parsing(path, "image header"):
        reader.ReadImageInformation()
        size, components = tuple(reader.GetSize()), reader.GetNumberOfComponents()
        sample = sitk.Image([1] * len(size), reader.GetPixelID())
    itemsize = sitk.GetArrayViewFromImage(sample).dtype.itemsize * components
    available, compressed = _itk_storage(path)
    check_declared_size(path, size, np.dtype(f"V{max(itemsize, 1)}"), compressed, available)
    with parsing(path, "or truncated image"):
        image = reader.Execute()
    return _itk_to_volume(image, case, path)


def _read_nifti(path: Path, case: str, dtype: Any) -> Volume:
    """A NIfTI file in its own voxel order, its declared size checked before reading."""
    with parsing(path, "NIfTI header"):
        image = nib.load(str(path))
        shape, data_dtype = tuple(image.shape), np.dtype(image.get_data_dtype())
        offset = int(getattr(image.dataobj, "offset", 0))
    compressed = path.name.lower().endswith(".gz")
    check_declared_size(path, shape, data_dtype, compressed,
                        None if compressed else path.stat().st_size - offset)
    squeezed = shape
    while len(squeezed) > 3 and squeezed[-1] == 1:  # (X, Y, Z, 1) from some tools: same grid
        squeezed = squeezed[:-1]
    if len(squeezed) not in (3, 4) or min(squeezed) < 1:
        raise InputError(f"{path}: expected a 3-D or 4-D image, got shape {shape}", path=path)
    with parsing(path, "or truncated NIfTI file"):
        if dtype is None:
            array = np.asanyarray(image.dataobj)
        else:
            array = image.get_fdata(dtype=np.float32 if dtype == np.float32 else np.float64)
        spacing = tuple(float(s) for s in image.header.get_zooms()[:3])
        affine = image.affine.copy()
    array = array.reshape(squeezed)
    if array.ndim == 4:  # (X, Y, Z, C) -> (C, X, Y, Z)
        array = np.moveaxis(array, -1, 0)
    return Volume(case, array, spacing, affine, path, image)


def read_volume(path: Union[str, Path], case: Optional[str] = None,
                series_id: Optional[str] = None, dtype: Any = np.float32) -> Volume:
    """Read a NIfTI file (nibabel), an NRRD/MHA file or a DICOM series (SimpleITK).

    Parameters
    ----------
    path : str or Path
        The file, or the folder of a DICOM series.
    case : str, optional
        The case name; default from the file or folder name.
    series_id : str, optional
        Which DICOM series of the folder; default the first.
    dtype : numpy dtype or None
        dtype of ``array``; None keeps the stored type (used for label maps).

    Raises
    ------
    InputError
        A file that cannot be read as an image, or whose header declares more data than the
        file holds, naming it.
    """
    path = Path(path)
    case = case or case_name(path)
    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        series_id = series_id or (_dicom_series(path) or [None])[0]
        if series_id is None:
            raise InputError(f"{path}: no DICOM series in the folder", path=path)
        with parsing(path, "DICOM series"):
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path), series_id))
            image = reader.Execute()
        volume = _itk_to_volume(image, case, path)
    elif not path.is_file():
        raise InputError(f"{path}: file not found", path=path)
    elif path.name.lower().endswith(NIFTI_SUFFIXES):
        volume = _read_nifti(path, case, dtype)
    else:
        volume = _read_itk(path, case)
    if dtype is not None:
        volume.array = np.asarray(volume.array, dtype=dtype)
    elif not (np.issubdtype(volume.array.dtype, np.number)
              or volume.array.dtype == np.bool_):
        raise InputError(f"{path}: holds {volume.array.dtype} values, not numbers", path=path)
    return volume


def write_labels(labels: np.ndarray, reference: Volume, path: Union[str, Path]) -> Path:
    """Write ``labels`` (X, Y, Z) as NIfTI with ``reference``'s exact geometry.

    Stored as uint8, or uint16 when a label exceeds 255. A NIfTI reference keeps its header
    (affine, qform and sform with their codes, units); an ITK reference (DICOM, NRRD, MHA) its
    origin, spacing and direction. The file is written to a temporary name first, then renamed;
    a failed write removes the temporary file.

    Raises
    ------
    InputError
        ``labels`` does not match the reference's spatial shape.
    """
    path = Path(path)
    labels = np.asarray(labels)
    shape = reference.array.shape[-3:]
    if labels.shape != shape:
        raise InputError(f"{path}: labels of shape {labels.shape} do not match the image's "
                         f"{shape}", path=path)
    dtype = label_dtype(int(labels.max()) + 1 if labels.size else 1)
    labels = labels.astype(dtype, copy=False)
    # The temporary name keeps the real suffix, from which both writers choose the format.
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        _write_nifti_like(labels, reference, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _write_nifti_like(labels: np.ndarray, reference: Volume, path: Path) -> None:
    source = reference.reference
    if isinstance(source, sitk.Image):
        image = sitk.GetImageFromArray(np.ascontiguousarray(labels.transpose(2, 1, 0)))
        image.SetOrigin(source.GetOrigin())
        image.SetSpacing(source.GetSpacing())
        image.SetDirection(source.GetDirection())
        sitk.WriteImage(image, str(path), True)
        return
    if isinstance(source, nib.Nifti1Image):
        header = source.header.copy()
        header.set_data_dtype(labels.dtype)
        header.set_slope_inter(1.0, 0.0)  # labels are stored as they are, not rescaled
        header["cal_min"] = header["cal_max"] = 0.0  # the scan's display range hides labels
        image = nib.Nifti1Image(labels, source.affine, header=header)
        image.set_qform(*source.get_qform(coded=True))
        image.set_sform(*source.get_sform(coded=True))
    else:  # geometry known only as an affine (a data set's volume)
        image = nib.Nifti1Image(labels, reference.affine)
        image.header.set_xyzt_units("mm")
    nib.save(image, str(path))
