"""Explain Swin-Unet's windows, shifted windows and costs from the model's own code and buffers.

``python -m swin_unet.explain --output docs/`` draws the figures and writes the Markdown page;
the functions below give the same numbers to Python callers.
"""

from .analysis import (AttentionCost, Explanation, PartCost, ShiftView, StageView, explain_model,
                       msa_macs, window_ids, wmsa_macs)
from .document import explanation_to_dict, render_markdown, write_explanation
from .trace import AttentionCall, ModelTrace, trace_model

__all__ = ["explain_model", "write_explanation", "trace_model", "explanation_to_dict",
           "render_markdown", "msa_macs", "wmsa_macs", "window_ids", "Explanation", "StageView",
           "ShiftView", "AttentionCost", "PartCost", "AttentionCall", "ModelTrace"]
