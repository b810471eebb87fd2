"""2-D image files: channel layouts and mask flavours read right; label PNGs and overlays written."""

import numpy as np
import pytest
from PIL import Image

from swin_unet.errors import InputError
from swin_unet.io.images import (label_colours, read_image, read_image_header, read_mask,
                                write_label_png, write_overlay_png)

RNG = np.random.default_rng(0)
GRAY = RNG.integers(0, 256, (12, 20), dtype=np.uint8)
RGB = RNG.integers(0, 256, (12, 20, 3), dtype=np.uint8)


def save(path, array, **kwargs):
    Image.fromarray(array).save(path, **kwargs)
    return path


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif"])
def test_grayscale_is_one_channel_rgb_three_scaled_by_bit_depth(tmp_path, suffix):
    gray = read_image(save(tmp_path / f"g{suffix}", GRAY))
    assert gray.shape == (1, 12, 20) and gray.dtype == np.float32
    np.testing.assert_allclose(gray[0] * 255, GRAY, atol=1e-4)
    rgb = read_image(save(tmp_path / f"c{suffix}", RGB))
    assert rgb.shape == (3, 12, 20)
    np.testing.assert_allclose(np.moveaxis(rgb, 0, -1) * 255, RGB, atol=1e-4)
    # Asked for 3 channels, a grayscale image repeats; asked for 1, colour becomes luma.
    np.testing.assert_array_equal(read_image(tmp_path / f"g{suffix}", 3), np.repeat(gray, 3, 0))
    luma = np.asarray(Image.fromarray(RGB).convert("L"), dtype=np.float32) / 255
    np.testing.assert_allclose(read_image(tmp_path / f"c{suffix}", 1)[0], luma, atol=1e-6)


def test_sixteen_bit_alpha_and_jpeg_images(tmp_path):
    deep = RNG.integers(0, 65536, (12, 20)).astype(np.uint16)
    image = read_image(save(tmp_path / "d.png", deep))
    np.testing.assert_allclose(image[0] * 65535, deep, atol=0.02)
    rgba = np.dstack([RGB, np.full((12, 20), 7, np.uint8)])
    path = save(tmp_path / "a.png", rgba)
    assert read_image_header(path).alpha and read_image_header(path).channels == 3
    np.testing.assert_allclose(np.moveaxis(read_image(path), 0, -1) * 255, RGB, atol=1e-4)
    cols, rows = np.meshgrid(np.arange(20) * 12, np.arange(12) * 20)
    smooth = np.stack([cols, rows, np.full((12, 20), 90)], axis=-1).astype(np.uint8)
    jpeg = read_image(save(tmp_path / "j.jpg", smooth, quality=95))
    assert jpeg.shape == (3, 12, 20)
    assert np.abs(np.moveaxis(jpeg, 0, -1) * 255 - smooth).mean() < 3


def mask_values():
    mask = np.zeros((12, 20), np.uint8)
    mask[2:7, 3:9] = 1
    mask[8:11, 12:18] = 2
    return mask


def test_every_mask_flavour_gives_class_indices(tmp_path):
    classes = mask_values()
    binary = (classes > 0).astype(np.uint8)
    # 0/255 and 0/1 binary masks, 0..K index masks, a palette PNG (index = class).
    assert np.array_equal(read_mask(save(tmp_path / "b255.png", binary * 255))[0], binary)
    assert np.array_equal(read_mask(save(tmp_path / "b1.png", binary))[0], binary)
    assert np.array_equal(read_mask(save(tmp_path / "k.png", classes))[0], classes)
    assert np.array_equal(read_mask(save(tmp_path / "k16.png", classes.astype(np.uint16)))[0],
                          classes)
    palette = Image.fromarray(classes)
    palette.putpalette([0, 0, 0, 250, 10, 10, 10, 250, 10] + [0] * (253 * 3))
    palette.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    assert np.array_equal(read_mask(tmp_path / "p.png")[0], classes)
    # A 1-bit PNG, and a grayscale mask stored as RGB.
    Image.fromarray(binary.astype(bool)).save(tmp_path / "bits.png")
    assert np.array_equal(read_mask(tmp_path / "bits.png")[0], binary)
    rgb = np.repeat((binary * 255)[..., None], 3, axis=-1)
    assert np.array_equal(read_mask(save(tmp_path / "rgb.png", rgb))[0], binary)


def test_jpeg_mask_is_thresholded_at_half_range(tmp_path):
    big = np.zeros((64, 64), np.uint8)
    big[10:40, 20:50] = 255
    values, thresholded = read_mask(save(tmp_path / "m.jpg", big, quality=60))
    assert thresholded
    raw = np.asarray(Image.open(tmp_path / "m.jpg"))
    assert len(np.unique(raw)) > 2  # lossy: values scatter around 0 and 255
    assert set(np.unique(values)) == {0, 1}
    assert np.count_nonzero(values != (big > 0)) < 0.01 * big.size


def test_colour_mask_and_unreadable_files_name_the_file(tmp_path):
    colour = np.zeros((12, 20, 3), np.uint8)
    colour[2:5, 2:5] = (255, 0, 0)
    with pytest.raises(InputError, match=r"c\.png: a colour mask"):
        read_mask(save(tmp_path / "c.png", colour))
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match=r"junk\.png: not a readable image"):
        read_image(tmp_path / "junk.png")
    whole = save(tmp_path / "whole.png", RGB).read_bytes()
    (tmp_path / "cut.png").write_bytes(whole[:len(whole) // 2])
    with pytest.raises(InputError, match=r"cut\.png: unreadable or truncated"):
        read_image(tmp_path / "cut.png")
    with pytest.raises(InputError, match=r"gone\.png: file not found"):
        read_mask(tmp_path / "gone.png")


def test_label_png_keeps_class_values_and_shows_class_colours(tmp_path):
    classes = mask_values()
    path = write_label_png(classes, tmp_path / "out" / "case.png", num_classes=3)
    image = Image.open(path)
    assert image.mode == "P" and image.size == (20, 12)
    assert np.array_equal(np.asarray(image), classes)
    shown = np.asarray(image.convert("RGB"))
    colours = label_colours(3)
    assert (shown[4, 5] == colours[1]).all() and (shown[9, 14] == colours[2]).all()
    assert (shown[0, 0] == 0).all()
    with pytest.raises(InputError, match="do not fit 2 classes"):
        write_label_png(classes, tmp_path / "bad.png", num_classes=2)


def test_overlay_blends_class_colours_over_the_image(tmp_path):
    classes = mask_values()
    image = np.full((3, 12, 20), 0.5, np.float32)
    path = write_overlay_png(image, classes, tmp_path / "o.png", num_classes=3, alpha=0.5)
    rgb = np.asarray(Image.open(path)).astype(int)
    assert rgb.shape == (12, 20, 3)
    assert (rgb[0, 0] == 128).all()  # background: the image as it is
    expected = np.rint(0.5 * 127.5 + 0.5 * label_colours(3)[1].astype(float))
    assert np.abs(rgb[4, 5] - expected).max() <= 1
