"""DICOM series: finding them in a folder, checking their slices, reading their voxels (pydicom)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np
import SimpleITK as sitk

from ..errors import InputError, parsing
from .validity import check_memory

__all__ = ["Series", "list_series", "series_cases", "find_series", "read_series",
           "series_headers", "slice_geometry"]

# Instances that are not slices of an image series (segmentations, structure sets, reports,
# presentation states, key objects, plans, doses, raw data).
_NOT_SLICES = {"SEG", "RTSTRUCT", "SR", "PR", "KO", "RTPLAN", "RTDOSE", "RTRECORD", "REG",
               "RAW", "DOC"}
# A slice gap off the series' usual one by more than this fraction is refused.
SPACING_TOLERANCE = 0.01
# What to install for pydicom to decode a compressed transfer syntax.
_DECODER_PACKAGES = {
    **dict.fromkeys(("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
                     "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"),
                    "pylibjpeg pylibjpeg-openjpeg"),
    **dict.fromkeys(("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"), "pyjpegls"),
    **dict.fromkeys(("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
                     "1.2.840.10008.1.2.4.70"), "pylibjpeg pylibjpeg-libjpeg"),
}


@dataclass
class Series:
    """One image series of a folder: its instances' headers, in slice order once checked.

    Attributes
    ----------
    uid : str
        Series Instance UID.
    number : int or None
        Series Number.
    description : str
        Series Description ('' when absent).
    files : list of Path
        One file per slice, sorted along the slice normal (as SimpleITK/GDCM sort them).
    headers : list of pydicom.Dataset
        Their headers (no pixel data), in the same order.
    """

    uid: str
    number: Optional[int]
    description: str
    folder: Path
    files: list[Path] = field(default_factory=list)
    headers: list = field(default_factory=list)

    def label(self) -> str:
        """How messages name the series: number, description and folder."""
        text = f"series {self.number if self.number is not None else self.uid}"
        return text + (f" '{self.description}'" if self.description else "") + f" in {self.folder}"


def _read_header(path: Path):
    """The header of ``path``, or None when it is not a DICOM file (no 'DICM' preamble)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with open(path, "rb") as handle:
            if handle.read(132)[128:132] != b"DICM":
                return None
        with parsing(path, "DICOM file"):
            dataset = pydicom.dcmread(path, stop_before_pixels=True)
            for _ in dataset:  # elements parse lazily: fail here, naming the file
                pass
            return dataset
    except (InvalidDicomError, OSError):
        return None


def list_series(folder: Union[str, Path]) -> list[Series]:
    """The image series of the files directly in ``folder`` (hidden files skipped), by UID.

    Segmentations, structure sets, reports and other non-image instances are left out, so a
    SEG written beside its series does not count as one.

    Raises
    ------
    InputError
        A file with a DICOM preamble whose header cannot be parsed, naming it.
    """
    folder = Path(folder)
    found: dict[str, Series] = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        header = _read_header(path)
        if header is None or str(header.get("Modality", "")).upper() in _NOT_SLICES:
            continue
        if "PixelData" not in header and "Rows" not in header:
            continue
        uid = str(header.get("SeriesInstanceUID", "")) or "unknown"
        number = header.get("SeriesNumber")
        try:
            number = int(number) if number not in (None, "") else None
        except (TypeError, ValueError):
            number = None
        series = found.setdefault(uid, Series(uid, number,
                                              str(header.get("SeriesDescription", "")).strip(),
                                              folder))
        series.files.append(path)
        series.headers.append(header)
    return list(found.values())


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_.")


def series_cases(folder: Union[str, Path]) -> list[tuple[str, str]]:
    """(case name, Series Instance UID) of each series in ``folder``.

    A folder of one series is named after the folder; of several, each case is
    ``<folder>_<series number>_<series description>`` (unique: the UID's end added on a tie).
    """
    folder = Path(folder)
    series = list_series(folder)
    if len(series) == 1:
        return [(folder.name, series[0].uid)]
    names = [_safe("_".join(str(part) for part in (folder.name, s.number, s.description)
                            if part not in (None, ""))) for s in series]
    return [(name if names.count(name) == 1 else f"{name}_{s.uid[-8:]}", s.uid)
            for name, s in zip(names, series)]


