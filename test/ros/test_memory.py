"""The node's malloc setting: freed multi-megabyte buffers are reused without page faults."""
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


def _faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", FRAMES, mode], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_freed_frame_buffers_are_reused_without_page_faults():
    default, kept = _faults("default"), _faults("keep")
    pages_per_frame = (24 << 20) // 4096  # 6144
    assert default > 20 * pages_per_frame // 10  # glibc's defaults fault megabytes in again every frame
    assert kept < pages_per_frame // 10, (default, kept)  # measured here: 30713 vs 0
    assert keep_freed_buffers_mapped()  # idempotent in this process too
