"""Volume inference: every slice through the 2-D model in batches, resized in and out (or in
sliding windows, patch mode), with TTA."""

from __future__ import annotations

import contextlib
import math
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from ..config import ResizeMethod, choices, look_up_option
from ..errors import InputError
from ..io.volumes import label_dtype
from ..precision import autocast, autocast_dtype
from ..sizes import as_pair
from .sliding import SlidingWindow, model_input_size, sliding_probabilities

__all__ = ["predict_volume", "resolve_device", "flip_tta_logits"]

# In-plane flips of test-time augmentation: none, rows, columns, both.
_TTA_FLIPS = ((), (-2,), (-1,), (-2, -1))


def resolve_device(device: Union[str, torch.device, None] = "auto",
                   local_rank: int = 0) -> torch.device:
    """``"auto"``/None -> CUDA when available, else CPU; ``"cuda"`` -> this process's GPU.

    ``local_rank`` picks the GPU of a process started by torchrun when no index is given; a
    process that sees a single GPU uses it whatever its local rank.

    Raises
    ------
    InputError
        CUDA asked for but not available, an unknown device name, or more local processes
        than GPUs.
    """
    if device is None or device == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        device = "cuda"
    try:
        device = torch.device(device)
    except (RuntimeError, ValueError):
        raise InputError(f"--device: unknown device {device!r} (auto, cpu or cuda)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError("--device cuda: no CUDA GPU is available on this machine "
                             "(use --device cpu or auto)")
        if device.index is None:
            count = torch.cuda.device_count()
            # A cluster that gives each process its own GPU (CUDA_VISIBLE_DEVICES per rank)
            # shows every process one device, whatever its local rank.
            index = 0 if count == 1 else local_rank
            if index >= count:
                raise InputError(f"--device cuda: local rank {local_rank} has no GPU ({count} "
                                 f"visible); start at most {count} processes per node")
            device = torch.device("cuda", index)
    return device


def flip_tta_logits(model: nn.Module, batch: torch.Tensor, tta: bool) -> torch.Tensor:
    """The model's float32 logits for ``batch``; with ``tta``, the log of the mean probabilities.

    With ``tta`` the softmax probabilities of the four in-plane flips are averaged and returned
    as their logarithm: a softmax of it gives the mean probabilities exactly, so the same
    resize, argmax and softmax follow with or without TTA, and the entropy of the result is
    that of the mean probabilities.
    """
    if not tta:
        return model(batch).float()
    parts = []
    for dims in _TTA_FLIPS:
        flipped = torch.flip(batch, dims) if dims else batch
        log_probs = torch.log_softmax(model(flipped).float(), dim=1)
        parts.append(torch.flip(log_probs, dims) if dims else log_probs)
    return torch.logsumexp(torch.stack(parts), dim=0) - math.log(len(_TTA_FLIPS))


def _paper_resize_in(slices: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, C, X, Y) -> (N, C, H, W) with scipy's cubic spline zoom, slice by slice (original)."""
    n, c, x, y = slices.shape
    if (x, y) == size:
        return slices
    out = np.empty((n, c) + size, dtype=np.float32)
    factors = (size[0] / x, size[1] / y)
    for i in range(n):
        for k in range(c):
            out[i, k] = ndimage.zoom(slices[i, k], factors, order=3)
    return out


