"""Typed configuration: dataclasses filled from YAML files and ``--set key=value`` overrides.

A config is read in three layers, each overriding the one before: the defaults below, a YAML
file (``configs/<dataset>.yaml`` or the user's ``--config``), then ``--set`` overrides with
dotted keys and YAML values (``--set model.depths=[2,2,2,2]``). Unknown keys and values of the
wrong type raise :class:`~swin_unet.errors.InputError` naming the key.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from .values import choices, dotted_keys, fill_dataclass, look_up_option, unknown_key
from ..errors import InputError

__all__ = ["REPO_ROOT", "CONFIG_DIR", "AttentionMode", "IntensityMode", "MetricMode",
           "ResizeMethod", "Sampling", "Blend", "MetricConventions", "metric_mode_settings",
           "Device", "Split", "choices", "look_up_option", "dataset_config_path", "ModelConfig",
           "DataConfig", "TrainConfig", "InferenceConfig", "GeometryConfig", "Config",
           "load_config", "config_from_dict", "config_to_dict", "apply_overrides", "save_config"]

REPO_ROOT = Path(__file__).resolve().parents[2]


def _config_dir() -> Path:
    """The data sets' YAML files: package data when installed (``swin_unet/configs``), else
    the clone's ``configs/`` folder beside the package."""
    installed = importlib.resources.files("swin_unet") / "configs"
    return Path(str(installed)) if installed.is_dir() else REPO_ROOT / "configs"


CONFIG_DIR = _config_dir()

# The choices of the config, each written once: the fields below use these types, and the code
# that acts on a choice reads its options from them (``choices(MetricMode)``).
AttentionMode = Literal["auto", "sdpa", "explicit"]
IntensityMode = Literal["auto", "ct", "zscore", "minmax", "none"]
CacheDtype = Literal["float16", "float32"]
Optimizer = Literal["sgd", "adamw"]
Schedule = Literal["poly", "cosine"]
AmpDtype = Literal["auto", "bf16", "fp16"]
# How slices are resized to the model and back: "bicubic" (image bicubic, logits bilinear, then
# the argmax) or "paper" (the original code's spline zoom in, nearest-neighbour labels out).
ResizeMethod = Literal["bicubic", "paper"]
# "resize" (every slice resized to the model, the paper's) or "patch" (native-resolution patches
# and sliding-window inference, docs/native-resolution.md); the sliding windows' blend.
Sampling = Literal["resize", "patch"]
Blend = Literal["gaussian", "constant"]
# How volumes are scored: "mm" (HD95 from the spacing, sound empty-mask rules) or "paper".
MetricConventions = Literal["mm", "paper"]
# test.py's --metric-mode and the legacy key inference.metric_mode: both settings at once.
MetricMode = Literal["mm", "paper"]
# Not config keys: the command lines' --device and --split.
Device = Literal["auto", "cpu", "cuda"]
Split = Literal["train", "val", "test"]


@dataclass
class ModelConfig:
    """The network's hyper-parameters; the defaults are the paper's "tiny lite" model."""

    # A named size (swin_unet.model.presets: tiny_lite, swin_t, swin_s, swin_b, swin_b_384): it
    # sets embed_dim, depths, num_heads, window_size, img_size and decoder_depths first, and the
    # other model keys of the same file or --set line override them.
    preset: Optional[str] = None
    img_size: Union[int, list[int]] = 224
    in_chans: int = 1
    num_classes: int = 9
    embed_dim: int = 96
    depths: list[int] = field(default_factory=lambda: [2, 2, 2, 2])
    num_heads: list[int] = field(default_factory=lambda: [3, 6, 12, 24])
    window_size: int = 7
    # Decoder blocks per level but the deepest (like depths[:-1]); null mirrors the encoder.
    decoder_depths: Optional[list[int]] = None
    patch_size: int = 4
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.1
    # "auto" (SDPA on CUDA, explicit math on CPU), "sdpa" or "explicit".
    attention: AttentionMode = "auto"
    # Recompute each stage in the backward pass instead of storing its activations.
    grad_checkpoint: bool = False


