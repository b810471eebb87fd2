"""``open_dataset``: from a data set name and the ``data`` config to the right layout reader."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from swin_unet.config import DataConfig
from swin_unet.errors import InputError

from .acdc import ACDC_CLASSES, ACDC_HELP, AcdcRaw, AcdcRelease, find_acdc_raw, find_acdc_release
from .base import DataSource, override_class_names
from .folder import FOLDER_HELP, FolderDataset, read_dataset_json
from .phantom import ensure_phantom, phantom_splits
from .synapse import (SYNAPSE_CLASSES, SYNAPSE_HELP, SynapseRaw, SynapseRelease, find_synapse_raw,
                      find_synapse_release)

__all__ = ["DATASET_NAMES", "LAYOUTS", "REPO_ROOT", "default_root", "open_dataset", "phantom_kind",
           "class_names_for", "default_intensity_for"]

logger = logging.getLogger(__name__)

DATASET_NAMES = ("synapse", "acdc", "phantom", "folder")
# data.layout values each data set accepts ("auto" detects from the files). For the phantom,
# the layout picks the kind: synapse_raw/abdomen (default) or acdc_raw/cardiac.
LAYOUTS = {
    "synapse": ("auto", "synapse_raw", "synapse_npz"),
    "acdc": ("auto", "acdc_raw", "acdc_npz"),
    "phantom": ("auto", "synapse_raw", "abdomen", "acdc_raw", "cardiac"),
    "folder": ("auto", "folder"),
}
REPO_ROOT = Path(__file__).resolve().parent.parent
_DEFAULT_DIRS = {"synapse": "Synapse", "acdc": "ACDC", "phantom": "phantom"}


def default_root(name: str) -> Optional[Path]:
    """Where ``name`` is looked for when ``data.root`` is not set: ``data/...`` in the repo."""
    folder = _DEFAULT_DIRS.get(name)
    return REPO_ROOT / "data" / folder if folder else None


def _missing_root(name: str, root: Path, help_text: str) -> InputError:
    return InputError(f"{root}: {name} data not found; {help_text}")


def _open_synapse(root: Path, layout: str, cfg: DataConfig) -> DataSource:
    if not root.is_dir():
        raise _missing_root("Synapse", root, SYNAPSE_HELP)
    if layout == "auto":
        layout = ("synapse_raw" if find_synapse_raw(root) is not None
                  else "synapse_npz" if find_synapse_release(root) is not None else "")
        if not layout:
            raise _missing_root("Synapse", root, SYNAPSE_HELP)
    return SynapseRaw(root, cfg) if layout == "synapse_raw" else SynapseRelease(root, cfg)


def _open_acdc(root: Path, layout: str, cfg: DataConfig) -> DataSource:
    if not root.is_dir():
        raise _missing_root("ACDC", root, ACDC_HELP)
    if layout == "auto":
        layout = ("acdc_raw" if find_acdc_raw(root) is not None
                  else "acdc_npz" if find_acdc_release(root) is not None else "")
        if not layout:
            raise _missing_root("ACDC", root, ACDC_HELP)
    return AcdcRaw(root, cfg) if layout == "acdc_raw" else AcdcRelease(root, cfg)


def phantom_kind(layout: str) -> str:
    """The phantom a ``data.layout`` picks: "cardiac" (acdc_raw, cardiac) or "abdomen"."""
    return "cardiac" if layout in ("acdc_raw", "cardiac") else "abdomen"


def class_names_for(name: str, layout: str = "auto", root: Optional[str] = None,
                    override: Optional[list[str]] = None) -> list[str]:
    """The foreground class names of a data set, without reading its volumes.

    ``override`` (``data.class_names``) replaces them, checked against their number.

    Raises
    ------
    InputError
        An unknown data set, a folder data set whose dataset.json cannot be read, or an
        override of the wrong length.
    """
    return list(override_class_names(_layout_class_names(name, layout, root), override))


def _layout_class_names(name: str, layout: str, root: Optional[str]) -> list[str]:
    if name == "synapse" or (name == "phantom" and phantom_kind(layout) == "abdomen"):
        return list(SYNAPSE_CLASSES)
    if name in ("acdc", "phantom"):
        return list(ACDC_CLASSES)
    if name == "folder":
        if root is None:
            raise InputError("--dataset folder needs --root (the folder with dataset.json)")
        return list(read_dataset_json(Path(root) / "dataset.json")["class_names"])
    raise InputError(f"unknown dataset {name!r} (expected {', '.join(DATASET_NAMES)})")


def default_intensity_for(name: str, layout: str = "auto") -> Optional[str]:
    """The intensity mode "auto" resolves to for a data set; None for a folder data set,
    whose modality only its dataset.json knows."""
    if name == "synapse" or (name == "phantom" and phantom_kind(layout) == "abdomen"):
        return SynapseRaw.default_intensity
    if name in ("acdc", "phantom"):
        return AcdcRaw.default_intensity
    return None


def _open_phantom(root: Path, layout: str, cfg: DataConfig) -> DataSource:
    kind = phantom_kind(layout)
    if kind == "abdomen":
        folder = find_synapse_raw(root) if root.is_dir() else None
        if folder is None:
            folder = find_synapse_raw(ensure_phantom(root / kind, kind))
        cases = sorted(f"case{p.name[3:7]}" for p in (folder / "img").glob("img*.nii*"))
        return SynapseRaw(folder, cfg, name="phantom", default_splits=phantom_splits(cases))
    folder = find_acdc_raw(root) if root.is_dir() else None
    if folder is None:
        folder = find_acdc_raw(ensure_phantom(root / kind, kind))
    cases = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name.startswith("patient"))
    return AcdcRaw(folder, cfg, name="phantom", default_splits=phantom_splits(cases))


def open_dataset(name: str, data_cfg: Optional[DataConfig] = None) -> DataSource:
    """The data source for ``name`` (one of :data:`DATASET_NAMES`) configured by ``data_cfg``.

    ``data_cfg.root`` None means ``data/<Synapse|ACDC|phantom>/`` under the repository; the
    phantom is generated there on first use (seconds). ``data_cfg.layout`` "auto" detects the
    layout from the files.

    Raises
    ------
    InputError
        Unknown name or layout, a missing root (the message shows the expected layout and
        where the data set is published), or a bad config value.
    """
    cfg = data_cfg if data_cfg is not None else DataConfig()
    if name not in DATASET_NAMES:
        raise InputError(f"unknown dataset {name!r} (expected one of {', '.join(DATASET_NAMES)})")
    if cfg.layout not in LAYOUTS[name]:
        raise InputError(f"config key 'data.layout': {cfg.layout!r} is not a layout of {name} "
                         f"(expected one of {', '.join(LAYOUTS[name])})")
    if cfg.root is None:
        if name == "folder":
            raise InputError(f"--dataset folder needs --root (data.root); {FOLDER_HELP}")
        root = default_root(name)
    else:
        root = Path(cfg.root).expanduser()
    if name == "synapse":
        source = _open_synapse(root, cfg.layout, cfg)
    elif name == "acdc":
        source = _open_acdc(root, cfg.layout, cfg)
    elif name == "phantom":
        source = _open_phantom(root, cfg.layout, cfg)
    else:
        if not (root / "dataset.json").is_file():
            raise _missing_root("folder", root, FOLDER_HELP)
        source = FolderDataset(root, cfg)
    logger.info("dataset %s: layout %s at %s; %d classes (%s); intensity %s; splits %s",
                source.name, source.layout, source.root, source.num_classes,
                ", ".join(source.class_names), source.intensity,
                ", ".join(f"{s} {len(source.cases(s))}" for s in ("train", "val", "test")))
    return source
