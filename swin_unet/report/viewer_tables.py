"""Colour tables for 3D Slicer (.ctbl) and ITK-SNAP (label descriptions): organs named and coloured.

Both formats are the tools' documented text formats (FACTS.md, "Label colour tables that viewers
read"); the colours are :mod:`swin_unet.palette`'s, the ones the report draws with.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence, Union

from ..io.atomic import atomic_text
from ..palette import class_colour

__all__ = ["SLICER_TABLE", "ITKSNAP_TABLE", "write_slicer_table", "write_itksnap_labels",
           "write_viewer_tables"]

SLICER_TABLE = "labels.ctbl"
# Which numbering the predictions use (Synapse: the 8-organ order, not BTCV's raw labels).
NUMBERING = ("values: class indices in the data set's class order, not the raw label numbers "
             "of its source files")
ITKSNAP_TABLE = "labels_itksnap.txt"


def _write(path: Path, text: str) -> Path:
    return atomic_text(path, text)


def _slicer_name(name: str) -> str:
    """A Slicer colour name: no white space (the columns are space-separated)."""
    return re.sub(r"\s+", "_", name.strip()) or "unnamed"


def write_slicer_table(path: Union[str, Path], class_names: Sequence[str]) -> Path:
    """Write a 3D Slicer colour table: ``index name R G B A`` per label, 0 = Background.

    Load it in Slicer (drag the file in, or Data > Add Data) and pick it as the label map's
    colour table under Volumes > Display > Lookup Table.
    """
    lines = [f"# Color table file {Path(path).name}: Swin-Unet classes",
             f"# {NUMBERING}", f"# {len(class_names) + 1} values", "0 Background 0 0 0 0"]
    for index, name in enumerate(class_names, start=1):
        r, g, b = class_colour(index)
        lines.append(f"{index} {_slicer_name(name)} {r} {g} {b} 255")
    return _write(Path(path), "\n".join(lines) + "\n")


def write_itksnap_labels(path: Union[str, Path], class_names: Sequence[str]) -> Path:
    """Write an ITK-SNAP label description file (Segmentation > Import Label Descriptions)."""
    lines = [
        "################################################",
        "# ITK-SnAP Label Description File",
        f"# {NUMBERING}",
        "# File format:",
        "# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL",
        "# Fields:",
        "#    IDX:   Zero-based index",
        "#    -R-:   Red color component (0..255)",
        "#    -G-:   Green color component (0..255)",
        "#    -B-:   Blue color component (0..255)",
        "#    -A-:   Label transparency (0.00 .. 1.00)",
        "#    VIS:   Label visibility (0 or 1)",
        "#    MSH:   Label mesh visibility (0 or 1)",
        "#  LABEL:   Label description",
        "################################################",
        f'{0:5d} {0:5d} {0:4d} {0:4d} {0:8d} {0:2d} {0:2d}    "Clear Label"',
    ]
    for index, name in enumerate(class_names, start=1):
        r, g, b = class_colour(index)
        label = name.replace('"', "'")
        lines.append(f'{index:5d} {r:5d} {g:4d} {b:4d} {1:8d} {1:2d} {1:2d}    "{label}"')
    return _write(Path(path), "\n".join(lines) + "\n")


def write_viewer_tables(folder: Union[str, Path], class_names: Sequence[str]) -> list[Path]:
    """Both tables in ``folder`` (beside predictions): ``labels.ctbl``, ``labels_itksnap.txt``."""
    folder = Path(folder)
    return [write_slicer_table(folder / SLICER_TABLE, class_names),
            write_itksnap_labels(folder / ITKSNAP_TABLE, class_names)]
