"""Warnings a run logged, collected for the box at the top of report.html and summary.json."""

from __future__ import annotations

import contextlib
import contextvars
import logging
from typing import Iterator, Sequence

__all__ = ["collect_warnings", "run_warnings"]

_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("run_warnings", default=None)


class _Collector(logging.Handler):
    """Keeps the text of every WARNING (or worse) record, once each, in order."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if text not in self.messages:
            self.messages.append(text)


@contextlib.contextmanager
def collect_warnings(names: Sequence[str] = ("swin_unet", "datasets")) -> Iterator[list[str]]:
    """Collect what the loggers ``names`` (and their children) warn while the block runs.

    Yields the list of messages, which grows as warnings come; :func:`run_warnings` reads it
    from anywhere inside the block.
    """
    collector = _Collector()
    loggers = [logging.getLogger(name) for name in names]
    for logger in loggers:
        logger.addHandler(collector)
    token = _ACTIVE.set(collector)
    try:
        yield collector.messages
    finally:
        _ACTIVE.reset(token)
        for logger in loggers:
            logger.removeHandler(collector)


def run_warnings() -> list[str]:
    """The warnings of the run in progress (empty outside :func:`collect_warnings`)."""
    collector = _ACTIVE.get()
    return list(collector.messages) if collector is not None else []
