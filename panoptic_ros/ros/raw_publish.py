"""Publish serialized messages without the copy ``Publisher.publish(bytes)`` makes.

rclpy passes ``bytes`` to its C++ layer as a ``std::string``, a full copy of the message
(8 MiB for a 2048x1024 ``32SC1`` image), before it calls rcl's
``rcl_publish_serialized_message``. :class:`RawPublisher` calls that rcl function itself
(through ctypes, on the publisher handle rclpy exposes as ``handle.pointer``) with a
pointer to the caller's buffer. The middleware copies the data into its own history before
the call returns, so the buffer may be reused or freed right after.

Where librcl's symbol cannot be found (another rclpy build), it falls back to rclpy's
``publish``: same bytes on the wire, one copy more.
"""
from __future__ import annotations

import ctypes
import functools
from typing import Any

import numpy as np

_RCL_RET_OK = 0


class _Allocator(ctypes.Structure):
    """``rcutils_allocator_t`` (unused by the publish call; zeroed)."""
    _fields_ = [("allocate", ctypes.c_void_p), ("deallocate", ctypes.c_void_p), ("reallocate", ctypes.c_void_p),
                ("zero_allocate", ctypes.c_void_p), ("state", ctypes.c_void_p)]


class _SerializedMessage(ctypes.Structure):
    """``rcl_serialized_message_t`` = ``rcutils_uint8_array_t``."""
    _fields_ = [("buffer", ctypes.c_void_p), ("buffer_length", ctypes.c_size_t),
                ("buffer_capacity", ctypes.c_size_t), ("allocator", _Allocator)]


class _ErrorString(ctypes.Structure):
    """``rcutils_error_string_t`` (returned by value)."""
    _fields_ = [("str", ctypes.c_char * 1024)]


@functools.lru_cache(maxsize=1)
def _rcl() -> tuple[Any, Any, Any] | None:
    """rcl's publish function and rcutils' error accessors, from the libraries rclpy loaded
    (None where they cannot be found)."""
    try:
        rcl, rcutils = ctypes.CDLL("librcl.so"), ctypes.CDLL("librcutils.so")
        publish = rcl.rcl_publish_serialized_message
        get_error, reset_error = rcutils.rcutils_get_error_string, rcutils.rcutils_reset_error
    except (OSError, AttributeError):
        return None
    publish.argtypes = [ctypes.c_void_p, ctypes.POINTER(_SerializedMessage), ctypes.c_void_p]
    publish.restype = ctypes.c_int
    get_error.argtypes, get_error.restype = [], _ErrorString
    reset_error.argtypes, reset_error.restype = [], None
    return publish, get_error, reset_error


class RawPublisher:
    """Wraps an rclpy publisher: :meth:`publish` takes serialized CDR bytes.

    Args:
        publisher: an rclpy ``Publisher`` (or lifecycle publisher) of the message type the
            bytes hold.
    """

    def __init__(self, publisher: Any):
        self.publisher = publisher
        self.direct = _rcl() is not None and hasattr(publisher.handle, "pointer")

    def publish(self, data: bytes | bytearray | np.ndarray) -> None:
        """Publish one serialized message (``bytes``, ``bytearray`` or a contiguous uint8 array).

        Raises:
            RuntimeError: rcl refused the message (its error text included).
        """
        if not self.direct:
            self.publisher.publish(bytes(data) if not isinstance(data, bytes) else data)
            return
        if not getattr(self.publisher, "is_activated", True):
            return  # an inactive lifecycle publisher drops messages, as rclpy's publish does
        publish, get_error, reset_error = _rcl()
        size = data.nbytes if isinstance(data, np.ndarray) else len(data)
        message = _SerializedMessage(_address(data), size, size)
        with self.publisher.handle:
            ret = publish(self.publisher.handle.pointer, ctypes.byref(message), None)
        if ret != _RCL_RET_OK:
            text = get_error().str.decode("utf-8", "replace")
            reset_error()
            raise RuntimeError(f"rcl_publish_serialized_message failed ({ret}): {text}")


def _address(data: bytes | bytearray | np.ndarray) -> int:
    """The address of ``data``'s first byte (no copy; ``data`` must outlive the call)."""
    if isinstance(data, bytes):
        return ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value
    if isinstance(data, bytearray):
        return ctypes.addressof(ctypes.c_char.from_buffer(data)) if data else 0
    if isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 1 and data.flags.c_contiguous:
        return data.ctypes.data
    raise TypeError(f"expected bytes, bytearray or a contiguous 1-D uint8 array, got {type(data).__name__}")
