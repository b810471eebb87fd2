"""Swin-Unet for 2-D medical image segmentation: the model, its checkpoints, training and evaluation."""

from .model import LoadReport, SwinUnet, build_model, load_pretrained, read_checkpoint

__all__ = ["SwinUnet", "build_model", "load_pretrained", "read_checkpoint", "LoadReport"]
__version__ = "0.1.0"
