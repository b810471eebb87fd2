"""Reading scans (NIfTI, other ITK formats, DICOM series) and writing label volumes in their geometry."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from .errors import InputError

__all__ = ["Volume", "read_volume", "find_inputs", "write_labels", "case_name", "NIFTI_SUFFIXES",
           "ITK_SUFFIXES"]

NIFTI_SUFFIXES = (".nii.gz", ".nii")
ITK_SUFFIXES = (".nrrd", ".mha", ".mhd")


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
    files = sorted(p for p in path.iterdir() if _is_image_file(p))
    if files:
        return [(case_name(p), p, None) for p in files]
    found = []
    for folder in [path] + sorted(p for p in path.iterdir() if p.is_dir()):
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
        raise InputError(f"{path}: expected a 3-D image, got {image.GetDimension()}-D")
    array = sitk.GetArrayFromImage(image)  # (Z, Y, X[, C])
    array = np.moveaxis(array, -1, 0) if image.GetNumberOfComponentsPerPixel() > 1 else array[None]
    array = np.transpose(array, (0, 3, 2, 1))
    array = array[0] if array.shape[0] == 1 else array
    spacing = tuple(float(s) for s in image.GetSpacing())
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction * np.asarray(spacing)
    affine[:3, 3] = image.GetOrigin()
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine  # ITK's LPS world -> RAS
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
        A file that cannot be read as an image, naming it.
    """
    path = Path(path)
    case = case or case_name(path)
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            series_id = series_id or (_dicom_series(path) or [None])[0]
            if series_id is None:
                raise InputError(f"{path}: no DICOM series in the folder")
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path), series_id))
            volume = _itk_to_volume(reader.Execute(), case, path)
        elif path.name.lower().endswith(NIFTI_SUFFIXES):
            image = nib.load(str(path))
            shape = tuple(image.shape)
            while len(shape) > 3 and shape[-1] == 1:  # (X, Y, Z, 1) from some tools: same grid
                shape = shape[:-1]
            if len(shape) not in (3, 4):
                raise InputError(f"{path}: expected a 3-D or 4-D image, got shape {image.shape}")
            if dtype is None:
                array = np.asanyarray(image.dataobj)
            else:
                array = image.get_fdata(dtype=np.float32 if dtype == np.float32 else np.float64)
            array = array.reshape(shape)
            if array.ndim == 4:  # (X, Y, Z, C) -> (C, X, Y, Z)
                array = np.moveaxis(array, -1, 0)
            spacing = tuple(float(s) for s in image.header.get_zooms()[:3])
            volume = Volume(case, array, spacing, image.affine.copy(), path, image)
        else:
            volume = _itk_to_volume(sitk.ReadImage(str(path)), case, path)
    except InputError:
        raise
    except Exception as exc:  # nibabel, gzip and ITK raise many types for a corrupt file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: cannot read the volume ({reason[:160]})") from None
    if dtype is not None:
        volume.array = np.asarray(volume.array, dtype=dtype)
    return volume


def write_labels(labels: np.ndarray, reference: Volume, path: Union[str, Path]) -> Path:
    """Write uint8 ``labels`` (X, Y, Z) as NIfTI with ``reference``'s exact geometry.

    A NIfTI reference keeps its header (affine, qform and sform with their codes, units); an
    ITK reference (DICOM, NRRD, MHA) its origin, spacing and direction. The file is written to
    a temporary name first, then renamed.

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
                         f"{shape}")
    labels = labels.astype(np.uint8, copy=False)
    # The temporary name keeps the real suffix, from which both writers choose the format.
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    source = reference.reference
    if isinstance(source, sitk.Image):
        image = sitk.GetImageFromArray(np.ascontiguousarray(labels.transpose(2, 1, 0)))
        image.SetOrigin(source.GetOrigin())
        image.SetSpacing(source.GetSpacing())
        image.SetDirection(source.GetDirection())
        sitk.WriteImage(image, str(tmp), True)
    else:
        if isinstance(source, nib.Nifti1Image):
            header = source.header.copy()
            header.set_data_dtype(np.uint8)
            header.set_slope_inter(1.0, 0.0)  # labels are stored as they are, not rescaled
            header["cal_min"] = header["cal_max"] = 0.0  # the scan's display range hides labels
            image = nib.Nifti1Image(labels, source.affine, header=header)
            image.set_qform(*source.get_qform(coded=True))
            image.set_sform(*source.get_sform(coded=True))
        else:  # geometry known only as an affine (a data set's volume)
            image = nib.Nifti1Image(labels, reference.affine)
            image.header.set_xyzt_units("mm")
        nib.save(image, str(tmp))
    os.replace(tmp, path)
    return path
