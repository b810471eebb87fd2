"""A two-machine torchrun job on this machine: two launchers, one process each, gloo, c10d."""

import socket
import subprocess
import sys
import uuid
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
        "train.iters_per_epoch=3", "data.num_workers=0"]

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                 reason="torch.distributed with gloo is not available")]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def two_node_job(root, output, cache, *extra):
    """Both launchers of a --nnodes=2 job, started together; their results in node order."""
    port, run_id = free_port(), uuid.uuid4().hex[:8]
    launchers = []
    for node in (0, 1):
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2",
                   "--nproc_per_node=1", f"--node_rank={node}", "--rdzv_backend=c10d",
                   f"--rdzv_endpoint=127.0.0.1:{port}", f"--rdzv_id={run_id}", "train.py",
                   "--dataset", "phantom", "--root", str(root), "--output", str(output),
                   "--device", "cpu", "--quiet", "--set", f"data.cache_dir={cache}"]
        for item in TINY:
            command += ["--set", item]
        launchers.append(subprocess.Popen(command + list(extra), cwd=REPO, text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    results = []
    for launcher in launchers:
        out, err = launcher.communicate(timeout=400)
        results.append((launcher.returncode, out, err))
    return results


def test_a_two_node_job_trains_writes_one_set_of_checkpoints_and_resumes(tmp_path):
    # 4 training cases of 4 slices; 2 validation volumes (one per rank).
    root = generate_phantom(tmp_path / "phantom", "abdomen", n_cases=8, shape=(32, 32, 4))
    output, cache = tmp_path / "run", tmp_path / "cache"
    for code, _, err in two_node_job(root, output, cache):
        assert code == 0, err[-3000:]
    assert sorted(p.name for p in (output / "checkpoints").iterdir()) == ["best.pth", "last.pth"]
    checkpoint = read_checkpoint(output / "checkpoints" / "last.pth")
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (2, 6)
    log = (output / "train.log").read_text()
    assert "distributed: 2 processes (gloo)" in log and log.count("epoch 2/2") == 1
    assert "global batch 4 over 2 process(es)" in log and "of 3 iterations" in log
    # Both machines' local rank 0 wanted the cache (one cache folder here): one wrote it.
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 1
    assert log.count("slice cache: built") + log.count("slice cache: reused") == 1

    results = two_node_job(root, output, cache, "--resume", "--set", "train.epochs=3")
    for code, _, err in results:
        assert code == 0, err[-3000:]
    checkpoint = read_checkpoint(output / "checkpoints" / "last.pth")
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (3, 9)
    log = (output / "train.log").read_text()
    assert "resumed from" in log and log.count("slice cache: reused") >= 1
    assert sum(out.count("done:") for _, out, _ in results) == 1  # the job's rank 0 only
