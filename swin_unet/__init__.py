"""Swin-Unet for 2-D medical image segmentation: the model, its checkpoints, training and evaluation."""

__all__ = ["SwinUnet", "build_model", "load_pretrained", "read_checkpoint", "LoadReport",
           "Predictor"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # The model (and torch) load on first use: importing swin_unet.errors or swin_unet.config,
    # as the command lines do before parsing their arguments, must not cost torch's import.
    if name == "Predictor":
        from .evaluation.predictor import Predictor
        globals()[name] = Predictor
        return Predictor
    if name in __all__:
        from . import model
        value = getattr(model, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
