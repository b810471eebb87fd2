"""For every layout, a training sample and the slice inference feeds the model are the same pixels.

Training reads slices from the slice cache; validation and test.py cut the volume into slices
in :func:`swin_unet.evaluation.inference.predict_volume`. If the two disagreed (a transpose, a flip, a
shifted index, another normalisation) a model would be scored on slices it never saw the like
of. Each layout gets random, asymmetric images written here, at the model's size (no resize).
"""

import json

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from datasets import generate_phantom, open_dataset
from swin_unet.config import DataConfig
from swin_unet.evaluation.inference import predict_volume

X, Y, Z = 20, 14, 3  # non-square in-plane: a transpose cannot go unnoticed


def _nifti(path, array, affine=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([0.9, 0.8, 3.0, 1.0]) if affine is None else affine),
             str(path))


def _volume(seed, classes, hu=False):
    rng = np.random.default_rng(seed)
    image = rng.normal(40.0, 80.0, (X, Y, Z)) if hu else rng.random((X, Y, Z)) * 100
    label = rng.integers(0, classes, (X, Y, Z)).astype(np.uint8)
    return image.astype(np.int16 if hu else np.float32), label


def _synapse_raw(root):
    for number in (5, 6):  # training cases of the standard split
        image, label = _volume(number, 14, hu=True)
        _nifti(root / "RawData/Training/img" / f"img{number:04d}.nii.gz", image)
        _nifti(root / "RawData/Training/label" / f"label{number:04d}.nii.gz", label)


def _synapse_npz(root):
    for number in (5, 6):
        image, label = _volume(number, 9)
        for z in range(Z):
            (root / "train_npz").mkdir(parents=True, exist_ok=True)
            np.savez(root / "train_npz" / f"case{number:04d}_slice{z:03d}.npz",
                     image=image[..., z] / 100, label=label[..., z])
    with h5py.File(root.joinpath("test_vol_h5").mkdir() or root / "test_vol_h5/case0001.npy.h5",
                   "w") as handle:
        image, label = _volume(1, 9)
        handle["image"], handle["label"] = np.moveaxis(image / 100, -1, 0), np.moveaxis(label, -1, 0)


def _acdc_raw(root):
    folder = root / "training" / "patient001"
    folder.mkdir(parents=True)
    (folder / "Info.cfg").write_text("ED: 1\nES: 9\nGroup: NOR\nNbFrame: 20\n")
    for frame in (1, 9):
        image, label = _volume(frame, 4)
        _nifti(folder / f"patient001_frame{frame:02d}.nii.gz", image)
        _nifti(folder / f"patient001_frame{frame:02d}_gt.nii.gz", label)


def _acdc_npz(root):
    for folder, number in (("train", 1), ("valid", 19)):
        (root / folder).mkdir(parents=True)
        for phase in ("ED", "ES"):
            image, label = _volume(number * 10 + len(phase), 4)
            for z in range(Z):
                np.savez(root / folder / f"case_{number:03d}_slice{phase}_{z}.npz",
                         img=image[..., z], label=label[..., z])
    image, label = _volume(2, 4)
    (root / "test").mkdir()
    np.savez(root / "test" / "case_002_volume_ED.npz", img=np.moveaxis(image, -1, 0),
             label=np.moveaxis(label, -1, 0))


def _folder(root):
    (root / "dataset.json").write_text(json.dumps({
        "labels": {"background": 0, "a": 1, "b": 2}, "channel_names": {"0": "T1", "1": "T2"}}))
    (root / "splits.json").write_text(json.dumps({"train": ["p1", "p2"], "val": [],
                                                  "test": ["p2"]}))
    for seed, case in enumerate(("p1", "p2")):
        for channel in range(2):
            image, label = _volume(seed * 2 + channel, 3)
            _nifti(root / "imagesTr" / f"{case}_{channel:04d}.nii.gz", image)
        _nifti(root / "labelsTr" / f"{case}.nii.gz", label)


def _phantom_abdomen(root):
    generate_phantom(root / "abdomen", "abdomen", n_cases=2, shape=(X, Y, 4))
    return root / "abdomen"


def _phantom_cardiac(root):
    generate_phantom(root / "cardiac", "cardiac", n_cases=1, shape=(X, Y, 4))
    return root / "cardiac"


SYNAPSE_CASES = {"train_cases": ["5", "6"], "val_cases": [], "test_cases": ["5"]}
ACDC_CASES = {"train_cases": ["1"], "val_cases": [], "test_cases": ["1"]}
# layout -> (data set, writer, config); the phantom's files are read by the raw readers.
LAYOUTS = {
    "synapse_raw": ("synapse", _synapse_raw, SYNAPSE_CASES),
    "synapse_npz": ("synapse", _synapse_npz, SYNAPSE_CASES),
    "acdc_raw": ("acdc", _acdc_raw, ACDC_CASES),
    "acdc_npz": ("acdc", _acdc_npz, ACDC_CASES),
    "folder": ("folder", _folder, {}),
    "synapse_raw (abdomen phantom)": ("synapse", _phantom_abdomen,
                                      {"train_cases": ["1", "2"], "val_cases": [],
                                       "test_cases": ["2"]}),
    "acdc_raw (cardiac phantom)": ("acdc", _phantom_cardiac, ACDC_CASES),
}


class _Recorder(nn.Module):
    """Keeps every batch the inference code feeds it."""

    def __init__(self, in_chans):
        super().__init__()
        self.in_chans, self.batches = in_chans, []
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        self.batches.append(x.detach().clone())
        return torch.zeros(x.shape[0], 2, *x.shape[2:])


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_training_slices_are_the_slices_inference_sees(tmp_path, layout):
    dataset, write, cases = LAYOUTS[layout]
    root = write(tmp_path) or tmp_path
    config = DataConfig(root=str(root), augment=False, cache_dtype="float32", num_workers=0,
                        **cases)
    source = open_dataset(dataset, config)
    assert source.layout == layout.split()[0]
    slices = source.train_slices((X, Y))
    volumes = {item.case: item for item in source.volumes("train")}
    assert len(slices.cache.names) >= 1 and set(slices.cache.names) <= set(volumes)
    for name, images, labels in zip(slices.cache.names, slices.cache.images,
                                    slices.cache.labels):
        item = volumes[name]
        recorder = _Recorder(source.in_chans)
        predict_volume(recorder, item.array, (X, Y), batch_size=64)
        seen = torch.cat(recorder.batches).numpy()  # (Z, C, X, Y) as the model gets them
        assert seen.shape == images.shape, name
        np.testing.assert_allclose(seen, images, rtol=1e-6, atol=1e-6, err_msg=name)
        np.testing.assert_array_equal(np.moveaxis(item.label, -1, 0), labels, err_msg=name)
    # One sample as the training loop gets it: the same pixels as the cache's slice.
    sample = slices[len(slices) - 1]
    np.testing.assert_allclose(sample["image"].numpy(), slices.cache.images[-1][-1], atol=1e-6)
