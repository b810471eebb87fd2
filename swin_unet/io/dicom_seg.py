"""DICOM Segmentation objects (highdicom): writing a label map over its series, reading one back."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from ..errors import InputError, parsing
from .atomic import atomic_write
from ..palette import class_colour

__all__ = ["present_classes", "segment_codes", "write_seg", "is_seg_file", "seg_files", "read_seg_labels",
           "read_seg_volume", "seg_highest_label", "SEG_SUFFIX"]

logger = logging.getLogger(__name__)

SEG_SUFFIX = "_seg.dcm"
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
# Class names of the shipped data sets -> (SNOMED CT type, laterality modifier), from the DICOM
# standard's CID 7150/7151 as pydicom's codedict ships them (kidneys: Kidney with Left/Right).
_STRUCTURES = {
    "aorta": ("Aorta", None), "gallbladder": ("Gallbladder", None),
    "kidneyleft": ("Kidney", "Left"), "leftkidney": ("Kidney", "Left"),
    "kidneyright": ("Kidney", "Right"), "rightkidney": ("Kidney", "Right"),
    "liver": ("Liver", None), "pancreas": ("Pancreas", None), "spleen": ("Spleen", None),
    "stomach": ("Stomach", None),
    "rv": ("RightVentricle", None), "rightventricle": ("RightVentricle", None),
    "lv": ("LeftVentricle", None), "leftventricle": ("LeftVentricle", None),
    "myo": ("LeftVentricleMyocardium", None), "myocardium": ("LeftVentricleMyocardium", None),
}


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def segment_codes(name: str) -> tuple:
    """(category, type, modifier or None) coded concepts for class ``name``.

    Known organs and heart structures are Anatomical Structures with their SNOMED CT code;
    another name that is a SNOMED CT concept of pydicom's table (``heart``) too; anything else
    a generic Tissue.
    """
    from pydicom.sr.codedict import codes

    structure, modifier = _STRUCTURES.get(_key(name), (None, None))
    if structure is None:
        camel = "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", name) if part)
        structure = camel if camel and camel in dir(codes.SCT) else None
    if structure is None:
        return codes.SCT.Tissue, codes.SCT.Tissue, None
    return (codes.SCT.AnatomicalStructure, getattr(codes.SCT, structure),
            getattr(codes.SCT, modifier) if modifier else None)


def _description(number: int, name: str, index: int, algorithm):
    import highdicom as hd

    category, kind, modifier = segment_codes(name)
    description = hd.seg.SegmentDescription(
        segment_number=number, segment_label=name[:64], segmented_property_category=category,
        segmented_property_type=kind, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        display_color=hd.color.CIELabColor.from_rgb(*class_colour(index)))
    if modifier is not None:
        kind_item = description.SegmentedPropertyTypeCodeSequence[0]
        kind_item.SegmentedPropertyTypeModifierCodeSequence = [
            hd.sr.CodedConcept.from_code(modifier)]
    return description


def present_classes(labels: np.ndarray, num_foreground: int) -> list[int]:
    """The foreground classes 1..``num_foreground`` that ``labels`` holds, in order."""
    counts = np.bincount(np.asarray(labels).reshape(-1), minlength=num_foreground + 1)
    return [int(c) for c in np.flatnonzero(counts[1:num_foreground + 1]) + 1]


def write_seg(labels: np.ndarray, headers: Sequence, class_names: Sequence[str],
              path: Union[str, Path], checkpoint: str,
              probabilities: Optional[np.ndarray] = None) -> Optional[Path]:
    """Write ``labels`` (X, Y, Z; slice k over ``headers[k]``) as a DICOM SEG beside its series.

    One segment per class present (numbered 1, 2, ... in class order, labelled with the class
    name, coded, in the class colour), BINARY and stored uncompressed (1 bit per pixel; the one
    compressed syntax highdicom allows for BINARY, JPEG 2000, is not read by DCMTK, hence 3D
    Slicer); FRACTIONAL (``probabilities`` (K, X, Y, Z) of each class), RLE Lossless. Frames
    without the segment are left out. Same patient, study and frame of reference as the
    series, a new series; each frame references its source slice.

    Returns
    -------
    Path or None
        The file written, or None when ``labels`` holds no class (a SEG needs a segment).
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import ExplicitVRLittleEndian, RLELossless

    from .. import __version__

    path = Path(path)
    present = present_classes(labels, len(class_names))
    if not present:
        logger.warning("%s: no class predicted, no DICOM SEG written", path.name)
        return None
    algorithm = hd.AlgorithmIdentificationSequence(
        name="Swin-Unet", family=codes.cid7162.ArtificialIntelligence, version=__version__,
        parameters={"checkpoint": checkpoint[:64]})
    descriptions = [_description(number, class_names[c - 1], c, algorithm)
                    for number, c in enumerate(present, start=1)]
    frames = np.ascontiguousarray(np.transpose(labels, (2, 1, 0)))  # (Z, rows, columns)
    if probabilities is None:
        lookup = np.zeros(max(int(labels.max()) + 1, len(class_names) + 1), dtype=np.uint8)
        lookup[present] = np.arange(1, len(present) + 1)
        pixels, kind, syntax = lookup[frames], "BINARY", ExplicitVRLittleEndian
    else:
        pixels = np.empty(frames.shape + (len(present),), dtype=np.float32)  # highdicom: float32
        for k in range(frames.shape[0]):  # slice by slice: a cache-friendly transposed copy
            for number, c in enumerate(present):
                pixels[k, :, :, number] = probabilities[c, :, :, k].T
        np.clip(pixels, 0.0, 1.0, out=pixels)
        kind, syntax = "FRACTIONAL", RLELossless
    first = headers[0]
    number = int(first.get("SeriesNumber") or 0) + 1000
    seg = hd.seg.Segmentation(
        source_images=list(headers), pixel_array=pixels, segmentation_type=kind,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=number,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="swin-unet",
        manufacturer_model_name="Swin-Unet", software_versions=__version__,
        device_serial_number=checkpoint[:64] or "none", transfer_syntax_uid=syntax,
        content_label="SWIN_UNET_MODEL",
        content_description=f"Automatic segmentation by a Swin-Unet model ({checkpoint})"[:64],
        series_description=f"Swin-Unet model {checkpoint}"[:64])
    return atomic_write(path, seg.save_as)


