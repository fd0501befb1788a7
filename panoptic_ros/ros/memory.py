"""Keep freed large buffers mapped (glibc malloc), so the node's per-frame arrays do not
page-fault.

Every frame the node allocates and frees several multi-megabyte buffers: the upsampled
label images and the overlay (2-8 MB at 2048x1024), the serialized messages, and rclpy's
and Fast DDS's copies of them. glibc serves such sizes with ``mmap`` and unmaps them when
they are freed (after the first free it moves that size to the heap, but trims the heap
top again as soon as twice that much is free there), so the next frame's buffers
page-fault afresh and the kernel zeroes every 4 KB page. Measured on a loaded 2-core
machine, that doubles the overlay's cost (15 ms -> 7 ms for 2048x1024 with the setting
below, ``bench/node_overhead.py``). Raising the mmap threshold to its maximum (32 MB on
64-bit) and the trim threshold to :data:`TRIM_THRESHOLD` keeps the freed pages in the
heap for the next frame; the price is that the process keeps its peak heap size, which
for a node processing frames of one size is its steady state anyway. Buffers above 32 MB
(large model activations) are still unmapped when freed.

The price must not outlive a burst of larger frames: when the frames get smaller again the
node calls :func:`release_freed_memory`, so the heap shrinks to what the current size needs.

This is process-wide: it is applied by the node (parameter ``memory.keep_freed_buffers``)
and affects everything else in its process. Without glibc it does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's upper limit on 64-bit systems
TRIM_THRESHOLD = 256 * 1024 * 1024


def _libc_function(name: str, argtypes: tuple, restype: type):
    """A glibc function by name, or None where there is no such library or function."""
    library = ctypes.util.find_library("c")
    try:
        function = getattr(ctypes.CDLL(library), name) if library else None
    except (OSError, AttributeError):
        return None
    if function is not None:
        function.argtypes, function.restype = argtypes, restype
    return function


def keep_freed_buffers_mapped() -> bool:
    """Apply the malloc settings of the module docstring; False where glibc's ``mallopt``
    is not available or refuses them."""
    mallopt = _libc_function("mallopt", (ctypes.c_int, ctypes.c_int), ctypes.c_int)
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def release_freed_memory() -> bool:
    """Give the heap's free pages back to the system (glibc ``malloc_trim(0)``); False
    where that is not available."""
    trim = _libc_function("malloc_trim", (ctypes.c_size_t,), ctypes.c_int)
    return trim is not None and bool(trim(0))
