"""Training runs on a tiny phantom: loss falls, outputs, TensorBoard tags, exact resume, kills."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml

import train as train_cli
from datasets import generate_phantom
from swin_unet.errors import InputError
from swin_unet.model import read_checkpoint
from swin_unet.training import loop as loop_module
from swin_unet.training.run_folder import claim_run_folder

REPO = Path(__file__).resolve().parent.parent
CLASS_NAMES = ["aorta", "gallbladder", "kidney_left", "kidney_right", "liver", "pancreas",
               "spleen", "stomach"]
# 4 phantom cases of 32x32x8: 2 train (16 slices: 4 iterations of 4), 1 val, 1 test.
TINY = ["model.img_size=32", "model.embed_dim=8", "model.depths=[2,2,2,2]",
        "model.num_heads=[1,1,2,2]", "model.window_size=2", "model.drop_path_rate=0.1",
        "train.epochs=2", "train.batch_size=4", "train.base_batch_size=4",
        "train.optimizer=adamw", "train.base_lr=0.002", "train.weight_decay=0.01",
        "train.val_every=1", "train.val_hd95=true", "train.log_every=1",
        "train.overlay_slices=2", "train.schedule=poly", "train.warmup_epochs=0",
        "train.cpu_threads=1", "data.num_workers=0", "data.augment=true",
        "inference.batch_size=8"]


def tiny_args(root, output, *extra):
    args = ["--dataset", "phantom", "--root", str(root), "--output", str(output),
            "--device", "cpu", "--quiet"]
    for item in TINY:
        args += ["--set", item]
    return args + list(extra)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return generate_phantom(tmp_path_factory.mktemp("data") / "phantom", "abdomen",
                            n_cases=4, shape=(32, 32, 8))


@pytest.fixture(scope="module")
def full_run(phantom, tmp_path_factory):
    """An uninterrupted 2-epoch run: the reference every resumed run must reproduce."""
    output = tmp_path_factory.mktemp("full")
    assert train_cli.main(tiny_args(phantom, output)) == 0
    return output


def weights(output):
    return read_checkpoint(Path(output) / "checkpoints" / "last.pth")["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def scalar_events(output):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(Path(output) / "tensorboard"),
                                   size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def test_run_writes_the_contract_outputs_and_the_loss_falls(full_run):
    for name in ("config.yaml", "train.log", "checkpoints/last.pth", "checkpoints/best.pth"):
        assert (full_run / name).is_file(), name
    assert list((full_run / "tensorboard").glob("events.out.tfevents.*"))
    assert not list((full_run / "checkpoints").glob("*.tmp"))
    checkpoint = read_checkpoint(full_run / "checkpoints" / "last.pth")
    for key in ("model", "config", "class_names", "epoch", "optimizer", "scheduler", "scaler",
                "best_metric", "global_step", "rng"):
        assert key in checkpoint, key
    assert checkpoint["epoch"] == 2 and checkpoint["global_step"] == 8
    assert checkpoint["class_names"] == CLASS_NAMES
    # The model's classes and channels come from the data and are recorded.
    assert checkpoint["config"]["model"]["num_classes"] == 9
    # "auto" resolved from the data (CT window), so test.py --input can apply it to new scans.
    assert checkpoint["config"]["data"]["intensity"] == "ct"
    # The training volumes' orientation and in-plane scale, for test.py --input.
    geometry = checkpoint["config"]["geometry"]
    assert geometry["axcodes"] == "LPS" and geometry["slice_axis"] == 2  # the phantom's affine
    assert geometry["inplane_spacing"][0] > 0 and len(geometry["field_of_view"]) == 2
    saved = yaml.safe_load((full_run / "config.yaml").read_text())
    assert saved == checkpoint["config"]
    assert saved["model"]["embed_dim"] == 8 and saved["dataset"] == "phantom"

    losses = scalar_events(full_run).Scalars("train/loss")
    assert [e.step for e in losses] == list(range(1, 9))
    first, last = losses[0].value, losses[-1].value
    assert last < 0.9 * first, (first, last)
    log = (full_run / "train.log").read_text()
    assert "epoch 2/2" in log and "val mean Dice" in log
    assert "integrity check passed" in log  # the data layer's log lands in train.log too


def test_tensorboard_holds_the_contract_tags(full_run):
    events = scalar_events(full_run)
    tags = events.Tags()
    expected = {"train/loss", "train/loss_ce", "train/loss_dice", "train/lr", "val/dice_mean",
                "val/hd95_mean"} | {f"val/dice/{name}" for name in CLASS_NAMES}
    assert expected <= set(tags["scalars"])
    overlays = [t for t in tags["images"] if t.startswith("val/")]
    assert len(overlays) >= 1
    image = events.Images(overlays[0])[-1]
    assert image.width == 3 * image.height  # image | ground truth | prediction
    # Validation after each of the 2 epochs, at the global step it followed.
    assert [e.step for e in events.Scalars("val/dice_mean")] == [4, 8]
    lr = [e.value for e in events.Scalars("train/lr")]
    assert lr[0] == pytest.approx(0.002) and lr[-1] < lr[0]


def test_curves_png_is_written_beside_the_run(full_run):
    curves = full_run / "curves.png"
    assert curves.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Drawn after the last validation, from the same numbers (loss, lr, Dice per class).
    assert curves.stat().st_mtime >= (full_run / "checkpoints" / "best.pth").stat().st_mtime


def test_best_checkpoint_is_the_best_validated_epoch(full_run):
    best = read_checkpoint(full_run / "checkpoints" / "best.pth")
    last = read_checkpoint(full_run / "checkpoints" / "last.pth")
    dice = [e.value for e in scalar_events(full_run).Scalars("val/dice_mean")]
    assert best["best_metric"] == pytest.approx(max(dice), abs=1e-6)
    assert last["best_metric"] == best["best_metric"]
    assert best["epoch"] == 1 + dice.index(max(dice))


def test_loader_worker_processes_do_not_change_the_result(phantom, full_run, tmp_path):
    """Batches and their augmentation depend on (seed, epoch, index), not on the workers."""
    assert train_cli.main(tiny_args(phantom, tmp_path, "--set", "data.num_workers=2")) == 0
    assert_same_weights(weights(tmp_path), weights(full_run))


def _interrupt_when(monkeypatch, method, call_number):
    """Send this process a SIGINT (Ctrl-C) right after the n-th call of Trainer.<method>."""
    original = getattr(loop_module.Trainer, method)
    calls = {"n": 0}

    def wrapped(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == call_number:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(loop_module.Trainer, method, wrapped)


def test_ctrl_c_after_epoch_1_then_resume_gives_the_uninterrupted_weights(
        phantom, full_run, tmp_path, monkeypatch):
    with monkeypatch.context() as patch:
        _interrupt_when(patch, "save", 1)
        assert train_cli.main(tiny_args(phantom, tmp_path)) == 130
    stopped = read_checkpoint(tmp_path / "checkpoints" / "last.pth")
    assert stopped["epoch"] == 1 and stopped["step_in_epoch"] == 0
    # No --set needed: a resumed run continues with the checkpoint's own config.
    assert train_cli.main(["--dataset", "phantom", "--output", str(tmp_path), "--resume",
                           "--quiet"]) == 0
    assert_same_weights(weights(tmp_path), weights(full_run))
    assert "resumed from" in (tmp_path / "train.log").read_text()
    # The curves continue: every step once, none doubled.
    assert [e.step for e in scalar_events(tmp_path).Scalars("train/loss")] == list(range(1, 9))


def test_ctrl_c_mid_epoch_then_resume_gives_the_uninterrupted_weights(
        phantom, full_run, tmp_path, monkeypatch):
    with monkeypatch.context() as patch:
        _interrupt_when(patch, "_step", 6)  # iteration 2 of epoch 2
        assert train_cli.main(tiny_args(phantom, tmp_path)) == 130
    stopped = read_checkpoint(tmp_path / "checkpoints" / "last.pth")
    assert (stopped["epoch"], stopped["step_in_epoch"], stopped["global_step"]) == (1, 2, 6)
    assert train_cli.main(tiny_args(phantom, tmp_path, "--resume",
                                    str(tmp_path / "checkpoints" / "last.pth"))) == 0
    assert_same_weights(weights(tmp_path), weights(full_run))
    events = scalar_events(tmp_path)
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 9))
    reference = [e.value for e in scalar_events(full_run).Scalars("train/loss")]
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx(reference, abs=1e-6)


def test_iters_per_epoch_sets_the_epoch_length_and_a_mid_epoch_resume_is_exact(
        phantom, tmp_path, monkeypatch):
    # 3 iterations of 4 of the 16 slices: epoch 2 ends one pass and starts the next.
    extra = ["--set", "train.iters_per_epoch=3", "--set", "train.val_hd95=false"]
    full = tmp_path / "full"
    assert train_cli.main(tiny_args(phantom, full, *extra)) == 0
    checkpoint = read_checkpoint(full / "checkpoints" / "last.pth")
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (2, 6)
    assert "training 2 epochs of 3 iterations" in (full / "train.log").read_text()
    stopped = tmp_path / "stopped"
    with monkeypatch.context() as patch:
        _interrupt_when(patch, "_step", 5)  # iteration 2 of epoch 2
        assert train_cli.main(tiny_args(phantom, stopped, *extra)) == 130
    checkpoint = read_checkpoint(stopped / "checkpoints" / "last.pth")
    assert (checkpoint["epoch"], checkpoint["step_in_epoch"]) == (1, 2)
    assert train_cli.main(["--dataset", "phantom", "--output", str(stopped), "--resume",
                           "--quiet"]) == 0
    assert_same_weights(weights(stopped), weights(full))


_KILLER = textwrap.dedent("""
    import io, sys, time
    import torch
    sys.path.insert(0, {repo!r})
    import train
    real_save, calls = torch.save, []

    def stalling_save(obj, handle, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # epoch 2's last.pth: half written, then a hang (slow disk)
            buffer = io.BytesIO()
            real_save(obj, buffer)
            handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            handle.flush()
            open({marker!r}, "w").close()
            time.sleep(300)
        return real_save(obj, handle, *args, **kwargs)

    torch.save = stalling_save
    sys.exit(train.main({args!r}))
""")


def test_sigkill_during_a_checkpoint_write_leaves_a_resumable_run(
        phantom, full_run, tmp_path):
    output, marker = tmp_path / "run", tmp_path / "writing"
    script = _KILLER.format(repo=str(REPO), marker=str(marker),
                            args=tiny_args(phantom, output))
    process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while not marker.exists():
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the run never reached its second checkpoint"
            time.sleep(0.1)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
        process.stderr.close()
    checkpoints = output / "checkpoints"
    # The kill hit the write: a torn temporary file, the previous checkpoint intact.
    with pytest.raises(InputError):
        read_checkpoint(checkpoints / "last.pth.tmp")
    assert read_checkpoint(checkpoints / "last.pth")["epoch"] == 1
    assert train_cli.main(tiny_args(phantom, output, "--resume")) == 0
    assert not (checkpoints / "last.pth.tmp").exists()
    assert read_checkpoint(checkpoints / "last.pth")["epoch"] == 2
    assert_same_weights(weights(output), weights(full_run))


def test_pretrained_start_loads_the_weights_and_logs_the_report(phantom, full_run, tmp_path):
    pretrained = full_run / "checkpoints" / "last.pth"
    assert train_cli.main(tiny_args(phantom, tmp_path, "--pretrained", str(pretrained),
                                    "--set", "train.epochs=1")) == 0
    log = (tmp_path / "train.log").read_text()
    assert "pretrained weights:" in log and str(pretrained) in log
    # The first iteration starts from the trained weights: its loss is the trained one's.
    fresh = scalar_events(full_run).Scalars("train/loss")
    started = scalar_events(tmp_path).Scalars("train/loss")
    assert started[0].value < fresh[0].value
    assert started[0].value == pytest.approx(fresh[-1].value, rel=0.5)


@pytest.mark.parametrize("native", ["amx_bf16", None])
def test_amp_on_the_cpu_is_bf16_where_the_cpu_has_it_and_validation_uses_the_same(
        phantom, tmp_path, monkeypatch, native):
    """--amp on the CPU: bf16 autocast where the CPU computes bf16 natively (simulated here:
    this test machine may have no AMX), float32 elsewhere; said in the log; validation runs in
    the training run's precision."""
    from swin_unet import precision
    from swin_unet.training import validation
    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: native)
    seen, original = [], validation.predict_volume

    def predict(*args, **kwargs):
        seen.append(kwargs["amp_dtype"])
        return original(*args, **kwargs)
    monkeypatch.setattr(validation, "predict_volume", predict)
    assert train_cli.main(tiny_args(phantom, tmp_path, "--amp", "--set", "train.epochs=1")) == 0
    log = (tmp_path / "train.log").read_text()
    if native:
        assert "precision bfloat16 autocast (amx_bf16)" in log
        assert seen and all(dtype == torch.bfloat16 for dtype in seen)
    else:
        assert "precision float32 (--amp: this CPU has no AMX or AVX-512 BF16" in log
        assert seen and all(dtype is None for dtype in seen)
    checkpoint = read_checkpoint(tmp_path / "checkpoints" / "last.pth")
    assert checkpoint["config"]["train"]["amp"] is True
    # Weights stay float32 (autocast only lowers the matmuls' precision).
    assert all(t.dtype == torch.float32 for t in checkpoint["model"].values()
               if t.is_floating_point())
    losses = [e.value for e in scalar_events(tmp_path).Scalars("train/loss")]
    assert all(v == v and v < 10 for v in losses)  # finite, sane


