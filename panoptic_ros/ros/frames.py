"""The node's frame path, camera by camera: receive (count, check, store in the camera's
slot), then per run: decode each camera's newest frame, infer them as one batch, publish
each camera's outputs with its header. Every frame ends counted once for its camera.

:class:`CameraFrames` is a mixin of :class:`~panoptic_ros.ros.node.PanopticNode`, which
owns the state it uses (slot, cameras, statistics, publishers, predictor, settings).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from panoptic_ros import outputs as messages
from panoptic_ros.cameras import CameraInput
from panoptic_ros.ros.pipeline import Frame
from panoptic_ros.serialized.image import ImageDecodeError, ImageMessage, camera_rgb8, check_frame, from_serialized


@dataclass
class FrameJob:
    """A decoded frame of one camera and the outputs it is to get.

    Attributes:
        camera: the camera's name ("" for the unnamed camera).
        frame: the received frame (for its statistics).
        header: the input's header, which every output carries.
        rgb: (h, w, 3) uint8 decoded image (smaller than ``size`` when decoded at
            reduced scale).
        size: (H, W) of the camera image: the size of the outputs.
        wanted: the outputs that have a subscriber, in publishing order.
        panoptic: the ``panoptic`` output message, whose (H, W) int32 pixels the
            predictor writes into (None when nobody subscribes to it).
    """

    camera: str
    frame: Frame
    header: Any
    rgb: np.ndarray
    size: tuple[int, int]
    wanted: list[str]
    panoptic: ImageMessage | None

    @property
    def panoptic_pixels(self) -> np.ndarray | None:
        """(H, W) int32 pixels of the ``panoptic`` message, or None."""
        return None if self.panoptic is None else self.panoptic.pixels

    def overlay_rgb(self) -> np.ndarray:
        """(H, W, 3) the image the overlay is drawn on: ``rgb`` brought to ``size`` when it
        was decoded at reduced scale and an overlay is wanted."""
        if self.rgb.shape[:2] != self.size and "overlay" in self.wanted:
            return cv2.resize(self.rgb, self.size[::-1], interpolation=cv2.INTER_LINEAR)
        return self.rgb

class CameraFrames:
    """The frame-path methods of the node (see the module docstring)."""

    def _on_image(self, camera: str, msg: bytes) -> None:
        slot, stats = self._slot, self.camera_stats[camera]
        if slot is None:
            return
        if not self._enabled:
            stats.on_paused()
            return
        now = time.monotonic()
        frame = Frame(msg, now, stats.on_received(now))
        if not self._plausible(camera, msg):  # rejected at once: a bomb must not take a good frame's place
            return
        lost = slot.put(camera, frame)
        if lost is frame:  # the slot closed meanwhile (deactivate)
            stats.on_discarded()
        elif lost is not None:
            stats.on_dropped()

    def _plausible(self, camera: str, msg: bytes) -> bool:
        """Run the checks that need no decoding (header, sizes, data length); a frame that
        fails them is counted as rejected and logged here. Microseconds per frame."""
        try:
            check_frame(from_serialized(msg, compressed=self._inputs[camera].compressed),
                        max_side=self._io.max_image_side, max_pixels=self._io.max_image_pixels)
        except ImageDecodeError as exc:
            self._reject(camera, exc)
            return False
        return True

    def _reject(self, camera: str, exc: ImageDecodeError) -> None:
        count = self.camera_stats[camera].on_rejected(exc.cause)
        where = f"camera {camera}: " if camera else ""
        self._log_throttled(f"{camera}:{exc.cause}", f"{where}skipping frame ({exc.cause}, {count} so far): {exc}")

    def _discard(self, frames: dict[str, Frame]) -> None:
        for camera in frames:
            self.camera_stats[camera].on_discarded()

    def _process(self, frames: dict[str, Frame]) -> None:
        """Process the newest frame of each camera that has one (camera -> frame) as one
        batch; every frame ends counted once (processed, rejected, discarded or error)."""
        with self._gate:
            pending = dict(frames)  # frames not counted yet; _process_batch removes each it counts
            try:
                self._process_batch(pending)
            except Exception as exc:  # noqa: BLE001 - one bad batch must not kill the node
                for camera in pending:
                    self.camera_stats[camera].on_error()
                self._log_error(exc)

    def _process_batch(self, pending: dict[str, Frame]) -> None:
        if not self._enabled or self.predictor is None:  # paused after they were taken
            self._discard(pending)
            pending.clear()
            return
        started = time.monotonic()
        jobs = [job for job in (self._decode(camera, frame, pending) for camera, frame in list(pending.items()))
                if job is not None]
        if not jobs:
            return
        self.batch_sizes[len(jobs)] += 1
        results, low_res_results = self._infer(jobs)
        timings = self.predictor.last_timings
        for job, result, low_res in zip(jobs, results, low_res_results):
            self._publish(job, result, low_res)
            done = time.monotonic()
            self.camera_stats[job.camera].on_published(job.frame, done, timings.model_ms,
                                                       (done - started) * 1e3 - timings.total_ms)
            del pending[job.camera]
        pixels = sum(j.size[0] * j.size[1] for j in jobs)
        del jobs, results
        self._memory.after_frame(pixels)

    def _infer(self, jobs: list[FrameJob]) -> tuple[list, list]:
        """The results of the jobs' frames, and the same at model resolution: one
        ``predict`` call for one frame (the single-camera node's call), else one batch."""
        p = self.predictor
        if len(jobs) == 1:
            job = jobs[0]
            return [p.predict(job.rgb, panoptic_out=job.panoptic_pixels, output_size=job.size)], [p.last_model_result]
        results = p.predict_batch([j.rgb for j in jobs], panoptic_outs=[j.panoptic_pixels for j in jobs],
                                  output_sizes=[j.size for j in jobs])
        return results, list(p.last_model_results)

    def _decode(self, camera: str, frame: Frame, pending: dict[str, Frame]) -> FrameJob | None:
        """The frame decoded, with its outputs to build; None (counted as rejected) if it
        cannot be decoded (found by the decoder, or limits changed meanwhile)."""
        try:
            msg = from_serialized(frame.msg, compressed=self._inputs[camera].compressed)
            rgb, size = camera_rgb8(msg, max_side=self._io.max_image_side, max_pixels=self._io.max_image_pixels,
                                    min_size=self.predictor.input_size)
        except ImageDecodeError as exc:
            self._reject(camera, exc)
            del pending[camera]
            return None
        wanted = self._wanted_outputs(self._inputs[camera])
        # ~/panoptic is written by the predictor straight into its message's pixels.
        panoptic = ImageMessage(*size, "32SC1", msg.header) if "panoptic" in wanted else None
        return FrameJob(camera, frame, msg.header, rgb, size, wanted, panoptic)

    def _wanted_outputs(self, camera: CameraInput) -> list[str]:
        """The enabled outputs of ``camera`` that have a subscriber, in :data:`messages.OUTPUT_TYPES` order."""
        return [name for name in messages.OUTPUT_TYPES if getattr(self._io, f"publish_{name}")
                and self._pubs[camera.output(name)].get_subscription_count() > 0]

    def _publish(self, job: FrameJob, result, low_res) -> None:
        """Publish the wanted outputs of ``job``, each as soon as it is built (``panoptic``
        already holds ``result``'s id map); ``low_res``: the result at model resolution."""
        io, camera = self._io, self._inputs[job.camera]
        pubs = {name: self._raw_pubs[camera.output(name)] for name in job.wanted}
        if job.panoptic is not None:
            pubs["panoptic"].publish(job.panoptic.data)
        outputs = messages.output_messages(result, job.overlay_rgb(), job.header,
                                           which=[n for n in job.wanted if n != "panoptic"],
                                           label_space=self.predictor.label_space, low_res=low_res,
                                           overlay_alpha=io.overlay_alpha, stuff_detections=io.stuff_detections)
        for name, data in outputs:
            pubs[name].publish(data)
