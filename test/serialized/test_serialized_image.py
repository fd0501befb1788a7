"""Serialized Image/CompressedImage and the CDR writer, checked against rclpy's own
serialisation (the reference) and read back by the zero-copy reader."""
import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header as RosHeader

from panoptic_ros.serialized import image
from panoptic_ros.serialized.cdr import CdrError, CdrReader, CdrWriter, Header, Time


def _ros_header(frame_id: str = "camera", sec: int = 1_700_000_000, nanosec: int = 123_456_789) -> RosHeader:
    header = RosHeader(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = sec, nanosec
    return header


def rclpy_image(pixels: np.ndarray, encoding: str, header: RosHeader, *, big_endian: bool = False) -> Image:
    """The Image message for ``pixels``, filled field by field as sensor_msgs describes it
    (packed rows: step = width x channels x element size), with nothing of the project."""
    channels = pixels[0, 0].size
    wire = pixels.astype(pixels.dtype.newbyteorder(">" if big_endian else "<"))
    return Image(header=header, height=pixels.shape[0], width=pixels.shape[1], encoding=encoding,
                 is_bigendian=int(big_endian), step=pixels.shape[1] * channels * pixels.itemsize,
                 data=wire.tobytes())


@pytest.mark.parametrize("encoding", sorted(image.ENCODINGS))
@pytest.mark.parametrize("frame_id", ["", "cam", "a_longer_frame"])  # every string padding
def test_image_bytes_equal_what_rclpy_reads_from_its_own_serialisation(encoding, frame_id):
    dtype, channels = image.ENCODINGS[encoding]
    shape = (3, 5) if channels == 1 else (3, 5, channels)
    pixels = (np.arange(np.prod(shape)) * 37 % 251).astype(dtype).reshape(shape)
    header = _ros_header(frame_id)
    ours = image.image_bytes(pixels, encoding, header)
    reference = rclpy_image(pixels, encoding, header)
    assert deserialize_message(ours, Image) == reference
    assert len(ours) == len(serialize_message(reference))  # same layout, no trailing bytes
    view = image.from_serialized(ours)
    np.testing.assert_array_equal(image.image_to_numpy(view), pixels)
    assert (view.header.stamp.sec, view.header.stamp.nanosec, view.header.frame_id) == \
        (1_700_000_000, 123_456_789, frame_id)


def test_image_bytes_hold_their_own_copy_of_any_array():
    pixels = np.zeros((4, 6), np.int32)
    data = image.image_bytes(pixels, "32SC1", Header())
    pixels[:] = 7  # the message holds its own copy
    assert not image.image_to_numpy(image.from_serialized(data)).any()
    strided = np.arange(48, dtype=np.int32).reshape(4, 12)[:, ::2]  # a non-contiguous view
    np.testing.assert_array_equal(image.image_to_numpy(image.from_serialized(image.image_bytes(
        strided, "32SC1", Header()))), strided)


@pytest.mark.parametrize("encoding", sorted(image.ENCODINGS))
@pytest.mark.parametrize("frame_id", ["", "cam", "a_longer_frame"])
def test_an_image_message_filled_in_place_equals_image_bytes_of_its_pixels(encoding, frame_id):
    dtype, channels = image.ENCODINGS[encoding]
    shape = (3, 5) if channels == 1 else (3, 5, channels)
    pixels = (np.arange(np.prod(shape)) * 37 % 251).astype(dtype).reshape(shape)
    message = image.ImageMessage(3, 5, encoding, _ros_header(frame_id))
    assert message.pixels.shape == shape and message.pixels.flags.writeable
    assert message.pixels.ctypes.data % image.ImageMessage.ALIGNMENT == 0
    message.pixels[...] = pixels
    assert message.data.dtype == np.uint8 and message.data.ndim == 1
    assert message.data.tobytes() == image.image_bytes(pixels, encoding, _ros_header(frame_id))
    assert deserialize_message(message.data.tobytes(), Image) == rclpy_image(pixels, encoding, _ros_header(frame_id))


def test_an_image_message_refuses_an_unknown_encoding():
    with pytest.raises(image.ImageEncodeError, match="'rgb16'"):
        image.ImageMessage(2, 2, "rgb16", Header())


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_compressed_bytes_equal_the_rclpy_message(fmt):
    y, x = np.mgrid[0:16, 0:24]
    rgb = np.stack([x * 10, y * 15, 255 - x * 5 - y * 5], axis=-1).astype(np.uint8)   # smooth ramps
    header = _ros_header()
    ours = deserialize_message(image.compressed_bytes(rgb, header, fmt), CompressedImage)
    assert ours.header == header and ours.format == fmt
    # the payload is a real file of that format: OpenCV reads it back (BGR)
    pixels = cv2.cvtColor(cv2.imdecode(np.frombuffer(bytes(ours.data), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    if fmt == "png":
        np.testing.assert_array_equal(pixels, rgb)
    else:  # quality 90 on smooth ramps: lossy by a few levels at most
        assert np.abs(pixels.astype(int) - rgb).mean() < 4
    decoded = image.to_rgb8(image.from_serialized(image.compressed_bytes(rgb, header, fmt), compressed=True))
    np.testing.assert_array_equal(decoded, pixels)


def test_encoding_errors_name_the_problem():
    with pytest.raises(image.ImageEncodeError, match="rgb8 needs 3 channel"):
        image.image_bytes(np.zeros((4, 4), np.uint8), "rgb8", Header())
    with pytest.raises(image.ImageEncodeError, match="cannot encode 'nv12'"):
        image.image_bytes(np.zeros((4, 4), np.uint8), "nv12", Header())
    with pytest.raises(image.ImageEncodeError, match="'jpeg' or 'png'"):
        image.compressed_bytes(np.zeros((4, 4, 3), np.uint8), Header(), "webp")


def test_writer_aligns_each_field_to_its_size_after_the_encapsulation_header():
    w = CdrWriter()
    w.u8(1)
    w.u16(2)        # pad 1
    w.f64(3.0)      # pad 4: offset 8
    w.string("ab")  # length 3 + "ab\0"
    w.f32(4.0)      # pad 1 to offset 24
    w.octets(b"xyz")
    w.u32(5)        # pad 1 after the octets: offset 36
    data = w.to_bytes()
    assert data[:4] == b"\x00\x01\x00\x00" and len(data) == 4 + 40
    r = CdrReader(data)
    assert r.u8() == 1 and r._take(2, 2).tobytes() == b"\x02\x00" and r._take(8, 8).tobytes() == \
        np.float64(3.0).tobytes()
    assert r.string() == "ab" and r._take(4, 4).tobytes() == np.float32(4.0).tobytes()
    assert r.octets().tobytes() == b"xyz" and r.u32() == 5 and r.pos == len(data)


def test_reader_errors_and_header_helpers():
    with pytest.raises(CdrError, match="encapsulation"):
        CdrReader(b"\x07\x07")
    with pytest.raises(CdrError, match="ends at byte"):
        CdrReader(b"\x00\x01\x00\x00\x01").u32()
    assert Header.from_stamp_ns(3_000_000_005, "x") == Header(Time(3, 5), "x")


_frame_ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_/0123456789", max_size=12)


@st.composite
def images(draw):
    """(encoding, pixels) of every supported encoding, 1-6 x 1-6 pixels of arbitrary bytes."""
    encoding = draw(st.sampled_from(sorted(image.ENCODINGS)))
    dtype, channels = image.ENCODINGS[encoding]
    shape = (draw(st.integers(1, 6)), draw(st.integers(1, 6))) + ((channels,) if channels > 1 else ())
    raw = draw(st.binary(min_size=int(np.prod(shape)) * dtype.itemsize, max_size=int(np.prod(shape)) * dtype.itemsize))
    return encoding, np.frombuffer(raw, dtype=dtype).reshape(shape)


@settings(max_examples=150, deadline=None)
@given(images(), _frame_ids, st.integers(-2**31, 2**31 - 1), st.integers(0, 2**32 - 1))
def test_image_bytes_round_trip_through_rclpy_for_every_encoding(img, frame_id, sec, nanosec):
    encoding, pixels = img
    header = _ros_header(frame_id, sec, nanosec)
    reference = rclpy_image(pixels, encoding, header)
    # ours -> rclpy: the same message
    assert deserialize_message(image.image_bytes(pixels, encoding, header), Image) == reference
    # rclpy -> ours: the same pixels (compared as bytes: 32FC1 may hold NaNs) and header
    view = image.from_serialized(serialize_message(reference))
    decoded = image.image_to_numpy(view)
    assert decoded.shape == pixels.shape and decoded.dtype == pixels.dtype
    assert decoded.tobytes() == pixels.tobytes()
    assert (view.header.stamp.sec, view.header.stamp.nanosec, view.header.frame_id) == (sec, nanosec, frame_id)


@settings(max_examples=60, deadline=None)
@given(images())
def test_big_endian_images_from_rclpy_decode_to_native_values(img):
    encoding, pixels = img
    reference = rclpy_image(pixels, encoding, _ros_header(), big_endian=True)
    decoded = image.image_to_numpy(image.from_serialized(serialize_message(reference)))
    assert decoded.dtype.isnative and decoded.tobytes() == pixels.tobytes()


@settings(max_examples=60, deadline=None)
@given(images(), st.integers(1, 9))
def test_padded_rows_from_rclpy_decode_to_the_pixels(img, padding_elements):
    encoding, pixels = img
    reference = rclpy_image(pixels, encoding, _ros_header())
    row = reference.step
    extra = padding_elements * pixels.itemsize               # step stays a multiple of the element
    data = bytes(reference.data)
    reference.data = b"".join(data[r * row:(r + 1) * row] + b"\xee" * extra for r in range(pixels.shape[0]))
    reference.step = row + extra
    decoded = image.image_to_numpy(image.from_serialized(serialize_message(reference)))
    assert decoded.tobytes() == pixels.tobytes()
