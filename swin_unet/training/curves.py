"""curves.png: a run's loss terms, learning rate and validation scores against epoch at a glance."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import numpy as np

from ..io.atomic import atomic_write
from ..palette import class_colour

__all__ = ["write_curves", "read_scalar_history"]

History = dict[str, list[tuple[int, float]]]


def read_scalar_history(log_dir: Union[str, Path], before: int) -> History:
    """The scalars earlier runs wrote to ``log_dir`` at steps below ``before`` (a resume).

    Later steps belong to the part of a killed run after its last checkpoint, which TensorBoard
    drops too (``purge_step``). For each tag and step the last value written wins.
    """
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    history: History = {}
    for tag in accumulator.Tags().get("scalars", []):
        by_step = {event.step: float(event.value) for event in accumulator.Scalars(tag)
                   if event.step < before}
        if by_step:
            history[tag] = sorted(by_step.items())
    return history


def _series(history: History, tag: str, steps_per_epoch: int) -> tuple[np.ndarray, np.ndarray]:
    points = history.get(tag, [])
    steps = np.array([s for s, _ in points], dtype=np.float64)
    values = np.array([v for _, v in points], dtype=np.float64)
    return steps / max(1, steps_per_epoch), values


def write_curves(path: Union[str, Path], history: History, steps_per_epoch: int,
                 class_names: Sequence[str] = (), dpi: int = 100) -> Path:
    """Draw the TensorBoard scalars of a run into one PNG.

    Parameters
    ----------
    path : str or Path
        ``OUTPUT/curves.png`` (replaced).
    history : dict of str to list of (int, float)
        Tag to (global step, value), the numbers written to TensorBoard: ``train/loss``,
        ``train/loss_ce``, ``train/loss_dice``, ``train/epoch_loss``, ``train/lr``,
        ``val/dice_mean``, ``val/dice/<class>``, ``val/hd95_mean``.
    steps_per_epoch : int
        Iterations per epoch: the x axis is in epochs.
    class_names : sequence of str
        Foreground classes in order, so each has the report's colour.
    """
    from matplotlib.figure import Figure  # lazily: the figure is drawn without pyplot

    fig = Figure(figsize=(13.5, 3.6))
    axes = fig.subplots(1, 4 if "val/hd95_mean" in history else 3)
    loss_ax, lr_ax, dice_ax = axes[:3]
    for tag, style in (("train/loss", "-"), ("train/loss_ce", "--"), ("train/loss_dice", ":")):
        x, y = _series(history, tag, steps_per_epoch)
        if x.size:
            loss_ax.plot(x, y, style, linewidth=1.0, label=tag.split("/")[1])
    x, y = _series(history, "train/epoch_loss", steps_per_epoch)
    if x.size:
        loss_ax.plot(x, y, "o-", color="black", markersize=3, linewidth=1.2,
                     label="epoch mean loss")
    loss_ax.set_title("training loss", fontsize=10)
    x, y = _series(history, "train/lr", steps_per_epoch)
    if x.size:
        lr_ax.plot(x, y, color="tab:gray")
        lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    lr_ax.set_title("learning rate", fontsize=10)
    names = list(class_names) or sorted(t.split("/", 2)[2] for t in history
                                        if t.startswith("val/dice/"))
    for index, name in enumerate(names, start=1):
        x, y = _series(history, f"val/dice/{name}", steps_per_epoch)
        if x.size:
            dice_ax.plot(x, y, "o-", markersize=3, linewidth=1.0, label=name,
                         color=np.array(class_colour(index)) / 255.0)
    x, y = _series(history, "val/dice_mean", steps_per_epoch)
    if x.size:
        dice_ax.plot(x, y, "o-", color="black", linewidth=2.0, markersize=4, label="mean")
        best = int(np.nanargmax(y)) if np.isfinite(y).any() else None
        if best is not None:
            dice_ax.set_title(f"validation Dice (best {y[best]:.4f}, epoch {x[best]:.0f})",
                              fontsize=10)
    if not dice_ax.get_title():
        dice_ax.set_title("validation Dice (none yet)", fontsize=10)
    if len(axes) == 4:
        x, y = _series(history, "val/hd95_mean", steps_per_epoch)
        axes[3].plot(x, y, "o-", color="black", markersize=3)
        axes[3].set_title("validation mean HD95", fontsize=10)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, ncol=2 if ax is dice_ax else 1)
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi))

