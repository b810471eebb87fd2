"""A trained network held in memory that segments arrays and files as ``test.py --input`` does.

:class:`Predictor` is a thin layer over the inference path of the command lines: the training
intensity normalisation (:func:`~swin_unet.evaluation.trained.intensity_normaliser`), the turn
to the model's orientation (:func:`~swin_unet.evaluation.scan_outputs.orient_scan`) and
:func:`~swin_unet.evaluation.scan_outputs.segment_volume` (which runs
:func:`~swin_unet.evaluation.inference.predict_volume`). ``test.py --input`` and
``swin-unet predict`` segment every scan and image through it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from ..errors import InputError
from ..io.images import image_from_array, is_image_file, read_image
from ..io.validity import check_finite, check_geometry
from ..io.orientation import Reorientation
from ..io.volumes import Volume, find_inputs, read_volume
from .images import image_volume
from .run import InferenceOptions
from .scan_outputs import check_intensities, orient_scan
from .trained import LoadedModel, intensity_normaliser, load_model

__all__ = ["Predictor"]

Labels = Union[np.ndarray, tuple[np.ndarray, np.ndarray]]


class Predictor:
    """A trained network, loaded once, that maps images to label maps.

    Attributes
    ----------
    model : torch.nn.Module
        The network (with :meth:`from_onnx`, a module that runs the ONNX graph).
    class_names : list of str
        The foreground classes; label ``k`` is ``class_names[k - 1]``, 0 the background.
    config : Config
        The checkpoint's config (model size, intensity normalisation, geometry record).
    options : InferenceOptions
        Batch size, resize mode, TTA, device and precision of every call.
    """

    def __init__(self, loaded: LoadedModel, options: Optional[InferenceOptions] = None) -> None:
        inference = loaded.config.inference
        self.loaded = loaded
        self.options = options or InferenceOptions(
            inference.batch_size, resize=inference.resize,
            metric_conventions=inference.metric_conventions, tta=inference.tta, progress=False)
        self.normalise = intensity_normaliser(loaded.config)

    @property
    def model(self) -> torch.nn.Module:
        return self.loaded.model

    @property
    def class_names(self) -> list[str]:
        return self.loaded.class_names

    @property
    def config(self):
        return self.loaded.config

    @classmethod
    def from_checkpoint(cls, path: Union[str, Path], device: str = "auto", tta: bool = False,
                        amp: bool = False, batch_size: Optional[int] = None,
                        dataset: Optional[str] = None,
                        overrides: Sequence[str] = ()) -> "Predictor":
        """Load a checkpoint of this project (or an original one, with ``dataset``).

        ``device``: "auto" (CUDA when there is a GPU), "cpu" or "cuda". ``tta``: average the
        four in-plane flips. ``amp``: mixed precision as ``test.py --amp``. ``overrides``:
        ``--set`` lines over the checkpoint's config.

        Raises
        ------
        InputError
            Not a checkpoint, or an unusable config in it.
        """
        from .inference import resolve_device

        device = resolve_device(device)
        loaded = load_model(Path(path), dataset, list(overrides), device)
        inference = loaded.config.inference
        return cls(loaded, InferenceOptions(
            batch_size or inference.batch_size, resize=inference.resize,
            metric_conventions=inference.metric_conventions, tta=tta or inference.tta,
            device=device, amp=amp, progress=False))

    @classmethod
    def from_onnx(cls, path: Union[str, Path], checkpoint: Union[str, Path], tta: bool = False,
                  batch_size: Optional[int] = None,
                  providers: Optional[Sequence[str]] = None) -> "Predictor":
        """Run the ONNX graph ``path`` (from ``swin-unet export``) through ONNX Runtime, with
        the pre- and post-processing of the ``checkpoint`` it was exported from.

        Raises
        ------
        InputError
            onnxruntime is not installed, an unreadable graph, or a graph whose input is not
            the checkpoint's (channels, rows, columns).
        """
        from .onnx_export import OnnxNetwork

        predictor = cls.from_checkpoint(checkpoint, device="cpu", tta=tta,
                                        batch_size=batch_size)
        network = OnnxNetwork(path, predictor.config.model, providers)
        predictor.loaded = dataclasses.replace(predictor.loaded, model=network)
        return predictor

    def segment(self, image: np.ndarray, reference: Optional[Volume] = None,
                plan: Optional[Reorientation] = None, paths: Optional[dict[str, Path]] = None,
                probabilities: Optional[np.ndarray] = None,
                spacing: Optional[Sequence[float]] = None) -> tuple[np.ndarray, list[Path]]:
        """Labels of a normalised ``image`` (X, Y, Z) or (C, X, Y, Z) seen through ``plan``,
        and the files of ``paths`` written in ``reference``'s geometry. ``spacing``: the voxel
        size (mm), which a patch-mode network resamples from (None: at its training spacing)."""
        return self.options.segment(self.loaded, image, reference, plan, paths, probabilities,
                                    spacing)

    def segment_scan(self, volume: Volume, paths: Optional[dict[str, Path]] = None,
                     keep_orientation: bool = False,
                     probabilities: Optional[np.ndarray] = None
                     ) -> tuple[np.ndarray, list[Path], np.ndarray]:
        """Normalise a scan, turn it to the model's orientation and segment it.

        Returns
        -------
        np.ndarray, list of Path, np.ndarray
            The labels in the scan's voxel order, the files written, the normalised image.

        Raises
        ------
        InputError
            NaN or infinite voxels, a channel count the model does not take.
        """
        check_finite(volume.array, volume.path)
        plan = orient_scan(volume, self.config.geometry, keep_orientation)
        check_intensities(volume, self.config)
        # The raw voxels are not needed again (only their shape, to write): one copy fewer.
        volume.array = image = self.normalise(volume.array)
        try:
            labels, written = self.segment(image, volume if paths else None, plan, paths,
                                           probabilities, volume.spacing)
        except InputError as exc:
            raise exc.at(volume.path) from None
        return labels, written, image

    def _probabilities(self, shape: tuple[int, ...], wanted: bool) -> Optional[np.ndarray]:
        return (np.empty((len(self.class_names) + 1,) + shape, dtype=np.float32)
                if wanted else None)

    def predict(self, image: np.ndarray, affine: Optional[np.ndarray] = None,
                return_probabilities: bool = False, kind: str = "auto",
                keep_orientation: bool = False) -> Labels:
        """The label map of ``image``, of its spatial shape.

        Parameters
        ----------
        image : np.ndarray
            A volume (X, Y, Z) or (C, X, Y, Z) of raw intensities (Hounsfield units for CT),
            or a 2-D image (H, W) or (H, W, C) as read from a PNG/JPEG (uint8, uint16, or
            float in [0, 1]). Preprocessed as in training: intensity normalisation, resize.
        affine : np.ndarray, optional
            The volume's 4x4 voxel-to-world (RAS+) matrix: the volume is turned to the
            orientation the model was trained in, and the labels turned back. None: the
            volume is taken in the model's orientation.
        return_probabilities : bool
            Also return float32 probabilities (K, ...) of the labels' shape.
        kind : {"auto", "volume", "image"}
            "auto": 2-D for (H, W), and for (H, W, C) with C of 3 or 4 and no ``affine``;
            a volume otherwise.

        Raises
        ------
        InputError
            A shape, dtype or channel count the model cannot take.
        """
        array = np.asarray(image)
        if kind == "auto":
            kind = "image" if array.ndim == 2 or (array.ndim == 3 and affine is None
                                                  and array.shape[-1] in (3, 4)) else "volume"
        if kind == "image":
            return self._predict_image(image_from_array(array, self.config.model.in_chans),
                                       return_probabilities)
        if kind != "volume":
            raise InputError(f"kind: expected auto, volume or image, got {kind!r}")
        if array.ndim not in (3, 4):
            raise InputError(f"image: expected (X, Y, Z) or (C, X, Y, Z), got shape "
                             f"{array.shape}")
        probabilities = self._probabilities(array.shape[-3:], return_probabilities)
        if affine is None:  # in the model's orientation already
            check_finite(array, "array")
            labels = self.segment(self.normalise(array), probabilities=probabilities)[0]
        else:
            affine = np.asarray(affine, dtype=np.float64)
            if affine.shape != (4, 4):
                raise InputError(f"affine: expected a 4x4 matrix, got shape {affine.shape}")
            spacing = tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0))
            check_geometry("affine", spacing, affine)
            volume = Volume("array", array, spacing, affine, Path("array"), None)
            labels = self.segment_scan(volume, keep_orientation=keep_orientation,
                                       probabilities=probabilities)[0]
        return (labels, probabilities) if return_probabilities else labels

    def _predict_image(self, pixels: np.ndarray, return_probabilities: bool) -> Labels:
        volume = image_volume(pixels, self.config.model.in_chans)
        probabilities = self._probabilities(volume.shape[-3:], return_probabilities)
        labels = self.segment(self.normalise(volume), probabilities=probabilities)[0][..., 0]
        return (labels, probabilities[..., 0]) if return_probabilities else labels

    def predict_file(self, path: Union[str, Path], return_probabilities: bool = False,
                     keep_orientation: bool = False) -> Labels:
        """The label map of a file: a NIfTI / NRRD / MHA volume, a DICOM series folder, or a
        PNG / JPEG / TIFF / BMP image; volumes are turned by their own affine.

        Raises
        ------
        InputError
            An unreadable file, or a folder that holds more than one scan.
        """
        path = Path(path)
        if is_image_file(path):
            return self._predict_image(read_image(path, self.config.model.in_chans),
                                       return_probabilities)
        found = find_inputs(path, channels=True)
        if len(found) != 1:
            raise InputError(f"{path}: holds {len(found)} scans; predict_file reads one "
                             f"(use swin-unet predict for a folder)", path=path)
        name, source, series = found[0]
        volume = read_volume(source, name, series)
        probabilities = self._probabilities(volume.array.shape[-3:], return_probabilities)
        labels = self.segment_scan(volume, keep_orientation=keep_orientation,
                                   probabilities=probabilities)[0]
        return (labels, probabilities) if return_probabilities else labels
