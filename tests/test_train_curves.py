"""curves.png: drawn from the scalars TensorBoard gets, continued across a resume."""

from pathlib import Path

from swin_unet.training.monitor import Monitor

PNG = b"\x89PNG\r\n\x1a\n"


def write_run(log_dir: Path, curves: Path, steps, purge_step=None) -> Monitor:
    monitor = Monitor(log_dir, purge_step=purge_step, curves=curves, steps_per_epoch=2,
                      class_names=["liver", "spleen"])
    for step in steps:
        monitor.scalars({"train/loss": 1.0 / step, "train/lr": 0.01 / step}, step)
        if step % 2 == 0:
            monitor.scalars({"val/dice_mean": 0.1 * step, "val/dice/liver": 0.1 * step,
                             "val/dice/spleen": float("nan")}, step)
    return monitor


def test_curves_hold_what_tensorboard_got_and_survive_a_resume(tmp_path):
    log_dir, curves = tmp_path / "tensorboard", tmp_path / "curves.png"
    first = write_run(log_dir, curves, range(1, 6))  # killed after step 5, checkpoint at 4
    assert first.write_curves() == curves and curves.read_bytes()[:8] == PNG
    assert first.history["val/dice_mean"] == [(2, 0.2), (4, 0.4)]
    assert "val/dice/spleen" not in first.history  # NaN is not drawn (nor sent to TensorBoard)
    first.close()
    curves.unlink()
    # Resumed from the checkpoint at step 4: steps 1-4 come back from the event files, step 5
    # (after the checkpoint) is dropped, as TensorBoard's purge_step drops it.
    second = write_run(log_dir, curves, range(5, 7), purge_step=5)
    assert [s for s, _ in second.history["train/loss"]] == [1, 2, 3, 4, 5, 6]
    assert second.history["train/loss"][4][1] == 1.0 / 5
    assert [s for s, _ in second.history["val/dice_mean"]] == [2, 4, 6]
    second.write_curves()
    second.close()
    assert curves.read_bytes()[:8] == PNG


def test_other_ranks_draw_nothing(tmp_path):
    monitor = Monitor(None, curves=tmp_path / "curves.png")
    monitor.scalars({"train/loss": 1.0}, 1)
    assert monitor.write_curves() is None and not (tmp_path / "curves.png").exists()
