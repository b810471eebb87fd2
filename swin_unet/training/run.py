"""A whole training run from a resolved config: data, model, resume, DDP, monitoring, cleanup."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Optional, Union

import torch
import torch.distributed as dist

from ..config import Config, save_config
from ..config.checks import check_config, check_patch_size
from ..evaluation.sliding import SlidingWindow
from ..io.validity import set_max_pixels
from ..data_layer import project_datasets
from ..errors import InputError, format_error, write_fault
from ..model import build_model, load_pretrained
from ..io.orientation import training_geometry
from .folds import apply_fold
from .distributed import (DistributedContext, broadcast_object, cleanup_distributed,
                          configure_cpu_threads, configure_math, math_settings,
                          restore_math_settings, setup_distributed)
from .data import open_train_slices
from .loop import Trainer, TrainingDiverged, TrainResult
from .monitor import Monitor, close_logging, log_failure, setup_logging
from .run_folder import RunLock, claim_run_folder, run_manifest
from .validation import Validator

__all__ = ["train", "default_resume_path"]

logger = logging.getLogger(__name__)


def default_resume_path(output_dir: Union[str, Path]) -> Path:
    """Where ``--resume`` without a path looks: ``OUTPUT/checkpoints/last.pth``."""
    return Path(output_dir) / "checkpoints" / "last.pth"


def _on_rank0_first(action, context: DistributedContext):
    """``action()`` on rank 0, the other ranks waiting; rank 0's InputError raised on every rank.

    The others wait in a broadcast of rank 0's outcome rather than a barrier: when rank 0 fails
    (a missing root, a broken file), every rank stops with its one-line error instead of a
    broken-connection traceback from the collective it was left waiting in.
    """
    result, error = None, None
    if context.is_main:
        try:
            result = action()
        except InputError as exc:
            if not context.distributed:
                raise
            error = (str(exc), exc.path, exc.key, exc.details)
    error = broadcast_object(error, context)
    if error is not None:
        message, path, key, details = error
        raise InputError(message, path=path, key=key, details=details)
    return result


def _open_data(config: Config, context: DistributedContext):
    """The data source; rank 0 opens it first (the phantom is generated on first use)."""
    open_dataset = project_datasets().open_dataset  # the data layer sits beside the library

    source = _on_rank0_first(lambda: open_dataset(config.dataset, config.data), context)
    if not context.is_main:
        source = open_dataset(config.dataset, config.data)
    return source


def _check_data(source) -> None:
    """The integrity check before any long work.

    Validation images are read in full (NaN) now: their first use is the first validation,
    ``train.val_every`` epochs later. Training images are read when they are cached.
    """
    source.check_integrity(("train",))
    if source.cases("val"):
        source.check_integrity(("val",), read_images=True)


def _fit_model_config(config: Config, source) -> Config:
    """The config with the data's classes, channels and intensity mode."""
    model_cfg = config.model
    if (model_cfg.num_classes, model_cfg.in_chans) != (source.num_classes, source.in_chans):
        logger.info("model.num_classes = %d and model.in_chans = %d from the data set "
                    "(config had %d and %d)", source.num_classes, source.in_chans,
                    model_cfg.num_classes, model_cfg.in_chans)
    model_cfg = dataclasses.replace(model_cfg, num_classes=source.num_classes,
                                    in_chans=source.in_chans)
    # Store the resolved intensity mode ("auto" -> ct/zscore/minmax): test.py --input applies it
    # to a user's scans, and a folder data set's modality is not stored anywhere else.
    data_cfg = dataclasses.replace(config.data, intensity=source.intensity)
    return dataclasses.replace(config, model=model_cfg, data=data_cfg)