def is_seg_file(path: Union[str, Path]) -> bool:
    """Whether ``path`` is a DICOM Segmentation (by its SOP Class, header only)."""
    import pydicom

    path = Path(path)
    try:
        with open(path, "rb") as handle:
            if handle.read(132)[128:132] != b"DICM":
                return False
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception:  # noqa: BLE001 - any unreadable file is simply not a SEG
        return False
    return str(header.get("SOPClassUID", "")) == SEG_SOP_CLASS


def seg_files(folder: Union[str, Path]) -> dict[str, Path]:
    """The SEG files directly in ``folder`` by case: ``CASE_seg.dcm`` / ``CASE.dcm`` -> CASE."""
    found = {}
    for path in sorted(Path(folder).iterdir()):
        if path.name.startswith(".") or not path.is_file() or not is_seg_file(path):
            continue
        name = path.name
        for suffix in (SEG_SUFFIX, ".dcm", ".DCM"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
        found[name] = path
    return found


def _lps_to_ras(vector) -> np.ndarray:
    return np.asarray([-float(vector[0]), -float(vector[1]), float(vector[2])])


def _segment_values(dataset, path: Path, class_names: Optional[Sequence[str]]) -> dict[int, int]:
    values = {}
    keys = {_key(name): index for index, name in enumerate(class_names or (), start=1)}
    for item in dataset.SegmentSequence:
        number, label = int(item.SegmentNumber), str(item.get("SegmentLabel", ""))
        if class_names is None:
            values[number] = number
        elif _key(label) in keys:
            values[number] = keys[_key(label)]
        else:
            raise InputError(f"{path}: segment {number} '{label}' is not one of the classes "
                             f"({', '.join(class_names)})", path=path)
    return values


def read_seg_labels(path: Union[str, Path], affine: np.ndarray, shape: Sequence[int],
                    class_names: Optional[Sequence[str]] = None) -> np.ndarray:
    """The label map (X, Y, Z) of SEG ``path`` on the voxel grid (RAS+ ``affine``, ``shape``).

    Each frame is placed by its plane position and orientation, which must lie on the grid's
    slices. A segment's value is the index of the class its label names (case and ``_``
    ignored), or its segment number without ``class_names``; a FRACTIONAL segment counts where
    it is at least half its maximum.

    Raises
    ------
    InputError
        Not a SEG, a frame off the grid, overlapping segments, or a segment label that is not
        a class, naming the file.
    """
    import pydicom

    path = Path(path)
    with parsing(path, "DICOM SEG"):
        dataset = pydicom.dcmread(path)
        if str(dataset.get("SOPClassUID", "")) != SEG_SOP_CLASS:
            raise InputError(f"{path}: not a DICOM Segmentation", path=path)
        pixels = dataset.pixel_array.reshape(int(dataset.get("NumberOfFrames", 1)),
                                             int(dataset.Rows), int(dataset.Columns))
        shared = dataset.SharedFunctionalGroupsSequence[0]
        per_frame = list(dataset.PerFrameFunctionalGroupsSequence)
    values = _segment_values(dataset, path, class_names)
    threshold = (int(dataset.get("MaximumFractionalValue", 1)) + 1) // 2 \
        if dataset.get("SegmentationType") == "FRACTIONAL" else 1
    shape = tuple(int(s) for s in shape)
    inverse = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    spacing = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
    labels = np.zeros(shape, dtype=np.uint8 if max(values.values(), default=0) < 256
                      else np.uint16)
    for index, frame in enumerate(per_frame):
        def item(name):
            return (frame.get(name) or shared.get(name))[0]

        position = _lps_to_ras(item("PlanePositionSequence").ImagePositionPatient)
        cosines = item("PlaneOrientationSequence").ImageOrientationPatient
        voxel = inverse[:3, :3] @ position + inverse[:3, 3]
        row, column = _lps_to_ras(cosines[:3]), _lps_to_ras(cosines[3:])
        k = int(round(voxel[2]))
        axes = np.asarray(affine)[:3, :2] / spacing[:2]
        if (not np.allclose(voxel[:2], 0, atol=1e-2) or abs(voxel[2] - k) > 1e-2
                or not 0 <= k < shape[2] or not np.allclose(axes[:, 0], row, atol=1e-3)
                or not np.allclose(axes[:, 1], column, atol=1e-3)
                or pixels.shape[1:] != (shape[1], shape[0])):
            raise InputError(f"{path}: frame {index + 1} does not lie on a slice of the "
                             f"image's grid (shape {shape})", path=path)
        number = int(item("SegmentIdentificationSequence").ReferencedSegmentNumber)
        mask = pixels[index].T >= threshold
        clash = mask & (labels[:, :, k] != 0) & (labels[:, :, k] != values[number])
        if clash.any():
            raise InputError(f"{path}: segment {number} overlaps another in slice {k} "
                             f"({int(clash.sum())} pixels): a label map needs one class per "
                             f"voxel", path=path)
        labels[:, :, k][mask] = values[number]
    return labels


def _referenced_series(path: Path, dataset):
    """The checked series a SEG references, looked for in its folder and that folder's
    sub-folders; None when it is not there."""
    from .dicom_series import find_series, list_series

    wanted = {str(item.SeriesInstanceUID) for item in dataset.get("ReferencedSeriesSequence", [])}
    folders = [path.parent] + sorted(p for p in path.parent.iterdir()
                                     if p.is_dir() and not p.name.startswith("."))
    for folder in folders:
        for series in list_series(folder):
            if series.uid in wanted:
                return find_series(folder, series.uid)
    return None


def read_seg_volume(path: Union[str, Path], affine: np.ndarray, shape: Sequence[int],
                    class_names: Optional[Sequence[str]] = None, case: Optional[str] = None):
    """A SEG as a label :class:`~swin_unet.io.volumes.Volume` in its referenced series' grid.

    The series is looked for beside the SEG (its folder and sub-folders); where it is not
    there, the frames are placed on the grid given (``affine``, ``shape``: the prediction it is
    scored against, made from that series).
    """
    import pydicom

    from .dicom_series import slice_geometry
    from .headers import itk_affine
    from .volumes import Volume

    path = Path(path)
    with parsing(path, "DICOM SEG"):
        header = pydicom.dcmread(path, stop_before_pixels=True)
    series = _referenced_series(path, header)
    if series is not None:
        origin, spacing, direction = slice_geometry(series)
        affine = itk_affine(spacing, direction, origin)
        shape = (int(series.headers[0].Columns), int(series.headers[0].Rows), len(series.files))
    labels = read_seg_labels(path, affine, shape, class_names)
    spacing = tuple(float(s) for s in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))
    return Volume(case or path.name, labels, spacing, np.asarray(affine), path, None)


def seg_highest_label(path: Union[str, Path]) -> int:
    """The largest segment number of a SEG (its label values without class names)."""
    import pydicom

    with parsing(path, "DICOM SEG"):
        header = pydicom.dcmread(path, stop_before_pixels=True)
        return max((int(item.SegmentNumber) for item in header.SegmentSequence), default=0)
