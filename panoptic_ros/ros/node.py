"""The panoptic segmentation lifecycle node (executable ``panoptic_node``).

Lifecycle: *configure* loads the model (a missing or corrupt checkpoint fails the
transition with the reason logged and shown in diagnostics), *activate* subscribes and
starts the inference thread and publishes ``~/label_info``, *deactivate* unsubscribes,
waits for the frame in flight and releases cached GPU memory, *cleanup* frees the model.
With ``autostart`` (default) the node configures and activates itself.

Cameras: one by default (input ``image``, outputs ``~/panoptic``, ...); the ``cameras``
parameter names several (:mod:`panoptic_ros.cameras`), each with its own input topic,
outputs under ``~/<camera>/`` and statistics; ``~/label_info`` is one per node.

Data flow: each subscription takes messages serialised (``raw=True``) and the callback
only stores the bytes in its camera's one-frame slot
(:class:`~panoptic_ros.ros.pipeline.KeyedLatestSlot`); a worker thread takes the newest
frame of every camera that has one, deserialises and decodes them, runs them through the
:class:`~panoptic_ros.inference.predictor.Predictor` as one batch and publishes every
output that has a subscriber, each with its input's header. Frames replaced in a slot
are never deserialised, which keeps the executor thread cheap when the cameras outpace
the model. Malformed frames are counted by camera and cause, logged once per cause every
10 s, and skipped; they never hold up the other cameras of the batch.
"""
from __future__ import annotations

import argparse
import os
import sys
import textwrap
import threading
import time
from collections import Counter

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.utilities import remove_ros_args
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from std_srvs.srv import SetBool
from vision_msgs.msg import Detection2DArray, LabelInfo

from panoptic_ros import outputs as messages
from panoptic_ros.cameras import CameraInput, parse_cameras
from panoptic_ros.checkpoint import CheckpointError
from panoptic_ros.config import ConfigError
from panoptic_ros.inference.backends import BackendError
from panoptic_ros.inference.predictor import Predictor
from panoptic_ros.ros import params
from panoptic_ros.ros.diagnostics import camera_statuses, diagnostic_array, health
from panoptic_ros.ros.fastdds_profile import apply_output_memory_profile, remove_output_memory_profile
from panoptic_ros.ros.lifecycle import answer_invalid_transitions
from panoptic_ros.ros.memory import AfterLargerFrames, keep_freed_buffers_mapped
from panoptic_ros.ros.frames import CameraFrames
from panoptic_ros.ros.pipeline import Frame, FrameStats, KeyedLatestSlot, Worker, merged_snapshot
from panoptic_ros.ros.raw_publish import RawPublisher

LOG_PERIOD_S = 10.0
EXIT_BAD_INPUT = 2  # as argparse and the other console scripts
_MESSAGE_CLASSES = {messages.IMAGE_TYPE: Image, messages.DETECTIONS_TYPE: Detection2DArray}
_LATCHED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)


