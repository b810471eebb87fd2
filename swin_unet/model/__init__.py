"""The Swin-Unet network and the loading of checkpoints into it."""

from .checkpoints import LoadReport, convert_state_dict, load_pretrained, read_checkpoint
from .network import SwinUnet, build_model, check_sizes

__all__ = ["SwinUnet", "build_model", "check_sizes", "load_pretrained", "read_checkpoint",
           "convert_state_dict", "LoadReport"]
