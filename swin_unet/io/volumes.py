"""Reading scans (NIfTI, other ITK formats, DICOM series) and writing label volumes in their geometry."""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Union

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from ..errors import InputError, parsing
from .atomic import atomic_write
from .dicom_series import read_series, series_cases
from .headers import (ITK_SUFFIXES, NIFTI_SUFFIXES, check_declared_size, check_nifti_geometry,
                      itk_affine,
                      itk_storage, label_dtype, list_folder, read_geometry, same_grid)
from .validity import check_finite, check_geometry, check_memory

__all__ = ["Volume", "read_volume", "find_inputs", "write_labels", "write_map",
           "write_probabilities", "with_header", "case_name", "NIFTI_SUFFIXES",
           "ITK_SUFFIXES", "check_declared_size", "label_dtype", "list_folder", "read_geometry",
           "same_grid"]
# nnU-Net names the channels of a case CASE_0000, CASE_0001, ...
_CHANNEL_NAME = re.compile(r"^(.+)_(\d{4})$")


@dataclass
class Volume:
    """A volume as read: a user's scan, a label map, or a data set's case with its label.

    Attributes
    ----------
    case : str
        Name used for outputs (file name without suffix, the DICOM folder's name, or a data
        set's contract name: Synapse ``case0001``, ACDC ``patient002_frame01``).
    array : np.ndarray
        Voxels indexed (X, Y, Z) in file order (nibabel's), or (C, X, Y, Z) for several
        channels; a 2-D image is (rows, columns, 1).
    spacing : tuple of float
        Voxel size along X, Y, Z, in :attr:`distance_unit`.
    affine : np.ndarray
        4x4 voxel-to-world (RAS+) matrix.
    path : Path
        The file or DICOM folder read (the first file when there are several).
    reference : Any
        The nibabel image or SimpleITK image the geometry comes from; None when only the
        affine is known (a data set's volume): then predictions get that affine.
    label : np.ndarray, optional
        A data set's class indices (X, Y, Z), uint8 (uint16 above 255 classes); None for a
        scan without one.
    prenormalised : str, optional
        The intensity mode :attr:`array` already has applied (TransUNet's release stores CT
        windowed to [0, 1]; a data set's volumes once normalised), so it is not applied twice.
    distance_unit : str
        ``mm``, or ``px`` for 2-D images, which carry no spacing.
    """

    case: str
    array: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    path: Path
    reference: Any = None
    label: Optional[np.ndarray] = None
    prenormalised: Optional[str] = None
    distance_unit: str = "mm"


def case_name(path: Union[str, Path]) -> str:
    """File name without its image suffix (``img0001.nii.gz`` -> ``img0001``)."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES + ITK_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _is_image_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(NIFTI_SUFFIXES + ITK_SUFFIXES)


def _visible(paths) -> list[Path]:
    """Without hidden files and folders (``.name``; macOS writes ``._name`` beside copies)."""
    return sorted(p for p in paths if not p.name.startswith("."))


def _channel_groups(files: list[Path]) -> Optional[list[tuple[str, list[Path], None]]]:
    """nnU-Net's per-channel files as cases, or None when the folder does not follow it.

    Every file must be named ``CASE_NNNN`` and every case's channels must run 0000, 0001, ...
    without a gap; otherwise each file is a case of its own.
    """
    groups: dict[str, list[tuple[int, Path]]] = {}
    for path in files:
        match = _CHANNEL_NAME.match(case_name(path))
        if match is None:
            return None
        groups.setdefault(match.group(1), []).append((int(match.group(2)), path))
    cases = []
    for case, members in sorted(groups.items()):
        members.sort()
        if [index for index, _ in members] != list(range(len(members))):
            return None
        cases.append((case, [p for _, p in members], None))
    return cases


def find_inputs(path: Union[str, Path], channels: bool = False
                ) -> list[tuple[str, Union[Path, list[Path]], Optional[str]]]:
    """The volumes under ``path``: (case name, file or folder, DICOM series id or None).

    ``path`` may be an image file, a folder of image files, a DICOM series folder, or a folder
    of DICOM series folders; a folder of several series gives one case per series (see
    :func:`~swin_unet.io.dicom_series.series_cases`). Hidden files and folders are skipped. With ``channels``, a folder
    of nnU-Net per-channel files (``CASE_0000.nii.gz``, ``CASE_0001.nii.gz``) gives one case
    ``CASE`` per group, with the list of its channel files in channel order.

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
    entries = _visible(list_folder(path))
    files = [p for p in entries if _is_image_file(p)]
    if files:
        groups = _channel_groups(files) if channels else None
        return groups or [(case_name(p), p, None) for p in files]
    found = []
    for folder in [path] + [p for p in entries if p.is_dir()]:
        found += [(name, folder, uid) for name, uid in series_cases(folder)]
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
    affine = itk_affine(spacing, image.GetDirection(), image.GetOrigin())
    return Volume(case, array, spacing, affine, path, image)


