"""Values a user's files may hold: >255 classes, NaN/Inf labels, odd JSON, YAML and checkpoints."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from datasets import open_dataset
from datasets.folder import read_dataset_json
from swin_unet.config import DataConfig, load_config
from swin_unet.errors import InputError
from swin_unet.evaluation.inference import predict_volume
from swin_unet.model import read_checkpoint
from swin_unet.io.volumes import read_volume, write_labels

SHAPE = (12, 10, 3)
CLASSES = 301


def _folder_with_classes(root, n_classes):
    labels = {"0": "background"} | {str(i): f"structure_{i}" for i in range(1, n_classes)}
    (root / "dataset.json").write_text(json.dumps({"labels": labels, "modality": {"0": "MR"}}))
    (root / "splits.json").write_text(json.dumps({"train": ["a"], "val": None, "test": ["a"]}))
    for folder in ("imagesTr", "labelsTr"):
        (root / folder).mkdir()
    label = np.zeros(SHAPE, np.uint16)
    label[2:6, 2:6] = n_classes - 1
    label[7:10, 1:4] = 1
    image = np.random.default_rng(0).random(SHAPE, dtype=np.float32)
    nib.save(nib.Nifti1Image(image, np.eye(4)), str(root / "imagesTr" / "a.nii.gz"))
    nib.save(nib.Nifti1Image(label, np.eye(4)), str(root / "labelsTr" / "a.nii.gz"))
    return label


class _Highest(nn.Module):
    """Predicts the last of ``num_classes`` everywhere."""

    def __init__(self, num_classes):
        super().__init__()
        self.in_chans, self.num_classes = 1, num_classes
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        logits = torch.zeros(x.shape[0], self.num_classes, *x.shape[2:]) * self.scale
        logits[:, -1] = 1.0
        return logits


def test_more_than_255_classes_stay_uint16_from_file_to_prediction(tmp_path):
    label = _folder_with_classes(tmp_path, CLASSES)
    source = open_dataset("folder", DataConfig(root=str(tmp_path), augment=False))
    assert source.num_classes == CLASSES and source.cases("val") == []
    source.check_integrity()
    item = source.volumes("test")[0]
    assert item.label.dtype == np.uint16
    np.testing.assert_array_equal(item.label, label)  # 300 is 300, not 300 - 256 = 44
    slices = source.train_slices((16, 16))
    assert max(int(slices[i]["label"].max()) for i in range(len(slices))) == CLASSES - 1
    prediction = predict_volume(_Highest(CLASSES), item.array, (16, 16), batch_size=2)
    assert prediction.dtype == np.uint16 and (prediction == CLASSES - 1).all()
    path = write_labels(prediction, read_volume(tmp_path / "imagesTr" / "a.nii.gz"),
                        tmp_path / "pred.nii.gz")
    assert (np.asarray(nib.load(str(path)).dataobj) == CLASSES - 1).all()
    assert not list(tmp_path.glob(".tmp-*"))


def test_failed_label_write_leaves_no_temporary_file(tmp_path):
    reference = read_volume(_save(tmp_path / "scan.nii.gz", np.zeros(SHAPE, np.float32)))
    target = tmp_path / "missing_folder" / "pred.nii.gz"
    with pytest.raises(OSError):
        write_labels(np.zeros(SHAPE, np.uint8), reference, target)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "pred.nii.gz").mkdir()  # a folder in the way: the rename fails
    with pytest.raises(OSError):
        write_labels(np.zeros(SHAPE, np.uint8), reference, tmp_path / "out" / "pred.nii.gz")
    assert not list(tmp_path.rglob(".tmp-*"))


def _save(path, array):
    nib.save(nib.Nifti1Image(array, np.eye(4)), str(path))
    return path


@pytest.mark.parametrize("labels, words", [
    ({"background": 0, "a": 1, "b": 1.5}, "no integer index"),
    ({"0": "background", "1": "a", "01": "b"}, "label index 1 given twice"),
    ({"background": 0, "a": True}, "no integer index"),
    ({"background": 0, "a": 2}, "are not 0..K"),
])
def test_dataset_json_label_indices_are_integers_without_duplicates(tmp_path, labels, words):
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"labels": labels}))
    with pytest.raises(InputError, match=words) as caught:
        read_dataset_json(path)
    assert caught.value.path == path


def test_yaml_configs_with_mixed_keys_or_binary_content_name_the_file(tmp_path):
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text("train:\n  epochs: 2\n  1: 3\n  true: 4\n")
    with pytest.raises(InputError, match=r"mixed.yaml: unknown config key 'train\.(1|True)'"):
        load_config(mixed)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    with pytest.raises(InputError, match="binary.yaml: not a text file") as caught:
        load_config(binary)
    assert caught.value.path == binary


def test_checkpoint_dict_with_integer_keys_is_refused(tmp_path):
    path = tmp_path / "odd.pth"
    torch.save({0: torch.zeros(2), "model": {}}, path)
    with pytest.raises(InputError, match="odd.pth: not a checkpoint .key 0"):
        read_checkpoint(path)
    notes = tmp_path / "notes.pth"
    notes.write_text("0\n1\nthese are notes, not weights\n")
    with pytest.raises(InputError, match="notes.pth: not a readable PyTorch checkpoint"):
        read_checkpoint(notes)


def test_hdf5_group_and_unlistable_input_folder_name_the_path(tmp_path, monkeypatch):
    import h5py

    from datasets.readers import h5_shapes, read_h5
    from swin_unet.io.volumes import find_inputs

    path = tmp_path / "case0001.npy.h5"
    with h5py.File(path, "w") as handle:
        handle.create_group("image")
        handle["label"] = np.zeros((2, 3, 3), np.uint8)
    for reader in (read_h5, h5_shapes):
        with pytest.raises(InputError, match="case0001.npy.h5: 'image' is a Group, not a "
                                             "dataset"):
            reader(path)
    # root may read any folder: a folder it cannot list is simulated.
    locked = tmp_path / "locked"
    locked.mkdir()
    real_iterdir = type(locked).iterdir

    def iterdir(self):
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(type(locked), "iterdir", iterdir)
    with pytest.raises(InputError, match="locked: cannot list the folder .Permission denied"):
        find_inputs(locked)
