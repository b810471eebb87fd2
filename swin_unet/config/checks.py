"""Each config value checked once, before any work: choices, ranges and the model's sizes.

:func:`check_config` is what ``train()`` and ``load_model`` call; values read from YAML or
``--set`` have had their choices (``Literal`` fields) checked already as they were read, so
these checks catch values set in code and the rules that involve several keys.
"""

from __future__ import annotations

import math
import numbers
import typing
import unicodedata
from typing import Any, Literal, Sequence

from .schema import Config, DataConfig, GeometryConfig, TrainConfig, choices, look_up_option
from ..errors import InputError
from ..sizes import patch_pair

__all__ = ["check_choices", "check_train_config", "check_patch_size", "check_config",
           "check_class_names"]


def check_choices(section: Any, prefix: str) -> None:
    """Check every ``Literal`` field of a config dataclass (one built in code, not read).

    Raises
    ------
    InputError
        A field whose value is not one of its choices, named ``prefix.field``.
    """
    for name, tp in typing.get_type_hints(type(section)).items():
        if typing.get_origin(tp) is Literal:
            key = f"{prefix}.{name}"
            look_up_option(getattr(section, name), choices(tp), key, f"config key '{key}'")


def _at_least(section: Any, prefix: str, keys: Sequence[str], low: float,
              what: str) -> None:
    for key in keys:
        value = getattr(section, key)
        if not (value >= low and math.isfinite(value)):  # NaN compares false: refused too
            raise InputError(f"config key '{prefix}.{key}': must {what}, got {value}",
                             key=f"{prefix}.{key}")


def check_class_names(names: Any, source: str) -> list[str]:
    """Class names as they enter (``data.class_names``, dataset.json, a checkpoint): a list of
    non-empty strings, without control characters (colour tables and the report are line- and
    field-based), each once.

    Raises
    ------
    InputError
        Names ``source`` and the bad name.
    """
    if not isinstance(names, (list, tuple)):
        raise InputError(f"{source}: class names must be a list of names, got {names!r}",
                         key=source)
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"{source}: class name {name!r} is not a non-empty name",
                             key=source)
        if any(unicodedata.category(c)[0] == "C" for c in name):
            raise InputError(f"{source}: class name {name!r} holds a control or invisible "
                             f"character", key=source)
    twice = next((n for n in names if list(names).count(n) > 1), None)
    if twice is not None:
        raise InputError(f"{source}: class name {twice!r} is given twice", key=source)
    return list(names)


def _check_data(data: Any) -> None:
    _at_least(data, "data", ("num_workers",), 0, "not be negative")
    _at_least(data, "data", ("folds",), 2, "be at least 2")
    _at_least(data, "data", ("max_pixels",), 1, "be a positive number of pixels")
    low, high = data.ct_window if len(data.ct_window) == 2 else (math.nan, math.nan)
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise InputError(f"config key 'data.ct_window': expected [low, high] in HU with low < "
                         f"high, got {data.ct_window}", key="data.ct_window")
    if data.class_names is not None:
        check_class_names(data.class_names, "config key 'data.class_names'")


def check_train_config(train: TrainConfig) -> None:
    """Validate the ``train`` section, naming the first bad key.

    Raises
    ------
    InputError
        A value out of range or not one of the known choices.
    """
    check_choices(train, "train")
    _at_least(train, "train", ("cpu_threads",), 0, "not be negative")
    _at_least(train, "train", ("epochs", "batch_size", "base_batch_size", "val_every",
                               "log_every"), 1, "be at least 1")
    _at_least(train, "train", ("base_lr", "ce_weight", "dice_weight", "weight_decay", "momentum",
                               "poly_power", "warmup_epochs", "overlay_slices"), 0,
              "not be negative")
    if train.iters_per_epoch is not None and (isinstance(train.iters_per_epoch, bool)
                                              or train.iters_per_epoch < 1):
        raise InputError(f"config key 'train.iters_per_epoch': must be a positive number of "
                         f"iterations or null (one pass over the slices), got "
                         f"{train.iters_per_epoch}", key="train.iters_per_epoch")
    if train.base_lr == 0:
        raise InputError("config key 'train.base_lr': must be positive, got 0")
    if not 0 <= train.seed < 2 ** 32:  # what NumPy's and torch's generators take
        raise InputError(f"config key 'train.seed': must be in [0, 2**32), got {train.seed}",
                         key="train.seed")
    if not train.momentum < 1:
        raise InputError(f"config key 'train.momentum': must be below 1, got {train.momentum}",
                         key="train.momentum")
    if train.ce_weight + train.dice_weight == 0:
        raise InputError("config keys 'train.ce_weight' and 'train.dice_weight' are both 0")


