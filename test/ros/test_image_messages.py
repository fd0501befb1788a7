"""Image <-> numpy conversion: every encoding, padding, byte order, and every malformed case."""
import array

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from panoptic_ros.ros.image_messages import numpy_to_compressed, numpy_to_image
from panoptic_ros.serialized import decode_errors, image
from panoptic_ros.serialized.decode_errors import ImageDecodeError
from panoptic_ros.serialized.image import ImageEncodeError

RNG = np.random.default_rng(0)


def _pixels(encoding: str, height: int = 5, width: int = 7, rng=RNG) -> np.ndarray:
    dtype, channels = image.ENCODINGS[encoding]
    shape = (height, width) if channels == 1 else (height, width, channels)
    if dtype.kind == "f":
        return rng.normal(size=shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def _raw(encoding: str, pixels: np.ndarray, *, pad: int = 0, big_endian: bool = False, extra: int = 0) -> Image:
    """A hand-built Image with ``pad`` bytes after each row (independent of the encoder)."""
    dtype = pixels.dtype.newbyteorder(">" if big_endian else "<")
    rows = np.ascontiguousarray(pixels, dtype=dtype).reshape(pixels.shape[0], -1).view(np.uint8)
    padded = np.concatenate([rows, np.full((rows.shape[0], pad), 0xAB, np.uint8)], axis=1)
    msg = Image(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding,
                is_bigendian=int(big_endian), step=padded.shape[1])
    msg.data = array.array("B", padded.tobytes() + b"\0" * extra)
    return msg


@pytest.mark.parametrize("encoding", sorted(image.ENCODINGS))
def test_every_encoding_round_trips_and_decodes_without_a_copy(encoding):
    pixels = _pixels(encoding)
    header = Header(frame_id="cam")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msg = numpy_to_image(pixels, encoding, header)
    assert (msg.height, msg.width, msg.encoding, msg.header) == (5, 7, encoding, header)
    assert msg.step == 7 * pixels.itemsize * (pixels.shape[2] if pixels.ndim == 3 else 1)
    out = image.image_to_numpy(msg)
    np.testing.assert_array_equal(out, pixels)
    assert out.dtype == pixels.dtype
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))


@pytest.mark.parametrize("encoding", ["rgb8", "mono16", "32SC1", "32FC1"])
@pytest.mark.parametrize("big_endian", [False, True])
def test_row_padding_and_byte_order_are_honoured(encoding, big_endian):
    pixels = _pixels(encoding)
    pad = 4 * image.ENCODINGS[encoding][0].itemsize
    out = image.image_to_numpy(_raw(encoding, pixels, pad=pad, big_endian=big_endian))
    np.testing.assert_array_equal(out, pixels)
    assert out.dtype.isnative


@settings(max_examples=40, deadline=None)
@given(encoding=st.sampled_from(sorted(image.ENCODINGS)), height=st.integers(1, 9), width=st.integers(1, 9),
       pad_elements=st.integers(0, 3), big_endian=st.booleans(), seed=st.integers(0, 2**16))
def test_decoding_matches_the_pixels_for_any_layout(encoding, height, width, pad_elements, big_endian, seed):
    pixels = _pixels(encoding, height, width, np.random.default_rng(seed))
    pad = pad_elements * image.ENCODINGS[encoding][0].itemsize
    np.testing.assert_array_equal(image.image_to_numpy(_raw(encoding, pixels, pad=pad, big_endian=big_endian)),
                                  pixels)


def _image(**fields) -> Image:
    base = dict(height=4, width=4, encoding="rgb8", is_bigendian=0, step=12)
    base.update({k: v for k, v in fields.items() if k != "data"})
    msg = Image(**base)
    msg.data = array.array("B", fields.get("data", bytes(base["step"] * base["height"])))
    return msg


@pytest.mark.parametrize("fields, cause", [
    (dict(encoding="yuv422"), decode_errors.UNSUPPORTED_ENCODING),
    (dict(encoding=""), decode_errors.UNSUPPORTED_ENCODING),
    (dict(height=0, data=b""), decode_errors.ZERO_SIZE),
    (dict(width=0, step=0), decode_errors.ZERO_SIZE),
    (dict(width=9000, step=27000, data=b""), decode_errors.TOO_LARGE),
    (dict(height=100000, data=b""), decode_errors.TOO_LARGE),
    (dict(step=11), decode_errors.STEP_TOO_SMALL),
    (dict(encoding="mono16", step=9, data=bytes(36)), decode_errors.STEP_MISALIGNED),
    (dict(data=bytes(47)), decode_errors.TRUNCATED),
    (dict(data=b""), decode_errors.TRUNCATED),
    (dict(data=bytes(49)), decode_errors.SIZE_MISMATCH),
])
def test_malformed_images_raise_one_error_type_with_their_cause(fields, cause):
    with pytest.raises(ImageDecodeError) as err:
        image.image_to_numpy(_image(**fields))
    assert err.value.cause == cause


