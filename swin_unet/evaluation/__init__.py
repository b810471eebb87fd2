"""Evaluation: inference, metrics, scoring, the trained model and what test.py runs."""

from .run import (EvaluationRequest, InferenceOptions, RunResult, check_output,
                  evaluate_predictions, evaluate_volumes, run_evaluation, segment_inputs)

__all__ = ["InferenceOptions", "EvaluationRequest", "RunResult", "run_evaluation", "check_output",
           "evaluate_volumes", "evaluate_predictions", "segment_inputs", "LoadedModel",
           "load_model", "resolve_intensity_for"]


def __getattr__(name: str):
    # The model-loading names load torch: scoring predictions needs neither torch nor the model.
    if name in ("LoadedModel", "load_model", "resolve_intensity_for"):
        from . import trained
        return getattr(trained, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
