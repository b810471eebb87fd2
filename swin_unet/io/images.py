"""Reading 2-D images and masks (PNG, JPEG, TIFF, BMP) with Pillow, and writing label PNGs."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
from PIL import Image

from ..errors import InputError
from ..palette import class_colours
from .atomic import atomic_write
from .validity import check_finite, check_pixels

__all__ = ["IMAGE_SUFFIXES", "ImageHeader", "is_image_file", "image_name", "read_image_header",
           "read_image", "image_from_array", "read_mask", "label_colours", "write_label_png", "write_overlay_png"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_JPEG_SUFFIXES = (".jpg", ".jpeg")
# Pillow modes by what they hold: one channel, colour (3), and those that carry alpha.
_GRAY_MODES = ("1", "L", "LA", "I", "F", "I;16", "I;16B", "I;16L", "I;16N", "La")
_ALPHA_MODES = ("LA", "La", "RGBA", "RGBa", "PA")
_HIGH_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")


def is_image_file(path: Union[str, Path]) -> bool:
    """True for a file with a 2-D image suffix (``.png .jpg .jpeg .tif .tiff .bmp``)."""
    path = Path(path)
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() \
        and not path.name.startswith(".")


def image_name(path: Union[str, Path]) -> str:
    """The file name without its suffix (``ISIC_0000000.jpg`` -> ``ISIC_0000000``)."""
    return Path(path).stem


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]


@dataclass
class ImageHeader:
    """What a 2-D image file holds, read without decoding its pixels.

    ``shape`` is (rows, columns); ``channels`` 1 for grayscale, 3 for colour (palette
    images are colour); ``alpha`` whether an alpha channel comes on top.
    """

    path: Path
    mode: str
    shape: tuple[int, int]
    format: str
    frames: int

    @property
    def channels(self) -> int:
        """1 for a grayscale image, 3 for a colour one (alpha not counted)."""
        return 1 if self.mode in _GRAY_MODES else 3

    @property
    def alpha(self) -> bool:
        """Whether the file has an alpha channel (dropped when read)."""
        return self.mode in _ALPHA_MODES


def _open(path: Path) -> Image.Image:
    """The image opened lazily (header only), refused above the pixel limit before decoding."""
    if not path.is_file():
        what = "not a regular file" if path.exists() else "file not found"
        raise InputError(f"{path}: {what}", path=path)
    try:
        with warnings.catch_warnings():  # the size is checked below, in one line of ours
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError as exc:
        count = re.search(r"\((\d+) pixels\)", str(exc))
        check_pixels(path, int(count.group(1)) if count else 1 << 62)
        raise InputError(f"{path}: image above the pixel limit ({_reason(exc)})",
                         path=path) from None
    except Exception as exc:  # Pillow raises many types for a file that is not an image
        raise InputError(f"{path}: not a readable image ({_reason(exc)})", path=path) from None
    try:
        check_pixels(path, image.height, image.width)
    except InputError:
        image.close()
        raise
    return image


def read_image_header(path: Union[str, Path]) -> ImageHeader:
    """Mode, size and frame count of an image file, without decoding its pixels.

    Raises
    ------
    InputError
        A missing file or one Pillow cannot identify as an image; the message names it.
    """
    path = Path(path)
    with _open(path) as image:
        mode = image.mode
        if mode == "P" and "transparency" in image.info:
            mode = "PA"
        return ImageHeader(path, mode, (int(image.height), int(image.width)),
                           str(image.format or ""), int(getattr(image, "n_frames", 1)))


def _decode(path: Path, at_least: Optional[tuple[int, int]] = None
            ) -> tuple[Image.Image, ImageHeader]:
    """The decoded single-frame image and its header.

    ``at_least`` (rows, columns): a JPEG may decode at 1/2, 1/4 or 1/8 scale (libjpeg's DCT
    scaling) as long as both sides stay at least that large; other formats decode in full.
    """
    header = read_image_header(path)
    if header.frames > 1:
        raise InputError(f"{path}: {header.frames} frames (pages); expected one 2-D image",
                         path=path)
    image = _open(path)
    if at_least is not None and header.format == "JPEG":
        image.draft(image.mode, (int(at_least[1]), int(at_least[0])))
    try:
        image.load()
    except Exception as exc:  # a truncated or corrupt file fails in the decoder
        image.close()
        raise InputError(f"{path}: unreadable or truncated image ({_reason(exc)})",
                         path=path) from None
    return image, header


def read_image(path: Union[str, Path], channels: Optional[int] = None,
               at_least: Optional[tuple[int, int]] = None) -> np.ndarray:
    """An image as float32 (channels, rows, columns), scaled to [0, 1] by its bit depth.

    8-bit files are divided by 255, 16-bit ones by 65535; floating-point TIFFs are kept as
    they are. An alpha channel is dropped (the caller logs it: the header says so).

    Parameters
    ----------
    path : str or Path
        The image file.
    channels : int, optional
        1 (grayscale: colour is converted to luma), 3 (RGB: grayscale is repeated) or 4 (RGBA,
        nnU-Net's 4-channel images); default the file's own (1 or 3).
    at_least : (rows, columns), optional
        The smallest size needed: a JPEG then decodes at a reduced scale when it can (the
        training cache, which keeps images at the model's size, needs no more).

    Raises
    ------
    InputError
        A missing, unreadable or truncated file, several frames, or a bad ``channels``.
    """
    path = Path(path)
    image, header = _decode(path, at_least)
    with image:
        pixels = _pixels(image, header.mode, header.channels, channels, path)
    check_finite(pixels, path)
    return pixels


def _pixels(image: Image.Image, mode: str, own_channels: int, channels: Optional[int],
            path: Path) -> np.ndarray:
    """The decoded ``image`` (Pillow ``mode``) as float32 (channels, rows, columns) in [0, 1]."""
    channels = own_channels if channels is None else int(channels)
    if channels not in (1, 3, 4):
        raise InputError(f"{path}: cannot read an image as {channels} channels (1, 3 or 4)",
                         path=path)
    if mode in _HIGH_BIT_MODES or mode == "F":
        array = np.asarray(image, dtype=np.float32)
        if mode != "F":
            array = array / np.float32(65535.0)
        array = array[None]
    elif mode == "1":
        array = np.asarray(image, dtype=np.float32)[None]
    else:
        target = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
        if channels == 3 and own_channels == 1:
            target = "L"  # repeated below: the same values in R, G and B
        array = np.asarray(image.convert(target), dtype=np.float32) / np.float32(255.0)
        array = array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)
    if array.shape[0] != channels:
        if array.shape[0] == 1:
            array = np.repeat(array, channels, axis=0)
        else:
            raise InputError(f"{path}: a {mode} image cannot be read as {channels} "
                             f"channels", path=path)
    return np.ascontiguousarray(array, dtype=np.float32)


def image_from_array(pixels: np.ndarray, channels: Optional[int] = None) -> np.ndarray:
    """A 2-D image held in memory, (rows, columns) or (rows, columns, 1/3/4), as
    :func:`read_image` gives it from a file: float32 (channels, rows, columns).

    uint8 and uint16 pixels are scaled by their bit depth and converted between grayscale and
    colour as Pillow converts a file's (same luma weights); float pixels are taken as already
    in [0, 1] (an alpha channel, the fourth, is dropped unless ``channels`` is 4).

    Raises
    ------
    InputError
        Not a 2-D image shape, or an unsupported dtype.
    """
    pixels = np.asarray(pixels)
    where = Path("image")
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[-1] not in (3, 4)):
        raise InputError(f"image: expected (rows, columns) or (rows, columns, 3 or 4), got "
                         f"shape {pixels.shape}", path=where)
    own = 1 if pixels.ndim == 2 else 3
    if pixels.dtype == np.uint8 or pixels.dtype == np.bool_:
        image = Image.fromarray(pixels.astype(np.uint8) * (255 if pixels.dtype == np.bool_ else 1))
        mode = image.mode
    elif pixels.dtype == np.uint16 and pixels.ndim == 2:
        image, mode = Image.fromarray(pixels), "I;16"
    elif np.issubdtype(pixels.dtype, np.floating):
        array = pixels.astype(np.float32)
        array = array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)[:3 if channels != 4 else 4]
        channels = own if channels is None else int(channels)
        if channels == 1 and array.shape[0] > 1:  # ITU-R 601-2 luma, as Pillow's "L"
            array = np.tensordot(np.array([0.299, 0.587, 0.114], np.float32), array[:3], 1)[None]
        elif array.shape[0] == 1 and channels > 1:
            array = np.repeat(array, channels, axis=0)
        if array.shape[0] != channels:
            raise InputError(f"image: {array.shape[0]} channel(s) cannot be used as {channels}",
                             path=where)
        return np.ascontiguousarray(array, dtype=np.float32)
    else:
        raise InputError(f"image: pixels of dtype {pixels.dtype}: expected uint8, uint16 "
                         f"(grayscale) or float in [0, 1]", path=where)
    return _pixels(image, mode, own, channels, where)


def read_mask(path: Union[str, Path]) -> tuple[np.ndarray, bool]:
    """A mask as integer class indices (rows, columns) and whether it was thresholded.

    - a palette PNG: the palette index is the class;
    - a JPEG: lossy, so its values scatter around 0 and 255: thresholded at half range
      (>= 128 is class 1);
    - values only 0 and the type's maximum (0/255, 0/65535): binary, the maximum is class 1;
    - anything else: the values are the classes (0..K), checked by the caller;
    - an RGB mask whose three channels are equal is read as grayscale; a coloured one is an
      error (store classes as values or as a palette).

    Returns
    -------
    (np.ndarray, bool)
        The classes (uint8, or a wider integer type when a value exceeds 255) and True if a
        JPEG was thresholded.

    Raises
    ------
    InputError
        A missing, unreadable or truncated file, a coloured RGB mask, or non-integer values.
    """
    path = Path(path)
    image, header = _decode(path)
    with image:
        jpeg = header.format == "JPEG" or path.suffix.lower() in _JPEG_SUFFIXES
        mode = header.mode
        if mode in ("P", "PA"):
            return np.asarray(image, dtype=np.uint8), False
        if jpeg:
            gray = np.asarray(image.convert("L"))
            return (gray >= 128).astype(np.uint8), True
        if mode in ("RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
            rgb = np.asarray(image.convert("RGB"))
            if not (np.array_equal(rgb[..., 0], rgb[..., 1])
                    and np.array_equal(rgb[..., 0], rgb[..., 2])):
                raise InputError(f"{path}: a colour mask; store the classes as values 0..K "
                                 f"(or 0/255 for one class) or as a palette PNG", path=path)
            values = rgb[..., 0]
        elif mode in ("LA", "La"):
            values = np.asarray(image.convert("L"))
        else:
            values = np.asarray(image)
    if values.dtype == bool:
        return values.astype(np.uint8), False
    if np.issubdtype(values.dtype, np.floating):
        if not np.all(np.isfinite(values)) or not np.array_equal(values, np.round(values)):
            raise InputError(f"{path}: mask values are not integers", path=path)
        values = values.astype(np.int64)
    full = 255 if values.dtype == np.uint8 else 65535 if mode in _HIGH_BIT_MODES else None
    # 0 and the maximum only: counting is far cheaper than np.unique on a large mask.
    if full is not None and values.size and values.max() == full and \
            np.count_nonzero(values) == np.count_nonzero(values == full):
        return (values == full).astype(np.uint8), False
    if values.size and 0 <= values.min() and values.max() <= 255:
        values = values.astype(np.uint8)
    return values, False


def label_colours(num_classes: int) -> np.ndarray:
    """(num_classes, 3) uint8 RGB: black for the background, then the class colours."""
    return np.concatenate([np.zeros((1, 3), np.uint8), class_colours(num_classes - 1)])


def _atomic_save(image: Image.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def write_label_png(labels: np.ndarray, path: Union[str, Path], num_classes: int) -> Path:
    """Write (rows, columns) class indices as a palette PNG: values 0..K, the class colours.

    Any viewer shows the classes in colour, and the pixel values stay the class indices (the
    palette index), as in the data sets' own palette masks.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(f"{path}: labels must be 2-D, got shape {labels.shape}", path=path)
    if labels.size and (labels.min() < 0 or labels.max() >= max(num_classes, 1)
                        or num_classes > 256):
        raise InputError(f"{path}: label values {labels.min()}..{labels.max()} do not fit "
                         f"{num_classes} classes in a palette PNG", path=path)
    # An "L" image becomes a "P" one when it gets a palette; the values stay the indices.
    image = Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8))
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[:num_classes] = label_colours(num_classes)
    image.putpalette(palette.reshape(-1).tolist())
    return _atomic_save(image, Path(path))


def write_overlay_png(image: np.ndarray, labels: np.ndarray, path: Union[str, Path],
                      num_classes: int, alpha: float = 0.45) -> Path:
    """Write the image with its labels blended in the class colours (RGB PNG).

    ``image`` is (channels, rows, columns) as :func:`read_image` returns it (values in [0, 1];
    other ranges are scaled by their minimum and maximum for display).
    """
    image = np.asarray(image, dtype=np.float32)
    rgb = image[:3] if image.shape[0] >= 3 else np.repeat(image[:1], 3, axis=0)
    low, high = float(rgb.min()), float(rgb.max())
    if low < 0.0 or high > 1.0:
        rgb = (rgb - low) / (high - low) if high > low else np.zeros_like(rgb)
    rgb = np.moveaxis(rgb, 0, -1) * 255.0
    labels = np.asarray(labels)
    colours = label_colours(num_classes).astype(np.float32)[np.clip(labels, 0, num_classes - 1)]
    blended = np.where((labels > 0)[..., None], (1 - alpha) * rgb + alpha * colours, rgb)
    out = Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8))
    return _atomic_save(out, Path(path))