def test_the_size_limit_is_configurable():
    msg = numpy_to_image(np.zeros((10, 40, 3), np.uint8), "rgb8")
    assert image.image_to_numpy(msg, max_side=40).shape == (10, 40, 3)
    with pytest.raises(ImageDecodeError) as err:
        image.image_to_numpy(msg, max_side=39)
    assert err.value.cause == decode_errors.TOO_LARGE


def test_encoding_rejects_arrays_that_do_not_fit():
    with pytest.raises(ImageEncodeError, match="rgb8 needs 3 channel"):
        numpy_to_image(np.zeros((4, 4), np.uint8), "rgb8")
    with pytest.raises(ImageEncodeError, match="mono16"):
        numpy_to_image(np.zeros((4, 4), np.int32), "mono16")
    with pytest.raises(ImageEncodeError, match="cannot encode"):
        numpy_to_image(np.zeros((4, 4), np.uint8), "nv12")


def test_encoding_accepts_non_contiguous_views():
    pixels = _pixels("rgb8", 6, 8)[::2, 1::2]
    np.testing.assert_array_equal(image.image_to_numpy(numpy_to_image(pixels, "rgb8")), pixels)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16"])
def test_to_rgb8_converts_every_camera_encoding(encoding):
    rgb = _pixels("rgb8", 6, 5)
    grey = rgb[..., 0].copy()
    source = {
        "rgb8": rgb, "bgr8": rgb[..., ::-1], "mono8": grey,
        "rgba8": np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)]),
        "bgra8": np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 7, np.uint8)]),
        "mono16": grey.astype(np.uint16) * 256 + 255,
    }[encoding]
    expected = np.repeat(grey[..., None], 3, axis=2) if encoding.startswith("mono") else rgb
    out = image.to_rgb8(numpy_to_image(np.ascontiguousarray(source), encoding))
    assert out.dtype == np.uint8 and out.shape == (6, 5, 3)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("encoding", ["16UC1", "32SC1", "32FC1"])
def test_to_rgb8_rejects_depth_and_label_images(encoding):
    with pytest.raises(ImageDecodeError) as err:
        image.to_rgb8(numpy_to_image(_pixels(encoding), encoding))
    assert err.value.cause == decode_errors.UNSUPPORTED_ENCODING


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_compressed_images_round_trip(fmt):
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[:, :24] = (200, 30, 10)
    rgb[:, 24:] = (10, 40, 220)
    msg = numpy_to_compressed(rgb, fmt, header=Header(frame_id="cam"))
    assert msg.format == fmt and msg.header.frame_id == "cam"
    out = image.to_rgb8(msg)
    assert out.shape == rgb.shape
    # away from the colour edge (JPEG subsamples chroma in 16x16 blocks)
    inner = np.r_[0:16, 32:48]
    assert np.abs(out[:, inner].astype(int) - rgb[:, inner]).max() <= (0 if fmt == "png" else 6)


def test_image_transport_format_strings_are_understood():
    msg = numpy_to_compressed(np.full((8, 8, 3), 90, np.uint8), "png")
    msg.format = "rgb8; png compressed bgr8"
    assert image.to_rgb8(msg).shape == (8, 8, 3)


def _compressed(fmt: str, data: bytes) -> CompressedImage:
    msg = CompressedImage(format=fmt)
    msg.data = array.array("B", data)
    return msg


def _png_declaring(width: int, height: int) -> bytes:
    ok, png = cv2.imencode(".png", np.zeros((4, 4), np.uint8))
    data = bytearray(png.tobytes())
    data[16:20], data[20:24] = width.to_bytes(4, "big"), height.to_bytes(4, "big")
    return bytes(data)


def _jpeg_declaring(width: int, height: int) -> bytes:
    ok, jpg = cv2.imencode(".jpg", np.zeros((4, 4, 3), np.uint8))
    data = bytearray(jpg.tobytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 7], data[sof + 7:sof + 9] = height.to_bytes(2, "big"), width.to_bytes(2, "big")
    return bytes(data)


