"""The C allocator's settings for CPU inference.

glibc serves allocations over 128 kB with fresh ``mmap`` pages and hands freed heap back to the
system past 128 kB, so a model run on the CPU, which allocates and frees the same multi-megabyte
activations batch after batch, pays page faults on every batch: an 8,192-window ``genembed embed``
spent a third of its time in the kernel doing so. glibc raises both limits by itself once a large
block is freed (loading a model through transformers happens to trigger it), which made the same
traced query encoder run 1.5x faster in one process than in another (40 queries of 2 kb: 0.63 s
against 0.42 s). :func:`keep_freed_memory` sets them once: blocks up to 32 MB come from the heap,
and up to 1 GB of freed heap is kept for reuse. It runs when genembed is imported, before torch is
(set after torch's own allocations it gained less), and again when a model is loaded;
``GENEMBED_MALLOC=default`` leaves the allocator as it is.
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest on 64-bit systems
TRIM_THRESHOLD = 1 << 30
_done = False


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds (once per process); False where there is no glibc, or
    ``GENEMBED_MALLOC=default`` says to leave them."""
    global _done
    if _done:
        return True
    if os.environ.get("GENEMBED_MALLOC", "") == "default":
        return False
    try:  # glibc's soname first: find_library runs a subprocess, and this runs at every import
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        from ctypes.util import find_library

        try:
            mallopt = ctypes.CDLL(find_library("c") or "libc.so.6").mallopt
        except (OSError, AttributeError):
            return False
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if not _done:
        log.debug("mallopt refused the thresholds; allocator defaults kept")
    return _done


def release_freed_memory() -> bool:
    """Hand the freed heap back to the system now (glibc's ``malloc_trim``): a server does so after a
    large request, so that one big query does not leave its worker at its peak size."""
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False
