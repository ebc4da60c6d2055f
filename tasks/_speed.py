"""What makes a converge quick without changing what it does (issue 20); deploy.py turns it on.

- Facts read many to one SSH round trip, answers dropped as soon as anything runs on the
  host (facts/batch.py).
- pyinfra orders operations by the call stack of each (`get_operation_order_from_stack`):
  `inspect.stack()` and `getframeinfo` read every frame's source lines to give the file name
  and line number, tens of ms per operation. The same two values straight from the frames.
"""

from __future__ import annotations

import inspect
import sys
from types import FrameType

from pyinfra.api import util as pyinfra_util

from facts.batch import enable as batch_facts


def _stack(context: int = 1) -> list[tuple]:
    """inspect.stack() without the source lines: (frame,) from the caller outwards."""
    frame: FrameType | None = sys._getframe(1)
    frames = []
    while frame is not None:
        frames.append((frame,))
        frame = frame.f_back
    return frames


def _frameinfo(frame, context: int = 1) -> inspect.Traceback:
    """inspect.getframeinfo(frame) with its file name and line number only."""
    return inspect.Traceback(frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name,
                             None, None)


def speed_up() -> None:
    batch_facts()
    pyinfra_util.stack = _stack  # type: ignore[assignment]
    pyinfra_util.getframeinfo = _frameinfo
