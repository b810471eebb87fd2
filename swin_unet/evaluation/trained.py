"""A trained network from a checkpoint, with the config and classes it was trained with."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ..config import Config, DataConfig, apply_overrides, config_from_dict
from ..config.checks import check_class_names, check_config
from ..io.validity import set_max_pixels
from ..data_layer import project_datasets
from ..errors import InputError
from ..model import build_model, checkpoint_state, load_state, read_checkpoint

__all__ = ["LoadedModel", "load_model", "resolve_intensity_for", "intensity_normaliser"]

logger = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A network ready for inference, with the config and classes it was trained with."""

    model: torch.nn.Module
    config: Config
    class_names: list[str]
    source: str  # "project" (this project's training) or "swin_unet" (the original code)
    path: Path
    # An ensemble's checkpoints (evaluation.ensemble), ``path`` the first; empty for one.
    members: list[Path] = field(default_factory=list)

    @property
    def checkpoints(self) -> list[Path]:
        """The checkpoint, or an ensemble's checkpoints."""
        return list(self.members) or [self.path]

    def summary_fields(self) -> dict:
        """What summary.json says of the network: the checkpoint, or the ensemble's."""
        if not self.members:
            return {"checkpoint": str(self.path)}
        return {"checkpoint": str(self.path), "checkpoints": [str(p) for p in self.members]}


def resolve_intensity_for(config: Config) -> str:
    """The intensity normalisation the checkpoint's model was trained with.

    Raises
    ------
    InputError
        ``data.intensity`` is "auto" for a folder data set, whose modality is not stored.
    """
    datasets = project_datasets()
    default = datasets.default_intensity_for(config.dataset, config.data.layout)
    if config.data.intensity == "auto" and default is None:
        raise InputError(f"the checkpoint's config has data.intensity 'auto' for data set "
                         f"'{config.dataset}', whose modality it does not store; pass "
                         f"--set data.intensity=ct|zscore|minmax")
    return datasets.resolve_intensity(config.data.intensity, default or "zscore")


def intensity_normaliser(config: Config) -> Callable[[np.ndarray], np.ndarray]:
    """The training intensity normalisation of ``config``, for (X, Y, Z) or (C, X, Y, Z) arrays.

    Raises
    ------
    InputError
        As :func:`resolve_intensity_for`.
    """
    intensity = resolve_intensity_for(config)
    window = config.data.ct_window
    normalize_intensity = project_datasets().normalize_intensity

    def normalise(array: np.ndarray) -> np.ndarray:
        return normalize_intensity(array, intensity, window, channels_first=array.ndim == 4)
    return normalise


def load_model(path: Path, dataset: Optional[str] = None, overrides: Sequence[str] = (),
               device: Optional[torch.device] = None) -> LoadedModel:
    """Build the network a checkpoint was trained as and load its weights.

    This project's checkpoints carry their config and class names. An original Swin-Unet
    checkpoint (a flat state dict) gets the default config for ``dataset``, with the number
    of classes read from its output layer; its RGB patch kernels are summed for 1 channel.

    Raises
    ------
    InputError
        Not a checkpoint, an ImageNet encoder rather than a segmentation network, or an
        original checkpoint without ``dataset``.
    """
    path = Path(path)
    checkpoint = read_checkpoint(path)
    state, source = checkpoint_state(checkpoint, path)
    if source == "project":
        if not isinstance(checkpoint["config"], dict):
            raise InputError(f"{path}: the checkpoint's 'config' is not a mapping")
        try:
            config = config_from_dict(checkpoint["config"])
        except InputError as exc:
            raise InputError(f"{path}: stored config: {exc}") from None
        stored = checkpoint.get("class_names")
        class_names = [] if stored is None else check_class_names(
            stored, f"{path}: stored 'class_names'")
    else:
        if source != "swin_unet" or "output.weight" not in state:
            raise InputError(f"{path}: not a trained Swin-Unet checkpoint (no decoder weights; "
                             f"an ImageNet encoder only initialises training)")
        if dataset is None:
            raise InputError(f"{path}: an original-format Swin-Unet checkpoint stores no config "
                             f"or class names; pass --dataset")
        config = Config(dataset=dataset)
        config.model.num_classes = int(state["output.weight"].shape[0])
        class_names = []
    if dataset is not None and dataset != config.dataset:
        # The training data's location and splits mean nothing for another data set; its
        # preprocessing must stay the one the network learned.
        logger.info("%s: trained on %s, evaluated on %s: data.root, layout and case lists "
                    "reset", path, config.dataset, dataset)
        try:
            intensity = resolve_intensity_for(config)
        except InputError:
            logger.warning("%s: data.intensity 'auto' of a folder data set: the %s default is "
                           "used unless --set data.intensity=... says otherwise", path, dataset)
            intensity = "auto"
        config.data = DataConfig(intensity=intensity, ct_window=list(config.data.ct_window),
                                 num_workers=config.data.num_workers)
        config.dataset = dataset
    config = apply_overrides(config, list(overrides))
    if not class_names:
        class_names = project_datasets().class_names_for(config.dataset, config.data.layout,
                                                         config.data.root, config.data.class_names)
    if len(class_names) != config.model.num_classes - 1:
        raise InputError(f"{path}: the model predicts {config.model.num_classes} classes but "
                         f"{len(class_names)} class names are known ({', '.join(class_names)})")
    try:
        check_config(config)  # as strictly as a user's config: a file can be made by anyone
    except InputError as exc:
        raise InputError(f"{path}: stored config: {exc}", path=path, key=exc.key) from None
    set_max_pixels(config.data.max_pixels)
    model = build_model(config.model)
    load_state(model, checkpoint, path, strict=True)  # logs what it loaded
    del checkpoint, state
    model.eval()
    if device is not None:
        model.to(device)
    return LoadedModel(model, config, class_names, source, path)