def _record_geometry(config: Config, source) -> Config:
    """The config with the training volumes' orientation, spacing and field of view.

    test.py --input turns each scan to this orientation and compares its scale with it.
    """
    record, notes = training_geometry(source.geometry_headers("train"))
    for note in notes:
        logger.info("geometry: %s", note)
    if not record:
        return config
    logger.info("geometry: training volumes stored as %s, slices across axis %d, in-plane "
                "spacing %s mm, field of view %s mm", record["axcodes"], record["slice_axis"],
                record["inplane_spacing"], record["field_of_view"])
    return dataclasses.replace(config, geometry=dataclasses.replace(config.geometry, **record))


def _record_sampling(config: Config, source) -> Config:
    """Patch mode: the config with ``data.spacing`` as the numbers slices are resampled to
    (``auto`` resolved), so that test.py resamples its scans the same way."""
    if config.data.sampling != "patch":
        return config
    spacing = source.sampling_spacing()
    spacing = None if spacing is None else [float(v) for v in spacing]
    if config.data.spacing == "auto":
        logger.info("data.spacing auto: the training volumes' median in-plane spacing is %s",
                    "not defined (slices kept as stored)" if spacing is None
                    else " x ".join(f"{v:g}" for v in spacing) + " mm")
    return dataclasses.replace(config, data=dataclasses.replace(config.data, spacing=spacing))


def _build_model(config: Config, device: torch.device) -> torch.nn.Module:
    try:
        model = build_model(config.model)
        if config.data.sampling == "patch":
            model.set_input_size(check_patch_size(config))  # training takes patches
    except ValueError as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"config section 'model': {str(exc).splitlines()[0]}") from None
    return model.to(device)