@dataclass
class DataConfig:
    """Where the data is and how it is read; splits default to the data set's standard one."""

    # None: data/Synapse, data/ACDC, data/phantom or data/phantom2d under the current folder
    # (folder: required).
    root: Optional[str] = None
    # "auto" detects the layout from the files under root; or synapse_raw, synapse_npz,
    # acdc_raw, acdc_npz, folder, nnunet_2d, image_pairs (2-D images). For the phantom it picks
    # the kind: synapse_raw (abdominal CT, the default) or acdc_raw (cardiac MRI).
    layout: str = "auto"
    # Case lists override the standard split (None); ids such as 1, 0001, case0001, img0001
    # (Synapse) or 2, 002, patient002 (ACDC) are all accepted. An empty val list: no validation.
    train_cases: Optional[list[str]] = None
    val_cases: Optional[list[str]] = None
    test_cases: Optional[list[str]] = None
    # Cross-validation (train.py --fold): the labelled non-test cases split into ``folds``
    # folds from train.seed (or a folder's splits_final.json); ``fold`` "0".."folds-1" is the
    # validation fold, "all" trains on every case. The resolved case lists above are recorded.
    folds: int = 5
    fold: Optional[str] = None
    # DataLoader workers; also the threads that read volumes into the cache and check them.
    num_workers: int = 2
    # "auto" (from the data set / modality), "ct" (clip to ct_window, scale to [0, 1]),
    # "zscore" or "minmax" (per volume), "none" (as read; 2-D images come in [0, 1]).
    intensity: IntensityMode = "auto"
    ct_window: list[float] = field(default_factory=lambda: [-125.0, 275.0])
    # dtype of cached, resized training volumes: "float16" or "float32".
    cache_dtype: CacheDtype = "float16"
    # Folder of the on-disk slice caches (docs/large-datasets.md); None: $SWIN_UNET_CACHE,
    # else cache/ under the working folder.
    cache_dir: Optional[str] = None
    # cache_dir is on a file system every node of a multi-node job sees: one process of the
    # job builds the cache (false: one per node, each in its own cache_dir).
    cache_shared: bool = False
    augment: bool = True
    # Foreground class names in label order, overriding the layout's (e.g. for a release made
    # by a script that numbers the organs by raw BTCV label); None: the layout's own names
    # (2-D image pairs without a dataset.json: one class, "foreground").
    class_names: Optional[list[str]] = None
    # Releases stored slice by slice: stack a case with missing slice numbers (the gap is
    # logged) instead of refusing it. Off: a gap would shrink distances along z unnoticed.
    allow_slice_gaps: bool = False
    sampling: Sampling = "resize"
    # Patch mode: the in-plane spacing (mm) volumes are resampled to: null (as stored), "auto"
    # (the training volumes' median, recorded as numbers) or [sx, sy]; 2-D images keep pixels.
    spacing: Optional[Union[Literal["auto"], list[float]]] = None
    # Patch mode: patch and sliding-window size, int or [h, w]; null: model.img_size.
    patch_size: Optional[Union[int, list[int]]] = None
    # Patch mode: the share of training patches centred on a foreground pixel.
    foreground_share: float = 1 / 3
    # 2-D images above this many pixels are refused from their header (test.py --max-pixels).
    max_pixels: int = 100_000_000


@dataclass
class TrainConfig:
    """The optimisation recipe; the defaults are the published Synapse recipe."""

    epochs: int = 150
    # Iterations per epoch (validation, checkpoints and the schedule count these epochs);
    # None: one pass over the training slices.
    iters_per_epoch: Optional[int] = None
    # The global batch: split evenly over the processes of a torchrun job.
    batch_size: int = 24
    base_lr: float = 0.05
    # base_lr is for this global batch size; the lr used scales linearly with the real one.
    base_batch_size: int = 24
    optimizer: Optimizer = "sgd"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    # "poly" (per iteration, power poly_power) or "cosine" (with warmup_epochs of linear warm-up).
    schedule: Schedule = "poly"
    poly_power: float = 0.9
    warmup_epochs: int = 0
    ce_weight: float = 0.4
    dice_weight: float = 0.6
    seed: int = 1234
    val_every: int = 10
    val_hd95: bool = False
    amp: bool = False
    # Autocast dtype with amp: "auto" (bf16 where the GPU supports it, else fp16), "bf16", "fp16".
    amp_dtype: AmpDtype = "auto"
    compile: bool = False
    # TensorBoard train/* scalars every log_every iterations.
    log_every: int = 10
    # Validation slices drawn as image / ground truth / prediction overlays in TensorBoard.
    overlay_slices: int = 2
    # Deterministic kernels (slower on CUDA); CPU runs are reproducible either way.
    deterministic: bool = False
    # CPU threads per process; 0: OMP_NUM_THREADS if set, else the cores / local processes.
    cpu_threads: int = 0


@dataclass
class InferenceConfig:
    """How volumes are segmented and scored."""

    batch_size: int = 16
    resize: ResizeMethod = "bicubic"
    metric_conventions: MetricConventions = "mm"
    tta: bool = False
    # Patch mode's sliding windows: the overlap of neighbours in [0, 1), and their blend.
    overlap: float = 0.5
    blend: Blend = "gaussian"


@dataclass
class GeometryConfig:
    """How the training volumes lie: recorded by train.py, used by test.py --input.

    A record missing (None), as in checkpoints of the original code, keeps scans in the
    voxel order they are stored in.
    """

    # Axis codes of the voxel axes in the RAS+ world (nibabel's aff2axcodes), e.g. "LPS".
    axcodes: Optional[str] = None
    # The voxel axis (0, 1 or 2) the 2-D slices are cut across.
    slice_axis: int = 2
    # [smallest, largest] in-plane voxel size (mm) and in-plane field of view (mm) of the
    # training volumes.
    inplane_spacing: Optional[list[float]] = None
    field_of_view: Optional[list[float]] = None


@dataclass
class Config:
    """Everything a run needs; written to OUTPUT/config.yaml and stored in checkpoints."""

    dataset: str = "synapse"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    geometry: GeometryConfig = field(default_factory=GeometryConfig)


