"""The data-set table: one entry per ``--dataset`` name, and ``open_dataset`` over it.

Each :class:`DatasetEntry` says what a data set is: its name, the layouts it detects (how to
find each under a root and the reader that opens it), the help text for a missing root, where
it lives by default and, for the phantom, the synthetic data generated on first use. Class
names and the default intensity are attributes of the layout's reader (``class_names``,
``default_intensity``); a reader whose classes come from its own files (a folder data set)
has ``class_names = None`` and a ``read_class_names(root)`` class method. A new layout is one
:class:`Layout` in its entry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional

from swin_unet.config import DataConfig
from swin_unet.errors import InputError

from .acdc import ACDC_HELP, AcdcRaw, AcdcRelease, find_acdc_raw, find_acdc_release
from .base import DataSource, override_class_names
from .folder import FOLDER_HELP, FolderDataset, find_folder_dataset
from .images import IMAGES_HELP, ImagePairs, NnUnet2dImages, find_image_pairs, find_nnunet_2d
from .phantom import ensure_phantom, phantom_splits
from .synapse import SYNAPSE_HELP, SynapseRaw, SynapseRelease, find_synapse_raw, find_synapse_release

__all__ = ["Layout", "DatasetEntry", "DATASETS", "DATASET_NAMES", "LAYOUTS", "REPO_ROOT",
           "dataset_entry", "default_root", "open_dataset", "class_names_for",
           "default_intensity_for"]

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Layout:
    """One file layout: where it sits under a root (``find``) and the reader that opens it.

    Attributes
    ----------
    name : str
        The ``data.layout`` value and the source's ``layout`` attribute.
    find : callable
        ``find(root)``: the folder holding this layout under ``root``, or None.
    reader : type of DataSource
        Constructed as ``reader(root, data_cfg)``.
    """

    name: str
    find: Callable[[Path], Optional[Path]]
    reader: type


@dataclass(frozen=True)
class DatasetEntry:
    """What a ``--dataset`` name means.

    Attributes
    ----------
    name : str
        The ``--dataset`` value.
    title : str
        How messages name it ("Synapse").
    layouts : tuple of Layout
        In detection order: ``data.layout: auto`` takes the first one found under the root.
    help : str
        The expected layouts and where the data is published, shown when the root is missing.
    default_dir : str or None
        ``data/<default_dir>`` under the current folder when ``data.root`` is unset; None: the
        root is required.
    aliases : mapping
        Further ``data.layout`` values and the layout each names.
    phantoms : mapping
        For generated data: layout name -> phantom kind written under ``root/<kind>`` when the
        layout is not found there. "auto" then means the first layout (nothing to detect).
    """

    name: str
    title: str
    layouts: tuple
    help: str
    default_dir: Optional[str] = None
    aliases: Mapping[str, str] = field(default_factory=dict)
    phantoms: Mapping[str, str] = field(default_factory=dict)

    @property
    def layout_choices(self) -> tuple:
        """The ``data.layout`` values this data set accepts."""
        return ("auto",) + tuple(layout.name for layout in self.layouts) + tuple(self.aliases)

    def layout(self, value: str = "auto") -> Optional[Layout]:
        """The layout a ``data.layout`` value names; None for "auto" of a detected data set.

        Raises
        ------
        InputError
            ``value`` is not one of :attr:`layout_choices`.
        """
        if value not in self.layout_choices:
            raise InputError(f"config key 'data.layout': {value!r} is not a layout of "
                             f"{self.name} (expected one of {', '.join(self.layout_choices)})")
        if value == "auto":
            return self.layouts[0] if self.phantoms else None
        value = self.aliases.get(value, value)
        return next(layout for layout in self.layouts if layout.name == value)

    def _reader(self, layout: str, root: Optional[Path] = None) -> type:
        # "auto": the layout found under root, else the first stands in (detected layouts of
        # one data set share their classes and modality; a folder's images do not).
        chosen = self.layout(layout)
        if chosen is None and root is not None and Path(root).is_dir():
            chosen = next((lay for lay in self.layouts if lay.find(Path(root)) is not None),
                          None)
        return (chosen or self.layouts[0]).reader

    def class_names(self, layout: str = "auto", root: Optional[str] = None) -> list[str]:
        """The foreground class names, without reading volumes.

        Raises
        ------
        InputError
            A data set whose classes are in its files, without ``root``; an unreadable file.
        """
        reader = self._reader(layout, root)
        if reader.class_names is not None:
            return list(reader.class_names)
        if root is None:
            raise InputError(f"--dataset {self.name} needs --root (the folder with its "
                             f"class names)")
        return list(reader.read_class_names(Path(root)))

    def default_intensity(self, layout: str = "auto") -> Optional[str]:
        """The mode ``data.intensity: auto`` means; None where only the files know."""
        return self._reader(layout).default_intensity

    def missing(self, root: Path) -> InputError:
        """The error for a root that holds none of the layouts."""
        return InputError(f"{root}: {self.title} data not found", path=root, details=self.help)

    def open(self, root: Path, cfg: DataConfig) -> DataSource:
        """The data source under ``root`` (generated first for a phantom that is not there)."""
        layout = self.layout(cfg.layout)
        if self.phantoms:
            folder = layout.find(root) if root.is_dir() else None
            if folder is None:
                kind = self.phantoms[layout.name]
                folder = layout.find(ensure_phantom(root / kind, kind))
            splits = phantom_splits(layout.reader.list_cases(folder))
            return layout.reader(folder, cfg, name=self.name, default_splits=splits)
        if not root.is_dir():
            raise self.missing(root)
        if layout is None:
            layout = next((lay for lay in self.layouts if lay.find(root) is not None), None)
            if layout is None:
                raise self.missing(root)
        return layout.reader(root, cfg)


def _find_volume_folder(root: Path) -> Optional[Path]:
    """A folder data set of volumes: a ``dataset.json`` that is not one of 2-D images."""
    if find_nnunet_2d(root) is not None or find_image_pairs(root) is not None:
        return None
    return find_folder_dataset(root)


_SYNAPSE_RAW = Layout("synapse_raw", find_synapse_raw, SynapseRaw)
_IMAGE_PAIRS = Layout("image_pairs", find_image_pairs, ImagePairs)
_ACDC_RAW = Layout("acdc_raw", find_acdc_raw, AcdcRaw)

DATASETS: dict[str, DatasetEntry] = {entry.name: entry for entry in (
    DatasetEntry("synapse", "Synapse",
                 (_SYNAPSE_RAW, Layout("synapse_npz", find_synapse_release, SynapseRelease)),
                 SYNAPSE_HELP, default_dir="Synapse"),
    DatasetEntry("acdc", "ACDC", (_ACDC_RAW, Layout("acdc_npz", find_acdc_release, AcdcRelease)),
                 ACDC_HELP, default_dir="ACDC"),
    # The phantom's layout picks its kind: abdominal CT (the default) or cardiac MRI.
    DatasetEntry("phantom", "phantom", (_SYNAPSE_RAW, _ACDC_RAW),
                 "generated on first use", default_dir="phantom",
                 aliases={"abdomen": "synapse_raw", "cardiac": "acdc_raw"},
                 phantoms={"synapse_raw": "abdomen", "acdc_raw": "cardiac"}),
    # A user's own data: volumes (Decathlon / nnU-Net) or 2-D images (nnU-Net 2-D, pairs).
    DatasetEntry("folder", "folder", (Layout("folder", _find_volume_folder, FolderDataset),
                                      Layout("nnunet_2d", find_nnunet_2d, NnUnet2dImages),
                                      _IMAGE_PAIRS),
                 f"{FOLDER_HELP}\nor {IMAGES_HELP}"),
    # Synthetic RGB skin-lesion photographs, the 2-D demo.
    DatasetEntry("phantom2d", "2-D phantom", (_IMAGE_PAIRS,), "generated on first use",
                 default_dir="phantom2d", phantoms={"image_pairs": "lesions"}),
)}
DATASET_NAMES = tuple(DATASETS)
# data.layout values each data set accepts ("auto" detects from the files).
LAYOUTS = {name: entry.layout_choices for name, entry in DATASETS.items()}


def dataset_entry(name: str) -> DatasetEntry:
    """The table's entry for ``name``.

    Raises
    ------
    InputError
        ``name`` is not in :data:`DATASETS`.
    """
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r} (expected one of {', '.join(DATASET_NAMES)})")
    return DATASETS[name]


def default_root(name: str) -> Optional[Path]:
    """Where ``name`` is looked for when ``data.root`` is not set: ``data/...`` under the
    current folder, the one rule for every path the tools read or write by default (``runs/``
    and ``outputs/`` too)."""
    folder = dataset_entry(name).default_dir
    return Path("data") / folder if folder else None


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
    return list(override_class_names(dataset_entry(name).class_names(layout, root), override))


def default_intensity_for(name: str, layout: str = "auto") -> Optional[str]:
    """The intensity mode "auto" resolves to for a data set; None for a folder data set,
    whose modality only its dataset.json knows."""
    return dataset_entry(name).default_intensity(layout)


def open_dataset(name: str, data_cfg: Optional[DataConfig] = None) -> DataSource:
    """The data source for ``name`` (one of :data:`DATASET_NAMES`) configured by ``data_cfg``.

    ``data_cfg.root`` None means ``data/<Synapse|ACDC|phantom>/`` under the current folder; the
    phantom is generated there on first use (seconds). ``data_cfg.layout`` "auto" detects the
    layout from the files.

    Raises
    ------
    InputError
        Unknown name or layout, a missing root (the message shows the expected layout and
        where the data set is published), or a bad config value.
    """
    cfg = data_cfg if data_cfg is not None else DataConfig()
    entry = dataset_entry(name)
    entry.layout(cfg.layout)  # an unknown layout is named before the root is looked at
    if cfg.root is None:
        if entry.default_dir is None:
            raise InputError(f"--dataset {name} needs --root (data.root)", key="data.root",
                             details=entry.help)
        root = default_root(name)
    else:
        root = Path(cfg.root).expanduser()
    source = entry.open(root, cfg)
    logger.info("dataset %s: layout %s at %s; %d classes (%s); intensity %s; splits %s",
                source.name, source.layout, source.root, source.num_classes,
                ", ".join(source.class_names), source.intensity,
                ", ".join(f"{s} {len(source.cases(s))}" for s in ("train", "val", "test")))
    return source
