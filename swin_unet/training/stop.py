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
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        logger.warning("stop requested (signal %d): finishing this iteration and writing a "
                       "resumable checkpoint; press Ctrl-C again to quit at once", signum)

    def __enter__(self) -> "StopRequest":
        with contextlib.suppress(ValueError):  # not the main thread: signals stay as they are
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
