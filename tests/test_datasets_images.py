"""2-D image data sets: both layouts, every mask flavour, the lesion phantom, and their errors."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from datasets import generate_phantom, open_dataset
from datasets.slices import SliceCache, SliceDataset
from swin_unet.config import DataConfig
from swin_unet.errors import InputError
from swin_unet.evaluation.metrics import case_metrics, hausdorff95

SIZE = (24, 32)  # rows, columns


def lesion_mask(index, size=SIZE):
    mask = np.zeros(size, np.uint8)
    mask[3 + index % 4:14, 5:15 + index % 5] = 1
    return mask


def photo(mask, colour=True):
    """An image whose lesion is darker than its background (values known exactly)."""
    base = np.where(mask > 0, 60, 200).astype(np.uint8)
    return np.dstack([base, base - 20, base - 40]) if colour else base


def write_pairs(root, n=6):
    """images/ + masks/ in every mask flavour: 0/255, 0/1 (_mask), palette (_segmentation),
    JPEG, two masks of one image (_mask, _mask_1), and a grayscale BMP image."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    expected = {}
    for i in range(n):
        mask = lesion_mask(i)
        name = f"img{i}"
        if i == 5:
            Image.fromarray(photo(mask, colour=False)).save(root / "images" / f"{name}.bmp")
        else:
            Image.fromarray(photo(mask)).save(root / "images" / f"{name}.png")
        if i == 0:
            Image.fromarray(mask * 255).save(root / "masks" / f"{name}.png")
        elif i == 1:
            Image.fromarray(mask).save(root / "masks" / f"{name}_mask.png")
        elif i == 2:
            pal = Image.fromarray(mask)
            pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
            pal.save(root / "masks" / f"{name}_segmentation.png")
        elif i == 3:
            Image.fromarray(mask * 255).save(root / "masks" / f"{name}.jpg", quality=90)
        elif i == 4:
            extra = np.zeros(SIZE, np.uint8)
            extra[18:22, 20:28] = 255
            Image.fromarray(mask * 255).save(root / "masks" / f"{name}_mask.png")
            Image.fromarray(extra).save(root / "masks" / f"{name}_mask_1.png")
            mask = mask | (extra > 0)
        else:
            Image.fromarray(mask * 255).save(root / "masks" / f"{name}.png")
        expected[name] = mask.astype(np.uint8)
    return expected


def write_nnunet_2d(root, n=5):
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "R", "1": "G", "2": "B"},
        "labels": {"background": 0, "gland": 1, "vessel": 2},
        "numTraining": n, "file_ending": ".png"}))
    expected = {}
    for i in range(n):
        label = lesion_mask(i)
        label[18:22, 20:28] = 2
        Image.fromarray(photo(label)).save(root / "imagesTr" / f"case{i}_0000.png")
        Image.fromarray(label).save(root / "labelsTr" / f"case{i}.png")
        expected[f"case{i}"] = label
    return expected


def every_item(source):
    return {e.name: source.volume_item(e) for s in ("train", "val", "test")
            for e in source.entries(s)}


def test_image_pairs_every_mask_flavour_read_as_classes(tmp_path):
    expected = write_pairs(tmp_path)
    source = open_dataset("folder", DataConfig(root=str(tmp_path), class_names=["lesion"]))
    assert (source.layout, source.in_chans, source.class_names) == ("image_pairs", 3, ("lesion",))
    assert source.intensity == "zscore" and source.augmentation == "photo"
    source.check_integrity(read_images=True)
    items = every_item(source)
    assert sorted(items) == sorted(expected)
    for name, item in items.items():
        assert item.array.shape == (3,) + SIZE + (1,)
        assert item.label.shape == SIZE + (1,) and item.label.dtype == np.uint8
        np.testing.assert_array_equal(item.label[..., 0], expected[name], err_msg=name)
        assert item.spacing == (1.0, 1.0, 1.0) and item.distance_unit == "px"
    # The grayscale BMP is repeated into R, G and B; z-scored per channel.
    gray = items["img5"].array
    np.testing.assert_allclose(gray[0], gray[1], atol=1e-6)
    np.testing.assert_allclose(gray.reshape(3, -1).mean(1), 0, atol=1e-5)
    # Without dataset.json or data.class_names: one class "foreground".
    assert open_dataset("folder", DataConfig(root=str(tmp_path))).class_names == ("foreground",)


def test_nnunet_2d_layout_rgb_multiclass(tmp_path):
    expected = write_nnunet_2d(tmp_path)
    source = open_dataset("folder", DataConfig(root=str(tmp_path), intensity="none"))
    assert (source.layout, source.in_chans, source.class_names) == (
        "nnunet_2d", 3, ("gland", "vessel"))
    source.check_integrity(read_images=True)
    for name, item in every_item(source).items():
        np.testing.assert_array_equal(item.label[..., 0], expected[name])
        image = item.array[..., 0]
        np.testing.assert_allclose(image[:, 0, 0] * 255, [200, 180, 160], atol=1e-4)


