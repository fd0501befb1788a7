"""Malformed input frames are skipped and counted by cause; the next good frame is answered."""
from __future__ import annotations

import array

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from panoptic_ros.ros.image_messages import numpy_to_compressed
from panoptic_ros.serialized import decode_errors
from ros_helpers import Probe, camera_image, make_node, running

pytestmark = pytest.mark.ros


def _image(seq: int, **fields) -> Image:
    header = Header(frame_id="camera")
    header.stamp.sec, header.stamp.nanosec = 200, seq
    base = dict(height=8, width=8, encoding="rgb8", is_bigendian=0, step=24)
    base.update({k: v for k, v in fields.items() if k != "data"})
    msg = Image(header=header, **base)
    msg.data = array.array("B", fields["data"] if "data" in fields else bytes(base["step"] * base["height"]))
    return msg


def _compressed(seq: int, fmt: str, data: bytes) -> CompressedImage:
    header = Header(frame_id="camera")
    header.stamp.sec, header.stamp.nanosec = 200, seq
    msg = CompressedImage(header=header, format=fmt)
    msg.data = array.array("B", data)
    return msg


def _jpeg(rgb=None) -> bytes:
    rgb = np.full((48, 64, 3), 120, np.uint8) if rgb is None else rgb
    return numpy_to_compressed(rgb, "jpeg").data.tobytes()


def _jpeg_declaring(width: int, height: int) -> bytes:
    """The probe's bomb: a small valid JPEG whose frame header claims another size."""
    data = bytearray(_jpeg())
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def _png_bomb() -> bytes:
    ok, png = cv2.imencode(".png", np.zeros((4, 4), np.uint8))
    data = bytearray(png.tobytes())
    data[16:24] = (50000).to_bytes(4, "big") + (50000).to_bytes(4, "big")
    return bytes(data)


RAW_CASES = {  # name: (message fields, expected cause)
    "unknown encoding": (dict(encoding="yuv422"), decode_errors.UNSUPPORTED_ENCODING),
    "empty encoding": (dict(encoding=""), decode_errors.UNSUPPORTED_ENCODING),
    "depth image": (dict(encoding="32FC1", step=32, data=bytes(256)), decode_errors.UNSUPPORTED_ENCODING),
    "label image": (dict(encoding="16UC1", step=16, data=bytes(128)), decode_errors.UNSUPPORTED_ENCODING),
    "zero height": (dict(height=0, data=b""), decode_errors.ZERO_SIZE),
    "zero width": (dict(width=0, step=0, data=b""), decode_errors.ZERO_SIZE),
    "absurd size": (dict(width=100000, height=100000, step=300000, data=b""), decode_errors.TOO_LARGE),
    "step too small": (dict(step=20, data=bytes(160)), decode_errors.STEP_TOO_SMALL),
    "odd mono16 step": (dict(encoding="mono16", step=17, data=bytes(136)), decode_errors.STEP_MISALIGNED),
    "truncated data": (dict(data=bytes(100)), decode_errors.TRUNCATED),
    "no data": (dict(data=b""), decode_errors.TRUNCATED),
    "data too long": (dict(data=bytes(200)), decode_errors.SIZE_MISMATCH),
    "not an Image at all": ("garbage", decode_errors.CORRUPT_DATA),  # serialised bytes that do not parse
}


def _raw_case(seq: int, fields):
    if fields == "garbage":
        return b"\x00\x01\x00\x00" + bytes(range(256)) * 3
    return _image(seq, **fields)
COMPRESSED_CASES = {
    "empty compressed": (("jpeg", b""), decode_errors.EMPTY_DATA),
    "unsupported format": (("tiff", b"II*\0abc"), decode_errors.UNSUPPORTED_FORMAT),
    "garbage bytes": (("jpeg", b"\x00" * 64), decode_errors.CORRUPT_DATA),
    "png labelled jpeg": (("jpeg", "png"), decode_errors.FORMAT_MISMATCH),
    "truncated jpeg": (("jpeg", "truncated"), decode_errors.TRUNCATED),
    "decompression bomb": (("png", _png_bomb()), decode_errors.TOO_LARGE),
    "8000x8000 jpeg bomb": (("jpeg", _jpeg_declaring(8000, 8000)), decode_errors.TOO_LARGE),
    "4000x2000 jpeg bomb": (("jpeg", _jpeg_declaring(4000, 2000)), decode_errors.TRUNCATED),
}


def _check_cases(node, probe, spinner, cases, build, good):
    for seq, (name, (spec, cause)) in enumerate(cases.items(), start=1):
        before = node.stats.rejected[cause]
        probe.pub.publish(build(seq * 2, spec))
        spinner.until(lambda: node.stats.rejected[cause] > before, what=f"{name} to be rejected as {cause}")
        got = probe.send(good(seq * 2 + 1), outputs=("panoptic",))  # the next good frame is answered
        assert got["panoptic"].header.stamp.nanosec == seq * 2 + 1, name
    return len(cases)


def test_malformed_images_are_counted_by_cause_and_skipped(ros_context, spinner, tiny_weights):
    name, topic = "bad_raw_node", "/bad_raw/image"
    node = make_node(ros_context, tiny_weights["ciae"], name=name, topic=topic, **{"qos.reliability": "reliable"})
    probe = Probe(ros_context, spinner, name=name, topic=topic)
    with running(spinner, node, probe.node):
        probe.connect(node)
        checked = _check_cases(node, probe, spinner, RAW_CASES, _raw_case, camera_image)
        assert checked == 13 and node.stats.errors == 0
        snap = node.stats.snapshot()
        assert snap["frames_rejected"] == 13 and snap["rejected.unsupported_encoding"] == 4


def test_malformed_compressed_images_are_counted_by_cause_and_skipped(ros_context, spinner, tiny_weights):
    name, topic = "bad_compressed_node", "/bad_compressed/image"
    node = make_node(ros_context, tiny_weights["ciae"], name=name, topic=topic, compressed=True,
                     **{"qos.reliability": "reliable"})
    probe = Probe(ros_context, spinner, name=name, topic=f"{topic}/compressed", msg_type=CompressedImage)

    def build(seq, spec):
        fmt, data = spec
        if data == "png":
            data = numpy_to_compressed(np.zeros((8, 8, 3), np.uint8), "png").data.tobytes()
        elif data == "truncated":
            data = _jpeg()[:300]
        return _compressed(seq, fmt, data)

    def good(seq):
        rgb = np.random.default_rng(seq).integers(0, 256, (48, 64, 3), dtype=np.uint8)
        return _compressed(seq, "jpeg", _jpeg(rgb))

    with running(spinner, node, probe.node):
        probe.connect(node)
        assert _check_cases(node, probe, spinner, COMPRESSED_CASES, build, good) == 8
        snap = node.stats.snapshot()
        assert snap["frames_rejected"] == 8 and node.stats.errors == 0
        assert (snap["rejected.too_large"], snap["rejected.truncated"]) == (2, 2)
