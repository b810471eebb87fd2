"""A run's config from its layers: the data set's file or a resumed checkpoint's, a file, ``--set``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

from ..config import Config, apply_overrides, config_from_dict, dataset_config_path, load_config
from ..errors import InputError
from .checkpointing import read_resume_checkpoint
from .loop import TrainResult
from .run import default_resume_path, train

__all__ = ["resolve_run_config", "train_from_layers", "prepare_from_layers"]


def resolve_run_config(dataset: str, output: Union[str, Path], *,
                       config_file: Union[str, Path, None] = None,
                       overrides: Sequence[str] = (), root: Optional[str] = None,
                       resume: Optional[str] = None, amp: bool = False,
                       compile: bool = False,
                       fold: Optional[str] = None) -> tuple[Config, Optional[Path], Optional[dict]]:
    """The run's config, the checkpoint to resume from and how far it got (None, None for a
    fresh run).

    Layers, each over the one before: ``configs/<dataset>.yaml`` (or, when resuming, the
    checkpoint's own config), ``config_file``, ``overrides``, then ``root``, ``amp`` and
    ``compile`` when given.

    Parameters
    ----------
    dataset : str
        The data set's name.
    output : str or Path
        The run folder (where ``resume=""`` looks for ``checkpoints/last.pth``).
    resume : str, optional
        None: a fresh run; "": the run folder's last checkpoint; else a checkpoint's path.
    fold : str, optional
        The cross-validation fold to train ("0".., or "all"; ``data.fold``). A resumed run
        keeps its own fold and cases: another fold is refused.

    Returns
    -------
    (Config, Path or None, dict or None)
        The config; the checkpoint; its ``epoch``, ``step_in_epoch``, ``global_step`` and
        ``best_metric``.

    Raises
    ------
    InputError
        An unreadable config or checkpoint, a checkpoint of another data set, an unknown key
        or a bad value, or a resumed run of another fold.
    """
    resume_path, progress = None, None
    if resume is not None:
        resume_path = Path(resume) if resume else default_resume_path(output)
        checkpoint = read_resume_checkpoint(resume_path)
        stored = checkpoint["config"]
        progress = {key: checkpoint.get(key) for key in ("epoch", "step_in_epoch",
                                                         "global_step", "best_metric")}
        if stored.get("dataset") != dataset:
            raise InputError(f"{resume_path}: a checkpoint of the '{stored.get('dataset')}' "
                             f"data set, not '{dataset}'", path=resume_path)
        # Continue the run as it was configured; the file and overrides may still change it.
        try:
            base = config_from_dict(stored)
        except InputError as exc:
            raise InputError(f"{resume_path}: stored config: {exc}", path=resume_path,
                             key=exc.key) from None
    else:
        base = load_config(dataset_config_path(dataset))
    config = load_config(config_file, base=base) if config_file else base
    config.dataset = dataset
    config = apply_overrides(config, list(overrides))
    if root is not None:
        config.data.root = str(root)
    if amp:
        config.train.amp = True
    if compile:
        config.train.compile = True
    if fold is not None:
        if resume_path is not None and config.data.fold != str(fold):
            raise InputError(f"--fold {fold}: {resume_path} is a run of "
                             f"{'fold ' + config.data.fold if config.data.fold else 'no fold'}",
                             path=resume_path)
        config.data.fold = str(fold)
    return config, resume_path, progress


def train_from_layers(dataset: str, output: Union[str, Path], *,
                      config_file: Union[str, Path, None] = None, overrides: Sequence[str] = (),
                      root: Optional[str] = None, resume: Optional[str] = None,
                      pretrained: Union[str, Path, None] = None, device: str = "auto",
                      amp: bool = False, compile: bool = False,
                      verbose: bool = True, overwrite: bool = False,
                      fold: Optional[str] = None) -> TrainResult:
    """What ``train.py`` does: :func:`resolve_run_config`, then :func:`train`.

    Returns
    -------
    TrainResult
        With ``config`` set to the run's resolved config. Resuming a run that has done all of
        ``train.epochs`` already does nothing, touches no file, and says so with
        ``already_finished``.

    Raises
    ------
    InputError
        As :func:`resolve_run_config` and :func:`train`.
    TrainingDiverged
        The loss became NaN or infinite.
    """
    config, resume_path, progress = resolve_run_config(
        dataset, output, config_file=config_file, overrides=overrides, root=root, resume=resume,
        amp=amp, compile=compile, fold=fold)
    if progress is not None and not progress["step_in_epoch"] \
            and int(progress["epoch"]) >= config.train.epochs:
        return TrainResult(output_dir=Path(output), epochs_done=int(progress["epoch"]),
                           global_step=int(progress["global_step"]),
                           best_metric=progress["best_metric"], config=config,
                           already_finished=True)
    return train(config, output, resume=resume_path, pretrained=pretrained, device=device,
                 verbose=verbose, overwrite=overwrite)


def prepare_from_layers(dataset: str, *, config_file: Union[str, Path, None] = None,
                        overrides: Sequence[str] = (), root: Optional[str] = None,
                        verbose: bool = True):
    """What ``train.py --prepare-only`` does: check the training data and build (or reuse) its
    slice cache, so that a cluster job can prepare the data before the training job starts.

    Returns
    -------
    SliceStore
        The complete cache (``len(store)`` slices at ``store.path``).

    Raises
    ------
    InputError
        A bad config, missing or broken data, or a cache folder that cannot be written.
    """
    from ..config.checks import check_config
    from ..data_layer import project_datasets
    from ..io.validity import set_max_pixels
    from .monitor import close_logging, setup_logging

    config, _, _ = resolve_run_config(dataset, ".", config_file=config_file,
                                      overrides=overrides, root=root)
    check_config(config, ("data", "train"))
    set_max_pixels(config.data.max_pixels)
    handlers = setup_logging(None, verbose=verbose)
    try:
        source = project_datasets().open_dataset(config.dataset, config.data)
        source.check_integrity(("train",))
        return source.slice_cache(config.model.img_size).open()
    finally:
        close_logging(handlers)