def _paper_resize_out(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, H, W) labels -> (N, X, Y) with scipy's nearest zoom (the original's order=0).

    Also (N, K, H, W) probabilities: each map is sampled at the same pixels as the labels.
    """
    h, w = labels.shape[-2:]
    if (h, w) == size:
        return labels
    factors = (size[0] / h, size[1] / w)
    flat = labels.reshape((-1, h, w))
    out = np.stack([ndimage.zoom(flat[i], factors, order=0) for i in range(len(flat))])
    return out.reshape(labels.shape[:-2] + size)


def _store_probabilities(probs: torch.Tensor, start: int, stop: int,
                         probabilities: Optional[np.ndarray],
                         entropy: Optional[np.ndarray]) -> None:
    """Write (n, K, X, Y) probabilities of slices start..stop into the caller's arrays."""
    if probabilities is not None:
        if probabilities.ndim != 4 or probabilities.shape[0] != probs.shape[1]:
            raise InputError(f"probabilities: expected an array of shape (K={probs.shape[1]}, "
                             f"X, Y, Z), got {probabilities.shape}")
        # Converted by torch first: numpy's casting copy into a strided float16 view is slow.
        dtype = torch.from_numpy(np.empty(0, dtype=probabilities.dtype)).dtype
        probabilities[..., start:stop] = np.moveaxis(probs.to(dtype).cpu().numpy(), 0, -1)
    if entropy is not None:
        # Nats; 0 * log 0 is 0.
        values = -torch.special.xlogy(probs, probs).sum(dim=1)
        entropy[..., start:stop] = np.moveaxis(values.clamp_min(0).cpu().numpy(), 0, -1)


