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
node gives the heap back for a few frames (:class:`AfterLargerFrames`), so it shrinks to
what the current size needs.

This is process-wide: it is applied by the node (parameter ``memory.keep_freed_buffers``)
and affects everything else in its process. Without glibc it does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
from pathlib import Path

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's upper limit on 64-bit systems
TRIM_THRESHOLD = 256 * 1024 * 1024
DEFAULT_TRIM_THRESHOLD = 128 * 1024  # glibc's own


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


def trim_on_free(enabled: bool) -> bool:
    """While ``enabled``, ``free()`` returns the top of each heap to the system once
    :data:`DEFAULT_TRIM_THRESHOLD` is free there (glibc's default) instead of
    :data:`TRIM_THRESHOLD`. ``malloc_trim`` releases the free pages inside every arena but
    the free top of a thread's arena only through ``free()``, so buffers that the inference
    thread or a DDS thread freed stay resident otherwise. False where ``mallopt`` is missing."""
    mallopt = _libc_function("mallopt", (ctypes.c_int, ctypes.c_int), ctypes.c_int)
    threshold = DEFAULT_TRIM_THRESHOLD if enabled else TRIM_THRESHOLD
    return mallopt is not None and bool(mallopt(M_TRIM_THRESHOLD, threshold))


class AfterLargerFrames:
    """Gives the memory held for larger frames back once the frames get smaller.

    The outputs' DDS histories free the larger messages only as ``history_depth`` smaller
    ones replace them (with the Fast DDS profile of :mod:`.fastdds_profile`), so from the
    first smaller frame on, for ``history_depth + 1`` frames, the heap is trimmed after each
    frame and (where ``kept_mapped``, the settings of :func:`keep_freed_buffers_mapped`)
    ``free()`` trims heap tops as it goes (:func:`trim_on_free`).
    """

    def __init__(self, history_depth: int, kept_mapped: bool):
        self.history_depth, self.kept_mapped = history_depth, kept_mapped
        self.last_pixels, self.trims_due = 0, 0

    def after_frame(self, pixels: int) -> None:
        """Call after each frame of ``pixels`` pixels was processed and published."""
        if pixels < self.last_pixels:
            self.trims_due = self.history_depth + 1
            if self.kept_mapped:
                trim_on_free(True)
        self.last_pixels = pixels
        if self.trims_due > 0:
            self.trims_due -= 1
            release_freed_memory()
            if self.trims_due == 0 and self.kept_mapped:
                trim_on_free(False)


def release_freed_memory() -> bool:
    """Give the heap's free pages back to the system (glibc ``malloc_trim(0)``); False
    where that is not available."""
    trim = _libc_function("malloc_trim", (ctypes.c_size_t,), ctypes.c_int)
    return trim is not None and bool(trim(0))


def resident_set_mb(pid: int) -> float:
    """Resident set of process ``pid`` and its descendants in MB, from Linux's /proc (a
    console script may re-launch Python as a child); 0 for processes already gone."""
    total_kb, todo = 0, [pid]
    while todo:
        process = todo.pop()
        try:
            status = Path(f"/proc/{process}/status").read_text()
            total_kb += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
            for task in Path(f"/proc/{process}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, StopIteration):
            continue
    return total_kb / 1024
