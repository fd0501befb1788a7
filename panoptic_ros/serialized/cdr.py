"""Classic CDR, as ROS 2 serializes messages: a 4-byte encapsulation header (``00 01 00 00``
for little endian), then each field aligned to its own size, counted from the end of that
header; strings are a uint32 length (with the NUL) and the NUL-terminated bytes; sequences
a uint32 count and the elements.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

_ENCAPSULATION_LE = b"\x00\x01\x00\x00"


class CdrError(ValueError):
    """Bytes that are not the expected serialized message."""


@dataclass(frozen=True)
class Time:
    """``builtin_interfaces/Time``."""

    sec: int = 0
    nanosec: int = 0


@dataclass(frozen=True)
class Header:
    """``std_msgs/Header``: read like the rclpy message (``header.stamp.sec`` ...)."""

    stamp: Time = field(default_factory=Time)
    frame_id: str = ""

    @classmethod
    def from_stamp_ns(cls, stamp_ns: int, frame_id: str = "") -> "Header":
        sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
        return cls(Time(sec, nanosec), frame_id)


class CdrReader:
    """Reads fields in order from serialized bytes (either byte order)."""

    def __init__(self, raw: bytes | memoryview):
        self.buf = memoryview(raw).cast("B")
        if len(self.buf) < 4 or self.buf[0] != 0 or self.buf[1] not in (0, 1):
            raise CdrError("serialised message lacks a CDR encapsulation header")
        self.order = "<" if self.buf[1] == 1 else ">"
        self.pos = 4

    def _take(self, size: int, align: int) -> memoryview:
        self.pos += -(self.pos - 4) % align
        end = self.pos + size
        if size < 0 or end > len(self.buf):
            raise CdrError(f"serialised message ends at byte {len(self.buf)}, a field needs bytes {self.pos}..{end}")
        view, self.pos = self.buf[self.pos:end], end
        return view

    def u8(self) -> int:
        return self._take(1, 1)[0]

    def u32(self) -> int:
        return struct.unpack(self.order + "I", self._take(4, 4))[0]

    def i32(self) -> int:
        return struct.unpack(self.order + "i", self._take(4, 4))[0]

    def string(self) -> str:
        raw = self._take(self.u32(), 1)
        if len(raw) == 0 or raw[-1] != 0:
            raise CdrError("serialised string is not NUL-terminated")
        try:
            return bytes(raw[:-1]).decode("utf-8")
        except UnicodeDecodeError:
            raise CdrError("serialised string is not UTF-8") from None

    def octets(self) -> memoryview:
        """A ``uint8[]`` as a view on the buffer (no copy)."""
        return self._take(self.u32(), 1)

    def header(self) -> Header:
        sec, nanosec = self.i32(), self.u32()
        return Header(Time(sec, nanosec), self.string())


class CdrWriter:
    """Writes fields in order (little endian); :meth:`to_bytes` joins them with one copy.

    Small fields go into a growing buffer; large byte blocks (:meth:`octets`) are kept as
    references to the caller's memory until the final join, so pixels are copied once.
    """

    def __init__(self):
        self._parts: list[bytes | memoryview] = []
        self._head = bytearray(_ENCAPSULATION_LE)
        self._pos = 0  # bytes written after the encapsulation header (alignment origin)

    def _put(self, fmt: str, size: int, value) -> None:
        pad = -self._pos % size
        self._head += b"\x00" * pad + struct.pack("<" + fmt, value)
        self._pos += pad + size

    def u8(self, value: int) -> None:
        self._put("B", 1, value)

    def u16(self, value: int) -> None:
        self._put("H", 2, value)

    def u32(self, value: int) -> None:
        self._put("I", 4, value)

    def i32(self, value: int) -> None:
        self._put("i", 4, value)

    def f32(self, value: float) -> None:
        self._put("f", 4, value)

    def f64(self, value: float) -> None:
        self._put("d", 8, value)

    def f64s(self, values) -> None:
        """A fixed-size ``float64[N]`` array (no count)."""
        for value in values:
            self.f64(value)

    def string(self, text: str) -> None:
        data = text.encode("utf-8")
        self.u32(len(data) + 1)
        self._head += data + b"\x00"
        self._pos += len(data) + 1

    def octets(self, data: bytes | memoryview) -> None:
        """A ``uint8[]``: its count, then ``data`` (kept by reference until :meth:`to_bytes`)."""
        view = memoryview(data).cast("B")
        self.u32(len(view))
        self._parts += [bytes(self._head), view]
        self._head = bytearray()
        self._pos += len(view)

    def header(self, header) -> None:
        """A ``std_msgs/Header`` (this module's :class:`Header` or the rclpy message)."""
        self.i32(header.stamp.sec)
        self.u32(header.stamp.nanosec)
        self.string(header.frame_id)

    def to_bytes(self) -> bytes:
        return b"".join([*self._parts, bytes(self._head)])