def find_series(folder: Union[str, Path], uid: Optional[str] = None) -> Series:
    """The series ``uid`` of ``folder`` (default its first), its slices sorted and checked.

    Raises
    ------
    InputError
        No such series; multi-frame (enhanced) images; slices of different orientations or
        sizes; two slices at one position, a missing slice or a gap off the usual spacing by
        more than 1 %: one line naming the series and the two slices.
    """
    folder = Path(folder)
    series = list_series(folder)
    chosen = next((s for s in series if uid is None or s.uid == uid), None)
    if chosen is None:
        raise InputError(f"{folder}: no DICOM series" + (f" {uid}" if uid else "") +
                         " in the folder", path=folder)
    _sort_and_check(chosen)
    return chosen


def _vector(header, keyword: str, size: int, path: Path) -> np.ndarray:
    value = header.get(keyword)
    try:
        vector = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        vector = np.zeros(0)
    if vector.shape != (size,) or not np.isfinite(vector).all():
        raise InputError(f"{path}: no valid {keyword} ({value!r})", path=path)
    return vector


def _sort_and_check(series: Series) -> None:
    first, path = series.headers[0], series.files[0]
    frames = int(first.get("NumberOfFrames", 1) or 1)
    if frames > 1 or "PerFrameFunctionalGroupsSequence" in first:
        name = getattr(first.get("SOPClassUID"), "name", first.get("SOPClassUID"))
        raise InputError(f"{path}: multi-frame image ({name}, {frames} frames) in "
                         f"{series.label()}: not read; export the series as single-frame "
                         f"slices (one file per slice)", path=path)
    orientations = [_vector(h, "ImageOrientationPatient", 6, p)
                    for h, p in zip(series.headers, series.files)]
    for header, file, orientation in zip(series.headers, series.files, orientations):
        if not np.allclose(orientation, orientations[0], atol=1e-4):
            raise InputError(f"{file}: slice orientation differs from {path.name}'s in "
                             f"{series.label()} (a localizer or a second stack?)", path=file)
        if (header.get("Rows"), header.get("Columns")) != (first.get("Rows"),
                                                            first.get("Columns")):
            raise InputError(f"{file}: {header.get('Rows')}x{header.get('Columns')} pixels, "
                             f"{path.name} {first.get('Rows')}x{first.get('Columns')} in "
                             f"{series.label()}", path=file)
    normal = np.cross(orientations[0][:3], orientations[0][3:])
    heights = np.array([_vector(h, "ImagePositionPatient", 3, p) @ normal
                        for h, p in zip(series.headers, series.files)])
    order = np.argsort(heights, kind="stable")
    series.files = [series.files[i] for i in order]
    series.headers = [series.headers[i] for i in order]
    _check_gaps(series, np.diff(heights[order]))


def _check_gaps(series: Series, gaps: np.ndarray) -> None:
    if not gaps.size:
        return
    usual = float(np.median(gaps))
    for k, gap in enumerate(gaps):
        pair = f"{series.files[k].name} and {series.files[k + 1].name}"
        if gap < 1e-3 * max(usual, 1e-3):
            raise InputError(f"{series.folder}: {series.label()}: two slices at one position "
                             f"({pair})", path=series.folder)
        if abs(gap - usual) > SPACING_TOLERANCE * usual:
            what = ("a missing slice" if round(gap / usual) >= 2
                    and abs(gap / usual - round(gap / usual)) < 0.1 else "uneven spacing")
            raise InputError(f"{series.folder}: {series.label()}: {what} between {pair} "
                             f"({gap:.3g} mm apart, the others {usual:.3g} mm)",
                             path=series.folder)


