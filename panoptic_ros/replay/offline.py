"""Offline replay: the node's Predictor on every frame of the bag, no DDS, as fast as the
machine goes (the upper bound of the node's throughput on this hardware).

Each frame is decoded and predicted (the frames of several cameras as one batch, as the
multi-camera node runs them), and its outputs are built as the node builds them
(:func:`panoptic_ros.outputs.output_messages`, serialized bytes, no rclpy); the time
from handing the decoded frame to the Predictor to the serialized outputs is the frame's
latency. Nothing here imports rclpy or a ROS message package.
"""
from __future__ import annotations

import time
from typing import Iterable, Mapping

from panoptic_ros.inference.predictor import Predictor, PredictorConfig
from panoptic_ros.labels import LabelSpace
from panoptic_ros.outputs import label_info, output_messages
from panoptic_ros.replay.bag import RawMessage, cdr_stamp
from panoptic_ros.replay.messages import RECORDED_OUTPUTS, decode_camera
from panoptic_ros.replay.metrics import RunLog
from panoptic_ros.replay.multicamera import time_steps
from panoptic_ros.replay.outbag import OutputBag
from panoptic_ros.serialized.cdr import Header
from panoptic_ros.serialized.image import ImageDecodeError


class OfflineRunner:
    """Runs a Predictor over camera messages and writes the outputs to a bag.

    Args:
        config: how to build the predictor.
        node_topic: the node's fully qualified name; outputs go to ``<node_topic>/<name>``.
        overlay_alpha: the node's default ``overlay_alpha``.
    """

    mode = "offline"

    def __init__(self, config: PredictorConfig, *, node_topic: str = "/panoptic_node", overlay_alpha: float = 0.5):
        self.config = config
        self.node_topic = node_topic.rstrip("/")
        self.overlay_alpha = overlay_alpha
        self.predictor: Predictor | None = None
        self.wall_s = 0.0

    def start(self) -> None:
        """Load the model (raises CheckpointError/ConfigError/BackendError)."""
        self.predictor = Predictor.from_config(self.config)

    @property
    def label_space(self) -> LabelSpace:
        return self.predictor.label_space

    def run(self, frames: Iterable[RawMessage], msgtype: str, bag: OutputBag, log: RunLog, progress=None) -> None:
        """Predict every frame in ``frames`` (camera messages of type ``msgtype``)."""
        self._run(([(message, msgtype, log, self.node_topic)] for message in frames), bag, progress)

    def run_cameras(self, frames: Iterable[RawMessage], cameras: Mapping[str, tuple[str, str]], bag: OutputBag,
                    logs: Mapping[str, RunLog], progress=None) -> None:
        """Predict the frames of several cameras, as the multi-camera node does: messages in
        log order are gathered until a camera repeats, and run as one batch.

        Args:
            frames: camera messages of the topics of ``cameras``, in log order.
            cameras: input topic -> (camera name, message type).
            logs: camera name -> its frames; outputs go to ``<node_topic>/<camera>/<name>``.
        """
        batches = ([(message, msgtype, logs[camera], f"{self.node_topic}/{camera}")
                    for message, msgtype, camera in step] for step in time_steps(frames, cameras))
        self._run(batches, bag, progress)

    def _run(self, batches: Iterable[list[tuple]], bag: OutputBag, progress) -> None:
        """Each batch: (message, type, log, output topic prefix) per frame."""
        start = time.perf_counter()
        labelled = False
        try:
            for batch in batches:
                if not labelled:
                    self._write_label_info(batch[0][0], bag)
                    labelled = True
                self._batch(batch, bag)
                if progress is not None:
                    progress.update(len(batch))
        finally:
            self.wall_s = time.perf_counter() - start

    def _write_label_info(self, message: RawMessage, bag: OutputBag) -> None:
        predictor = self.predictor
        threshold = getattr(predictor.postprocess_config, "score_threshold", 0.0)
        bag.write(f"{self.node_topic}/label_info", message.log_ns,
                  label_info(predictor.label_space, Header.from_stamp_ns(cdr_stamp(message.data)),
                             threshold=threshold))

    def _batch(self, batch: list[tuple], bag: OutputBag) -> None:
        """Decode the frames (an undecodable one is logged as rejected), predict the rest as
        one batch, record and write each frame's outputs."""
        decoded = []
        for message, msgtype, log, prefix in batch:
            stamp = cdr_stamp(message.data)
            try:
                rgb, header = decode_camera(message.data, msgtype)
            except ImageDecodeError as exc:
                log.add(stamp, message.log_ns, rejected=exc.cause)
                continue
            decoded.append((message, log, prefix, rgb, header, stamp))
        if not decoded:
            return
        sent = time.perf_counter()
        records = [log.add(stamp, message.log_ns, sent_s=sent) for message, log, _, _, _, stamp in decoded]
        predictor = self.predictor
        results = predictor.predict_batch([d[3] for d in decoded])
        model_ms = predictor.last_timings.model_ms
        for (message, log, prefix, rgb, header, _), record, result, low_res in zip(
                decoded, records, results, predictor.last_model_results):
            outputs = dict(output_messages(result, rgb, header, which=RECORDED_OUTPUTS,
                                           label_space=predictor.label_space, low_res=low_res,
                                           overlay_alpha=self.overlay_alpha))
            log.output(log.primary, record.stamp_ns, time.perf_counter(), model_ms=model_ms)
            for name, data in outputs.items():
                if name != log.primary:
                    log.output(name, record.stamp_ns, time.perf_counter())
                bag.write(f"{prefix}/{name}", message.log_ns, data)

    def info(self) -> dict:
        """What ran: model, backend, device, input size."""
        p = self.predictor
        if p is None:
            return {"mode": self.mode}
        return {"mode": self.mode, "model": p.kind, "weights": str(self.config.weights), "backend": p.backend_name,
                "backend_requested": p.backend_choice.requested, "precision": p.precision,
                "device": str(p.device), "provider": p.provider, "input_size": list(p.input_size),
                "model_time_source": "Predictor timings (per frame)", "wall_s": self.wall_s}

    def close(self) -> None:
        if self.predictor is not None:
            self.predictor.close()
