"""How the worker process allocates memory: set once at start-up, so that a million-line file fits in 300 MB.

Measured with `make bench` (daily rated usage, 1,000,000 lines, 2 cores): the Arrow buffers alive at any moment
stay near 30 MB, yet the process held 330–400 MB resident, because freed memory stayed with the allocators —
mimalloc (Arrow's default pool) and glibc's per-thread arenas, of which the JSON reader's and the block
uploaders' threads each get one. With Arrow on the system allocator, two arenas, and freed memory handed back to
the kernel at once, the same run peaks under 300 MB at the same speed (a little more system time).

Arrow's C++ code allocates from its own default pool, not from the one pyarrow is told to use
(`pa.set_memory_pool` reaches only the calls pyarrow makes): the JSON reader's parser, the Parquet writer and the
compute kernels kept using mimalloc, which reserves 1 GiB and keeps what it freed. That C++ default is chosen once,
when libarrow loads, from ARROW_DEFAULT_MEMORY_POOL, so `before_arrow` sets it before anything imports pyarrow.
Measured in an ingest fan-out worker (export blobs of 100,000 lines, `python -m devtools.fanout_bench`): 50–60 MB
held by mimalloc after every part, gone with the system allocator; each part's peak ~50 MB lower.

Linux/glibc only; elsewhere (or if glibc refuses) the defaults stay, which changes memory, not results.

pandas is kept out of the worker process (`before_arrow`): nothing here uses it, but pyarrow imports it the first
time it converts any Python value (`pa.array`, `pa.scalar`), only to ask whether the value is a pandas object —
~35 MB of the 300 MB budget (measured with `BENCH_PHASES=1 make bench`: 173 -> 140 MB before the first line).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.abc
import logging
import os
import sys

log = logging.getLogger(__name__)

ARROW_POOL_SETTING = "ARROW_DEFAULT_MEMORY_POOL"  # libarrow reads it once, when it loads
ARROW_POOL = "system"
_M_TRIM_THRESHOLD = -1  # glibc malloc.h: free() returns heap top to the kernel beyond this many bytes
_M_ARENA_MAX = -8  # glibc malloc.h: at most this many malloc arenas, whatever the number of threads
ARENAS = 2
_done = False
_trim = None  # glibc's malloc_trim, once configure_memory found it


class _NoPandas(importlib.abc.MetaPathFinder):
    """Refuses pandas: pyarrow then treats every value as not-pandas, as it does where pandas is not installed."""

    def find_spec(self, name, path=None, target=None):  # noqa: ANN001, ANN201  (the finder protocol)
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError(f"{name} is kept out of the worker process (shared/adapters/memory.py)")
        return None


def before_arrow() -> None:
    """Idempotent; the first thing a worker process does (function_app.py), before anything imports pyarrow: Arrow's
    C++ allocator chosen and pandas kept out. Too late once pyarrow (or pandas) is loaded: then it is only logged."""
    if "pyarrow" in sys.modules:
        if os.environ.get(ARROW_POOL_SETTING) != ARROW_POOL:
            log.info("pyarrow is already loaded: its C++ allocator stays as it was chosen")
    else:
        os.environ.setdefault(ARROW_POOL_SETTING, ARROW_POOL)
    if "pandas" in sys.modules:
        log.info("pandas is already imported: it stays (~35 MB)")
        return
    if not any(isinstance(finder, _NoPandas) for finder in sys.meta_path):
        sys.meta_path.insert(0, _NoPandas())


def configure_memory() -> None:
    """Idempotent; call before the first generation (function_app does, and so does `make bench`)."""
    import pyarrow as pa  # here, not at the top: before_arrow must run before pyarrow loads

    global _done
    if _done:
        return
    _done = True
    pa.set_memory_pool(pa.system_memory_pool())  # pyarrow's own calls (before_arrow covers the C++ ones)
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
    except OSError:
        mallopt = None
    if mallopt is None:
        log.info("not glibc: allocator defaults kept")
        return
    ok = mallopt(_M_ARENA_MAX, ARENAS) == 1 and mallopt(_M_TRIM_THRESHOLD, 0) == 1
    if not ok:
        log.info("mallopt refused; allocator defaults kept")
        return
    global _trim
    _trim = getattr(libc, "malloc_trim", None)


def release_memory() -> None:
    """Hand the free pages inside the heaps back to the kernel (glibc's malloc_trim), not only the heap's top.

    The builder calls it after every segment: a segment's short-lived buffers leave holes between longer-lived
    ones, which the trim threshold alone never returns, so the resident high-water mark crept up segment after
    segment. Measured at a million lines: ~10 MB less peak for ingest, ~40 MB less for the partner file of daily
    usage; a few milliseconds per segment. Does nothing until configure_memory ran (tests, other platforms)."""
    if _trim is not None:
        _trim(0)