def _valid(fmt: str) -> bytes:
    return numpy_to_compressed(np.full((16, 16, 3), 128, np.uint8), fmt).data.tobytes()


@pytest.mark.parametrize("fmt, data, cause", [
    ("jpeg", b"", decode_errors.EMPTY_DATA),
    ("tiff", b"II*\0", decode_errors.UNSUPPORTED_FORMAT),
    ("", b"\xff\xd8\xff", decode_errors.UNSUPPORTED_FORMAT),
    ("jpeg", b"hello world, not an image", decode_errors.CORRUPT_DATA),
    ("png", "jpeg", decode_errors.FORMAT_MISMATCH),
    ("jpeg", "png", decode_errors.FORMAT_MISMATCH),
    ("png", "png_truncated", decode_errors.TRUNCATED),
    ("jpeg", "jpeg_truncated", decode_errors.TRUNCATED),
    ("png", "png_flipped", decode_errors.CORRUPT_DATA),
    ("png", _png_declaring(100000, 100000), decode_errors.TOO_LARGE),
    ("jpeg", _jpeg_declaring(60000, 60000), decode_errors.TOO_LARGE),
    ("jpeg", _jpeg_declaring(8000, 8000), decode_errors.TOO_LARGE),  # above the 4096x2160 pixel budget
    ("jpeg", _jpeg_declaring(9000, 16), decode_errors.TOO_LARGE),  # above the 8192 side limit
    # within both limits, yet far too little data for the size: libjpeg would fill it in
    ("jpeg", _jpeg_declaring(4000, 2000), decode_errors.TRUNCATED),
    ("png", _png_declaring(3000, 2000), decode_errors.TRUNCATED),
    ("png", _png_declaring(0, 4), decode_errors.ZERO_SIZE),
])
def test_malformed_compressed_images_raise_with_their_cause(fmt, data, cause):
    if isinstance(data, str):
        kind, _, damage = data.partition("_")
        data = _valid(kind)
        if damage == "truncated":
            data = data[: len(data) // 2]
        elif damage == "flipped":  # a byte of the image data changed: the chunk CRC no longer matches
            data = data[:45] + bytes([data[45] ^ 0xFF]) + data[46:]
    with pytest.raises(ImageDecodeError) as err:
        image.to_rgb8(_compressed(fmt, data))
    assert err.value.cause == cause


def test_the_pixel_budget_is_a_parameter_of_the_decoders():
    ok, small = cv2.imencode(".png", np.zeros((40, 50, 3), np.uint8))
    msg = _compressed("png", small.tobytes())
    assert image.to_rgb8(msg, max_pixels=2000).shape == (40, 50, 3)
    with pytest.raises(ImageDecodeError, match="2000 pixels, above the 1999 pixel limit") as err:
        image.to_rgb8(msg, max_pixels=1999)
    assert err.value.cause == decode_errors.TOO_LARGE
    raw = numpy_to_image(np.zeros((40, 50, 3), np.uint8), "rgb8")
    with pytest.raises(ImageDecodeError, match="above the 1999 pixel limit"):
        image.to_rgb8(raw, max_pixels=1999)


@pytest.mark.parametrize("progressive", [False, True])
def test_the_data_bound_accepts_the_flattest_real_images(progressive):
    # a uniform frame is the smallest a real encoder makes for its size
    grey = np.full((2160, 4096), 77, np.uint8)
    ok, jpg = cv2.imencode(".jpg", grey, [cv2.IMWRITE_JPEG_OPTIMIZE, 1, cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])
    out = image.to_rgb8(_compressed("jpeg", jpg.tobytes()))
    assert out.shape == (2160, 4096, 3) and np.abs(out.astype(int) - 77).max() <= 1
    ok, png = cv2.imencode(".png", grey, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert image.to_rgb8(_compressed("png", png.tobytes())).shape == (2160, 4096, 3)


def test_a_large_jpeg_is_decoded_at_reduced_scale_for_a_small_model_input():
    rng = np.random.default_rng(5)
    rgb = cv2.resize(rng.integers(0, 256, (60, 100, 3), dtype=np.uint8), (1000, 600), interpolation=cv2.INTER_LINEAR)
    msg = _compressed("jpeg", numpy_to_compressed(rgb, "jpeg").data.tobytes())
    full, size = image.camera_rgb8(msg)
    assert full.shape == (600, 1000, 3) and size == (600, 1000)
    # the coarsest of 1/2, 1/4, 1/8 that keeps at least the model input: 1/4 for 150x250
    reduced, size = image.camera_rgb8(msg, min_size=(150, 250))
    assert reduced.shape == (150, 250, 3) and size == (600, 1000)
    expected = cv2.resize(full, (250, 150), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(reduced.astype(int) - expected).mean() < 3
    assert image.camera_rgb8(msg, min_size=(151, 250))[0].shape == (300, 500, 3)
    assert image.camera_rgb8(msg, min_size=(301, 250))[0].shape == (600, 1000, 3)


def test_decode_error_causes_are_closed():
    with pytest.raises(ValueError, match="unknown decode cause"):
        ImageDecodeError("bad_luck", "x")
    assert len(set(decode_errors.DECODE_CAUSES)) == len(decode_errors.DECODE_CAUSES) == 11


def _serialized_cases():
    rng = np.random.default_rng(7)
    for i, (encoding, frame_id) in enumerate([("rgb8", ""), ("mono16", "c"), ("32FC1", "camera_optical"),
                                              ("bgra8", "x" * 13), ("yuv422", "ü")]):
        height, width = 3 + i, 5 + 2 * i
        msg = Image(height=height, width=width, encoding=encoding, is_bigendian=i % 2, step=width * 4 + i)
        msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec = frame_id, -5 + i, 999 * i
        msg.data = array.array("B", rng.integers(0, 256, msg.step * height, dtype=np.uint8).tobytes())
        yield msg
    for fmt in ("jpeg", "rgb8; png compressed bgr8", ""):
        msg = CompressedImage(format=fmt)
        msg.header.frame_id = fmt[:3]
        msg.data = array.array("B", rng.integers(0, 256, 37, dtype=np.uint8).tobytes())
        yield msg


@pytest.mark.parametrize("msg", list(_serialized_cases()), ids=lambda m: getattr(m, "encoding", "compressed"))
def test_serialized_messages_read_like_rclpy_deserialises_them_without_copying(msg):
    from rclpy.serialization import serialize_message

    raw = serialize_message(msg)
    compressed = isinstance(msg, CompressedImage)
    view = image.from_serialized(raw, compressed=compressed)
    stamp = (view.header.stamp.sec, view.header.stamp.nanosec, view.header.frame_id)
    assert stamp == (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id)
    assert bytes(view.data) == msg.data.tobytes()
    fields = ("format",) if compressed else ("height", "width", "encoding", "is_bigendian", "step")
    assert all(getattr(view, f) == getattr(msg, f) for f in fields)
    assert np.shares_memory(np.frombuffer(view.data, np.uint8), np.frombuffer(raw, np.uint8))


def test_serialized_big_endian_messages_are_read():
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    Img = store.types["sensor_msgs/msg/Image"]
    Hdr, Time = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    msg = Img(Hdr(Time(7, 8), "cam"), 2, 3, "mono8", 0, 3, np.arange(6, dtype=np.uint8))
    view = image.from_serialized(bytes(store.serialize_cdr(msg, "sensor_msgs/msg/Image", little_endian=False)))
    assert (view.header.stamp.sec, view.header.stamp.nanosec, view.header.frame_id) == (7, 8, "cam")
    np.testing.assert_array_equal(image.image_to_numpy(view), np.arange(6).reshape(2, 3))


def test_truncated_or_garbage_serialized_bytes_raise_decode_errors():
    from rclpy.serialization import serialize_message

    raw = serialize_message(numpy_to_image(np.zeros((4, 5, 3), np.uint8), "rgb8", Header(frame_id="cam")))
    for cut in range(len(raw) - 1):
        with pytest.raises(ImageDecodeError) as err:
            image.from_serialized(raw[:cut])
        assert err.value.cause == decode_errors.CORRUPT_DATA
    for garbage in (b"\x00\x01\x00\x00" + b"\xff" * 40, b"\x07\x07\x00\x00" + bytes(60),
                    b"\x00\x01\x00\x00" + bytes(8) + b"\x02\x00\x00\x00ab"):
        with pytest.raises(ImageDecodeError):
            image.from_serialized(garbage)


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_mosaics_are_demosaiced_to_the_right_colours(pattern):
    colour = np.array([200, 100, 30], np.uint8)
    mosaic = np.zeros((8, 8), np.uint8)
    for i, channel in enumerate(pattern):  # the 2x2 cell, row-major
        mosaic[i // 2::2, i % 2::2] = colour["rgb".index(channel)]
    out = image.to_rgb8(numpy_to_image(mosaic, f"bayer_{pattern}8"))
    np.testing.assert_array_equal(out[2:6, 2:6], np.broadcast_to(colour, (4, 4, 3)))
