"""Named model sizes: the paper's tiny-lite Swin-Unet and the Swin-T, -S and -B backbones."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

__all__ = ["Preset", "PRESETS", "preset_fields"]


@dataclass(frozen=True)
class Preset:
    """A model size and the public ImageNet Swin checkpoints of the same layout.

    Attributes:
        embed_dim, depths, num_heads, window_size, img_size: the model's fields.
        decoder_depths: the decoder's blocks per level (None: mirror the encoder).
        imagenet: Microsoft's ImageNet checkpoints to start from: same width, heads, depths and
            window (tiny_lite takes the first 2 of Swin-T's 6 stage-2 blocks, as the paper);
            ``load_pretrained`` also fits them to other windows and sizes.
    """

    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_size: int
    img_size: int
    imagenet: tuple[str, ...]
    decoder_depths: Optional[tuple[int, ...]] = None

    def fields(self) -> dict:
        """The ``model`` config fields this preset sets (YAML-friendly lists)."""
        return {"embed_dim": self.embed_dim, "depths": list(self.depths),
                "num_heads": list(self.num_heads), "window_size": self.window_size,
                "img_size": self.img_size,
                "decoder_depths": None if self.decoder_depths is None else list(self.decoder_depths)}


_T_HEADS, _B_HEADS = (3, 6, 12, 24), (4, 8, 16, 32)

PRESETS: dict[str, Preset] = {
    # The paper's model: Swin-T's width with 2 blocks in every stage (the default config).
    "tiny_lite": Preset(96, (2, 2, 2, 2), _T_HEADS, 7, 224, ("swin_tiny_patch4_window7_224.pth",)),
    "swin_t": Preset(96, (2, 2, 6, 2), _T_HEADS, 7, 224, ("swin_tiny_patch4_window7_224.pth",)),
    "swin_s": Preset(96, (2, 2, 18, 2), _T_HEADS, 7, 224, ("swin_small_patch4_window7_224.pth",)),
    "swin_b": Preset(128, (2, 2, 18, 2), _B_HEADS, 7, 224,
                     ("swin_base_patch4_window7_224.pth", "swin_base_patch4_window7_224_22k.pth")),
    "swin_b_384": Preset(128, (2, 2, 18, 2), _B_HEADS, 12, 384,
                         ("swin_base_patch4_window12_384.pth",
                          "swin_base_patch4_window12_384_22k.pth")),
}


def preset_fields(name: str) -> dict:
    """The ``model`` config fields of preset ``name``.

    Raises:
        KeyError: an unknown name; the message lists the known ones.
    """
    if name not in PRESETS:
        raise KeyError(f"unknown model preset '{name}' (known: {', '.join(PRESETS)})")
    return PRESETS[name].fields()