class PanopticNode(CameraFrames, LifecycleNode):
    """Panoptic segmentation of camera images; see the module docstring.

    Args:
        node_name: the node's name.
        record_starts: keep when each recent frame arrived and started
            (``stats.start_records()``), for tests and benchmarks of the hand-over.
        **kwargs: for rclpy's ``LifecycleNode`` (context, cli_args, parameter_overrides).

    Attributes:
        camera_stats: camera name -> its :class:`FrameStats` ("" for the unnamed camera).
        stats: the first camera's (the only one's, by default).
        batch_sizes: how many inference runs had each batch size.
    """

    def __init__(self, node_name: str = "panoptic_node", *, record_starts: bool = False, **kwargs):
        super().__init__(node_name, **kwargs)
        params.declare_parameters(self)
        self._io = params.node_settings(params.parameter_values(self))
        self._kept_mapped = self._io.keep_freed_buffers and keep_freed_buffers_mapped()
        if self._io.keep_freed_buffers and not self._kept_mapped:
            self.get_logger().warning("memory.keep_freed_buffers: glibc mallopt is not available here; ignored")
        self._memory = AfterLargerFrames(1, self._kept_mapped)  # history depth set on configure
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._after_set_parameters)
        self.camera_stats = {c.name: FrameStats(record_starts=record_starts) for c in self._camera_inputs()}
        self.stats = next(iter(self.camera_stats.values()))
        self.batch_sizes: Counter[int] = Counter()  # frames per inference run -> runs
        self.predictor: Predictor | None = None
        self.state_label = "unconfigured"
        self.configure_error = ""
        self._enabled = True
        self._gate = threading.Lock()  # held while a frame is processed (pause waits on it)
        self._slot: KeyedLatestSlot[Frame] | None = None
        self._worker: Worker | None = None
        self._inputs: dict[str, CameraInput] = {}
        self._camera_subscriptions: dict = {}  # camera name -> input subscription while active
        self._pubs: dict = {}
        self._raw_pubs: dict[str, RawPublisher] = {}  # the output publishers, publishing CDR bytes
        self._last_logged: dict[str, float] = {}
        self._validated: tuple[dict, object] | None = None  # post-processing changes checked, not yet applied
        answer_invalid_transitions(self)
        self.create_service(SetBool, "~/enable", self._on_enable)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(self._io.diagnostics_period, self._publish_diagnostics)
        if self._io.autostart:
            self.autostart()

    @property
    def input_subscription(self):
        """The (first) camera's subscription while active, else None."""
        return next(iter(self._camera_subscriptions.values()), None)

    @property
    def input_subscriptions(self) -> dict:
        """camera name -> its subscription while active (empty otherwise)."""
        return dict(self._camera_subscriptions)

    @property
    def output_publishers(self) -> dict:
        """``<name>`` (one camera) or ``<camera>/<name>`` -> publisher while configured, and
        ``label_info`` (empty otherwise)."""
        return dict(self._pubs)

    def _camera_inputs(self) -> tuple[CameraInput, ...]:
        return parse_cameras(self._io.cameras, compressed=self._io.compressed)

    # ---- lifecycle ------------------------------------------------------------------

    def autostart(self) -> bool:
        """Configure and activate; on failure stay alive (unconfigured) with the reason logged."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return False
        return self.trigger_activate() == TransitionCallbackReturn.SUCCESS

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        values = params.parameter_values(self)
        self.configure_error = ""
        try:
            config = params.predictor_config(values)
            self.predictor = Predictor.from_config(config)
        except (CheckpointError, ConfigError, BackendError) as exc:
            return self._configure_failed(str(exc))
        except Exception as exc:  # noqa: BLE001 - anything else loading a model: report it, stay alive
            return self._configure_failed(f"{type(exc).__name__}: {exc}")
        p = self.predictor
        self.get_logger().info(f"loaded {p.kind} from {config.weights}: backend {p.backend_choice.describe()} on "
                               f"{p.provider}, {p.precision}, "
                               f"input_size [{p.input_size[0]}, {p.input_size[1]}]")  # [H, W], as in configs
        # Reliable with a few samples of history: a reliable subscriber that has not yet
        # acknowledged one output can still get it repaired after the next is published.
        output_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self._io.output_depth,
                                reliability=ReliabilityPolicy.RELIABLE)
        for camera in self._camera_inputs():
            for name, msgtype in messages.OUTPUT_TYPES.items():
                self._pubs[camera.output(name)] = self.create_lifecycle_publisher(
                    _MESSAGE_CLASSES[msgtype], camera.output_topic(name), output_qos)
        self._raw_pubs = {key: RawPublisher(pub) for key, pub in self._pubs.items()}
        self._memory = AfterLargerFrames(self._io.output_depth, self._kept_mapped)
        self._pubs["label_info"] = self.create_lifecycle_publisher(LabelInfo, "~/label_info", _LATCHED_QOS)
        self.state_label = "inactive"
        return super().on_configure(state)

    def _configure_failed(self, reason: str) -> TransitionCallbackReturn:
        self.predictor = None
        self.configure_error = reason or "unknown error"
        self.get_logger().error(f"configure failed: {self.configure_error}")
        return TransitionCallbackReturn.FAILURE

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # activates the lifecycle publishers
        io = self._io
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=io.depth,
                         reliability=ReliabilityPolicy.BEST_EFFORT if io.reliability == "best_effort"
                         else ReliabilityPolicy.RELIABLE)
        stats = self.camera_stats
        self._slot = KeyedLatestSlot(on_put=lambda name, frame: stats[name].on_slot_put(frame),
                                     on_take=lambda name, frame: stats[name].on_slot_take(frame))
        self._worker = Worker(self._slot, self._process, on_error=self._on_worker_error)
        self._worker.start()
        self._inputs = {c.name: c for c in self._camera_inputs()}
        for name, camera in self._inputs.items():
            self._camera_subscriptions[name] = self.create_subscription(
                CompressedImage if camera.compressed else Image, camera.topic,
                lambda msg, name=name: self._on_image(name, msg), qos, raw=True)
        self._publish_label_info()
        self.state_label = "active"
        topics = ", ".join(s.topic_name for s in self._camera_subscriptions.values())
        self.get_logger().info(f"active: listening on {topics} ({io.reliability}, depth {io.depth})")
        return result

    def _publish_label_info(self) -> None:
        threshold = getattr(self.predictor.postprocess_config, "score_threshold", 0.0)
        header = Header(stamp=self.get_clock().now().to_msg())
        self._pubs["label_info"].publish(messages.label_info(self.predictor.label_space, header, threshold=threshold))

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_pipeline()
        if self.predictor is not None:
            self.predictor.release_cache()
        self.state_label = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.state_label = "unconfigured"
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.state_label = "finalized"
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.state_label = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def _stop_pipeline(self) -> None:
        for subscription in self._camera_subscriptions.values():
            self.destroy_subscription(subscription)
        self._camera_subscriptions = {}
        if self._slot is not None:
            self._discard(self._slot.close())
        if self._worker is not None:
            self._worker.stop(on_wait=lambda waited: self.get_logger().warning(
                f"still waiting for the frame in flight to finish ({waited:.0f} s)"))
            self._worker = None
        self._slot = None

    def _release(self) -> None:
        """Stop everything and free the model (cleanup, shutdown, errors)."""
        self._stop_pipeline()
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self._pubs, self._raw_pubs = {}, {}
        if self.predictor is not None:
            self.predictor.close()
            self.predictor = None

    def destroy_node(self) -> None:
        self._release()
        super().destroy_node()

    # ---- frames ---------------------------------------------------------------------

    def _on_worker_error(self, exc: BaseException) -> None:
        """An exception that escaped :meth:`_process` (it counts its own frames' errors)."""
        self.stats.on_error()
        self._log_error(exc)

    def _log_error(self, exc: BaseException) -> None:
        self._log_throttled(f"error:{type(exc).__name__}", f"inference failed on a frame: "
                                                           f"{type(exc).__name__}: {exc}")

    def _log_throttled(self, key: str, text: str) -> None:
        now = time.monotonic()
        if now - self._last_logged.get(key, -LOG_PERIOD_S) >= LOG_PERIOD_S:
            self._last_logged[key] = now
            self.get_logger().warning(text)

    # ---- services, parameters, diagnostics --------------------------------------------

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        self._enabled = bool(request.data)
        if not self._enabled:
            slot = self._slot
            if slot is not None:
                self._discard(slot.clear())
            with self._gate:  # wait for the frame in flight: nothing is published after we answer
                pass
        response.success = True
        response.message = "inference resumed" if self._enabled else "inference paused"
        self.get_logger().info(response.message)
        return response

    def _on_set_parameters(self, parameters: list) -> SetParametersResult:
        changes = {p.name: p.value for p in parameters}
        reason = params.check_changes(params.parameter_values(self), changes,
                                      configured=self.state_label in ("inactive", "active"))
        self._validated = None
        if reason is None and self.predictor is not None:
            overrides = self._postprocess_changes(changes)
            if overrides:
                # Trying the settings runs the post-processing on the last frame's outputs:
                # done once here; the post-set callback applies this very config.
                try:
                    self._validated = (overrides, self.predictor.check_postprocess(**overrides))
                except ConfigError as exc:
                    reason = str(exc)
        return SetParametersResult(successful=reason is None, reason=reason or "")

    def _after_set_parameters(self, parameters: list) -> None:
        self._io = params.node_settings(params.parameter_values(self))
        validated, self._validated = self._validated, None
        if self.predictor is not None:
            changes = self._postprocess_changes({p.name: p.value for p in parameters})
            if changes:
                if validated is None or validated[0] != changes:  # not seen by _on_set_parameters
                    validated = (changes, self.predictor.check_postprocess(**changes))
                self.predictor.set_postprocess(validated[1])
                self.get_logger().info(f"post-processing now {self.predictor.postprocess_config}")
                if "score_threshold" in changes and self.state_label == "active":
                    self._publish_label_info()  # LabelInfo carries the threshold

    def _postprocess_changes(self, changes: dict) -> dict:
        return params.postprocess_overrides(changes, self.predictor.kind)

    def _publish_diagnostics(self) -> None:
        snapshots = {name: stats.snapshot() for name, stats in self.camera_stats.items()}
        merged = merged_snapshot(snapshots)
        values = {"state": self.state_label, "enabled": self._enabled, **merged}
        p = self.predictor
        if p is not None:
            values.update(model=p.kind, backend=p.backend_name, backend_requested=p.backend_choice.requested,
                          backend_reason=p.backend_choice.reason, precision=p.precision, device=str(p.device),
                          provider=p.provider)
        level, message = health(values, configure_error=self.configure_error, state=self.state_label,
                                enabled=self._enabled)
        header = Header(stamp=self.get_clock().now().to_msg())
        hardware_id = values.get("device", "none")
        self._diag_pub.publish(diagnostic_array(
            header, name=f"{self.get_name()}: panoptic segmentation", hardware_id=hardware_id,
            level=level, message=message, values=values,
            extra=camera_statuses(snapshots, node_name=self.get_name(), hardware_id=hardware_id)))


def _parse_command_line(argv: list[str]) -> None:
    """Answer ``--help`` and refuse stray arguments (everything else is ``--ros-args``)."""
    usage = ("Configure it with ROS arguments, e.g. panoptic_node --ros-args --params-file config/panonet.yaml "
             "-r image:=/camera/image_raw -p device:=cpu. Parameters (also: ros2 param describe /panoptic_node "
             "<name>):")
    parser = argparse.ArgumentParser(
        prog="panoptic_node", description="Panoptic segmentation lifecycle node (PanoNet or CIAE).",
        epilog=f"{textwrap.fill(usage, 100)}\n{params.parameter_help()}",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(remove_ros_args(argv)[1:])


def main(args: list[str] | None = None) -> int:
    """``panoptic_node [--ros-args ...]``: run the node until Ctrl-C."""
    argv = sys.argv if args is None else ["panoptic_node", *args]
    # Fast DDS sends in the publishing thread by default: the inference thread would wait
    # while each multi-megabyte output is cut into fragments for every subscriber (measured
    # 6-7 ms per 8 MB ~/panoptic to a subscriber in another process, 3-5 ms asynchronous).
    # An explicit setting in the environment wins.
    os.environ.setdefault("RMW_FASTRTPS_PUBLICATION_MODE", "ASYNCHRONOUS")
    profile, profile_note = apply_output_memory_profile()  # after the line above: it reads the mode
    try:
        return _run(argv, profile_note)
    finally:
        remove_output_memory_profile(profile)


def _run(argv: list[str], profile_note: str) -> int:
    """Start rclpy and the node, spin until shutdown; ``profile_note`` goes to the log."""
    try:
        _parse_command_line(argv)
        rclpy.init(args=argv)
        node = PanopticNode()
    except Exception as exc:  # malformed ROS arguments or params file, parameter values/types it refuses
        print(f"panoptic_node: {type(exc).__name__}: {' '.join(str(exc).split())}", file=sys.stderr)
        rclpy.try_shutdown()
        return EXIT_BAD_INPUT
    node.get_logger().info(profile_note)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while rclpy.ok():
            try:
                executor.spin()
            except RuntimeError as exc:
                # rcl errors (rclpy's RCLError is a RuntimeError; rclpy has no public name
                # for it). Invalid transitions are answered (answer_invalid_transitions); any
                # other rcl error raised in a callback must not end the node either.
                node.get_logger().error(f"request failed: {exc}")
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
