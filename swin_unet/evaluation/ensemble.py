"""Ensembles of checkpoints: one network whose output is the mean of its members' probabilities."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from ..errors import InputError
from .trained import LoadedModel, load_model, resolve_intensity_for

__all__ = ["Ensemble", "load_ensemble"]


class Ensemble(nn.Module):
    """Networks that take the same input, answering the log of their mean softmax probabilities.

    :func:`~swin_unet.evaluation.inference.predict_volume` takes it in place of one network:
    the softmax of the output is the members' mean probabilities, so the same resize, argmax
    and saved probabilities follow, and test-time augmentation averages the flips of every
    member (the mean of each member's own TTA mean). The sum is accumulated in place, member
    by member, for one batch of slices at a time: no member's probabilities are kept.
    """

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if not members:
            raise InputError("an ensemble needs at least one checkpoint")
        self.members = nn.ModuleList(members)
        self.in_chans = getattr(members[0], "in_chans", None)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        total: Optional[torch.Tensor] = None
        for member in self.members:
            # Log-probabilities summed as logs: finite where a probability underflows to 0.
            log_probs = torch.log_softmax(member(batch).float(), dim=1)
            total = log_probs if total is None else torch.logaddexp(total, log_probs,
                                                                    out=total)
        return total - math.log(len(self.members))


def _preprocessing(loaded: LoadedModel) -> list[tuple[str, object]]:
    """What a member must share with the others, by name: its classes, input and geometry."""
    config = loaded.config
    geometry = config.geometry
    return [("classes", list(loaded.class_names)),
            ("input channels", config.model.in_chans),
            ("intensity", resolve_intensity_for(config)),
            ("CT window", [float(v) for v in config.data.ct_window]),
            ("img_size", list(config.model.img_size) if isinstance(config.model.img_size,
                                                                    (list, tuple))
             else config.model.img_size),
            ("orientation record", (geometry.axcodes, geometry.slice_axis)),
            ("sampling", (config.data.sampling, config.data.spacing, config.data.patch_size))]


def load_ensemble(paths: Sequence[Path], dataset: Optional[str] = None,
                  overrides: Sequence[str] = (),
                  device: Optional[torch.device] = None) -> LoadedModel:
    """The checkpoints of ``paths`` as one :class:`Ensemble`, with the first one's config.

    Raises
    ------
    InputError
        A checkpoint that cannot be loaded, one given twice, or one whose classes, input
        channels or preprocessing (intensity, CT window, size, orientation record) differ from
        the first's; the message names it and what differs.
    """
    paths = [Path(p) for p in paths]
    repeated = next((p for i, p in enumerate(paths)
                     if p.resolve() in {q.resolve() for q in paths[:i]}), None)
    if repeated is not None:
        raise InputError(f"{repeated}: given twice in --checkpoint", path=repeated)
    first = load_model(paths[0], dataset, overrides, device)
    reference = _preprocessing(first)
    members = [first.model]
    for path in paths[1:]:
        loaded = load_model(path, dataset, overrides, device)
        for (what, expected), (_, value) in zip(reference, _preprocessing(loaded)):
            if value != expected:
                raise InputError(f"{path}: {what} {value} differ from {expected} of "
                                 f"{paths[0]}; an ensemble's checkpoints must agree",
                                 path=path)
        members.append(loaded.model)
    return LoadedModel(Ensemble(members), first.config, first.class_names, first.source,
                       first.path, members=paths)
