"""The node's malloc settings: freed multi-megabyte buffers are reused without page faults,
and given back once the frames get smaller."""
from __future__ import annotations

import subprocess
import sys

import pytest

from panoptic_ros.ros.memory import keep_freed_buffers_mapped

# Per frame, like the node: a few 6-8 MB buffers alive at once, then freed. Prints the
# minor page faults of 20 such frames after a warm-up frame.
FRAMES = """
import resource, sys
import numpy as np
if sys.argv[1] == "keep":
    from panoptic_ros.ros.memory import keep_freed_buffers_mapped
    assert keep_freed_buffers_mapped()
def frame():
    buffers = [np.ones(size, np.uint8) for size in (8 << 20, 6 << 20, 8 << 20, 2 << 20)]
    return sum(int(b[-1]) for b in buffers)
frame()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    frame()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _printed(script: str, mode: str) -> float:
    """The number ``script`` prints when run in a new Python process with argument ``mode``."""
    done = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return float(done.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_freed_frame_buffers_are_reused_without_page_faults():
    default, kept = _printed(FRAMES, "default"), _printed(FRAMES, "keep")
    pages_per_frame = (24 << 20) // 4096  # 6144
    assert default > 20 * pages_per_frame // 10  # glibc's defaults fault megabytes in again every frame
    assert kept < pages_per_frame // 10, (default, kept)  # measured here: 30713 vs 0
    assert keep_freed_buffers_mapped()  # idempotent in this process too


# A thread (like the inference thread) frees 24 MB of per-frame buffers at the top of its
# arena; prints the MB still resident after malloc_trim, with the node's settings and with
# free() trimming heap tops (``trim_on_free``) or AfterLargerFrames seeing smaller frames.
THREAD_BUFFERS = """
import os, sys, threading
import numpy as np
from panoptic_ros.ros.memory import AfterLargerFrames, keep_freed_buffers_mapped, release_freed_memory, \\
    resident_set_mb, trim_on_free
assert keep_freed_buffers_mapped()
memory = AfterLargerFrames(history_depth=2, kept_mapped=True)
def frame(pixels):
    buffers = [np.ones(8 << 20, np.uint8) for _ in range(3)]
    if sys.argv[1] == "smaller frames":
        memory.after_frame(pixels)
    elif sys.argv[1] == "trim on free":
        trim_on_free(True)
    del buffers
def frames():  # one long-lived thread, like the node's inference thread (one arena)
    frame(4096 * 2160)
    frame(512 * 1024)  # the node sees a smaller frame: trims for history_depth + 1 frames
release_freed_memory()
before = resident_set_mb(os.getpid())
thread = threading.Thread(target=frames)
thread.start()
thread.join()
release_freed_memory()
print(resident_set_mb(os.getpid()) - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_buffers_freed_at_the_top_of_a_threads_arena_are_given_back_once_frames_get_smaller():
    kept = _printed(THREAD_BUFFERS, "kept")
    assert kept > 6, kept  # malloc_trim leaves the free top of a thread's arena resident (measured: 8.2 MB)
    assert _printed(THREAD_BUFFERS, "trim on free") < 4  # measured: 0.3 MB
    assert _printed(THREAD_BUFFERS, "smaller frames") < 4
