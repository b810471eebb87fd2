"""2-D images from the command line: train and test on both layouts, segment new images, errors."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import test as test_cli
import train as train_cli
from benchmarks.reference_model import imagenet_checkpoint
from tests.test_datasets_images import SIZE, write_nnunet_2d, write_pairs

TINY = ["model.img_size=32", "model.embed_dim=8", "model.depths=[1,1,1,1]",
        "model.num_heads=[1,1,1,1]", "model.window_size=2", "train.epochs=1",
        "train.batch_size=4", "train.val_every=1", "data.num_workers=0", "data.augment=true",
        "train.cpu_threads=1"]


def train(capsys, root, output, *extra):
    """train.py on ``root`` with the tiny model; ``extra`` are --set items or options."""
    args = ["--quiet", "--device", "cpu", "--dataset", "folder", "--root", str(root),
            "--output", str(output)]
    for item in TINY:
        args += ["--set", item]
    items = list(extra)
    while items:
        item = items.pop(0)
        args += [item, items.pop(0)] if item.startswith("--") else ["--set", item]
    code = train_cli.main(args)
    return code, capsys.readouterr().err.strip()


def run_test(capsys, *args):
    code = test_cli.main(["--no-progress", "--device", "cpu", *args])
    out = capsys.readouterr()
    return code, out.out, out.err.strip()


@pytest.mark.parametrize("layout", ["image_pairs", "nnunet_2d"])
def test_train_test_and_segment_new_images(capsys, tmp_path, layout):
    root = tmp_path / "data"
    if layout == "image_pairs":
        write_pairs(root)
        names, extra = ["lesion"], ["data.class_names=[lesion]"]
    else:
        write_nnunet_2d(root)
        names, extra = ["gland", "vessel"], []
    code, err = train(capsys, root, tmp_path / "run", *extra)
    assert code == 0, err
    checkpoint = tmp_path / "run" / "checkpoints" / "best.pth"
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "intensity: zscore" in config and "in_chans: 3" in config

    code, out, err = run_test(capsys, "--dataset", "folder", "--root", str(root), "--checkpoint",
                          str(checkpoint), "--output", str(tmp_path / "eval"), "--save-nifti")
    assert code == 0, err
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["hd95_unit"] == "px" and list(summary["classes"]) == names
    assert "HD95 (px)" in out and "pixels (px)" in out
    rows = (tmp_path / "eval" / "metrics.csv").read_text().splitlines()
    assert rows[0] == "case,class_index,class_name,dice,hd95"
    case = rows[1].split(",")[0]
    prediction = Image.open(tmp_path / "eval" / "predictions" / f"{case}.png")
    assert prediction.mode == "P" and prediction.size == (SIZE[1], SIZE[0])
    assert (tmp_path / "eval" / "overlays" / f"{case}.png").is_file()

    # New images of other sizes: predictions and overlays at each image's own size.
    new = tmp_path / "new"
    new.mkdir()
    Image.fromarray(np.full((40, 52, 3), 120, np.uint8)).save(new / "big.jpg")
    Image.fromarray(np.full((18, 20), 90, np.uint8)).save(new / "gray.bmp")
    code, out, err = run_test(capsys, "--checkpoint", str(checkpoint), "--input", str(new),
                          "--output", str(tmp_path / "mine"))
    assert code == 0, err
    for name, size in (("big", (52, 40)), ("gray", (20, 18))):
        label = Image.open(tmp_path / "mine" / "predictions" / f"{name}.png")
        assert label.mode == "P" and label.size == size
        assert int(np.asarray(label).max()) <= len(names)
        assert Image.open(tmp_path / "mine" / "overlays" / f"{name}.png").size == size
    assert "overlays" in out
    code, _, err = run_test(capsys, "--checkpoint", str(checkpoint), "--input",
                            str(new / "big.jpg"), "--output", str(tmp_path / "mine"))
    assert code == 2 and "big.png: exists" in err


@pytest.mark.parametrize("damage, words", [
    ("no_mask", ["img2.png", "without a mask"]),
    ("values", ["img0.png", "label value 7"]),
    ("size", ["img1_mask.png", "mask size"]),
    ("truncated", ["img3.png", "truncated"]),
])
def test_broken_image_data_is_one_line_exit_2(capsys, tmp_path, damage, words):
    write_pairs(tmp_path)
    if damage == "no_mask":
        (tmp_path / "masks" / "img2_segmentation.png").unlink()
    elif damage == "values":
        Image.fromarray(np.full(SIZE, 7, np.uint8)).save(tmp_path / "masks" / "img0.png")
    elif damage == "size":
        Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "masks" / "img1_mask.png")
    else:
        whole = (tmp_path / "images" / "img3.png").read_bytes()
        (tmp_path / "images" / "img3.png").write_bytes(whole[:len(whole) - 30])
    code, err = train(capsys, tmp_path, tmp_path / "run", "data.class_names=[lesion]",
                      "data.train_cases=[img0,img1,img2,img3,img4,img5]", "data.val_cases=[]")
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err
    for word in words:
        assert word in err, (word, err)


def test_rgb_model_starts_from_imagenet_patch_kernels_unchanged(capsys, tmp_path):
    """An RGB image data set trains from ImageNet Swin-T as the original code does."""
    torch.save(imagenet_checkpoint(embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1),
                                   window=2, img_size=32), tmp_path / "swin_t.pth")
    write_pairs(tmp_path / "data")
    code, err = train(capsys, tmp_path / "data", tmp_path / "run", "train.epochs=1",
                      "--pretrained", str(tmp_path / "swin_t.pth"))
    assert code == 0, err
    log = (tmp_path / "run" / "train.log").read_text()
    assert "in_chans = 3" in log and "pretrained weights" in log
    assert "RGB kernels summed" not in log
