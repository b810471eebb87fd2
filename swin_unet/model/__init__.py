"""The Swin-Unet network and the loading of checkpoints into it."""

from .checkpoints import (LoadReport, checkpoint_state, convert_state_dict, load_pretrained,
                          load_state, read_checkpoint)
from .network import ATTENTION_MODES, SwinUnet, build_model, check_sizes

__all__ = ["SwinUnet", "build_model", "check_sizes", "ATTENTION_MODES", "load_pretrained",
           "load_state", "read_checkpoint", "checkpoint_state", "convert_state_dict", "LoadReport"]
