"""A small DICOM series writer for tests (pydicom): CT or MR slices with LPS geometry."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

STORAGE = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4"}


def oblique_cosines(degrees: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    """Row and column direction cosines (LPS) tilted about two axes."""
    a, b = math.radians(degrees), math.radians(degrees / 2)
    row = np.array([math.cos(a), math.sin(a), 0.0])
    column = np.array([-math.sin(a) * math.cos(b), math.cos(a) * math.cos(b), math.sin(b)])
    return row, column


def write_series(folder: Path, volume_zyx: np.ndarray, modality: str = "CT",
                 origin: Sequence[float] = (-40.0, -30.0, 12.0),
                 cosines: Optional[tuple] = None, spacing: Sequence[float] = (0.8, 0.7, 2.5),
                 number: int = 3, description: str = "AX 2.5mm", study_uid: Optional[str] = None,
                 frame_of_reference: Optional[str] = None, heights: Optional[Sequence] = None,
                 prefix: str = "slice", shuffle: bool = True) -> list[Path]:
    """Write int16 ``volume_zyx`` (Z, rows, columns) as one series, one file per slice.

    ``spacing`` is (column spacing, row spacing, slice gap) in mm, ``cosines`` the (row, column)
    direction cosines (default axial), ``heights`` the slices' distances along the normal
    (default k * gap). Files are written in a shuffled order, named by instance. Returns the
    files in slice order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    row, column = cosines if cosines is not None else (np.array([1.0, 0, 0]),
                                                        np.array([0, 1.0, 0]))
    row, column = np.asarray(row, float), np.asarray(column, float)
    normal = np.cross(row, column)
    study_uid = study_uid or generate_uid()
    frame_of_reference = frame_of_reference or generate_uid()
    series_uid = generate_uid()
    depth = volume_zyx.shape[0]
    heights = list(heights) if heights is not None else [k * spacing[2] for k in range(depth)]
    order = np.random.default_rng(number).permutation(depth) if shuffle else np.arange(depth)
    files = [None] * depth
    for rank, k in enumerate(order):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = STORAGE[modality]
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = STORAGE[modality], meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientName, ds.PatientID = modality, "Phantom^Dicom", "P42"
        ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame_of_reference, ""
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240102", "101010", "1", ""
        ds.ReferringPhysicianName, ds.Manufacturer = "", "TestWriter"
        ds.SeriesNumber, ds.SeriesDescription, ds.InstanceNumber = number, description, int(k) + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.Laterality, ds.PatientPosition, ds.AcquisitionNumber = "", "HFS", 1
        position = np.asarray(origin, float) + heights[k] * normal
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in np.concatenate([row, column])]
        ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]
        ds.SliceThickness = f"{spacing[2]:.6f}"
        ds.Rows, ds.Columns = volume_zyx.shape[1:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        if modality == "CT":
            ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
            ds.KVP = "120"
            stored = volume_zyx[k].astype(np.int32) + 1024
        else:
            ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "SE", "NONE", ""
            ds.MRAcquisitionType, ds.EchoTrainLength = "2D", 1
            ds.RepetitionTime, ds.EchoTime, ds.MagneticFieldStrength = "500", "10", "1.5"
            stored = volume_zyx[k].astype(np.int32)
        ds.PixelData = stored.astype(np.int16).tobytes()
        path = folder / f"{prefix}{rank:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files[k] = path
    return files


def ras_affine(origin: Sequence[float], cosines: Optional[tuple],
               spacing: Sequence[float]) -> np.ndarray:
    """The RAS+ voxel-to-world matrix of a series written by :func:`write_series`."""
    row, column = cosines if cosines is not None else (np.array([1.0, 0, 0]),
                                                        np.array([0, 1.0, 0]))
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1] = np.asarray(row) * spacing[0], np.asarray(column) * spacing[1]
    lps[:3, 2] = np.cross(row, column) * spacing[2]
    lps[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
