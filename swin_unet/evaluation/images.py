"""Segmenting 2-D images: a palette PNG and an overlay at each image's own size."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Union

import numpy as np
from tqdm import tqdm

from ..errors import InputError
from ..io.paths import check_case_id, inside_output
from ..io.images import (image_name, is_image_file, read_image, read_image_header,
                       write_label_png, write_overlay_png)

__all__ = ["find_image_inputs", "image_targets", "image_volume", "segment_images",
           "write_image_prediction"]

logger = logging.getLogger(__name__)


def find_image_inputs(path: Union[str, Path]) -> list[tuple[str, Path]]:
    """The 2-D images ``path`` names: (name, file) of an image file or of a folder's images.

    An empty list when ``path`` is not an image file and its folder holds none (it may hold
    volumes: the caller reads those).
    """
    path = Path(path)
    if path.is_file():
        return [(image_name(path), path)] if is_image_file(path) else []
    if path.is_dir():
        return [(image_name(p), p) for p in sorted(path.iterdir()) if is_image_file(p)]
    return []


def image_targets(output: Path, names: list[str]) -> list[Path]:
    """``output/predictions/NAME.png`` and ``output/overlays/NAME.png`` of every image.

    Raises
    ------
    InputError
        Two images of one name (``a.png`` and ``a.jpg``) would write the same files.
    """
    seen: set[str] = set()
    for name in names:
        check_case_id(name, f"{output}: image name")
        if name in seen:
            raise InputError(f"{output / 'predictions' / (name + '.png')}: two input images "
                             f"are named {name} (e.g. {name}.png and {name}.jpg)")
        seen.add(name)
    return [inside_output(output / folder / f"{n}.png", output)
            for folder in ("predictions", "overlays") for n in names]


def write_image_prediction(labels: np.ndarray, image: np.ndarray, output: Path, name: str,
                           num_classes: int) -> list[Path]:
    """Write ``output/predictions/NAME.png`` (palette PNG, values 0..K) and
    ``output/overlays/NAME.png`` (the image with the classes in colour).

    ``labels`` is (rows, columns) or a one-slice volume (rows, columns, 1); ``image`` is
    (channels, rows, columns) or (rows, columns[, 1]) in [0, 1] (other ranges are scaled for
    display).
    """
    labels = np.asarray(labels)
    labels = labels[..., 0] if labels.ndim == 3 else labels
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 4:  # (C, rows, columns, 1)
        image = image[..., 0]
    elif image.ndim == 3 and image.shape[-1] == 1 and image.shape[:2] == labels.shape:
        image = image[None, ..., 0]
    elif image.ndim == 2:
        image = image[None]
    label_path, overlay_path = image_targets(output, [name])
    return [write_label_png(labels, label_path, num_classes),
            write_overlay_png(image, labels, overlay_path, num_classes)]


def image_volume(pixels: np.ndarray, in_chans: int) -> np.ndarray:
    """An image (channels, rows, columns) as the one-slice volume the model segments:
    (rows, columns, 1) for a 1-channel model, (C, rows, columns, 1) otherwise."""
    return (pixels[0] if in_chans == 1 else pixels)[..., None]


def segment_images(found: list[tuple[str, Path]], output: Path, in_chans: int,
                   num_classes: int, predict: Callable[[np.ndarray], np.ndarray],
                   normalise: Callable[[np.ndarray], np.ndarray],
                   progress: bool = True) -> list[Path]:
    """Segment each image (resized to the model, or in sliding windows: patch mode); write its
    label PNG and overlay at its own size.

    Parameters
    ----------
    found : list of (name, path)
        From :func:`find_image_inputs`.
    output : Path
        Receives ``predictions/`` and ``overlays/``.
    in_chans : int
        The model's input channels: colour images become grayscale for 1, grayscale ones are
        repeated for 3.
    num_classes : int
        Classes including the background (the palette's size).
    predict : callable
        Normalised volume (rows, columns, 1) or (C, rows, columns, 1) -> labels of that shape.
    normalise : callable
        The training intensity normalisation, applied to the image read in [0, 1].

    Returns
    -------
    list of Path
        The files written, predictions then overlays per image.

    Raises
    ------
    InputError
        An unreadable image, naming it.
    """
    alpha = [p.name for _, p in found if read_image_header(p).alpha]
    if alpha:
        logger.info("%d image(s) have an alpha channel, dropped (e.g. %s)", len(alpha), alpha[0])
    written: list[Path] = []
    for name, path in tqdm(found, desc="images", unit="image", disable=not progress):
        pixels = read_image(path, in_chans)
        try:
            labels = predict(normalise(image_volume(pixels, in_chans)))
        except InputError as exc:
            raise exc.at(path) from None
        written += write_image_prediction(labels, pixels, output, name, num_classes)
    return written