def test_nnunet_2d_one_file_per_channel(tmp_path):
    write_nnunet_2d(tmp_path, n=3)
    meta = json.loads((tmp_path / "dataset.json").read_text())
    meta["channel_names"] = {"0": "US", "1": "doppler"}
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    for i in range(3):
        rgb = np.asarray(Image.open(tmp_path / "imagesTr" / f"case{i}_0000.png"))
        Image.fromarray(rgb[..., 0]).save(tmp_path / "imagesTr" / f"case{i}_0000.png")
        Image.fromarray(rgb[..., 2]).save(tmp_path / "imagesTr" / f"case{i}_0001.png")
    source = open_dataset("folder", DataConfig(root=str(tmp_path), intensity="none"))
    assert source.in_chans == 2
    image = source.volume_item(source.entries("train")[0]).array
    assert image.shape == (2,) + SIZE + (1,)
    np.testing.assert_allclose(image[:, 0, 0, 0] * 255, [200, 160], atol=1e-4)


@pytest.mark.parametrize("damage, words", [
    ("no_mask", ["img2.png", "without a mask"]),
    ("size", ["img1_mask.png", "mask size 30x24 differs", "32x24"]),
    ("values", ["img0.png", "label value 3", "lesion"]),
    ("unreadable", ["img4.png", "not a readable image"]),
    ("two_masks", ["img0", "a second mask"]),
])
def test_broken_pairs_are_one_error_naming_the_file(tmp_path, damage, words):
    write_pairs(tmp_path)
    masks, images = tmp_path / "masks", tmp_path / "images"
    if damage == "no_mask":
        (masks / "img2_segmentation.png").unlink()
    elif damage == "size":
        Image.fromarray(np.zeros((24, 30), np.uint8)).save(masks / "img1_mask.png")
    elif damage == "values":
        Image.fromarray(lesion_mask(0) * 3).save(masks / "img0.png")
    elif damage == "unreadable":
        (images / "img4.png").write_bytes(b"\x89PNG broken")
    else:
        Image.fromarray(lesion_mask(0)).save(masks / "img0_mask.png")
    with pytest.raises(InputError) as info:
        source = open_dataset("folder", DataConfig(root=str(tmp_path), class_names=["lesion"]))
        source.check_integrity()
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)


def test_truncated_image_is_named_when_read(tmp_path):
    write_pairs(tmp_path)
    whole = (tmp_path / "images" / "img1.png").read_bytes()
    (tmp_path / "images" / "img1.png").write_bytes(whole[:len(whole) - 30])
    source = open_dataset("folder", DataConfig(root=str(tmp_path)))
    with pytest.raises(InputError, match=r"img1\.png: unreadable or truncated image"):
        source.check_integrity(read_images=True)


def test_lesion_phantom_is_deterministic_rgb_and_opens_as_phantom2d(tmp_path):
    for name in ("a", "b"):
        generate_phantom(tmp_path / name, "lesions", n_cases=3, seed=4, shape=(40, 48))
    for sub in ("images/lesion_0002.jpg", "masks/lesion_0002_segmentation.png"):
        assert (tmp_path / "a" / sub).read_bytes() == (tmp_path / "b" / sub).read_bytes()
    mask = np.asarray(Image.open(tmp_path / "a" / "masks" / "lesion_0001_segmentation.png"))
    assert set(np.unique(mask)) == {0, 255} and 30 <= mask.shape[0] <= 50
    source = open_dataset("phantom2d", DataConfig(root=str(tmp_path / "a")))
    assert (source.name, source.in_chans, source.class_names) == ("phantom2d", 3, ("lesion",))
    item = source.volume_item(source.entries("test")[0])
    assert item.array.shape[0] == 3 and item.label.max() == 1


def test_photo_augmentation_is_seeded_and_keeps_labels_classes():
    rng = np.random.default_rng(0)
    labels = np.zeros((4, 32, 32), np.uint8)
    labels[:, 8:20, 10:26] = 1
    images = rng.random((4, 3, 32, 32)).astype(np.float16)
    dataset = SliceDataset(SliceCache(["a"], [images], [labels]), augment=True,
                           seed=3, augmentation="photo")
    dataset.set_epoch(2)
    first = [dataset[i] for i in range(4)]
    again = [dataset[i] for i in range(4)]
    for a, b in zip(first, again):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert any(not torch.equal(item["label"][0].to(torch.uint8), torch.from_numpy(labels[0]))
               for item in first)  # something moved
    assert all(set(item["label"].unique().tolist()) <= {0, 1} for item in first)


def test_one_slice_volume_is_scored_in_2d():
    label = np.zeros((40, 40), np.uint8)
    label[10:30, 10:30] = 1
    pred = np.zeros_like(label)
    pred[12:32, 10:30] = 1
    row = case_metrics(pred[..., None], label[..., None], 2, spacing=(1.0, 1.0, 1.0))[0]
    assert row["hd95"] == pytest.approx(hausdorff95(pred, label))
    # Eroding across the slice axis would count every pixel as surface: another number.
    assert row["hd95"] != pytest.approx(hausdorff95(pred[..., None], label[..., None]))
