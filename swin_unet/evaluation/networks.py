"""The network a test.py request names (one checkpoint or an ensemble) and how it runs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..config import metric_mode_settings
from .ensemble import load_ensemble
from .run import EvaluationRequest, InferenceOptions
from .trained import LoadedModel, load_model

__all__ = ["load_models", "request_overrides", "inference_options"]

logger = logging.getLogger(__name__)


def load_models(paths: Sequence[Path], dataset: Optional[str] = None,
                overrides: Sequence[str] = (),
                device: Optional[torch.device] = None) -> LoadedModel:
    """One checkpoint as :func:`load_model` loads it; several as an :class:`Ensemble`."""
    paths = [Path(p) for p in paths]
    if len(paths) == 1:
        return load_model(paths[0], dataset, overrides, device)
    return load_ensemble(paths, dataset, overrides, device)


def request_overrides(request: EvaluationRequest) -> list[str]:
    """``--set`` overrides of the checkpoint's config, with ``--root`` as ``data.root`` and
    ``--max-pixels`` as ``data.max_pixels``."""
    return list(request.overrides) + ([f"data.root={request.root}"] if request.root else []) + (
        [f"data.max_pixels={request.max_pixels}"] if request.max_pixels is not None else [])


def inference_options(request: EvaluationRequest, loaded: LoadedModel,
                      device: torch.device) -> InferenceOptions:
    """How the network runs: the request's options, else the checkpoint's ``inference``."""
    from ..precision import autocast_dtype, precision_name

    inference = loaded.config.inference
    chosen = (metric_mode_settings(request.metric_mode) if request.metric_mode else
              {"resize": inference.resize, "metric_conventions": inference.metric_conventions})
    logger.info("precision: %s", precision_name(device, autocast_dtype(device, request.amp),
                                                request.amp))
    return InferenceOptions(request.batch_size or inference.batch_size, **chosen,
                            tta=request.tta or inference.tta, device=device, amp=request.amp,
                            progress=request.progress)
