"""Patch mode's inference: slices resampled to the training spacing, MONAI's sliding windows."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference
from torch import nn

from ..errors import InputError
from ..sizes import patch_pair, resampled_size

__all__ = ["SlidingWindow", "sliding_probabilities", "model_input_size"]


@dataclass(frozen=True)
class SlidingWindow:
    """How a patch-mode network sees a slice: windows of ``roi`` pixels at ``spacing`` mm.

    Attributes
    ----------
    roi : (int, int)
        The window (the training patch), ``data.patch_size`` or the model's ``img_size``.
    overlap : float
        ``inference.overlap``: the share of a window its neighbours overlap, in [0, 1).
    blend : {"gaussian", "constant"}
        ``inference.blend``: how overlapping windows' probabilities are weighted.
    spacing : (float, float), optional
        ``data.spacing``: the in-plane spacing (mm) slices are resampled to; None keeps them
        as stored (and so does ``auto`` left unresolved, as for 2-D images, which have none).
    """

    roi: tuple[int, int]
    overlap: float = 0.5
    blend: str = "gaussian"
    spacing: Optional[tuple[float, float]] = None

    @classmethod
    def from_config(cls, config) -> Optional["SlidingWindow"]:
        """The windows of a config trained with ``data.sampling: patch``; None in resize mode
        (inferred as the paper does: each slice resized to the model)."""
        data, inference = config.data, config.inference
        if data.sampling != "patch":
            return None
        spacing = data.spacing
        target = (None if spacing is None or spacing == "auto"
                  else (float(spacing[0]), float(spacing[1])))
        return cls(patch_pair(data.patch_size, config.model.img_size), float(inference.overlap),
                   inference.blend, target)


def _networks(module: nn.Module) -> Iterator[nn.Module]:
    """The networks in ``module``: itself if it has an input size, else its members'."""
    if getattr(module, "img_size", None) is not None:
        yield module
        return
    for child in module.children():
        yield from _networks(child)


@contextlib.contextmanager
def model_input_size(model: nn.Module, roi: Sequence[int]) -> Iterator[None]:
    """Every network in ``model`` (an ensemble's members too) takes ``roi`` inputs inside the
    block (:meth:`~swin_unet.model.SwinUnet.set_input_size`) and its own size again after.

    Raises
    ------
    InputError
        A network of a fixed input size other than ``roi`` (an ONNX graph).
    """
    roi = tuple(int(v) for v in roi)
    changed = []
    try:
        for network in _networks(model):
            size = tuple(network.img_size)
            if size == roi:
                continue
            if not hasattr(network, "set_input_size"):
                raise InputError(f"data.patch_size: the network takes {size[0]}x{size[1]} "
                                 f"inputs only, not {roi[0]}x{roi[1]} windows",
                                 key="data.patch_size")
            network.set_input_size(roi)
            changed.append((network, size))
        yield
    finally:
        for network, size in reversed(changed):
            network.set_input_size(size)


def sliding_probabilities(logits_of: Callable[[torch.Tensor], torch.Tensor],
                          slices: torch.Tensor, window: SlidingWindow, sw_batch_size: int,
                          spacing: Optional[Sequence[float]] = None) -> torch.Tensor:
    """Blended softmax probabilities of (n, C, X, Y) slices, at the slices' own size.

    Each slice is resampled in-plane from ``spacing`` to ``window.spacing`` (bicubic, as the
    resize path and the training cache resize), cut into windows by MONAI's
    ``sliding_window_inference`` (``sw_batch_size`` windows per forward pass; a slice smaller
    than a window is padded), and the windows' softmax probabilities are blended; they are
    resized back bilinearly, which keeps them summing to 1.

    Parameters
    ----------
    logits_of : callable
        (b, C, h, w) windows -> (b, K, h, w) logits (or log-probabilities: TTA, ensembles).
    slices : torch.Tensor
        (n, C, X, Y) float32 slices on the device the model runs on.
    window : SlidingWindow
        The windows, their overlap and blend, the target spacing.
    sw_batch_size : int
        Windows per forward pass.
    spacing : (float, float), optional
        The slices' in-plane spacing (mm); None (a 2-D image, an array without geometry):
        taken to be at the target spacing.

    Returns
    -------
    torch.Tensor
        (n, K, X, Y) float32 probabilities on the slices' device.
    """
    own = tuple(slices.shape[-2:])
    size = resampled_size(own, spacing, window.spacing)
    if size != own:
        slices = F.interpolate(slices, size=size, mode="bicubic", align_corners=False)

    def window_probabilities(windows: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits_of(windows).float(), dim=1)

    probs = sliding_window_inference(slices, window.roi, sw_batch_size, window_probabilities,
                                     overlap=window.overlap, mode=window.blend,
                                     sw_device=slices.device, device=slices.device)
    probs = torch.as_tensor(probs).float()  # a plain tensor, not MONAI's MetaTensor
    if size != own:
        probs = F.interpolate(probs, size=own, mode="bilinear", align_corners=False)
    return probs
