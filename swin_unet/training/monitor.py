"""What a run shows: train.log, TensorBoard scalars and overlays, and the per-epoch progress bar."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from ..errors import write_fault, writing
from ..palette import grey_image, overlay_labels

__all__ = ["setup_logging", "close_logging", "log_failure", "Monitor", "overlay_panel",
           "pick_overlay_slices", "progress"]

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"

# The loggers of the library and of the data layer beside it.
LOGGERS = ("swin_unet", "datasets")


def setup_logging(log_file: Optional[Path], verbose: bool = True) -> list[logging.Handler]:
    """Send the library's and the data layer's log to ``log_file`` (``train.log``) and stderr.

    Returns
    -------
    list of logging.Handler
        The handlers added, for :func:`close_logging`.
    """
    handlers: list[logging.Handler] = []
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="a", encoding="utf-8"))
    if verbose:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    for name in LOGGERS:
        logger_ = logging.getLogger(name)
        logger_.setLevel(logging.INFO)
        for handler in handlers:
            logger_.addHandler(handler)
    return handlers


def log_failure(handlers: Iterable[logging.Handler], message: str,
                exc: Optional[BaseException] = None) -> None:
    """Write why a run ended to its log files (``train.log``) only, since the command line
    prints the error on stderr itself; with ``exc``, its traceback too."""
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    record = logging.LogRecord("swin_unet", logging.ERROR, __file__, 0, message, None, exc_info)
    for handler in handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def close_logging(handlers: Iterable[logging.Handler]) -> None:
    """Remove and close what :func:`setup_logging` added."""
    handlers = list(handlers)
    for name in LOGGERS:
        for handler in handlers:
            logging.getLogger(name).removeHandler(handler)
    for handler in handlers:
        handler.close()


def overlay_panel(image: np.ndarray, label: np.ndarray, prediction: np.ndarray,
                  alpha: float = 0.5) -> np.ndarray:
    """Image, ground truth and prediction side by side, labels in colour over the image.

    Parameters
    ----------
    image : (H, W) float
        A slice, any intensity range (scaled to [0, 1] for display).
    label, prediction : (H, W) int
        Label maps, 0 = background.

    Returns
    -------
    np.ndarray
        (3, H, 3 * W) float32 RGB in [0, 1] (TensorBoard's CHW layout).
    """
    grey = grey_image(image)
    panel = np.concatenate([np.repeat(grey[..., None], 3, axis=-1),
                            overlay_labels(grey, label, alpha),
                            overlay_labels(grey, prediction, alpha)], axis=1)
    return np.ascontiguousarray(panel.transpose(2, 0, 1), dtype=np.float32)


def pick_overlay_slices(label: np.ndarray, count: int) -> list[int]:
    """``count`` slice indices (last axis) of a label volume, spread over its foreground.

    Fixed for a run (they depend only on the ground truth), so TensorBoard shows the same
    slices improving epoch after epoch.
    """
    if count <= 0:
        return []
    foreground = np.count_nonzero(np.asarray(label).reshape(-1, label.shape[-1]), axis=0)
    slices = np.flatnonzero(foreground)
    if slices.size == 0:
        slices = np.arange(label.shape[-1])
    picks = np.linspace(0, slices.size - 1, num=min(count, slices.size) + 2)[1:-1]
    return sorted({int(slices[int(round(p))]) for p in picks})


class Monitor:
    """TensorBoard and curves.png on the main rank; every method is a no-op elsewhere or disabled.

    Parameters
    ----------
    log_dir : Path or None
        ``OUTPUT/tensorboard``; None disables TensorBoard (other ranks).
    purge_step : int or None
        On resume, the global step to continue from: events a killed run wrote after its last
        checkpoint are dropped, so the curves continue without a doubled segment.
    curves : Path or None
        ``OUTPUT/curves.png``, drawn by :meth:`write_curves` from the scalars written here.
    steps_per_epoch : int
        Iterations per epoch (the curves' x axis is in epochs).
    class_names : sequence of str
        Foreground classes in order (their colours in the curves).
    """

    def __init__(self, log_dir: Optional[Path], purge_step: Optional[int] = None,
                 curves: Optional[Path] = None, steps_per_epoch: int = 1,
                 class_names: Sequence[str] = ()) -> None:
        self.writer = None
        self.curves, self.steps_per_epoch = curves, steps_per_epoch
        self.class_names = list(class_names)
        # Every scalar written, tag -> [(step, value)]: what curves.png draws.
        self.history: dict[str, list[tuple[int, float]]] = {}
        if log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter  # slow import; main rank only

            if purge_step is not None and curves is not None:
                from .curves import read_scalar_history

                self.history = read_scalar_history(log_dir, before=purge_step)
            _quiet_writer_threads()
            with writing(folder=log_dir):
                self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Write ``tag -> value`` scalars at ``step``."""
        if self.writer is None:
            return
        for tag, value in values.items():
            if value is not None and np.isfinite(value):
                self.writer.add_scalar(tag, float(value), step)
                self.history.setdefault(tag, []).append((int(step), float(value)))

    def write_curves(self) -> Optional[Path]:
        """Draw ``curves.png`` from the scalars so far (main rank); returns its path."""
        if self.writer is None or self.curves is None or not self.history:
            return None
        from .curves import write_curves

        return write_curves(self.curves, self.history, self.steps_per_epoch, self.class_names)

    def image(self, tag: str, image_chw: np.ndarray, step: int) -> None:
        """Write a (3, H, W) float image in [0, 1]."""
        if self.writer is not None:
            self.writer.add_image(tag, image_chw, step, dataformats="CHW")

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _quiet_writer_threads() -> None:
    """Keep TensorBoard's writer thread from printing a traceback when the disk is full or
    read-only: it hands the error to the main thread, which reports it in one line."""
    previous = threading.excepthook
    if getattr(previous, "quiet_write_faults", False):
        return

    def hook(args) -> None:
        if args.exc_value is None or write_fault(args.exc_value) is None:
            previous(args)

    hook.quiet_write_faults = True
    threading.excepthook = hook


def progress(iterable, total: int, description: str, enabled: bool):
    """A tqdm bar over one epoch, only on a terminal (quiet in logs and CI) and on rank 0."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=description, leave=False, dynamic_ncols=True,
                disable=not (enabled and sys.stderr.isatty()), file=sys.stderr)