def predict_volume(model: nn.Module, image: np.ndarray, img_size: Union[int, Sequence[int]],
                   batch_size: int = 16, resize: str = "bicubic", tta: bool = False,
                   device: Union[str, torch.device, None] = None, amp: bool = False,
                   amp_dtype: Optional[torch.dtype] = None,
                   probabilities: Optional[np.ndarray] = None,
                   entropy: Optional[np.ndarray] = None,
                   sliding: Optional[SlidingWindow] = None,
                   spacing: Optional[Sequence[float]] = None) -> np.ndarray:
    """Segment a volume slice by slice along its last axis.

    Parameters
    ----------
    model : nn.Module
        Maps (B, C, H, W) float32 to (B, K, H, W) logits. Put in eval mode for the call
        and restored to its previous mode after.
    image : np.ndarray
        (X, Y, Z) or (C, X, Y, Z) float32, intensity-normalised as in training.
    img_size : int or (H, W)
        The size the model takes; slices are resized to it and the result back.
    batch_size : int
        Slices per forward pass.
    resize : {"bicubic", "paper"}
        ``bicubic``: bicubic resize in (as the training cache does), logits resized back bilinear,
        then argmax. ``paper``: the published procedure: cubic spline zoom in, argmax,
        nearest zoom of the labels back.
    tta : bool
        Average the probabilities of the four in-plane flips (4x the compute).
    device : str or torch.device, optional
        Where to run; default the device of the model's parameters. The model is moved there.
    amp : bool
        Mixed precision as :func:`swin_unet.precision.autocast_dtype` chooses it: on CUDA
        bfloat16 (float16 where unsupported), on a CPU with native bf16 (AMX, AVX-512 BF16)
        bfloat16, on other CPUs float32.
    amp_dtype : torch.dtype, optional
        This autocast dtype instead (validation passes its training run's); overrides ``amp``.
    probabilities : np.ndarray, optional
        A writable (K, X, Y, Z) array (any float dtype; a view such as a transposed one is
        fine) that receives the class probabilities, slab by slab, so that no float32 copy of
        the whole map exists. Their argmax is the returned labels: with ``bicubic`` the softmax
        of the resized logits, with ``paper`` the model-size probabilities zoomed like the
        labels.
    entropy : np.ndarray, optional
        A writable (X, Y, Z) array that receives the entropy (nats) of the probabilities,
        computed before any rounding to the dtype of ``probabilities``.
    sliding : SlidingWindow, optional
        Patch mode (:meth:`SlidingWindow.from_config`): each slice resampled to the training
        spacing and segmented in blended sliding windows of the patch size
        (:func:`~swin_unet.evaluation.sliding.sliding_probabilities`); ``img_size`` and
        ``resize`` are then unused, and the probabilities are the blended softmax.
    spacing : (float, float), optional
        The in-plane (X, Y) voxel size in mm, for ``sliding``; None: at the training spacing.

    Returns
    -------
    np.ndarray
        Labels of shape (X, Y, Z): uint8, or uint16 for a model of more than 256 classes.

    Raises
    ------
    InputError
        A bad shape, channel count, batch size or resize method.
    """
    look_up_option(resize, choices(ResizeMethod), "resize method")
    if batch_size < 1:
        raise InputError(f"inference batch size must be >= 1, got {batch_size}")
    volume = np.asarray(image)
    if volume.ndim == 3:
        volume = volume[None]
    if volume.ndim != 4 or min(volume.shape) < 1:
        raise InputError(f"image: expected (X, Y, Z) or (C, X, Y, Z), got shape {image.shape}")
    expected = getattr(model, "in_chans", None)
    if expected is not None and volume.shape[0] != expected:
        raise InputError(f"image has {volume.shape[0]} channel(s) but the model takes {expected}")
    size = as_pair(img_size)
    if device is None:
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
    device = torch.device(device)
    model.to(device)
    channels, x, y, z = volume.shape
    labels = None  # uint8, or uint16 for more than 256 classes: known from the first logits
    want_probabilities = probabilities is not None or entropy is not None
    for name, array in (("probabilities", probabilities), ("entropy", entropy)):
        if array is not None and tuple(array.shape[-3:]) != (x, y, z):
            raise InputError(f"{name}: expected spatial shape {(x, y, z)}, got {array.shape}")
    was_training = model.training
    model.eval()
    try:
        dtype = amp_dtype if amp_dtype is not None else autocast_dtype(device, amp)
        windows = (model_input_size(model, sliding.roi) if sliding is not None
                   else contextlib.nullcontext())
        with torch.inference_mode(), autocast(device, dtype), windows:
            for start in range(0, z, batch_size):
                stop = min(start + batch_size, z)
                # (C, X, Y, n) -> (n, C, X, Y): the layout of the training slices.
                chunk = np.ascontiguousarray(np.moveaxis(volume[..., start:stop], -1, 0),
                                             dtype=np.float32)
                if sliding is not None:
                    probs = sliding_probabilities(
                        lambda windows: flip_tta_logits(model, windows, tta),
                        torch.from_numpy(chunk).to(device), sliding, batch_size, spacing)
                    dtype = label_dtype(probs.shape[1])
                    out = probs.argmax(dim=1).to(
                        torch.uint8 if dtype == np.uint8 else torch.int32).cpu().numpy()
                    if want_probabilities:
                        _store_probabilities(probs, start, stop, probabilities, entropy)
                elif resize == "paper":
                    batch = torch.from_numpy(_paper_resize_in(chunk, size)).to(device)
                    logits = flip_tta_logits(model, batch, tta)
                    dtype = label_dtype(logits.shape[1])
                    small = logits.argmax(dim=1).to(torch.int32).cpu().numpy().astype(dtype)
                    out = _paper_resize_out(small, (x, y))
                    if want_probabilities:
                        probs = _paper_resize_out(torch.softmax(logits, 1).cpu().numpy(), (x, y))
                        _store_probabilities(torch.from_numpy(probs), start, stop,
                                             probabilities, entropy)
                else:
                    batch = torch.from_numpy(chunk).to(device)
                    if (x, y) != size:
                        # Same resize as the training cache (MONAI Resize, bicubic).
                        batch = F.interpolate(batch, size=size, mode="bicubic",
                                              align_corners=False)
                    logits = flip_tta_logits(model, batch, tta)
                    if (x, y) != size:
                        # Channels-last makes the argmax over classes read contiguous memory
                        # (docs/performance.md); the resize costs the same.
                        logits = F.interpolate(
                            logits.contiguous(memory_format=torch.channels_last), size=(x, y),
                            mode="bilinear", align_corners=False)
                    dtype = label_dtype(logits.shape[1])
                    out = logits.argmax(dim=1).to(
                        torch.uint8 if dtype == np.uint8 else torch.int32).cpu().numpy()
                    if want_probabilities:
                        _store_probabilities(torch.softmax(logits, dim=1), start, stop,
                                             probabilities, entropy)
                if labels is None:
                    labels = np.empty((x, y, z), dtype=dtype)
                labels[..., start:stop] = np.moveaxis(out, 0, -1)
    finally:
        model.train(was_training)
    return labels
