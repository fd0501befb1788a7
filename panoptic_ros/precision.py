"""Numeric precision: which autocast dtype a setting means on a device.

Training (``runtime.amp``) and torch inference (``precision``) share these rules:

- ``auto``: bfloat16 autocast on a CPU with native bf16 instructions (AVX512-BF16 or
  AMX-BF16 on x86, the ``bf16`` feature on Arm), the CUDA default (bf16 where the GPU
  supports it, else fp16) on a GPU, and full float32 otherwise. On a CPU without native
  bf16, oneDNN emulates it and runs slower than float32, so ``auto`` never picks it there.
- ``off`` / ``fp32``: float32.
- ``bf16`` / ``fp16``: that autocast dtype, whatever the device.

Native support is read from the kernel's CPU flags, not assumed: torch's own
``_is_mkldnn_bf16_supported`` is also true on AVX512 CPUs that only emulate bf16.
"""
from __future__ import annotations

import functools
import platform
from pathlib import Path
from typing import Literal

import torch

Precision = Literal["auto", "off", "fp32", "bf16", "fp16"]
_DTYPES = {"off": None, "fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (x86 ``flags``, Arm ``Features``);
    empty where the file does not exist (macOS, Windows)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when this CPU executes bf16 dot products in hardware."""
    return bool(cpu_flags() & _NATIVE_BF16_FLAGS)


def autocast_dtype(setting: Precision, device: torch.device) -> torch.dtype | None:
    """The autocast dtype that ``setting`` means on ``device`` (None = float32).

    Raises:
        ValueError: an unknown setting.
    """
    if setting == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else None
    if setting not in _DTYPES:
        raise ValueError(f"precision: expected one of auto, {', '.join(_DTYPES)}; got {setting!r}")
    return _DTYPES[setting]


def dtype_name(dtype: torch.dtype | None) -> str:
    """``fp32``, ``bf16`` or ``fp16`` for an autocast dtype (None = float32)."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def machine_name() -> str:
    """The CPU's model name (as ``lscpu`` prints it), for figures that depend on the machine."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
