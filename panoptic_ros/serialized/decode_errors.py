"""Why a message cannot be turned into an image: :class:`ImageDecodeError` and its causes
(shared by the raw and the compressed decoders)."""
from __future__ import annotations

UNSUPPORTED_ENCODING = "unsupported_encoding"
ZERO_SIZE = "zero_size"
TOO_LARGE = "too_large"
STEP_TOO_SMALL = "step_too_small"
STEP_MISALIGNED = "step_misaligned"
TRUNCATED = "truncated"
SIZE_MISMATCH = "size_mismatch"
EMPTY_DATA = "empty_data"
UNSUPPORTED_FORMAT = "unsupported_format"
FORMAT_MISMATCH = "format_mismatch"
CORRUPT_DATA = "corrupt_data"
DECODE_CAUSES = (UNSUPPORTED_ENCODING, ZERO_SIZE, TOO_LARGE, STEP_TOO_SMALL, STEP_MISALIGNED,
                 TRUNCATED, SIZE_MISMATCH, EMPTY_DATA, UNSUPPORTED_FORMAT, FORMAT_MISMATCH,
                 CORRUPT_DATA)


class ImageDecodeError(ValueError):
    """A message that cannot be turned into an image.

    Attributes:
        cause: machine-readable reason, one of :data:`DECODE_CAUSES`.
    """

    def __init__(self, cause: str, message: str):
        if cause not in DECODE_CAUSES:
            raise ValueError(f"unknown decode cause {cause!r}")
        super().__init__(message)
        self.cause = cause
