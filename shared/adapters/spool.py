"""A download held whole in a temporary file on local disk: memory stays one chunk, whatever the blob's size.

The file is deleted when closed, and at once if filling it fails half way, so nothing half-written is read.
"""

from __future__ import annotations

import tempfile
from typing import IO, Callable


def spooled(prefix: str, suffix: str, fill: Callable[[IO[bytes]], object]) -> IO[bytes]:
    """A temporary file that `fill` wrote, flushed and rewound for reading; the caller closes it."""
    target = tempfile.NamedTemporaryFile(prefix=prefix, suffix=suffix)
    try:
        fill(target)
        target.flush()
        target.seek(0)
    except BaseException:
        target.close()
        raise
    return target
