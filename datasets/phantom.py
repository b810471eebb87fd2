"""Deterministic synthetic CT and cine-MRI phantoms written in the Synapse and ACDC raw layouts."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from swin_unet.errors import InputError

from .phantom_cardiac import write_cardiac_case
from .phantom_shapes import Grid, SmoothWarp, ellipsoid_mask, save_nifti, tube_mask

__all__ = ["PHANTOM_KINDS", "DEFAULT_SHAPES", "generate_phantom", "ensure_phantom",
           "phantom_splits", "abdomen_case"]

logger = logging.getLogger(__name__)

PHANTOM_KINDS = ("abdomen", "cardiac")
DEFAULT_SHAPES = {"abdomen": (160, 160, 40), "cardiac": (128, 112, 10)}
DEFAULT_CASES = 16
_VERSION = 2
_MARKER = "phantom.json"

# Raw BTCV label, centre, radii and HU of each organ, painted in this order (later wins).
# The IVC (raw 9) is painted but belongs to no class of the 8-organ task: like the real data,
# not everything bright is a labelled organ.
_ORGANS = {
    # name: (raw label, centre (u, v, w), radii, HU)
    "kidney_right": (2, (-0.34, 0.33, 0.40), (0.15, 0.19, 0.21), 175.0),
    "kidney_left": (3, (0.36, 0.33, 0.42), (0.15, 0.19, 0.21), 175.0),
    "spleen": (1, (0.54, 0.22, 0.66), (0.19, 0.25, 0.22), 110.0),
    "liver": (6, (-0.36, -0.04, 0.66), (0.40, 0.44, 0.32), 60.0),
    "gallbladder": (4, (-0.22, -0.33, 0.45), (0.13, 0.17, 0.15), 5.0),
    "stomach": (7, (0.26, -0.24, 0.64), (0.26, 0.22, 0.24), 30.0),
    "pancreas": (11, (0.08, 0.10, 0.45), (0.34, 0.12, 0.13), 40.0),
}


def _abdomen_arrays(shape: Sequence[int], rng: np.random.Generator):
    """HU image (int16) and raw BTCV label (uint8) of one synthetic abdomen."""
    grid = Grid(tuple(int(v) for v in shape))
    u, v, w = grid.coords(tuple(slice(0, n) for n in grid.shape))
    hu = np.full(grid.shape, -1000.0, dtype=np.float32)
    label = np.zeros(grid.shape, dtype=np.uint8)
    body_scale = rng.uniform(0.92, 1.04)
    shift = rng.uniform(-0.03, 0.03, size=2)
    bu, bv = 0.86 * body_scale, 0.64 * body_scale
    body = (((u - shift[0]) / bu) ** 2 + ((v - shift[1] - 0.05) / bv) ** 2) <= 1.0
    inner = (((u - shift[0]) / (bu - 0.07)) ** 2 + ((v - shift[1] - 0.05) / (bv - 0.07)) ** 2) <= 1
    wall = np.broadcast_to(body & ~inner, grid.shape)
    hu[np.broadcast_to(body, grid.shape)] = -100.0  # subcutaneous fat
    hu[wall] = 45.0  # abdominal wall muscle
    cavity = np.broadcast_to(inner, grid.shape)
    # Abdominal cavity: mostly fat, a smooth texture around -85 HU (organs stand out from it).
    texture = np.zeros(grid.shape, dtype=np.float32)
    for amplitude in (12.0, 8.0):
        freq = rng.uniform(4.0, 9.0, size=3).astype(np.float32) * rng.choice([-1, 1], size=3)
        texture += amplitude * np.sin(freq[0] * u + freq[1] * v + freq[2] * w
                                      + np.float32(rng.uniform(0, 2 * np.pi)))
    hu[cavity] = -85.0 + texture[cavity]

    def paint(box, mask, value, raw=None):
        region = hu[box]
        region[mask] = value
        if raw is not None:
            label[box][mask] = raw

    # Spine (vertebral body and cortex) and psoas muscles: unlabelled, as in BTCV.
    spine_c = (shift[0], 0.47 + shift[1])
    paint(*tube_mask(grid, spine_c, (0.13, 0.12)), 650.0)
    paint(*tube_mask(grid, spine_c, (0.10, 0.09)), 250.0)
    for side in (-1, 1):
        paint(*tube_mask(grid, (shift[0] + side * 0.2, 0.42 + shift[1]), (0.07, 0.09),
                         z_range=(0.0, 0.6)), 50.0)
    for name, (raw, centre, radii, value) in _ORGANS.items():
        centre = (centre[0] + shift[0] + rng.uniform(-0.04, 0.04),
                  centre[1] + shift[1] + rng.uniform(-0.04, 0.04),
                  centre[2] + rng.uniform(-0.05, 0.05))
        scale = rng.uniform(0.85, 1.15, size=3) * body_scale
        radii = tuple(r * s for r, s in zip(radii, scale))
        warp = SmoothWarp(rng, 0.035 if name != "liver" else 0.06)
        bend = rng.uniform(0.3, 0.6) if name == "pancreas" else 0.0
        box, mask = ellipsoid_mask(grid, centre, radii, rng.uniform(-0.3, 0.3), warp, bend)
        paint(box, mask, value + rng.uniform(-10, 10), raw)
        if name == "stomach":  # an air pocket at the front of the stomach, still stomach
            air_c = (centre[0], centre[1] - radii[1] * 0.55, centre[2] + radii[2] * 0.3)
            air_box, air = ellipsoid_mask(grid, air_c, (radii[0] * 0.4, radii[1] * 0.25,
                                                         radii[2] * 0.3))
            inside = label[air_box] == raw
            paint(air_box, air & inside, -800.0)
    aorta_c = (0.07 + shift[0] + rng.uniform(-0.02, 0.02), 0.24 + shift[1])
    paint(*tube_mask(grid, aorta_c, (0.08, 0.08), wobble=0.02, rng=rng), 200.0, 8)
    ivc_c = (-0.13 + shift[0] + rng.uniform(-0.02, 0.02), 0.20 + shift[1])
    paint(*tube_mask(grid, ivc_c, (0.07, 0.055), z_range=(0.0, 0.85)), 140.0, 9)
    hu += rng.standard_normal(grid.shape, dtype=np.float32) * 10.0
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16), label


def abdomen_case(seed: int, index: int, shape: Sequence[int] = DEFAULT_SHAPES["abdomen"]):
    """(HU int16 image, raw label uint8, spacing) of abdominal case ``index`` for ``seed``.

    Each case draws from its own stream, so case i is the same whatever the number of cases.
    """
    rng = np.random.default_rng([int(seed), int(index), 0])
    image, label = _abdomen_arrays(shape, rng)
    # About 350 mm across and 200 mm along the slices, whatever the voxel counts.
    inplane = 350.0 / max(shape[0], shape[1]) * rng.uniform(0.9, 1.1)
    spacing = (inplane, inplane, 200.0 / shape[2] * rng.uniform(0.9, 1.1))
    return image, label, spacing


def _abdomen_affine(shape, spacing) -> np.ndarray:
    # The usual CT orientation: i towards the patient's left, j posterior, k superior.
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = (shape[0] * spacing[0] / 2, shape[1] * spacing[1] / 2, -shape[2] * spacing[2])
    return affine


def _write_abdomen(root: Path, seed: int, n_cases: int, shape) -> None:
    img_dir = root / "RawData" / "Training" / "img"
    label_dir = root / "RawData" / "Training" / "label"
    img_dir.mkdir(parents=True)
    label_dir.mkdir(parents=True)
    for index in range(1, n_cases + 1):
        image, label, spacing = abdomen_case(seed, index, shape)
        affine = _abdomen_affine(shape, spacing)
        save_nifti(image, affine, img_dir / f"img{index:04d}.nii.gz")
        save_nifti(label, affine, label_dir / f"label{index:04d}.nii.gz")


def phantom_splits(cases: Sequence[str]) -> dict[str, list[str]]:
    """The phantom's own split by case number: the last ~3/16 test, the ~3/16 before val."""
    ordered = sorted(cases)
    n = len(ordered)
    n_held = max(1, round(n * 3 / 16)) if n >= 3 else 0
    return {"train": ordered[:n - 2 * n_held], "val": ordered[n - 2 * n_held:n - n_held],
            "test": ordered[n - n_held:]}


