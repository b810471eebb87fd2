"""Loading the checkpoints users have: ImageNet Swin (T, S, B), original Swin-Unet, and this project's."""

from __future__ import annotations

import logging
import math
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError

__all__ = ["LoadReport", "read_checkpoint", "checkpoint_state", "convert_state_dict",
           "resize_position_bias_table", "load_state", "load_pretrained"]

logger = logging.getLogger(__name__)

# Buffers saved by the original code (and Swin V2's coordinate table) that this model rebuilds
# from its size and window, as Swin's own fine-tuning deletes them from the file.
_REBUILT_BUFFERS = ("relative_position_index", "relative_coords_table", "attn_mask")
_BIAS_TABLE = "relative_position_bias_table"
# The skip reasons that a strict load accepts; any other means "the file does not fit the model".
_REBUILT, _HEAD = "buffer rebuilt by the model", "classification head"
_NO_COUNTERPART = "no counterpart in the model"
_PREFIXES = ("module.", "swin_unet.")
# Stored members hold exactly their declared size; the headers and directory add a little.
ARCHIVE_MAX_RATIO = 4


def _grouped(verb: str, reasons: dict[str, str], shown: int) -> list[str]:
    """One report line per reason: how many keys had it, and the first ``shown`` of them."""
    groups: dict[str, list[str]] = {}
    for key, why in reasons.items():
        groups.setdefault(why, []).append(key)
    return [f"  {verb} {len(keys)} ({why}): {', '.join(keys[:shown])}"
            + (" ..." if len(keys) > shown else "") for why, keys in groups.items()]


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did with each tensor.

    Attributes
    ----------
    path
        the file read.
    source
        "imagenet" (Swin classification encoder), "swin_unet" (a trained Swin-Unet from
        the original code) or "project" (a checkpoint written by this project's training).
    loaded
        model keys filled from the file.
    converted
        model keys filled after a conversion, with what was done.
    interpolated
        model keys filled with a relative position bias table resized to the
        model's window (bicubic, as Swin's fine-tuning does), with the sizes.
    skipped
        file keys not used, with the reason.
    missing
        model keys the file did not fill (they keep their initialisation).
    """

    path: str
    source: str
    loaded: list[str] = field(default_factory=list)
    converted: dict[str, str] = field(default_factory=dict)
    interpolated: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A few lines for a log: counts, conversions, and the reasons for skips."""
        lines = [f"{self.path}: {self.source} checkpoint; {len(self.loaded)} tensors loaded, "
                 f"{len(self.converted)} converted, {len(self.interpolated)} interpolated, "
                 f"{len(self.skipped)} skipped, {len(self.missing)} left at initialisation"]
        lines += [f"  converted {k}: {why}" for k, why in self.converted.items()]
        lines += _grouped("interpolated", self.interpolated, shown=2)
        lines += _grouped("skipped", self.skipped, shown=4)
        if self.missing:
            groups = sorted({re.sub(r"\.blocks\.\d+\..*|\.(weight|bias)$", "", k) for k in self.missing})
            lines.append(f"  not in the file: {', '.join(groups)}")
        return "\n".join(lines)


def read_checkpoint(path: Union[str, Path]) -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)`` on the CPU.

    Raises
    ------
    InputError
        the file is missing, unreadable, not a PyTorch checkpoint, or not a dict.
    """
    path = Path(path)
    if not path.is_file():
        what = "not a regular file" if path.exists() else "checkpoint file not found"
        raise InputError(f"{path}: {what}", path=path)
    check_archive(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch.load's failures on a damaged file vary
        raise InputError(f"{path}: not a readable PyTorch checkpoint "
                         f"({_load_failure(exc)})", path=path) from None
    if not isinstance(obj, dict):
        raise InputError(f"{path}: not a checkpoint (holds a {type(obj).__name__}, "
                         f"expected a dict of tensors)", path=path)
    odd = next((k for k in obj if not isinstance(k, str)), None)
    if odd is not None:
        raise InputError(f"{path}: not a checkpoint (key {odd!r} is not a name)", path=path)
    return obj


def check_archive(path: Path) -> None:
    """Refuse a zip checkpoint that would inflate, from its central directory, before any read.

    torch.save stores its members uncompressed, so a compressed member, or members declaring
    more than :data:`ARCHIVE_MAX_RATIO` times the file's size, is not what torch wrote: a zip
    bomb. A file that is no zip (the legacy format) is left to torch.load.

    Raises
    ------
    InputError
        Names the file and the member or the declared total.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return
    packed = next((m for m in members if m.compress_type != zipfile.ZIP_STORED), None)
    if packed is not None:
        raise InputError(f"{path}: member {packed.filename!r} is compressed (torch.save stores "
                         f"members uncompressed): not a checkpoint torch wrote, refused unread",
                         path=path)
    lying = next((m for m in members if m.file_size != m.compress_size), None)
    if lying is not None:
        raise InputError(f"{path}: stored member {lying.filename!r} declares {lying.file_size} "
                         f"bytes but holds {lying.compress_size}: a damaged or hostile file, "
                         f"refused unread", path=path)
    declared, size = sum(m.file_size for m in members), path.stat().st_size
    if declared > ARCHIVE_MAX_RATIO * size:
        raise InputError(f"{path}: its members declare {declared} bytes, more than "
                         f"{ARCHIVE_MAX_RATIO} times the file's {size}: a damaged or hostile "
                         f"file, refused unread", path=path)


