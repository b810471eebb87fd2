"""torchrun with two CPU processes (gloo): one run, one set of outputs written by rank 0."""

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from datasets import generate_phantom
from swin_unet.model import read_checkpoint

REPO = Path(__file__).resolve().parent.parent
# Drop-path on: each rank draws its own masks, so a resume must restore each rank's RNG.
TINY = ["model.img_size=32", "model.embed_dim=8", "model.depths=[1,1,1,1]",
        "model.num_heads=[1,1,1,1]", "model.window_size=2", "model.drop_path_rate=0.3",
        "train.epochs=2", "train.batch_size=4", "train.base_batch_size=4",
        "train.optimizer=adamw", "train.base_lr=0.002", "train.val_every=1", "train.log_every=1",
        "train.schedule=poly", "train.warmup_epochs=0", "data.num_workers=0", "data.augment=true"]

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")

# train.py with a Ctrl-C (SIGINT) sent by every rank to itself after its n-th training step.
_INTERRUPTED = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {repo!r})
    import train
    from swin_unet.training import loop

    original, calls = loop.Trainer._step, []

    def step(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == {stop_after}:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    loop.Trainer._step = step
    sys.exit(train.main(sys.argv[1:]))
""")


def torchrun(script, root, output, *extra, dataset="phantom"):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", str(script), "--dataset", dataset, "--root", str(root),
               "--output", str(output), "--device", "cpu", "--quiet"]
    for item in TINY:
        command += ["--set", item]
    return subprocess.run(command + list(extra), cwd=REPO, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    # 8 cases: 4 train (16 slices: 4 iterations of 2 per rank), 2 val (one per rank), 2 test.
    return generate_phantom(tmp_path_factory.mktemp("data") / "phantom", "abdomen", n_cases=8,
                            shape=(32, 32, 4))


@pytest.fixture(scope="module")
def full_run(phantom, tmp_path_factory):
    output = tmp_path_factory.mktemp("ddp") / "run"
    result = torchrun("train.py", phantom, output)
    assert result.returncode == 0, result.stderr[-3000:]
    return output, result


def test_torchrun_two_cpu_processes_train_and_write_one_set_of_outputs(full_run):
    output, result = full_run
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


def test_torchrun_resume_mid_epoch_gives_the_uninterrupted_weights(phantom, full_run, tmp_path):
    """Every rank continues with its own random state (drop-path masks), not rank 0's."""
    script = tmp_path / "interrupted.py"
    script.write_text(_INTERRUPTED.format(repo=str(REPO), stop_after=6))  # iteration 2, epoch 2
    output = tmp_path / "run"
    result = torchrun(script, phantom, output)
    assert result.returncode != 0, "the interrupted run was expected to stop early"
    stopped = read_checkpoint(output / "checkpoints" / "last.pth")
    assert (stopped["epoch"], stopped["step_in_epoch"], stopped["global_step"]) == (1, 2, 6)
    result = torchrun("train.py", phantom, output, "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = read_checkpoint(output / "checkpoints" / "last.pth")["model"]
    reference = read_checkpoint(full_run[0] / "checkpoints" / "last.pth")["model"]
    assert resumed.keys() == reference.keys()
    for key in reference:
        assert torch.equal(resumed[key], reference[key]), key


def test_torchrun_missing_root_is_one_line_per_rank_without_a_traceback(tmp_path):
    missing = tmp_path / "no_such_folder"
    result = torchrun("train.py", missing, tmp_path / "run", dataset="synapse")
    assert result.returncode != 0
    assert f"error: {missing}" in result.stderr
    # Rank 0 fails opening the data: the other rank stops with the same line, not with a
    # broken-connection traceback from the collective it was waiting in.
    assert "[rank1]: Traceback" not in result.stderr and "[rank0]: Traceback" not in result.stderr
    assert "Connection closed by peer" not in result.stderr


# train.py where rank 1 alone sees a non-finite loss from its 3rd iteration on (its gradients
# stay finite, so rank 0's own loss never turns NaN through the all-reduce).
_DIVERGING = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {repo!r})
    import torch
    import train
    from swin_unet.training import loop

    original, calls = loop.Trainer._step, []

    def step(self, *args, **kwargs):
        losses = original(self, *args, **kwargs)
        calls.append(1)
        if os.environ["RANK"] == "1" and len(calls) >= 3:
            if len(calls) == 3:
                with open({stamp!r}, "w") as handle:
                    handle.write(str(time.time()))
            losses = losses * float("nan")
        return losses

    loop.Trainer._step = step
    sys.exit(train.main(sys.argv[1:]))
""")


def test_torchrun_divergence_on_one_rank_stops_every_rank_at_once(phantom, tmp_path):
    stamp = tmp_path / "diverged_at"
    script = tmp_path / "diverging.py"
    script.write_text(_DIVERGING.format(repo=str(REPO), stamp=str(stamp)))
    result = torchrun(script, phantom, tmp_path / "run")
    ended = time.time()
    assert result.returncode != 0
    # Both ranks stop at the same iteration with the same one line naming the rank.
    line = "error: training diverged: the loss is not finite on rank 1 at iteration 3"
    assert result.stderr.count("error: training diverged") == result.stderr.count(line) == 2
    # No worker traceback (torchrun's own report of the failed workers has no frame of ours).
    # CI's virtual environment lives inside the clone, so torch's own frames are under REPO too.
    ours = [line for line in result.stderr.splitlines()
            if f'File "{REPO}' in line and "site-packages" not in line]
    assert not ours, ours
    # Stopped within seconds (process teardown included), not after a collective's timeout.
    assert ended - float(stamp.read_text()) < 30