def generate_phantom(root: Union[str, Path], kind: str = "abdomen", n_cases: int = DEFAULT_CASES,
                     seed: int = 0, shape: Optional[Sequence[int]] = None) -> Path:
    """Write a phantom data set into ``root`` and return ``root``.

    ``kind="abdomen"``: ``root/RawData/Training/{img,label}/`` (Synapse raw layout, HU int16,
    BTCV raw labels). ``kind="cardiac"``: ``root/training/patientNNN/`` (ACDC raw layout:
    Info.cfg, ED and ES frames and their ``_gt`` labels, oblique affines). ``shape`` is the
    (X, Y, Z) size of each volume. The same (kind, seed, shape) always gives the same voxels.
    ``root`` must not exist yet or be empty: files are written to a temporary sibling folder
    and renamed, so concurrent callers (e.g. DDP ranks) never see a half-written data set.

    Raises
    ------
    InputError
        Unknown kind, bad size, or ``root`` is a non-empty folder.
    """
    if kind not in PHANTOM_KINDS:
        raise InputError(f"phantom kind {kind!r} is not one of {', '.join(PHANTOM_KINDS)}")
    shape = tuple(int(v) for v in (shape or DEFAULT_SHAPES[kind]))
    if len(shape) != 3 or min(shape) < 4 or int(n_cases) < 1:
        raise InputError(f"phantom: need a 3-D shape of at least 4 voxels per axis and >= 1 "
                         f"case, got shape {shape} and n_cases {n_cases}")
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise InputError(f"{root}: phantom target exists and is not an empty folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        if kind == "abdomen":
            _write_abdomen(tmp, seed, int(n_cases), shape)
        else:
            for index in range(1, int(n_cases) + 1):
                write_cardiac_case(tmp / "training", seed, index, shape)
        marker = {"kind": kind, "n_cases": int(n_cases), "seed": int(seed),
                  "shape": list(shape), "version": _VERSION}
        # The files written, so that a later regeneration removes these and nothing else.
        marker["files"] = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*")
                                 if p.is_file())
        (tmp / _MARKER).write_text(json.dumps(marker, indent=1))
        if root.is_dir():
            root.rmdir()  # empty (checked above); rename needs the name free
        os.rename(tmp, root)
    except BaseException as exc:  # no half-written temporary folder left behind, ever
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and (root / _MARKER).is_file():
            return root  # another process finished the same phantom first
        raise
    logger.info("generated %s phantom: %d cases of %s in %.1f s under %s", kind, n_cases,
                shape, time.perf_counter() - start, root)
    return root