def config_to_dict(config: Config) -> dict:
    """Plain nested dict of ``config`` (YAML- and checkpoint-safe)."""
    return dataclasses.asdict(config)


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def metric_mode_settings(mode: str, key: str = "metric mode") -> dict:
    """The inference settings that ``--metric-mode`` (or the key ``inference.metric_mode``)
    stands for: ``paper`` is the published procedure, resize and metrics alike.

    Raises
    ------
    InputError
        ``mode`` is not one of ``choices(MetricMode)``.
    """
    mode = look_up_option(mode, choices(MetricMode), key, f"config key '{key}'"
                          if "." in key else None)
    return {"resize": "paper" if mode == "paper" else "bicubic", "metric_conventions": mode}


def _legacy_keys(values: dict) -> dict:
    """``values`` with ``inference.metric_mode`` (configs and checkpoints written before the
    two settings were separate) turned into ``resize`` and ``metric_conventions``."""
    inference = values.get("inference") if isinstance(values, dict) else None
    if not isinstance(inference, dict) or "metric_mode" not in inference:
        return values
    inference = dict(inference)
    legacy = metric_mode_settings(inference.pop("metric_mode"), "inference.metric_mode")
    return {**values, "inference": {**legacy, **inference}}


def config_from_dict(values: dict, base: Optional[Config] = None) -> Config:
    """Config from a (possibly partial) nested dict layered over ``base`` (default: defaults).

    Raises
    ------
    InputError
        an unknown key or a value of the wrong type, naming the dotted key.
    """
    values = _legacy_keys(values or {})
    merged = config_to_dict(base or Config())
    model = values.get("model") if isinstance(values, dict) else None
    if isinstance(model, dict) and model.get("preset") is not None:
        merged = _merge(merged, {"model": _preset(model["preset"])})
    merged = _merge(merged, values)
    return fill_dataclass(Config, merged, "")


def _preset(name: Any) -> dict:
    """The model fields of preset ``name``, as an error naming the key if there is none."""
    from ..model.presets import preset_fields  # the model package imports torch

    try:
        return preset_fields(str(name))
    except KeyError as exc:
        raise InputError(f"config key 'model.preset': {exc.args[0]}", key="model.preset") from None


def apply_overrides(config: Config, overrides: list[str]) -> Config:
    """Apply ``key=value`` overrides (dotted keys, YAML values) to ``config``.

    Raises
    ------
    InputError
        a malformed override, an unknown key or a value of the wrong type.
    """
    update: dict = {}
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"--set expects KEY=VALUE, got '{item}'")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise InputError(f"--set {key}: cannot parse value '{raw}': "
                             f"{str(exc).splitlines()[0]}") from None
        node = update
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InputError(f"--set {key}: '{part}' is set twice as a value and a section")
        node[parts[-1]] = value
    # Validate each key's path first so an unknown key is named with its full dotted path.
    update = _legacy_keys(update)
    defaults = config_to_dict(config)
    for item in overrides or []:
        key = item.partition("=")[0].strip()
        if key == "inference.metric_mode":
            continue
        node = defaults
        for i, part in enumerate(key.split(".")):
            if not isinstance(node, dict) or part not in node:
                raise unknown_key(key, dotted_keys(defaults))
            node = node[part]
    return config_from_dict(update, base=config)


def load_yaml(path: Union[str, Path]) -> dict:
    """Read a YAML mapping, with errors that name the file.

    Raises:
        InputError: the file is missing, unreadable, not text, not YAML, or not a mapping.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read config file ({exc.strerror or exc})",
                         path=path) from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file (a YAML config is UTF-8 text)",
                         path=path) from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}",
                         path=path) from None
    except Exception as exc:  # noqa: BLE001 - any other failure of the parser on this file
        raise InputError(f"{path}: not valid YAML ({type(exc).__name__})", path=path) from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise InputError(f"{path}: expected a YAML mapping at the top level", path=path)
    return values


def load_config(path: Union[str, Path, None] = None, overrides: Optional[list[str]] = None,
                base: Optional[Config] = None) -> Config:
    """Defaults, then the YAML file at ``path`` (if any), then ``overrides``."""
    config = base or Config()
    if path is not None:
        try:
            config = config_from_dict(load_yaml(path), base=config)
        except InputError as exc:
            raise exc.at(path) from None
    return apply_overrides(config, overrides or [])


def save_config(config: Config, path: Union[str, Path]) -> None:
    """Write ``config`` as YAML, whole or not at all (a full disk: a one-line WriteFault)."""
    from ..io.atomic import atomic_text  # the io package loads with the data, not the config

    atomic_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))


def dataset_config_path(dataset: str) -> Path:
    """``configs/<dataset>.yaml``, the recipe of a data set of the table.

    Raises
    ------
    InputError
        The file is missing: the install or the clone is incomplete (running on the
        dataclass defaults instead would train another data set's recipe unnoticed).
    """
    path = CONFIG_DIR / f"{dataset}.yaml"
    if not path.is_file():
        raise InputError(f"{path}: the config of data set '{dataset}' is missing (an "
                         f"incomplete install or clone: reinstall swin-unet)", path=path)
    return path
