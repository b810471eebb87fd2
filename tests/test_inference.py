"""Volume inference: resizing in and out, batching, TTA, the paper procedure, model state."""

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from datasets.transforms import resize_slices
from swin_unet import SwinUnet
from swin_unet.errors import InputError
from swin_unet.evaluation.inference import predict_volume, resolve_device
from swin_unet.evaluation.metrics import case_metrics

K = 4


class IntensityClassifier(nn.Module):
    """Logits that pick the class whose level (k / K) is nearest to the pixel intensity."""

    in_chans = 1

    def __init__(self):
        super().__init__()
        self.levels = nn.Parameter(torch.arange(K, dtype=torch.float32).view(1, K, 1, 1) / K)
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return -20.0 * (x[:, :1] - self.levels) ** 2


def phantom(shape=(40, 30, 9)):
    """Labels of boxes and an image whose intensity is label / K plus a little noise."""
    labels = np.zeros(shape, np.uint8)
    labels[5:25, 4:20, :] = 1
    labels[20:36, 12:27, 2:8] = 2
    labels[4:16, 18:29, 1:6] = 3
    rng = np.random.default_rng(0)
    image = labels / K + rng.normal(0, 0.02, shape)
    return image.astype(np.float32), labels


def test_mm_mode_recovers_labels_through_resizing_and_batches():
    image, labels = phantom()
    model = IntensityClassifier()
    pred = predict_volume(model, image, img_size=32, batch_size=4)
    assert pred.dtype == np.uint8 and pred.shape == labels.shape
    rows = case_metrics(pred, labels, K, hd95=False)
    assert all(r["dice"] > 0.93 for r in rows), rows
    # The model saw every slice, resized to its size, in batches of at most 4.
    assert [b.shape for b in model.seen] == [(4, 1, 32, 32)] * 2 + [(1, 1, 32, 32)]
    assert np.array_equal(pred, predict_volume(model, image, img_size=32, batch_size=1))


def test_mm_mode_resizes_slices_like_the_training_cache():
    image, _ = phantom((40, 30, 3))
    model = IntensityClassifier()
    predict_volume(model, image, img_size=(32, 16), batch_size=8)
    expected = resize_slices(np.moveaxis(image, -1, 0), (32, 16))
    np.testing.assert_allclose(model.seen[0][:, 0].numpy(), expected, atol=1e-5)


def test_at_model_size_labels_come_back_exactly():
    image, labels = phantom((32, 32, 5))
    pred = predict_volume(IntensityClassifier(), image, img_size=32)
    np.testing.assert_array_equal(pred, labels)


def original_procedure(model, image, size):
    """The published test loop: one slice at a time, cubic zoom in, argmax, nearest zoom out."""
    out = np.zeros(image.shape, np.uint8)
    for z in range(image.shape[-1]):
        sl = image[:, :, z]
        x, y = sl.shape
        small = ndimage.zoom(sl, (size / x, size / y), order=3)
        with torch.no_grad():
            logits = model(torch.from_numpy(small)[None, None].float())
        arg = torch.argmax(torch.softmax(logits, dim=1), dim=1)[0].numpy()
        out[:, :, z] = ndimage.zoom(arg, (x / size, y / size), order=0)
    return out


def test_paper_mode_equals_the_original_slice_loop():
    image, _ = phantom((40, 30, 6))
    model = IntensityClassifier()
    pred = predict_volume(model, image, img_size=32, batch_size=4, resize="paper")
    np.testing.assert_array_equal(pred, original_procedure(model, image, 32))


def test_tta_averages_the_probabilities_of_the_four_flips_of_a_real_model():
    torch.manual_seed(0)
    model = SwinUnet(img_size=64, in_chans=1, num_classes=3, embed_dim=12, depths=(1, 1, 1, 1),
                     num_heads=(1, 1, 1, 1), window_size=2)
    image = np.random.default_rng(1).random((48, 56, 3), dtype=np.float32)
    plain = predict_volume(model, image, 64, batch_size=2)
    tta = predict_volume(model, image, 64, batch_size=2, tta=True)
    assert plain.shape == tta.shape == (48, 56, 3) and tta.dtype == np.uint8
    # The reference: the log of the mean of the un-flipped probabilities of the flipped inputs.
    with torch.no_grad():
        batch = torch.nn.functional.interpolate(
            torch.from_numpy(np.moveaxis(image, -1, 0)[:, None].copy()), size=(64, 64),
            mode="bicubic", align_corners=False)
        model.eval()
        mean = sum(torch.flip(torch.softmax(model(torch.flip(batch, d)), 1), d) if d
                   else torch.softmax(model(batch), 1)
                   for d in ((), (-2,), (-1,), (-2, -1))) / 4
        mean = torch.nn.functional.interpolate(torch.log(mean), size=(48, 56), mode="bilinear",
                                               align_corners=False)
    expected = np.moveaxis(mean.argmax(1).numpy().astype(np.uint8), 0, -1)
    assert (tta == expected).mean() > 0.999
    assert (tta != plain).any()  # a random model is not flip-equivariant: TTA changed something


def test_multichannel_volumes_and_model_mode_restored():
    class TwoChannel(IntensityClassifier):
        in_chans = 2

    model = TwoChannel()
    model.train()
    image, labels = phantom((32, 32, 4))
    pred = predict_volume(model, np.stack([image, image * 0]), 32)
    np.testing.assert_array_equal(pred, labels)
    assert model.training
    with pytest.raises(InputError, match="channel"):
        predict_volume(model, image, 32)


@pytest.mark.parametrize("kwargs, message", [
    ({"resize": "voxel"}, "resize method"), ({"batch_size": 0}, "batch size"),
])
def test_bad_arguments_raise_input_error(kwargs, message):
    image, _ = phantom((8, 8, 2))
    with pytest.raises(InputError, match=message):
        predict_volume(IntensityClassifier(), image, 8, **kwargs)
    with pytest.raises(InputError, match="shape"):
        predict_volume(IntensityClassifier(), image[..., 0], 8)


class _AutocastProbe(torch.nn.Module):
    """Identity-like model recording the autocast state its forward runs in."""

    in_chans = 1

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 3, 1)
        self.seen = []

    def forward(self, x):
        self.seen.append(torch.get_autocast_dtype("cpu")
                         if torch.is_autocast_enabled("cpu") else None)
        return self.conv(x)


@pytest.mark.parametrize("native,amp,amp_dtype,expected", [
    (None, True, None, None),                      # --amp on a CPU without bf16: float32
    ("avx512_bf16", True, None, torch.bfloat16),   # --amp on a CPU with bf16
    ("amx_bf16", False, None, None),               # no --amp
    (None, False, torch.bfloat16, torch.bfloat16),  # validation passes its run's dtype
])
def test_predict_volume_runs_in_the_precision_asked(monkeypatch, native, amp, amp_dtype, expected):
    from swin_unet import precision
    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: native)
    model = _AutocastProbe()
    predict_volume(model, np.zeros((8, 8, 3), np.float32), 8, batch_size=2, device="cpu",
                   amp=amp, amp_dtype=amp_dtype)
    assert model.seen == [expected, expected]


@pytest.mark.parametrize("count,local_rank,expected", [(1, 3, 0), (4, 3, 3), (2, 0, 0)])
def test_cuda_device_of_a_process_follows_its_local_rank_unless_it_sees_one_gpu(
        monkeypatch, count, local_rank, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    assert resolve_device("cuda", local_rank) == torch.device("cuda", expected)


def test_more_local_processes_than_gpus_is_an_input_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(InputError, match="local rank 2 has no GPU"):
        resolve_device("cuda", 2)