def _load_failure(exc: BaseException) -> str:
    """The useful part of torch.load's (long, multi-paragraph) failure message."""
    text = str(exc)
    if isinstance(exc, EOFError):
        return "empty or truncated file"
    if isinstance(exc, MemoryError):
        return "declares more data than memory holds (damaged file?)"
    match = re.search(r"WeightsUnpickler error:[ \t]*([^\n]*)", text)
    if match:
        detail = match.group(1).split(". ")[0].strip()
        return (f"refused by safe loading: {detail}" if detail
                else "not a file written by torch.save")
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first.split(". ")[0][:200]


def checkpoint_state(obj: dict, path: Union[str, Path]) -> tuple[dict, str]:
    """The flat state dict inside a read checkpoint and its source.

    Unwraps ``model`` / ``state_dict`` entries and strips ``module.`` and ``swin_unet.``
    prefixes. The source is "project" (ours: ``model`` and ``config`` entries), "swin_unet"
    (a trained Swin-Unet of the original code) or "imagenet" (an encoder without a decoder).

    Raises
    ------
    InputError
        no tensors, or no Swin or Swin-Unet weights, naming ``path``.
    """
    project = "model" in obj and "config" in obj
    for key in ("model", "state_dict"):
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    state = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor) or not isinstance(key, str):
            continue
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        state[key] = value
    if not state:
        keys = ", ".join(map(str, list(obj)[:5]))
        raise InputError(f"{path}: holds no tensors (keys: {keys})", path=path)
    if any(k.startswith("layers_up.") for k in state):
        return state, "project" if project else "swin_unet"
    if any(k.startswith("layers.") for k in state):
        return state, "imagenet"
    raise InputError(f"{path}: no Swin or Swin-Unet weights (first keys: "
                     f"{', '.join(list(state)[:4])})")


def resize_position_bias_table(table: torch.Tensor, window: int) -> torch.Tensor:
    """A relative position bias table resized to another window, as Swin's fine-tuning does.

    The ((2M-1)^2, heads) table is viewed as a (1, heads, 2M-1, 2M-1) grid, resized with
    ``F.interpolate(mode="bicubic")`` (default ``align_corners``) to (2M'-1, 2M'-1), and
    flattened back to ((2M'-1)^2, heads).

    Raises
    ------
    ValueError
        the table's row count is not the square of an odd number.
    """
    rows, heads = table.shape
    side = math.isqrt(rows)
    if side * side != rows or side % 2 == 0:
        raise ValueError(f"a bias table has (2M-1)^2 rows, got {rows}")
    new_side = 2 * window - 1
    if new_side == side:
        return table
    grid = table.T.reshape(1, heads, side, side).float()
    grid = F.interpolate(grid, size=(new_side, new_side), mode="bicubic")
    return grid.reshape(heads, new_side * new_side).T.contiguous().to(table.dtype)


