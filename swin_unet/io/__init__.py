"""Reading and writing scans and images: volumes, DICOM series and SEG, 2-D images, headers."""

from .volumes import (Volume, case_name, find_inputs, read_geometry, read_volume, write_labels,
                      write_map, write_probabilities)
from .dicom_seg import read_seg_volume, write_seg
from .dicom_series import find_series, list_series
from .images import read_image, read_image_header, read_mask, write_label_png, write_overlay_png
from .orientation import Reorientation, plan_reorientation

__all__ = ["Volume", "read_volume", "find_inputs", "read_geometry", "case_name", "write_labels",
           "write_map", "write_probabilities", "read_image", "read_image_header", "read_mask",
           "write_label_png", "write_overlay_png", "Reorientation", "plan_reorientation",
           "find_series", "list_series", "write_seg", "read_seg_volume"]
