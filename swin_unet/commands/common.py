"""What every command line shares: its log on stderr and a user's mistake as one line."""

from __future__ import annotations

import logging
import os
import sys
from typing import Callable, Optional

from ..errors import InputError, format_error, write_fault

__all__ = ["LOG_FORMAT", "INTERRUPTED", "passive_openmp", "run_command"]

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"

# The exit status of a command stopped with Ctrl-C (128 + SIGINT, as a shell reports it).
INTERRUPTED = 130


def passive_openmp() -> None:
    """Let OpenMP threads sleep at barriers unless the user chose otherwise; call before torch loads.

    The runtime reads the setting when torch loads. On a CPU shared with other jobs, threads
    that spin at every barrier for a descheduled sibling slow training and inference many times
    over (docs/performance.md). Set OMP_WAIT_POLICY=ACTIVE to override on a dedicated machine.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def run_command(body: Callable[[], int], *, log_format: Optional[str] = LOG_FORMAT) -> int:
    """Run a command line's work and return its exit status.

    Parameters
    ----------
    body : callable
        The command's work after its arguments are parsed; returns the exit status.
    log_format : str or None
        The format of the INFO log on stderr; None where the library sets up its own log
        (training writes train.log and the console itself).

    Returns
    -------
    int
        ``body``'s status; 2 after a user's mistake (:class:`InputError`: ``error:`` and one
        line on stderr, no traceback) or a full, read-only or forbidden file system (an
        OSError of :data:`~swin_unet.errors.WRITE_FAULTS`, one line naming the path); 130
        after Ctrl-C.
    """
    if log_format is not None:
        logging.basicConfig(level=logging.INFO, format=log_format, stream=sys.stderr)
    try:
        return body()
    except InputError as exc:
        print(format_error(exc), file=sys.stderr)
        return 2
    except OSError as exc:  # a full or read-only disk the library did not name: still one line
        fault = write_fault(exc)
        if fault is None:
            raise
        print(format_error(fault), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
