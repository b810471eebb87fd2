"""Typed configuration: dataclasses read from YAML and ``--set``, every value checked once."""

from .schema import (CONFIG_DIR, REPO_ROOT, AttentionMode, Config, DataConfig, Device,
                     GeometryConfig, InferenceConfig, IntensityMode, MetricConventions,
                     MetricMode, ModelConfig, ResizeMethod, Split,
                     TrainConfig, apply_overrides, choices, config_from_dict, config_to_dict,
                     dataset_config_path, load_config, look_up_option, metric_mode_settings,
                     save_config)
from .checks import check_class_names, check_config
from .values import comma_indices, comma_names

__all__ = ["REPO_ROOT", "CONFIG_DIR", "AttentionMode", "IntensityMode", "MetricMode", "Device",
           "Split", "ResizeMethod", "MetricConventions", "metric_mode_settings", "choices", "look_up_option", "dataset_config_path", "ModelConfig",
           "DataConfig", "TrainConfig", "InferenceConfig", "GeometryConfig", "Config",
           "load_config", "config_from_dict", "config_to_dict", "apply_overrides", "save_config",
           "check_config", "check_class_names", "comma_names", "comma_indices"]