def train(config: Config, output_dir: Union[str, Path], *, resume: Union[str, Path, None] = None,
          pretrained: Union[str, Path, None] = None, device: str = "auto",
          verbose: bool = True, overwrite: bool = False) -> TrainResult:
    """Train Swin-Unet as ``config`` says and write the run folder.

    Run as one process, or under ``torchrun`` (one process per GPU, or several CPU processes
    with gloo): the process group is read from torchrun's environment.

    Parameters
    ----------
    config : Config
        The resolved config (:func:`swin_unet.config.load_config`). ``model.num_classes`` and
        ``model.in_chans`` are taken from the data set.
    output_dir : str or Path
        Run folder: ``config.yaml``, ``train.log``, ``tensorboard/``, ``checkpoints/last.pth``
        and ``checkpoints/best.pth``.
    resume : str or Path, optional
        A ``last.pth`` to continue from (epoch, schedule, optimiser, scaler, RNG, step).
    pretrained : str or Path, optional
        ImageNet Swin-T or a Swin-Unet checkpoint to start from (ignored when resuming).
    device : {"auto", "cpu", "cuda"}
        Where to train.
    verbose : bool
        Also log to stderr (the log always goes to ``train.log``).
    overwrite : bool
        The output folder may hold an earlier run: its files are removed first. Without it (or
        ``resume``) a folder holding a run is refused.

    Returns
    -------
    TrainResult

    Raises
    ------
    InputError
        A bad config value, missing or broken data, a checkpoint that does not fit,
        ``cuda`` without a GPU, an output folder that holds a run (without ``resume`` or
        ``overwrite``) or that another process is using; one line naming the key or file.
    """
    started = time.perf_counter()
    output_dir = Path(output_dir)
    check_config(config)
    set_max_pixels(config.data.max_pixels)
    context = setup_distributed(device)
    previous_threads, previous_math = torch.get_num_threads(), math_settings()
    handlers: list = []
    monitor: Optional[Monitor] = None
    lock: Optional[RunLock] = None
    try:
        # Rank 0 holds the folder's lock for every rank of the run.
        lock = _on_rank0_first(lambda: claim_run_folder(
            output_dir, resume is not None, overwrite,
            [pretrained] if pretrained is not None else []), context)
        if context.is_main:
            handlers = setup_logging(output_dir / "train.log", verbose=verbose)
        threads = configure_cpu_threads(context, config.train.cpu_threads)
        math_mode = configure_math(context.device, config.train.deterministic)
        logger.info("run %s: dataset %s, device %s%s; %s", output_dir, config.dataset,
                    context.device, f", {threads} CPU threads" if context.device.type == "cpu"
                    else "", math_mode)
        if context.distributed:
            logger.info("distributed: %d processes (%s)", context.world_size,
                        dist.get_backend())

        source = _open_data(config, context)
        if config.data.fold is not None and resume is None:  # a resumed fold keeps its cases
            config = apply_fold(config, source, output_dir, context.is_main)
            source = _open_data(config, context)
        _on_rank0_first(lambda: _check_data(source), context)
        config = _record_geometry(_fit_model_config(config, source), source)
        config = _record_sampling(config, source)
        torch.manual_seed(config.train.seed)  # same initial weights on every rank
        model = _build_model(config, context.device)
        if pretrained is not None and resume is None:
            report = load_pretrained(model, pretrained)
            logger.info("pretrained weights: %s", report.summary())
        elif pretrained is not None:
            logger.info("--pretrained %s ignored: resuming from %s", pretrained, resume)
        params = sum(p.numel() for p in model.parameters())
        logger.info("model: %.2f M parameters, img_size %s, classes %s", params / 1e6,
                    config.model.img_size, ", ".join(source.class_names))

        train_slices = open_train_slices(source, config, context)
        val_volumes = source.volumes("val")
        validator = Validator(val_volumes, list(source.class_names), config.model.img_size,
                              config.inference, config.train.val_hd95,
                              config.train.overlay_slices, context,
                              SlidingWindow.from_config(config)) if len(val_volumes) else None
        trainer = Trainer(config, model, train_slices, validator, list(source.class_names),
                          output_dir, context)
        if resume is not None:
            trainer.resume(resume)
        trainer.wrap()
        if context.is_main:
            save_config(config, output_dir / "config.yaml")
            monitor = Monitor(output_dir / "tensorboard",
                              purge_step=trainer.global_step + 1 if resume is not None else None,
                              curves=output_dir / "curves.png",
                              steps_per_epoch=trainer.iters_per_epoch,
                              class_names=source.class_names)
        else:
            monitor = Monitor(None)
        result = trainer.fit(monitor)
        monitor.write_curves()
        result.config = config
        logger.info("finished %d of %d epochs in %.1f s%s; checkpoints in %s",
                    result.epochs_done, config.train.epochs, time.perf_counter() - started,
                    "" if result.best_metric is None
                    else f", best val mean Dice {result.best_metric:.4f}",
                    output_dir / "checkpoints")
        return result
    except (InputError, TrainingDiverged) as exc:  # the user's to fix: the CLI's message
        log_failure(handlers, format_error(exc))
        raise
    except KeyboardInterrupt:
        log_failure(handlers, "interrupted")
        raise
    except Exception as exc:
        fault = write_fault(exc)  # a full or read-only disk: the user's to fix, one line
        if fault is None:  # a bug: its traceback, for the report
            log_failure(handlers, f"error: {type(exc).__name__}: {exc}", exc)
            raise
        log_failure(handlers, format_error(fault))
        raise fault from None
    finally:
        if monitor is not None:
            _close_monitor(monitor)
        close_logging(handlers)
        cleanup_distributed()
        # Process-wide settings; train() is a call.
        torch.set_num_threads(previous_threads)
        restore_math_settings(previous_math)
        if lock is not None:
            try:
                run_manifest(output_dir).finish()
            finally:
                lock.release()


def _close_monitor(monitor: Monitor) -> None:
    """Flush and close TensorBoard's events; on a full or read-only disk the run's own error
    (or its result) stands, and the events file keeps what was written."""
    try:
        monitor.close()
    except Exception as exc:  # noqa: BLE001 - only file-system faults are kept quiet
        fault = write_fault(exc)
        if fault is None:
            raise
        logger.warning("%s", fault)
