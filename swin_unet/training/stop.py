"""Ctrl-C and SIGTERM as a request the training loop checks between iterations."""

from __future__ import annotations

import contextlib
import logging
import signal

__all__ = ["StopRequest"]

logger = logging.getLogger(__name__)


class StopRequest:
    """Turns the first SIGINT/SIGTERM into a flag the loop checks between iterations.

    The loop then writes a resumable checkpoint and returns; a second Ctrl-C interrupts at once.

    Under torchrun (``distributed``) SIGTERM keeps its default, immediate exit: torchrun sends
    it to every rank when one rank has failed, and the others are then blocked in a collective
    where a Python handler never runs (they would wait for torchrun's SIGKILL, 30 s later).
    """

    def __init__(self, distributed: bool = False) -> None:
        self.requested = False
        self._signals = (signal.SIGINT,) if distributed else (signal.SIGINT, signal.SIGTERM)
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        logger.warning("stop requested (signal %d): finishing this iteration and writing a "
                       "resumable checkpoint; press Ctrl-C again to quit at once", signum)

    def __enter__(self) -> "StopRequest":
        with contextlib.suppress(ValueError):  # not the main thread: signals stay as they are
            for signum in self._signals:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
