"""Fuzz every reader of a user's file: a damaged file gives InputError naming it, never a traceback.

Each reader gets a valid file written here, then the same file truncated at 24 offsets, with
bytes flipped (16 seeded variants, half of them in the header), empty, as plain text, as a file
of another format under the right name, and with a header that declares a huge array (or, for
text formats, a deeply nested document). The mutations are seeded: every run reads the same
inputs.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import struct
import zipfile
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from datasets.folder import read_splits, read_dataset_json
from datasets.phantom import ensure_phantom
from datasets.readers import (check_nifti_complete, h5_shapes, npz_shapes, read_h5,
                              read_nifti, read_nifti_header, read_npz)
from swin_unet.config import load_config
from swin_unet.errors import InputError
from swin_unet.model import checkpoint_state, read_checkpoint
from swin_unet.io.volumes import read_volume
from test_inference_io import write_dicom_series

TRUNCATIONS = 24
FLIPS = 16
TEXT = b"These are my notes about the scans, not an image.\n" * 3
NESTED = b"[" * 1500  # deeper than the parsers' recursion limit
NUMBERS = b"0 1 2\n3.5 4 5\n"  # digits are pickle opcodes: torch.load's unpickler runs them
PHANTOM = {"kind": "abdomen", "n_cases": 1, "seed": 0, "shape": (8, 8, 4)}


def _nifti_bytes() -> bytes:
    array = np.arange(4 * 5 * 3, dtype=np.int16).reshape(4, 5, 3) % 4
    image = nib.Nifti1Image(array, np.diag([0.8, 0.8, 2.5, 1.0]))
    return image.to_bytes()


def _huge_nifti() -> bytes:
    data = bytearray(_nifti_bytes())
    data[40:56] = struct.pack("<8h", 3, 30000, 30000, 30000, 1, 1, 1, 1)
    return bytes(data)


def _itk_bytes(tmp: Path, suffix: str) -> bytes:
    image = sitk.GetImageFromArray(np.arange(3 * 5 * 4, dtype=np.int16).reshape(3, 5, 4) % 4)
    image.SetSpacing((0.8, 0.8, 2.5))
    path = tmp / f"valid{suffix}"
    sitk.WriteImage(image, str(path), False)
    return path.read_bytes()


def _npz_bytes() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, image=np.random.default_rng(0).random((6, 5), dtype=np.float32),
             label=np.arange(30, dtype=np.uint8).reshape(6, 5) % 9)
    return buffer.getvalue()


def _huge_npz() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for key in ("image", "label"):
            member = io.BytesIO()
            np.lib.format.write_array_header_1_0(
                member, {"descr": "<f4", "fortran_order": False, "shape": (40000, 50000, 300)})
            archive.writestr(f"{key}.npy", member.getvalue() + b"\0" * 64)
    return buffer.getvalue()


def _h5_bytes(tmp: Path, huge: bool = False) -> bytes:
    path = tmp / ("huge.h5" if huge else "valid.h5")
    with h5py.File(path, "w") as handle:
        if huge:
            handle.create_dataset("image", shape=(40000, 50000, 300), dtype="f4", chunks=True)
            handle.create_dataset("label", shape=(40000, 50000, 300), dtype="u1")
        else:
            handle["image"] = np.random.default_rng(0).random((3, 6, 5), dtype=np.float32)
            handle["label"] = np.arange(90, dtype=np.uint8).reshape(3, 6, 5) % 9
    return path.read_bytes()


def _dicom_bytes(tmp: Path) -> tuple[bytes, bytes]:
    """The middle slice of a 3-slice series, and the same with 4096 rows declared.

    (Not terabytes: a DICOM reader may allocate a slice before checking its pixel data.)
    """
    volume = np.arange(3 * 5 * 6, dtype=np.int16).reshape(3, 5, 6)
    write_dicom_series(tmp / "dicom_template", volume)
    valid = (tmp / "dicom_template" / "slice001.dcm").read_bytes()
    # (0028,0010) Rows, explicit or implicit VR little endian.
    rows = next(r for r in (b"\x28\x00\x10\x00US\x02\x00", b"\x28\x00\x10\x00\x02\x00\x00\x00")
                if r in valid)
    start = valid.index(rows) + len(rows)
    return valid, valid[:start] + struct.pack("<H", 4096) + valid[start + 2:]


def _dicom_reader(template: Path):
    """read_volume of a series folder whose middle slice is the mutated file."""
    def read(target: Path) -> None:
        for name in ("slice000.dcm", "slice002.dcm"):
            if not (target.parent / name).exists():
                shutil.copy(template / name, target.parent / name)
        read_volume(target.parent)
    return read


def _checkpoint_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save({"model": {"layers.0.blocks.0.norm1.weight": torch.ones(4),
                          "layers_up.1.blocks.0.norm1.weight": torch.ones(4)},
                "config": {"dataset": "phantom"}, "epoch": 1}, buffer)
    return buffer.getvalue()


def _yaml_bytes() -> bytes:
    return b"train:\n  epochs: 3\n  batch_size: 2\nmodel:\n  depths: [2, 2]\n  embed_dim: 12\n"


def _dataset_json_bytes() -> bytes:
    return json.dumps({"labels": {"background": 0, "liver": 1, "tumour": 2},
                       "channel_names": {"0": "CT"}, "file_ending": ".nii.gz"}).encode()


def _splits_bytes() -> bytes:
    return json.dumps({"train": ["a", "b"], "val": ["c"], "test": ["d"]}).encode()


def mutations(valid: bytes, foreign: bytes, huge: bytes, seed: int) -> list[tuple[str, bytes]]:
    """The damaged variants of ``valid``: (what, bytes)."""
    rng = np.random.default_rng(seed)
    out = [("empty", b""), ("text", TEXT), ("numbers", NUMBERS), ("another format", foreign),
           ("huge", huge)]
    cuts = np.unique(np.linspace(1, len(valid) - 1, TRUNCATIONS).astype(int))
    out += [(f"truncated at {n}", valid[:n]) for n in cuts]
    for i in range(FLIPS):
        data = bytearray(valid)
        span = min(len(data), 352) if i % 2 == 0 else len(data)  # even: the header region
        for position in rng.integers(0, span, size=int(rng.integers(1, 9))):
            data[position] ^= int(rng.integers(1, 256))
        out.append((f"flipped #{i}", bytes(data)))
    return out


def _phantom_reader(template: Path, root: Path):
    """ensure_phantom on a copy of ``template`` whose phantom.json is the mutated file."""
    def read(marker: Path) -> None:
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(template, root)
        (root / "phantom.json").write_bytes(marker.read_bytes())
        (root / "notes.txt").write_text("the user's own file")
        try:
            ensure_phantom(root, **PHANTOM)
        finally:
            if not (root / "notes.txt").is_file():
                raise AssertionError("ensure_phantom deleted a file it did not write")
    return read


def _cases(tmp: Path) -> dict:
    """reader name -> (file name, reader, valid bytes, foreign bytes, huge bytes)."""
    nifti, npz, h5 = _nifti_bytes(), _npz_bytes(), _h5_bytes(tmp)
    nifti_gz = gzip.compress(nifti, mtime=0)
    nrrd, mha = _itk_bytes(tmp, ".nrrd"), _itk_bytes(tmp, ".mha")
    checkpoint = _checkpoint_bytes()
    dicom, dicom_rows = _dicom_bytes(tmp)
    nested = NESTED
    return {
        "read_nifti .nii": ("x.nii", read_nifti, nifti, npz, _huge_nifti()),
        "read_nifti .nii.gz": ("x.nii.gz", read_nifti, nifti_gz, h5,
                               gzip.compress(_huge_nifti(), mtime=0)),
        "NIfTI header + completeness": ("x.nii.gz",
                                        lambda p: check_nifti_complete(read_nifti_header(p)),
                                        nifti_gz, npz, gzip.compress(_huge_nifti(), mtime=0)),
        "read_volume .nii (labels)": ("x.nii", lambda p: read_volume(p, dtype=None), nifti,
                                      mha, _huge_nifti()),
        "read_volume .nrrd": ("x.nrrd", read_volume, nrrd, nifti,
                              nrrd.replace(b"sizes: 4 5 3", b"sizes: 40000 50000 30000")),
        "read_volume .mha": ("x.mha", read_volume, mha, nrrd,
                             mha.replace(b"DimSize = 4 5 3", b"DimSize = 40000 50000 30000")),
        "read_volume DICOM series": ("slice001.dcm", _dicom_reader(tmp / "dicom_template"),
                                     dicom, nifti, dicom_rows),
        "read_h5": ("x.npy.h5", read_h5, h5, npz, _h5_bytes(tmp, huge=True)),
        "h5_shapes": ("x.npy.h5", h5_shapes, h5, nifti_gz, _h5_bytes(tmp, huge=True)),
        "read_npz": ("x.npz", lambda p: read_npz(p, ("image", "label")), npz,
                     np_bytes(), _huge_npz()),
        "npz_shapes": ("x.npz", lambda p: npz_shapes(p, ("image", "label")), npz, h5,
                       _huge_npz()),
        "read_checkpoint": ("x.pth", lambda p: checkpoint_state(read_checkpoint(p), p),
                            checkpoint, npz, checkpoint.replace(b"layers", b"\xff" * 6)),
        "YAML config": ("x.yaml", load_config, _yaml_bytes(), nifti_gz, nested[:1000]),
        "dataset.json": ("dataset.json", read_dataset_json, _dataset_json_bytes(),
                         _yaml_bytes(), nested),
        "splits.json": ("splits.json", lambda p: read_splits(p.parent), _splits_bytes(),
                        nifti_gz, nested),
    }


def np_bytes() -> bytes:
    """A bare .npy array: what np.save writes, often misnamed .npz."""
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((3, 3), np.float32))
    return buffer.getvalue()


def _run(target: Path, reader, valid: bytes, foreign: bytes, huge: bytes, seed: int,
         named: Path = None) -> tuple[int, list[str]]:
    """Read every mutation of ``valid`` written at ``target``: (count, escapes)."""
    named = named or target
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(valid)
    reader(target)  # the valid file reads
    escapes = []
    cases = mutations(valid, foreign, huge, seed)
    for what, data in cases:
        target.write_bytes(data)
        try:
            reader(target)
        except InputError as exc:
            if str(named) not in str(exc):
                escapes.append(f"{what}: message does not name {named}: {exc}")
        except Exception as exc:  # noqa: BLE001 - what this test hunts for
            escapes.append(f"{what}: {type(exc).__name__}: {str(exc)[:120]}")
    return len(cases), escapes


READERS = ["read_nifti .nii", "read_nifti .nii.gz", "NIfTI header + completeness",
           "read_volume .nii (labels)", "read_volume .nrrd", "read_volume .mha",
           "read_volume DICOM series", "read_h5",
           "h5_shapes", "read_npz", "npz_shapes", "read_checkpoint", "YAML config",
           "dataset.json", "splits.json"]


@pytest.mark.parametrize("reader", READERS)
def test_damaged_files_give_input_error_naming_the_file(tmp_path, reader):
    name, read, valid, foreign, huge = _cases(tmp_path)[reader]
    target = tmp_path / "case" / name
    # A DICOM series is read (and named in errors) as its folder, the path the user gives.
    named = target.parent if "DICOM" in reader else target
    count, escapes = _run(target, read, valid, foreign, huge, seed=READERS.index(reader),
                          named=named)
    assert count >= 40
    assert not escapes, "\n".join(escapes)


def test_damaged_phantom_marker_never_escapes_nor_deletes_foreign_files(tmp_path):
    template = tmp_path / "template"
    ensure_phantom(template, **PHANTOM)
    root = tmp_path / "phantom"
    count, escapes = _run(tmp_path / "mutated" / "phantom.json", _phantom_reader(template, root),
                          (template / "phantom.json").read_bytes(), _nifti_bytes(),
                          NESTED, seed=99, named=root)
    assert count >= 40
    assert not escapes, "\n".join(escapes)
