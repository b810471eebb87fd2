"""Reading and writing scans and images: volumes, 2-D images, headers and orientation."""

from .volumes import (Volume, case_name, find_inputs, read_geometry, read_volume, write_labels,
                      write_map, write_probabilities)
from .images import read_image, read_image_header, read_mask, write_label_png, write_overlay_png
from .orientation import Reorientation, plan_reorientation

__all__ = ["Volume", "read_volume", "find_inputs", "read_geometry", "case_name", "write_labels",
           "write_map", "write_probabilities", "read_image", "read_image_header", "read_mask",
           "write_label_png", "write_overlay_png", "Reorientation", "plan_reorientation"]