def _read_itk(path: Path, case: str) -> Volume:
    """An NRRD/MHA/MHD file, its declared size checked before the voxels are read."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    with parsing(path, "image header"):
        reader.ReadImageInformation()
        size, components = tuple(reader.GetSize()), reader.GetNumberOfComponents()
        sample = sitk.Image([1] * len(size), reader.GetPixelID())
        geometry = reader.GetSpacing(), reader.GetDirection(), reader.GetOrigin()
    itemsize = sitk.GetArrayViewFromImage(sample).dtype.itemsize * components
    available, compressed = itk_storage(path)
    check_declared_size(path, size, np.dtype(f"V{max(itemsize, 1)}"), compressed, available)
    if len(size) == 3:
        check_geometry(path, geometry[0], itk_affine(*geometry))
    check_memory(path, tuple(size) + (components,))
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
    check_nifti_geometry(path, image)
    check_memory(path, squeezed)
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


def read_volume(path: Union[str, Path, list[Path]], case: Optional[str] = None,
                series_id: Optional[str] = None, dtype: Any = np.float32) -> Volume:
    """Read a NIfTI file (nibabel), an NRRD/MHA file or a DICOM series (SimpleITK).

    Parameters
    ----------
    path : str or Path or list of Path
        The file, or the folder of a DICOM series; a list: one 3-D file per channel, read as
        one (C, X, Y, Z) volume with the first file's geometry.
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
        file holds, naming it; channel files of another grid; NaN or infinite voxels; a
        spacing that is not finite and positive, an affine that is not finite and invertible;
        a volume too large for the memory available.
    """
    if isinstance(path, (list, tuple)):
        return _read_channels([Path(p) for p in path], case, dtype)
    path = Path(path)
    case = case or case_name(path)
    if path.is_dir():
        volume = _itk_to_volume(read_series(path, series_id), case, path)
        check_geometry(path, volume.spacing, volume.affine)
    elif not path.is_file():
        what = "not a regular file" if path.exists() else "file not found"
        raise InputError(f"{path}: {what}", path=path)
    elif path.name.lower().endswith(NIFTI_SUFFIXES):
        volume = _read_nifti(path, case, dtype)
    else:
        volume = _read_itk(path, case)
    if dtype is not None:
        volume.array = np.asarray(volume.array, dtype=dtype)
    elif not (np.issubdtype(volume.array.dtype, np.number)
              or volume.array.dtype == np.bool_):
        raise InputError(f"{path}: holds {volume.array.dtype} values, not numbers", path=path)
    check_finite(volume.array, path, "image" if dtype is not None else "label")
    return volume


def _read_channels(paths: list[Path], case: Optional[str], dtype: Any) -> Volume:
    """One volume from per-channel 3-D files that share a voxel grid."""
    first = read_volume(paths[0], case, dtype=dtype)
    arrays = [first.array]
    for path in paths[1:]:
        other = read_volume(path, case, dtype=dtype)
        if other.array.shape != first.array.shape or other.array.ndim != 3:
            raise InputError(f"{path}: channel of shape {other.array.shape}; {paths[0]} has "
                             f"{first.array.shape} (each channel file holds one 3-D image)")
        if not np.allclose(other.affine, first.affine, rtol=1e-4, atol=1e-3):
            raise InputError(f"{path}: affine differs from that of the channel {paths[0]}")
        arrays.append(other.array)
    if len(arrays) > 1:
        first.array = np.stack(arrays)
    return first


def with_header(volume: Volume) -> Volume:
    """``volume`` with the geometry to write its results with: its NIfTI header if it has one.

    For a data set's volume. The header keeps qform/sform codes and units exactly; otherwise
    (TransUNet's HDF5 and other releases) the data set's affine is all there is.
    """
    path = Path(volume.path)
    shape = tuple(np.shape(volume.array)[-3:])
    reference = None
    if path.name.lower().endswith(NIFTI_SUFFIXES):
        header_only = nib.load(str(path))  # the voxels are not read
        if tuple(header_only.shape[:3]) == shape and np.allclose(
                header_only.affine, volume.affine, atol=1e-4):
            reference = header_only
    return replace(volume, reference=reference)


def write_labels(labels: np.ndarray, reference: Volume, path: Union[str, Path]) -> Path:
    """Write ``labels`` (X, Y, Z) as NIfTI with ``reference``'s exact geometry.

    Stored as uint8, or uint16 when a label exceeds 255. A NIfTI reference keeps its header
    (affine, qform and sform with their codes, units); an ITK reference (DICOM, NRRD, MHA) its
    origin, spacing and direction. The file is written to a temporary name first, then
    renamed; a failed write removes the temporary file.

    Raises
    ------
    InputError
        ``labels`` does not match the reference's spatial shape.
    """
    labels = np.asarray(labels)
    dtype = label_dtype(int(labels.max()) + 1 if labels.size else 1)
    return _write_volume(labels, reference, path, dtype, (0.0, 0.0))


def write_map(values: np.ndarray, reference: Volume, path: Union[str, Path],
              display_range: tuple[float, float] = (0.0, 0.0)) -> Path:
    """Write float32 ``values`` (X, Y, Z) as NIfTI with ``reference``'s geometry (see write_labels).

    ``display_range`` goes to the header's cal_min/cal_max, which viewers use as the initial
    window ((0, 0): none).
    """
    return _write_volume(values, reference, path, np.float32, display_range)


def _write_volume(values: np.ndarray, reference: Volume, path: Union[str, Path], dtype: Any,
                  display_range: tuple[float, float]) -> Path:
    path = Path(path)
    values = np.asarray(values)
    shape = reference.array.shape[-3:]
    if values.shape != shape:
        raise InputError(f"{path}: labels of shape {values.shape} do not match the image's "
                         f"{shape}")
    values = values.astype(dtype, copy=False)
    # The temporary name keeps the real suffix, from which both writers choose the format.
    return atomic_write(path, lambda tmp: _write_image(values, reference, tmp, dtype,
                                                       display_range))


def _write_image(values: np.ndarray, reference: Volume, tmp: Path, dtype: Any,
                 display_range: tuple[float, float]) -> None:
    source = reference.reference
    if isinstance(source, sitk.Image):
        image = sitk.GetImageFromArray(np.ascontiguousarray(values.transpose(2, 1, 0)))
        image.SetOrigin(source.GetOrigin())
        image.SetSpacing(source.GetSpacing())
        image.SetDirection(source.GetDirection())
        sitk.WriteImage(image, str(tmp), True)
    else:
        if isinstance(source, nib.Nifti1Image):
            header = source.header.copy()
            header.set_data_dtype(dtype)
            header.set_slope_inter(1.0, 0.0)  # values are stored as they are, not rescaled
            # The scan's display range would hide labels or a probability-like map.
            header["cal_min"], header["cal_max"] = display_range
            image = nib.Nifti1Image(values, source.affine, header=header)
            image.set_qform(*source.get_qform(coded=True))
            image.set_sform(*source.get_sform(coded=True))
        else:  # geometry known only as an affine (a data set's volume)
            image = nib.Nifti1Image(values, reference.affine)
            image.header.set_xyzt_units("mm")
            image.header["cal_min"], image.header["cal_max"] = display_range
        nib.save(image, str(tmp))


def write_probabilities(probabilities: np.ndarray, affine: np.ndarray,
                        path: Union[str, Path]) -> Path:
    """Write ``probabilities`` (K, X, Y, Z) and ``affine`` to a compressed ``.npz`` file.

    ``probabilities`` is stored in its dtype (float16 from test.py), written to the archive in
    chunks (no second copy in memory), deflated at level 1 (faster than numpy's
    savez_compressed for a slightly larger file; docs/performance.md). ``np.load`` reads it.
    The file appears under its name only when complete.
    """
    arrays = {"probabilities": np.asanyarray(probabilities),
              "affine": np.asarray(affine, dtype=np.float64)}

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED,
                             compresslevel=1) as archive:
            for key, array in arrays.items():
                with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, array, allow_pickle=False)

    return atomic_write(path, write)
