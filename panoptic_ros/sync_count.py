"""Count torch calls and host reads of a piece of code, on any device (the CPU included).

A *host read* is anything that makes the host wait for device results: a scalar or list
read (``item``, ``tolist``, ``bool(t)``, ``.numpy()``), a copy to the CPU, and the ops
whose output size depends on the data (``nonzero``, ``unique``, boolean-mask indexing,
``masked_select``, ``bincount``, ``equal`` ...). On a GPU each is a synchronisation; on
the CPU they cost nothing, but counting them there tells what a GPU run would wait for,
before any GPU is at hand.

Two torch modes do the counting: a ``TorchFunctionMode`` sees the top-level calls (what
the code under test calls, not what torch does inside them) and the host-side reads;
a ``TorchDispatchMode`` sees the aten ops that synchronise inside kernels.

    with count_torch() as counts:
        postprocess(...)
    counts.calls, counts.host_reads, counts.reads_by_op
"""
from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

_SYNC_ATEN = frozenset({
    "_local_scalar_dense", "nonzero", "_unique", "_unique2", "unique_dim", "unique_consecutive",
    "unique_dim_consecutive", "masked_select", "bincount", "equal", "is_nonzero", "allclose",
    "repeat_interleave", "histc",
})
"""aten ops (overload packet names) that read device data on the host."""
_READ_METHODS = frozenset({"tolist", "numpy", "__array__", "__dlpack__"})
"""Tensor methods that hand data to the host without an aten op on the CPU."""


@dataclass
class TorchCounts:
    """What a counted block did. ``reads_by_op`` names each kind of host read."""

    calls: int = 0
    host_reads: int = 0
    reads_by_op: Counter = field(default_factory=Counter)

    def read(self, name: str) -> None:
        self.host_reads += 1
        self.reads_by_op[name] += 1


def _is_mask_index(args: tuple) -> bool:
    """aten.index / index_put with a boolean index tensor (its size is data-dependent)."""
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices or ())


class _Dispatch(TorchDispatchMode):
    def __init__(self, counts: TorchCounts):
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in _SYNC_ATEN or (name in ("index", "index_put", "index_put_") and _is_mask_index(args)):
            self.counts.read(name)
        return func(*args, **(kwargs or {}))


class _Functions(TorchFunctionMode):
    def __init__(self, counts: TorchCounts):
        super().__init__()
        self.counts = counts

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.counts.calls += 1
        name = getattr(func, "__name__", "")
        if name in _READ_METHODS or (name in ("cpu", "to", "copy_") and _leaves_device(name, args, kwargs or {})):
            self.counts.read(name)
        return func(*args, **(kwargs or {}))


def _leaves_device(name: str, args: tuple, kwargs: dict) -> bool:
    """A copy from a non-CPU tensor into CPU memory."""
    if name == "copy_":
        dst, src = args[0], args[1]
        return dst.device.type == "cpu" and isinstance(src, torch.Tensor) and src.device.type != "cpu"
    source = args[0]
    if not isinstance(source, torch.Tensor) or source.device.type == "cpu":
        return False
    if name == "cpu":
        return True
    target = kwargs.get("device", next((a for a in args[1:] if isinstance(a, (str, torch.device))), None))
    return target is not None and torch.device(target).type == "cpu"


@contextmanager
def count_torch() -> Iterator[TorchCounts]:
    """Count torch calls and host reads inside the block (see the module docstring)."""
    counts = TorchCounts()
    with _Functions(counts), _Dispatch(counts):
        yield counts