def ensure_phantom(root: Union[str, Path], kind: str = "abdomen", n_cases: int = DEFAULT_CASES,
                   seed: int = 0, shape: Optional[Sequence[int]] = None) -> Path:
    """``root`` holding a complete phantom of these parameters, generated if absent.

    A phantom with other parameters is replaced: the files its ``phantom.json`` lists are
    removed (and the folders left empty), never anything else; a file of the user's in
    ``root`` makes that an error instead.

    Raises
    ------
    InputError
        An unreadable ``phantom.json``, one that does not list its files (an older version), or
        a file in ``root`` that the phantom did not write; the message names it.
    """
    root = Path(root)
    wanted = {"kind": kind, "n_cases": int(n_cases), "seed": int(seed),
              "shape": list(shape or DEFAULT_SHAPES.get(kind, ())), "version": _VERSION}
    marker = root / _MARKER
    if marker.is_file():
        found = _read_marker(marker)
        if {k: found.get(k) for k in wanted} == wanted:
            return root
        logger.info("%s: phantom parameters changed (%s -> %s); regenerating", root,
                    {k: found.get(k) for k in wanted}, wanted)
        _remove_phantom(root, found["files"])
    return generate_phantom(root, kind, n_cases, seed, shape)


def _read_marker(marker: Path) -> dict:
    """``phantom.json`` with its list of written files checked to stay inside the phantom."""
    try:
        found = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InputError(f"{marker}: unreadable phantom marker ({type(exc).__name__}); delete "
                         f"the folder to generate the phantom again", path=marker) from None
    files = found.get("files") if isinstance(found, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise InputError(f"{marker}: does not list the phantom's files (another version?); "
                         f"delete the folder to generate the phantom again", path=marker)
    for name in files:
        relative = Path(name)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise InputError(f"{marker}: lists {name!r}, a path outside the phantom",
                             path=marker)
    return found


def _remove_phantom(root: Path, files: Sequence[str]) -> None:
    """Delete the listed files and the folders they leave empty; refuse if others remain."""
    for name in files:
        (root / name).unlink(missing_ok=True)
    (root / _MARKER).unlink(missing_ok=True)
    folders = sorted({p for name in files for p in (root / name).parents
                      if p != root and root in p.parents}, key=lambda p: -len(p.parts))
    for folder in folders:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    other = next(iter(sorted(root.rglob("*"))), None)
    if other is not None:
        raise InputError(f"{other}: not written by the phantom generator; the phantom in "
                         f"{root} cannot be regenerated around it (move it away)", path=other)