@pytest.mark.slow
def test_compiled_training_saves_plain_weights(phantom, tmp_path):
    """--compile (about a minute of compilation on 2 CPU cores: -m slow)."""
    assert train_cli.main(tiny_args(phantom, tmp_path, "--compile",
                                    "--set", "train.epochs=1")) == 0
    checkpoint = read_checkpoint(tmp_path / "checkpoints" / "last.pth")
    assert checkpoint["config"]["train"]["compile"] is True
    assert not any(k.startswith(("_orig_mod.", "module.")) for k in checkpoint["model"])


def _error_lines(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


def test_a_second_run_into_a_finished_run_refuses_and_overwrite_starts_afresh(
        phantom, full_run, tmp_path, capsys):
    one_epoch = ("--set", "train.epochs=1")
    tmp_path = tmp_path / "run"
    shutil.copytree(full_run, tmp_path)
    before = {p: p.read_bytes() for p in [tmp_path / "config.yaml",
                                          tmp_path / "checkpoints" / "last.pth",
                                          tmp_path / "checkpoints" / "best.pth"]}
    events = sorted((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    capsys.readouterr()
    assert train_cli.main(tiny_args(phantom, tmp_path, *one_epoch)) == 2
    lines = _error_lines(capsys)
    assert len(lines) == 1 and str(tmp_path) in lines[0]
    assert "--resume" in lines[0] and "--overwrite" in lines[0]
    assert {p: p.read_bytes() for p in before} == before  # nothing touched
    assert sorted((tmp_path / "tensorboard").glob("events.out.tfevents.*")) == events
    assert not (tmp_path / "train.lock").exists()

    (tmp_path / "notes.md").write_text("my notes")
    assert train_cli.main(tiny_args(phantom, tmp_path, "--overwrite", *one_epoch)) == 0
    fresh = sorted((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert len(fresh) == 1 and fresh != events  # one run's curves, the old file gone
    assert [e.step for e in scalar_events(tmp_path).Scalars("train/loss")] == [1, 2, 3, 4]
    assert (tmp_path / "notes.md").read_text() == "my notes"  # not a run file: kept
    assert read_checkpoint(tmp_path / "checkpoints" / "last.pth")["epoch"] == 1
    assert train_cli.main(tiny_args(phantom, tmp_path, "--resume", "--overwrite")) == 2
    assert "exclude each other" in _error_lines(capsys)[0]


# Another process holding the folder's lock as a run does (pid and host, created exclusively);
# without importing torch, which takes half a minute on a loaded 2-core machine.
_HOLDER = textwrap.dedent("""
    import os, socket, time
    with open({lock!r}, "x") as handle:
        handle.write(f"{{os.getpid()}} {{socket.gethostname()}}\\n")
    print("held", flush=True)
    time.sleep(120)
""")


def test_a_folder_in_use_by_a_live_process_refuses_and_a_dead_ones_lock_is_taken_over(
        phantom, tmp_path, capsys):
    script = _HOLDER.format(lock=str(tmp_path / "train.lock"))
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert (tmp_path / "train.lock").read_text().split()[0] == str(holder.pid)
        capsys.readouterr()
        assert train_cli.main(tiny_args(phantom, tmp_path, "--set", "train.epochs=1")) == 2
        lines = _error_lines(capsys)
        assert len(lines) == 1 and f"in use by process {holder.pid}" in lines[0]
        assert not (tmp_path / "config.yaml").exists()
    finally:
        holder.kill()
        holder.wait(timeout=30)
        holder.stdout.close()
    # The holder died without releasing its lock: the next run takes it over.
    assert (tmp_path / "train.lock").read_text().split()[0] == str(holder.pid)
    lock = claim_run_folder(tmp_path, resume=False, overwrite=False)
    assert (tmp_path / "train.lock").read_text().split()[0] == str(os.getpid())
    lock.release()
    assert not (tmp_path / "train.lock").exists()
def test_deterministic_run_errors_on_nondeterministic_ops_and_restores_the_settings(
        phantom, tmp_path, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    assert train_cli.main(tiny_args(phantom, tmp_path, "--set", "train.epochs=1",
                                    "--set", "train.deterministic=true")) == 0
    log = (tmp_path / "train.log").read_text()
    assert ("deterministic algorithms (errors for non-deterministic operations), "
            "CUBLAS_WORKSPACE_CONFIG=:4096:8, cuDNN benchmark off, TF32 off") in log
    # Process-wide settings are the caller's again once train() returns.
    assert not torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.deterministic
