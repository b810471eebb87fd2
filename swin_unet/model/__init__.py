"""The Swin-Unet network and the loading of checkpoints into it."""

from .checkpoints import (LoadReport, checkpoint_state, convert_state_dict, load_pretrained,
                          load_state, read_checkpoint)
from .network import SwinUnet, as_pair, build_model, check_sizes

__all__ = ["SwinUnet", "build_model", "check_sizes", "as_pair", "load_pretrained", "load_state",
           "read_checkpoint", "checkpoint_state", "convert_state_dict", "LoadReport"]
