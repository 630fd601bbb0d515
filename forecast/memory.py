"""Keep freed memory for the next step: glibc's malloc thresholds for a training process.

glibc's ``malloc`` serves a block of 32 MB or more (the most its adaptive threshold reaches) with a
fresh ``mmap`` and hands it back to the system when freed, so a tensor of that size costs a page
fault on every 4 KB the next time it is written: Autoformer's decoder feed-forward tensors
(``[32, 144, 2048]`` floats, 38 MB: the hidden activation, its GELU, dropout mask and output, and
their gradients) are allocated afresh every training step, and a product
written into a fresh one took 16.5 ms against 7 ms into memory the process already had (1 thread,
docs/speed.md). :func:`keep_freed_memory` raises the ``mmap`` threshold so that such blocks come from
the heap, and the trim threshold so that the heap keeps them once freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3


@functools.cache
def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") else None  # musl and others have no mallopt
    except OSError:
        return None


def _thresholds(megabytes: int) -> tuple[int, int] | None:
    """glibc's ``mmap`` and trim thresholds in bytes for ``megabytes`` (trim twice the first); ``0``: none."""
    return None if megabytes <= 0 else (int(megabytes) << 20, int(megabytes) << 21)


def glibc_environment(megabytes: int) -> dict[str, str]:
    """The same thresholds as :func:`keep_freed_memory` as glibc's environment variables, for a
    process this project does not start itself (the side-by-side reference); ``0``: none."""
    thresholds = _thresholds(megabytes)
    if thresholds is None:
        return {}
    return {"MALLOC_MMAP_THRESHOLD_": str(thresholds[0]), "MALLOC_TRIM_THRESHOLD_": str(thresholds[1])}


def keep_freed_memory(megabytes: int) -> bool:
    """Blocks below ``megabytes`` from the heap, and freed ones kept up to twice that; ``0``: leave
    malloc as it is. Returns whether the thresholds were set (glibc on Linux only). Setting them
    fixes them: glibc no longer adapts its thresholds for the rest of the process."""
    thresholds = _thresholds(megabytes)
    if thresholds is None:
        return False
    libc = _libc()
    if libc is None:
        return False
    mmap, trim = thresholds
    ok = bool(libc.mallopt(M_MMAP_THRESHOLD, mmap)) and bool(libc.mallopt(M_TRIM_THRESHOLD, trim))
    if not ok:
        log.debug("mallopt refused the thresholds of %d MB", megabytes)
    return ok