def _check_geometry(geometry: GeometryConfig) -> None:
    codes = geometry.axcodes
    if codes is not None and (len(codes) != 3 or sorted(
            {"L": 0, "R": 0, "A": 1, "P": 1, "S": 2, "I": 2}.get(c, 9) for c in codes.upper())
            != [0, 1, 2]):
        raise InputError(f"config key 'geometry.axcodes': {codes!r} is not three axis codes "
                         f"with one of L/R, A/P and S/I each (e.g. LPS, RAS)",
                         key="geometry.axcodes")
    if geometry.slice_axis not in (0, 1, 2):
        raise InputError(f"config key 'geometry.slice_axis': must be 0, 1 or 2, got "
                         f"{geometry.slice_axis}", key="geometry.slice_axis")
    for key in ("inplane_spacing", "field_of_view"):
        value = getattr(geometry, key)
        if value is not None and not (len(value) == 2 and 0 < value[0] <= value[1]):
            raise InputError(f"config key 'geometry.{key}': expected [low, high] in mm with "
                             f"0 < low <= high, got {value}", key=f"geometry.{key}")


def _check_native_resolution(data: DataConfig, overlap: float) -> None:
    """The patch-mode keys: the spacing, the foreground share, the windows' overlap."""
    spacing = data.spacing
    if spacing is not None and spacing != "auto" and not (
            isinstance(spacing, (list, tuple)) and len(spacing) == 2
            and all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
                    and v > 0 for v in spacing)):
        raise InputError(f"config key 'data.spacing': expected null, auto or [sx, sy] in mm, "
                         f"both positive and finite, got {spacing}", key="data.spacing")
    share = data.foreground_share
    if not (isinstance(share, numbers.Real) and 0.0 <= share <= 1.0):
        raise InputError(f"config key 'data.foreground_share': must be in [0, 1], got {share}",
                         key="data.foreground_share")
    if not (isinstance(overlap, numbers.Real) and 0.0 <= overlap < 1.0):
        raise InputError(f"config key 'inference.overlap': must be in [0, 1), got {overlap}",
                         key="inference.overlap")


def check_patch_size(config: Config) -> tuple[int, int]:
    """The patch size the model takes: ``model.img_size``, or a size with the same windows
    that :meth:`~swin_unet.model.SwinUnet.set_input_size` accepts.

    Raises
    ------
    InputError
        ``data.patch_size`` is not a size, or one the model cannot take.
    """
    from ..model.network import check_sizes  # torch: only when a model is checked
    from ..model.plan import stage_geometry

    model = config.model
    size = patch_pair(config.data.patch_size, model.img_size)
    own = patch_pair(None, model.img_size)
    if size == own:
        return size
    try:
        check_sizes(size, model.patch_size, model.window_size, model.depths)
        fits = ([g.window for g in stage_geometry(size, model.patch_size, model.window_size,
                                                  model.depths)]
                == [g.window for g in stage_geometry(own, model.patch_size, model.window_size,
                                                     model.depths)])
    except (InputError, ValueError):
        fits = False
    if not fits:
        raise InputError(f"config key 'data.patch_size': the model (img_size "
                         f"{own[0]}x{own[1]}, window {model.window_size}) cannot take "
                         f"{size[0]}x{size[1]} patches; use null (the model's img_size) or a "
                         f"size with the same windows", key="data.patch_size")
    return size


def check_config(config: Config, sections: Sequence[str] = ("model", "data", "train",
                                                            "inference", "geometry")) -> None:
    """Validate a whole config once, before any work, naming the first bad key.

    Choices (``Literal`` fields), ranges, and the model's sizes through the model's own
    :func:`~swin_unet.model.check_sizes` (the one place that knows which sizes fit).

    Raises
    ------
    InputError
        A value out of range or not one of its choices; ``key`` holds the dotted key.
    """
    for name in sections:
        check_choices(getattr(config, name), name)
    if "train" in sections:
        check_train_config(config.train)
    if "data" in sections:
        _check_data(config.data)
    if "inference" in sections:
        _at_least(config.inference, "inference", ("batch_size",), 1, "be at least 1")
    if "geometry" in sections:
        _check_geometry(config.geometry)
    if "data" in sections:
        _check_native_resolution(config.data, config.inference.overlap)
    if "model" in sections:
        model = config.model
        if not (0 < model.mlp_ratio and math.isfinite(model.mlp_ratio)):
            raise InputError(f"config key 'model.mlp_ratio': must be positive, got "
                             f"{model.mlp_ratio}", key="model.mlp_ratio")
        for key in ("drop_rate", "attn_drop_rate", "drop_path_rate"):
            if not 0.0 <= getattr(model, key) < 1.0:
                raise InputError(f"config key 'model.{key}': must be in [0, 1), got "
                                 f"{getattr(model, key)}", key=f"model.{key}")
        from ..model.network import check_sizes  # torch: only when a model is checked
        try:
            check_sizes(model.img_size, model.patch_size, model.window_size, model.depths,
                        num_heads=model.num_heads, embed_dim=model.embed_dim,
                        mlp_ratio=model.mlp_ratio, in_chans=model.in_chans,
                        num_classes=model.num_classes, decoder_depths=model.decoder_depths)
        except InputError as exc:
            raise InputError(f"config key 'model.{exc.key}': {exc}",
                             key=f"model.{exc.key}") from None
        if "data" in sections:
            check_patch_size(config)