def slice_geometry(series: Series) -> tuple[tuple, tuple, tuple]:
    """SimpleITK's (origin, spacing, direction) of a checked series, LPS, in slice order."""
    first = series.headers[0]
    orientation = _vector(first, "ImageOrientationPatient", 6, series.files[0])
    row, column = orientation[:3], orientation[3:]
    normal = np.cross(row, column)
    pixel = _vector(first, "PixelSpacing", 2, series.files[0])
    origin = _vector(first, "ImagePositionPatient", 3, series.files[0])
    if len(series.headers) > 1:
        last = _vector(series.headers[-1], "ImagePositionPatient", 3, series.files[-1])
        step = float((last - origin) @ normal) / (len(series.headers) - 1)
    else:
        step = float(first.get("SpacingBetweenSlices") or first.get("SliceThickness") or 1.0)
    direction = np.stack([row, column, normal], axis=1)  # columns: i, j, k axes
    return (tuple(origin), (float(pixel[1]), float(pixel[0]), step),
            tuple(direction.reshape(-1)))


def _check_decoder(path: Path, syntax) -> None:
    from pydicom.pixels import get_decoder

    if not syntax.is_compressed:
        return
    try:
        decoder = get_decoder(syntax)
        available = decoder.is_available
    except NotImplementedError:
        available = False
    if not available:
        package = _DECODER_PACKAGES.get(str(syntax), "a pydicom pixel-data plugin")
        raise InputError(f"{path}: pixel data in {syntax.name} ({syntax}) cannot be decoded: "
                         f"pip install {package}", path=path)


def read_series(folder: Union[str, Path], uid: Optional[str] = None) -> sitk.Image:
    """The voxels of series ``uid`` of ``folder`` as a SimpleITK image (LPS geometry).

    Decoded by pydicom (compressed transfer syntaxes through its plugins), modality rescale
    applied (float32 when a slope or intercept is set), slices in :func:`find_series`'s order.

    Raises
    ------
    InputError
        The checks of :func:`find_series`; a compressed transfer syntax without a decoder,
        naming it and the package to install; colour images; unreadable pixel data.
    """
    import pydicom

    series = find_series(folder, uid)
    first = series.headers[0]
    check_memory(series.folder, (int(first.get("Rows") or 0), int(first.get("Columns") or 0),
                                 len(series.files)))
    slices = []
    for path in series.files:
        with parsing(path, "DICOM file"):
            dataset = pydicom.dcmread(path)
            syntax = dataset.file_meta.TransferSyntaxUID
        _check_decoder(path, syntax)
        if int(dataset.get("SamplesPerPixel", 1) or 1) != 1:
            raise InputError(f"{path}: colour image ({dataset.get('PhotometricInterpretation')})"
                             f" in {series.label()}: only greyscale series are read", path=path)
        with parsing(path, "DICOM pixel data"):
            pixels = dataset.pixel_array
            slope = float(dataset.get("RescaleSlope", 1) or 1)
            intercept = float(dataset.get("RescaleIntercept", 0) or 0)
        if pixels.shape != (int(dataset.Rows), int(dataset.Columns)):
            raise InputError(f"{path}: pixel data of shape {pixels.shape}, expected "
                             f"{dataset.Rows}x{dataset.Columns}", path=path)
        if slope != 1.0 or intercept != 0.0:
            pixels = pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)
        slices.append(pixels)
    if len({s.dtype for s in slices}) > 1:
        slices = [s.astype(np.float32) for s in slices]
    image = sitk.GetImageFromArray(np.stack(slices))  # (Z, rows, columns)
    origin, spacing, direction = slice_geometry(series)
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    return image


def series_headers(folder: Union[str, Path], uid: Optional[str] = None) -> list:
    """The headers of series ``uid`` in the voxel order of :func:`read_series` (for SEG)."""
    return find_series(folder, uid).headers