def _fit(name: str, value: torch.Tensor, expected: torch.Size) -> tuple[torch.Tensor, str, str]:
    """``value`` made to fit a model tensor of shape ``expected``.

    Returns
    -------
    (tensor, kind, note): kind "" (as is), "converted" or "interpolated" with a note on
    what was done, or "skipped" with the reason (the tensor then is not used).
    """
    if (name == "patch_embed.proj.weight" and value.ndim == 4 and value.shape[1] == 3
            and expected[1] == 1 and value.shape[0] == expected[0]):
        return value.sum(dim=1, keepdim=True), "converted", "RGB kernels summed for a 1-channel input"
    if value.shape == expected:
        return value, "", ""
    if name.endswith(_BIAS_TABLE) and value.ndim == 2 and len(expected) == 2:
        if value.shape[1] != expected[1]:
            return value, "skipped", (f"bias table for {value.shape[1]} heads in the file, "
                                      f"{expected[1]} in the model")
        old, new = math.isqrt(value.shape[0]), math.isqrt(expected[0])
        try:
            resized = resize_position_bias_table(value, (new + 1) // 2)
        except ValueError as exc:
            return value, "skipped", str(exc)
        if resized.shape == expected:
            return resized, "interpolated", (f"bicubic {old}x{old} -> {new}x{new}, window "
                                             f"{(old + 1) // 2} -> {(new + 1) // 2}")
    return value, "skipped", f"shape {tuple(value.shape)} in the file, {tuple(expected)} in the model"


def _no_counterpart(key: str, depths: tuple[int, ...]) -> str:
    """Why a file key has no model key: a block deeper than the model's stage, or none at all."""
    match = re.match(r"layers\.(\d+)\.blocks\.(\d+)\.", key)
    if match and int(match.group(1)) < len(depths):
        stage, block = int(match.group(1)), int(match.group(2))
        if block >= depths[stage]:
            return f"block beyond the model's depth (stage {stage} has {depths[stage]} blocks)"
    return _NO_COUNTERPART


def convert_state_dict(state: dict, source: str, model: nn.Module,
                       path: str = "<state dict>") -> tuple[dict, LoadReport]:
    """Map a foreign state dict onto ``model``'s keys and shapes.

    ImageNet encoders (Swin-T, -S, -B; 1k or 22k head; any window) are mirrored into the
    decoder (encoder stage i -> up-stage ``levels - 1 - i``, as the original Swin-Unet does),
    their head is dropped; a 3-channel patch embedding is summed over its input channels for a
    1-channel model (exactly what repeating a grayscale slice 3 times computes); a relative
    position bias table of another window is resized by :func:`resize_position_bias_table`
    (one with another head count is not loaded); ``relative_position_index`` and ``attn_mask``
    are never loaded (the model builds its own). Blocks beyond the model's depth and tensors
    with no counterpart or another shape are skipped and reported.

    Returns
    -------
    (state dict to load into ``model``, report).
    """
    report = LoadReport(path=str(path), source=source)
    target = model.state_dict()
    depths = tuple(getattr(model, "depths", ()))
    levels = len(depths) or 4
    candidates: dict[str, tuple[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key.endswith(_REBUILT_BUFFERS):
            report.skipped[key] = _REBUILT
            continue
        if key.startswith("head."):
            report.skipped[key] = _HEAD
            continue
        candidates.setdefault(key, (key, value))
        match = re.match(r"layers\.(\d+)\.(blocks\..*)", key)
        if source == "imagenet" and match:
            mirror = f"layers_up.{levels - 1 - int(match.group(1))}.{match.group(2)}"
            candidates.setdefault(mirror, (key, value))

    out = {}
    for name, (source_key, value) in candidates.items():
        if name not in target:
            if name == source_key:
                report.skipped[name] = _no_counterpart(name, depths)
            continue
        value, kind, note = _fit(name, value, target[name].shape)
        if kind == "skipped":
            report.skipped[source_key if name == source_key else f"{source_key} -> {name}"] = note
            continue
        out[name] = value
        if kind == "converted":
            report.converted[name] = note
        elif kind == "interpolated":
            report.interpolated[name] = note
        else:
            report.loaded.append(name)
    report.missing = [k for k in target if k not in out]
    return out, report


def load_state(model: nn.Module, checkpoint: dict, path: Union[str, Path],
               strict: Optional[bool] = None) -> LoadReport:
    """Load an already read checkpoint (see :func:`load_pretrained`) into ``model``."""
    state, source = checkpoint_state(checkpoint, path)
    converted, report = convert_state_dict(state, source, model, str(path))
    if strict is None:
        strict = source != "imagenet"
    if strict:
        problems = [f"{k}: {why}" for k, why in report.skipped.items()
                    if why not in (_REBUILT, _HEAD)]
        problems += [f"{k}: not in the file" for k in report.missing]
        if problems:
            raise InputError(f"{path}: does not fit the model ({len(problems)} problems; first: "
                             f"{problems[0]})")
    if not converted:
        raise InputError(f"{path}: no tensor fits the model ({report.summary().splitlines()[0]})")
    model.load_state_dict(converted, strict=False)
    logger.info(report.summary())
    return report


def load_pretrained(model: nn.Module, path: Union[str, Path],
                    strict: Optional[bool] = None) -> LoadReport:
    """Load an ImageNet Swin, an original Swin-Unet or this project's checkpoint into ``model``.

    Parameters
    ----------
    model
        a :class:`~swin_unet.model.SwinUnet`.
    path
        the checkpoint file.
    strict
        require every model tensor to be filled with the right shape. Default: True
        for Swin-Unet checkpoints (original or ours), False for ImageNet encoders (the
        decoder's expanding layers and output start from scratch by design).

    Returns
    -------
    A :class:`LoadReport`.

    Raises
    ------
    InputError
        the file is not a checkpoint, or (strict) does not fit the model; the
        message names the file and the first tensor that does not fit.
    """
    return load_state(model, read_checkpoint(path), Path(path), strict)
