"""Training Swin-Unet: the loop, its recipe, checkpoints, distributed setup and monitoring."""

from .checkpointing import atomic_save, read_resume_checkpoint, unwrap_model
from .loop import EpochStats, Trainer, TrainingDiverged, TrainResult
from .recipe import SegmentationLoss, build_optimizer, build_scheduler, lr_factor, scaled_lr
from .launch import prepare_from_layers, resolve_run_config, train_from_layers
from .run import default_resume_path, train

__all__ = ["train", "train_from_layers", "prepare_from_layers", "resolve_run_config",
           "default_resume_path",
           "Trainer", "TrainResult", "EpochStats",
           "TrainingDiverged", "SegmentationLoss", "build_optimizer", "build_scheduler",
           "lr_factor", "scaled_lr", "atomic_save", "read_resume_checkpoint", "unwrap_model"]
