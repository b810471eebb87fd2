"""End to end: a tiny model trained briefly on the phantom segments it; broken orientations do not.

The training slices (slice cache), the validation volume (volume items) and inference
(``predict_volume``) are the real pipeline. A fixed, seeded run of 120 steps reaches a
validation Dice that neither the untrained model nor the trained one fed transposed or flipped
slices comes near: a slice orientation or label map that differed between training and
inference would fail here. Measured on the shared 2-core machine (noisy): trained about 0.6,
transposed about 0.17, flipped about 0.05, untrained 0.02; the whole test takes about
10 s of CPU time on one core (48 s wall on the loaded shared machine).
"""

import numpy as np
import pytest
import torch

from datasets import generate_phantom, open_dataset
from swin_unet import SwinUnet
from swin_unet.config import DataConfig
from swin_unet.evaluation.inference import predict_volume
from swin_unet.evaluation.metrics import case_metrics
from swin_unet.training import SegmentationLoss

SIZE, STEPS, BATCH = 32, 120, 8


def _model():
    return SwinUnet(img_size=SIZE, in_chans=1, num_classes=9, embed_dim=12, depths=(1, 1, 1, 1),
                    num_heads=(1, 1, 1, 1), window_size=2, drop_path_rate=0.0)


def _mean_dice(model, volumes, orientation=None):
    """Mean foreground Dice over the volumes; ``orientation`` breaks the slices on purpose."""
    scores = []
    for item in volumes:
        image = item.array
        if orientation == "transposed":
            prediction = predict_volume(model, image.transpose(1, 0, 2), SIZE).transpose(1, 0, 2)
        elif orientation == "flipped":
            prediction = predict_volume(model, image[::-1].copy(), SIZE)[::-1]
        else:
            prediction = predict_volume(model, image, SIZE)
        scores += [row["dice"] for row in case_metrics(prediction, item.label, 9, hd95=False)]
    return float(np.nanmean(scores))


def test_short_training_beats_untrained_and_misoriented_inference(tmp_path):
    root = generate_phantom(tmp_path / "phantom", "abdomen", n_cases=3, shape=(48, 48, 10))
    source = open_dataset("synapse", DataConfig(
        root=str(root), train_cases=["1", "2"], val_cases=["3"], test_cases=["3"],
        augment=False, num_workers=0))
    slices = source.train_slices(SIZE)
    volumes = list(source.volumes("val"))
    torch.manual_seed(0)
    untrained, model = _model(), _model()
    model.load_state_dict(untrained.state_dict())
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.005)
    loss_fn = SegmentationLoss()
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(STEPS):
        batch = [slices[int(i)] for i in torch.randint(len(slices), (BATCH,),
                                                       generator=generator)]
        loss, _, _ = loss_fn(model(torch.stack([b["image"] for b in batch])),
                             torch.stack([b["label"] for b in batch]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    trained = _mean_dice(model, volumes)
    others = {"untrained": _mean_dice(untrained, volumes),
              "transposed": _mean_dice(model, volumes, "transposed"),
              "flipped": _mean_dice(model, volumes, "flipped")}
    assert trained > 0.4, (trained, others)
    for name, dice in others.items():
        assert dice < trained - 0.2, (name, dice, trained)
    assert pytest.approx(_mean_dice(model, volumes)) == trained  # inference is deterministic
