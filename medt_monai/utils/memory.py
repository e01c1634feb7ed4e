"""Hand the memory a process has freed back to the operating system (glibc's heap keeps it otherwise)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["release_freed_memory"]


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to call
        return None


def release_freed_memory() -> bool:
    """Return the heap's free pages to the system (glibc ``malloc_trim(0)``); True if that was possible.

    The slide command frees a block's post-processing arrays before it reads the next block, but glibc keeps the
    freed medium-sized chunks in its heap, so the resident memory after the first block stays hundreds of MB above
    what is in use and the next block's read comes on top of it. Trimming before each read keeps the peak at one
    block's work wherever the slide's blocks lie. Elsewhere than on glibc this does nothing and returns False.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
