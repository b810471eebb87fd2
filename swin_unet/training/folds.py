"""train.py --fold: a run's training and validation cases from the data set's folds."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from ..config import Config
from ..data_layer import project_datasets

__all__ = ["apply_fold"]

logger = logging.getLogger(__name__)


def apply_fold(config: Config, source, output_dir: Path, write: bool) -> Config:
    """``config`` with the case lists of fold ``data.fold`` of ``source``.

    The resolved ``data.train_cases``, ``val_cases`` and ``test_cases`` go into the config (and
    so into config.yaml and every checkpoint: a resumed fold keeps them even if the data
    folder changes); with ``write``, every fold goes to ``output_dir/splits_final.json``.

    Raises
    ------
    InputError
        A fold out of range, fewer cases than folds, a splits_final.json that does not fit.
    """
    datasets = project_datasets()
    folds = datasets.folds
    split, every = folds.resolve_fold(source, config.data.fold, config.data.folds,
                                      config.train.seed, source.splits_final)
    if write:
        folds.write_splits_final(Path(output_dir) / folds.SPLITS_FINAL, every)
    logger.info("fold %s of %d: %d training, %d validation cases (%s)", config.data.fold,
                len(every), len(split["train"]), len(split["val"]),
                ", ".join(split["val"]) or "none")
    data = dataclasses.replace(config.data, folds=len(every), train_cases=split["train"],
                               val_cases=split["val"], test_cases=split["test"])
    return dataclasses.replace(config, data=data)
