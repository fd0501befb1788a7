"""Write samples as a ROS 2 bag (rosbag2 layout: a folder with ``metadata.yaml`` and an
mcap or sqlite3 file) with ``rosbags``, no ROS installation needed.

Topics (the project's bag contract, shared with the replay evaluation):

* ``/camera/image_raw`` — ``sensor_msgs/msg/Image`` rgb8, or with ``compressed=True``
  ``/camera/image_raw/compressed`` — ``sensor_msgs/msg/CompressedImage`` JPEG
  (format ``rgb8; jpeg compressed bgr8``, image_transport's convention);
* ``/camera/camera_info`` — ``sensor_msgs/msg/CameraInfo``, a pinhole model (plumb_bob, no
  distortion) matching the image size;
* ``/camera/panoptic_gt`` — ``sensor_msgs/msg/Image`` 32SC1 little-endian panoptic ids
  (``category_id * 1000 + instance``, 0 = VOID).

Frame k of every topic carries header stamp ``start_ns + round(k * 1e9 / rate_hz)``, frame
id ``camera``, and is logged at that same time, so the bag replays at ``rate_hz``.

A multi-camera bag (:func:`write_multicamera_bag`) has the same four topics per camera
under the camera's name instead of ``/camera`` (``/front/image_raw``,
``/front/camera_info``, ``/front/panoptic_gt``, ...), frame id the camera's name, and the
cameras' frames k share one stamp (a synchronised rig).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from panoptic_ros.sample import Sample

CAMERA_NAMES = ("front", "left", "right", "rear", "front_left", "front_right", "rear_left", "rear_right")
IMAGE_TOPIC = "/camera/image_raw"
COMPRESSED_TOPIC = "/camera/image_raw/compressed"
CAMERA_INFO_TOPIC = "/camera/camera_info"
GT_TOPIC = "/camera/panoptic_gt"
FRAME_ID = "camera"
DEFAULT_START_NS = 1_700_000_000_000_000_000      # fixed, so the same samples give the same bag
JPEG_FORMAT = "rgb8; jpeg compressed bgr8"
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
# SynthStreet's cameras have a vertical focal length of 1.8 to 2.4 image heights.
NOMINAL_FOCAL_HEIGHTS = 2.1


class BagWriteError(ValueError):
    """A bag that cannot be written (existing output, bad options, bad sample)."""


def camera_info_fields(height: int, width: int) -> dict:
    """CameraInfo fields of the nominal SynthStreet pinhole camera for an image size."""
    fy = NOMINAL_FOCAL_HEIGHTS * height
    fx = fy * width / (2.0 * height)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    k = np.array([fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0])
    p = np.array([fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0])
    return {"height": height, "width": width, "distortion_model": "plumb_bob", "d": np.zeros(5),
            "k": k, "r": np.eye(3).ravel(), "p": p}


class _Messages:
    """Builds and serialises the bag's messages with the ROS 2 Jazzy type store."""

    def __init__(self) -> None:
        self.store = get_typestore(Stores.ROS2_JAZZY)
        types = self.store.types
        self.Header, self.Time = types["std_msgs/msg/Header"], types["builtin_interfaces/msg/Time"]
        self.Image, self.Compressed = types["sensor_msgs/msg/Image"], types["sensor_msgs/msg/CompressedImage"]
        self.Info, self.Roi = types["sensor_msgs/msg/CameraInfo"], types["sensor_msgs/msg/RegionOfInterest"]

    def header(self, stamp_ns: int, frame_id: str = FRAME_ID):
        return self.Header(stamp=self.Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000),
                           frame_id=frame_id)

    def serialize(self, msg) -> bytes:
        return bytes(self.store.serialize_cdr(msg, msg.__msgtype__))

    def image(self, header, array: np.ndarray, encoding: str):
        h, w = array.shape[:2]
        data = np.ascontiguousarray(array).view(np.uint8).reshape(-1)
        return self.Image(header=header, height=h, width=w, encoding=encoding, is_bigendian=0,
                          step=data.size // h, data=data)

    def compressed(self, header, rgb: np.ndarray, quality: int):
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise BagWriteError("JPEG encoding of a frame failed")
        return self.Compressed(header=header, format=JPEG_FORMAT, data=buf.reshape(-1))

    def camera_info(self, header, height: int, width: int):
        f = camera_info_fields(height, width)
        roi = self.Roi(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        return self.Info(header=header, height=f["height"], width=f["width"],
                         distortion_model=f["distortion_model"], d=f["d"], k=f["k"], r=f["r"], p=f["p"],
                         binning_x=0, binning_y=0, roi=roi)


def write_bag(path: str | Path, samples: Iterable[Sample], *, rate_hz: float = 10.0, compressed: bool = False,
              storage: str = "mcap", start_ns: int = DEFAULT_START_NS, jpeg_quality: int = 95) -> int:
    """Write samples as a rosbag2 folder at ``path`` (which must not exist yet).

    Args:
        path: the bag folder to create.
        samples: frames in order.
        rate_hz: frame rate; stamps are ``start_ns + round(k * 1e9 / rate_hz)``.
        compressed: JPEG ``CompressedImage`` instead of raw rgb8 ``Image``.
        storage: ``mcap`` or ``sqlite3``.
        start_ns: stamp of the first frame.
        jpeg_quality: 1..100 for ``compressed``.
    Returns:
        The number of frames written.
    Raises:
        BagWriteError: bad options or ``path`` exists.
    """
    return _write(path, [("/camera", FRAME_ID)], ([sample] for sample in samples), rate_hz=rate_hz,
                  compressed=compressed, storage=storage, start_ns=start_ns, jpeg_quality=jpeg_quality)


def camera_names(count: int) -> tuple[str, ...]:
    """The names of the cameras of a ``count``-camera bag (1 to 8)."""
    if not 1 <= count <= len(CAMERA_NAMES):
        raise BagWriteError(f"cameras: 1 to {len(CAMERA_NAMES)}, got {count}")
    return CAMERA_NAMES[:count]


def write_multicamera_bag(path: str | Path, frames: Iterable[Sequence[Sample]], *, cameras: Sequence[str],
                          rate_hz: float = 10.0, compressed: bool = False, storage: str = "mcap",
                          start_ns: int = DEFAULT_START_NS, jpeg_quality: int = 95) -> int:
    """Write a multi-camera bag (topics ``/<camera>/...``; see the module docstring).

    Args:
        frames: per time step, one sample per camera, in ``cameras`` order.
        cameras: the camera names.
        others: as :func:`write_bag`.
    Returns:
        The number of time steps written (each has one frame per camera).
    """
    return _write(path, [(f"/{name}", name) for name in cameras], frames, rate_hz=rate_hz,
                  compressed=compressed, storage=storage, start_ns=start_ns, jpeg_quality=jpeg_quality)


def _write(path: str | Path, cameras: list[tuple[str, str]], frames: Iterable[Sequence[Sample]], *,
           rate_hz: float, compressed: bool, storage: str, start_ns: int, jpeg_quality: int) -> int:
    """The bag of ``cameras`` ((topic prefix, frame id) each): frame k of camera c is
    ``frames[k][c]``."""
    path = Path(path)
    if storage not in STORAGES:
        raise BagWriteError(f"bag storage must be one of {sorted(STORAGES)}, got {storage!r}")
    if not (rate_hz > 0 and np.isfinite(rate_hz)):
        raise BagWriteError(f"bag rate must be a positive number of Hz, got {rate_hz!r}")
    if path.exists():
        raise BagWriteError(f"{path}: already exists; rosbag2 writes a new folder")
    msgs = _Messages()
    count = 0
    with Writer(path, version=Writer.VERSION_LATEST, storage_plugin=STORAGES[storage]) as writer:
        camera_type = msgs.Compressed.__msgtype__ if compressed else msgs.Image.__msgtype__
        image_suffix = "/image_raw/compressed" if compressed else "/image_raw"
        conns = [{name: writer.add_connection(f"{prefix}{suffix}", msgtype, typestore=msgs.store)
                  for name, suffix, msgtype in (("camera", image_suffix, camera_type),
                                                ("info", "/camera_info", msgs.Info.__msgtype__),
                                                ("gt", "/panoptic_gt", msgs.Image.__msgtype__))}
                 for prefix, _ in cameras]
        for k, samples in enumerate(frames):
            stamp = start_ns + int(round(k * 1e9 / rate_hz))
            for (_, frame_id), conn, sample in zip(cameras, conns, samples, strict=True):
                _write_frame(writer, conn, msgs, msgs.header(stamp, frame_id), sample, stamp,
                             compressed=compressed, jpeg_quality=jpeg_quality)
            count += 1
    return count


def _write_frame(writer: Writer, conns: dict, msgs: _Messages, header, sample: Sample, stamp: int, *,
                 compressed: bool, jpeg_quality: int) -> None:
    """One camera's image, camera info and ground truth at ``stamp``."""
    h, w = sample.target.panoptic.shape
    camera = (msgs.compressed(header, sample.image, jpeg_quality) if compressed
              else msgs.image(header, sample.image, "rgb8"))
    writer.write(conns["camera"], stamp, msgs.serialize(camera))
    writer.write(conns["info"], stamp, msgs.serialize(msgs.camera_info(header, h, w)))
    gt = msgs.image(header, sample.target.panoptic.astype("<i4"), "32SC1")
    writer.write(conns["gt"], stamp, msgs.serialize(gt))
