"""torchrun with two CPU processes (gloo): one run, one set of outputs written by rank 0."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

from datasets import generate_phantom
from swin_unet.model import read_checkpoint

REPO = Path(__file__).resolve().parent.parent
TINY = ["model.img_size=32", "model.embed_dim=8", "model.depths=[1,1,1,1]",
        "model.num_heads=[1,1,1,1]", "model.window_size=2", "train.epochs=2",
        "train.batch_size=4", "train.base_batch_size=4", "train.optimizer=adamw",
        "train.base_lr=0.002", "train.val_every=1", "train.log_every=1",
        "train.schedule=poly", "train.warmup_epochs=0", "data.num_workers=0", "data.augment=true"]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
def test_torchrun_two_cpu_processes_train_and_write_one_set_of_outputs(tmp_path):
    # 8 cases: 4 train (16 slices: 4 iterations of 2 per rank), 2 val (one per rank), 2 test.
    phantom = generate_phantom(tmp_path / "phantom", "abdomen", n_cases=8, shape=(32, 32, 4))
    output = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", "train.py", "--dataset", "phantom", "--root", str(phantom),
               "--output", str(output), "--device", "cpu", "--quiet"]
    for item in TINY:
        command += ["--set", item]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    assert sorted(p.name for p in (output / "checkpoints").iterdir()) == ["best.pth", "last.pth"]
    assert len(list((output / "tensorboard").glob("events.out.tfevents.*"))) == 1
    checkpoint = read_checkpoint(output / "checkpoints" / "last.pth")
    # 16 slices, global batch 4 = 2 per rank: 4 iterations per epoch on each rank.
    assert checkpoint["epoch"] == 2 and checkpoint["global_step"] == 8
    assert not any(k.startswith("module.") for k in checkpoint["model"])
    log = (output / "train.log").read_text()
    assert "distributed: 2 processes (gloo)" in log
    assert "global batch 4 over 2 process(es)" in log
    assert log.count("epoch 2/2") == 1  # only rank 0 logs
    # Each rank scored one validation volume; rank 0 summarised both.
    assert log.count("on 2 volumes") == 2
    # Rank 0 printed the next steps once.
    assert result.stdout.count("done:") == 1
