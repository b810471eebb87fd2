"""ONNX export of a trained network, its check through ONNX Runtime, and an ONNX Runtime engine.

onnx and onnxruntime are optional (``pip install swin-unet[onnx]``); without them these
functions raise one :class:`~swin_unet.errors.InputError` that says how to install them.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..model.network import as_pair

__all__ = ["INSTALL_HINT", "require_onnxruntime", "export_onnx", "ExportCheck", "check_onnx",
           "OnnxNetwork"]

INSTALL_HINT = "pip install 'swin-unet[onnx]' (or: pip install onnx onnxruntime)"
DEFAULT_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "image", "logits"


def require_onnxruntime():
    """The onnxruntime module.

    Raises
    ------
    InputError
        It is not installed: the message says how to install it.
    """
    try:
        import onnxruntime
    except ImportError:
        raise InputError(f"ONNX needs onnxruntime, which is not installed: {INSTALL_HINT}") \
            from None
    return onnxruntime


@contextlib.contextmanager
def _plain_graph(model: nn.Module) -> Iterator[None]:
    """The model's straightforward path while it is traced: whole batches (no CPU tiling) and
    attention through ``scaled_dot_product_attention`` (the explicit path's in-place bias
    additions on views do not trace to ONNX correctly)."""
    from ..model.tiling import untiled

    attention = getattr(model, "attention", None)
    if attention is not None:
        model.attention = "sdpa"
    try:
        with untiled():
            yield
    finally:
        if attention is not None:
            model.attention = attention


def export_onnx(model: nn.Module, path: Union[str, Path], opset: int = DEFAULT_OPSET) -> Path:
    """Write ``model`` as an ONNX graph ``image`` (N, C, H, W) -> ``logits`` (N, K, H, W), the
    batch axis dynamic, the channels and size those the model was built for.

    Raises
    ------
    InputError
        onnx is not installed, or the graph cannot be written.
    """
    try:
        import onnx  # noqa: F401  (the exporter needs it)
    except ImportError:
        raise InputError(f"ONNX export needs onnx, which is not installed: {INSTALL_HINT}") \
            from None
    path = Path(path)
    rows, columns = as_pair(model.img_size)
    example = torch.zeros(2, model.in_chans, rows, columns)
    was_training = model.training
    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _plain_graph(model), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on Python-side shape checks
            torch.onnx.export(model, (example,), str(path), input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], opset_version=int(opset),
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                              dynamo=False)
    except OSError as exc:
        raise InputError(f"{path}: cannot write the ONNX file ({exc.strerror or exc})",
                         path=path) from None
    finally:
        model.train(was_training)
    return path


@dataclass
class ExportCheck:
    """ONNX Runtime's logits against the network's on the same random batches."""

    batch_sizes: tuple[int, ...]
    max_abs_difference: float
    logits_range: float

    @property
    def relative_difference(self) -> float:
        """The largest difference as a fraction of the logits' range (max - min)."""
        return self.max_abs_difference / max(self.logits_range, 1e-12)


def check_onnx(model: nn.Module, path: Union[str, Path], batch_sizes: Sequence[int] = (1, 3),
               seed: int = 0) -> ExportCheck:
    """Run the graph at ``path`` and the network on the same random inputs of each batch size.

    Raises
    ------
    InputError
        onnxruntime is not installed, or the graph cannot be loaded.
    """
    network = OnnxNetwork(path, model)
    rows, columns = as_pair(model.img_size)
    generator = torch.Generator().manual_seed(seed)
    worst, low, high = 0.0, np.inf, -np.inf
    was_training = model.training
    model.eval()
    try:
        for batch in batch_sizes:
            x = torch.rand(batch, model.in_chans, rows, columns, generator=generator)
            with torch.inference_mode():
                expected = model(x).float()
            got = network(x)
            worst = max(worst, float((got - expected).abs().max()))
            low, high = min(low, float(expected.min())), max(high, float(expected.max()))
    finally:
        model.train(was_training)
    return ExportCheck(tuple(batch_sizes), worst, high - low)


class OnnxNetwork(nn.Module):
    """An ONNX Runtime session in the network's place: (B, C, H, W) float32 -> logits.

    Runs on the CPU (the session's providers); ``predict_volume`` and the rest of the
    inference path take it like the network.

    Parameters
    ----------
    path : str or Path
        The graph written by :func:`export_onnx`.
    model : nn.Module or ModelConfig
        The network (or its config) the graph must match: ``in_chans`` and ``img_size``.
    providers : list of str, optional
        ONNX Runtime execution providers (default: the CPU's).
    """

    def __init__(self, path: Union[str, Path], model, providers: Optional[Sequence[str]] = None
                 ) -> None:
        super().__init__()
        runtime = require_onnxruntime()
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: ONNX file not found", path=path)
        try:
            self.session = runtime.InferenceSession(
                str(path), providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise InputError(f"{path}: not a loadable ONNX graph ({first})", path=path) from None
        self.in_chans = int(model.in_chans)
        self.img_size = as_pair(model.img_size)
        graph_input = self.session.get_inputs()[0]
        self.input_name = graph_input.name
        shape = list(graph_input.shape[1:])
        if shape != [self.in_chans, *self.img_size]:
            raise InputError(f"{path}: the graph takes (N, {', '.join(map(str, shape))}); the "
                             f"checkpoint's network takes (N, {self.in_chans}, "
                             f"{self.img_size[0]}, {self.img_size[1]})", path=path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = np.ascontiguousarray(x.detach().float().cpu().numpy())
        logits = self.session.run(None, {self.input_name: inputs})[0]
        return torch.from_numpy(logits).to(x.device)
