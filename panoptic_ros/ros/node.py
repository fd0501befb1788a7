"""The panoptic segmentation lifecycle node (executable ``panoptic_node``).

Lifecycle: *configure* loads the model (a missing or corrupt checkpoint fails the
transition with the reason logged and shown in diagnostics), *activate* subscribes and
starts the inference thread and publishes ``~/label_info``, *deactivate* unsubscribes,
waits for the frame in flight and releases cached GPU memory, *cleanup* frees the model.
With ``autostart`` (default) the node configures and activates itself.

Data flow: the subscription takes messages serialised (``raw=True``) and the callback only
stores the bytes in a one-frame slot (:class:`~panoptic_ros.ros.pipeline.LatestSlot`); a
worker thread takes the newest frame, deserialises and decodes it, runs the
:class:`~panoptic_ros.inference.predictor.Predictor` and publishes every output that has a
subscriber, with the input's header. Frames replaced in the slot are never deserialised,
which keeps the executor thread cheap when the camera outpaces the model. Malformed
frames are counted by cause, logged once per cause every 10 s, and skipped.
"""
from __future__ import annotations

import argparse
import os
import sys
import textwrap
import threading
import time

import cv2
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
from panoptic_ros.checkpoint import CheckpointError
from panoptic_ros.config import ConfigError
from panoptic_ros.inference.backends import BackendError
from panoptic_ros.inference.predictor import Predictor
from panoptic_ros.ros import params
from panoptic_ros.ros.diagnostics import diagnostic_array, health
from panoptic_ros.ros.fastdds_profile import apply_output_memory_profile, remove_output_memory_profile
from panoptic_ros.ros.lifecycle import answer_invalid_transitions
from panoptic_ros.ros.memory import AfterLargerFrames, keep_freed_buffers_mapped
from panoptic_ros.ros.pipeline import Frame, FrameStats, LatestSlot, Worker
from panoptic_ros.ros.raw_publish import RawPublisher
from panoptic_ros.serialized.image import ImageDecodeError, ImageMessage, camera_rgb8, check_frame, from_serialized

LOG_PERIOD_S = 10.0
EXIT_BAD_INPUT = 2  # as argparse and the other console scripts
_MESSAGE_CLASSES = {messages.IMAGE_TYPE: Image, messages.DETECTIONS_TYPE: Detection2DArray}
_LATCHED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)


class PanopticNode(LifecycleNode):
    """Panoptic segmentation of camera images; see the module docstring.

    Args:
        node_name: the node's name.
        record_starts: keep when each recent frame arrived and started
            (``stats.start_records()``), for tests and benchmarks of the hand-over.
        **kwargs: for rclpy's ``LifecycleNode`` (context, cli_args, parameter_overrides).
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
        self.stats = FrameStats(record_starts=record_starts)
        self.predictor: Predictor | None = None
        self.state_label = "unconfigured"
        self.configure_error = ""
        self._enabled = True
        self._gate = threading.Lock()  # held while a frame is processed (pause waits on it)
        self._slot: LatestSlot[Frame] | None = None
        self._worker: Worker | None = None
        self._subscription = None
        self._input_type: type = Image
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
        """The camera subscription while active, else None."""
        return self._subscription

    @property
    def output_publishers(self) -> dict:
        """``~/<name>`` -> publisher while configured (empty otherwise)."""
        return dict(self._pubs)

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
        self.get_logger().info(f"loaded {p.kind} from {config.weights}: {p.backend_name} on {p.provider}, "
                               f"input_size [{p.input_size[0]}, {p.input_size[1]}]")  # [H, W], as in configs
        # Reliable with a few samples of history: a reliable subscriber that has not yet
        # acknowledged one output can still get it repaired after the next is published.
        output_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self._io.output_depth,
                                reliability=ReliabilityPolicy.RELIABLE)
        for name, msgtype in messages.OUTPUT_TYPES.items():
            self._pubs[name] = self.create_lifecycle_publisher(_MESSAGE_CLASSES[msgtype], f"~/{name}", output_qos)
        self._raw_pubs = {name: RawPublisher(self._pubs[name]) for name in messages.OUTPUT_TYPES}
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
        self._slot = LatestSlot(on_put=self.stats.on_slot_put, on_take=self.stats.on_slot_take)
        self._worker = Worker(self._slot, self._process, on_error=self._on_worker_error)
        self._worker.start()
        self._input_type, topic = (CompressedImage, "image/compressed") if io.compressed else (Image, "image")
        self._subscription = self.create_subscription(self._input_type, topic, self._on_image, qos, raw=True)
        self._publish_label_info()
        self.state_label = "active"
        self.get_logger().info(f"active: listening on {self._subscription.topic_name} ({io.reliability}, "
                               f"depth {io.depth})")
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
        if self._subscription is not None:
            self.destroy_subscription(self._subscription)
            self._subscription = None
        if self._slot is not None and self._slot.close() is not None:
            self.stats.on_discarded()
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

    def _on_image(self, msg: bytes) -> None:
        slot = self._slot
        if slot is None:
            return
        if not self._enabled:
            self.stats.on_paused()
            return
        now = time.monotonic()
        frame = Frame(msg, now, self.stats.on_received(now))
        if not self._plausible(msg):  # rejected at once: a bomb must not take a good frame's place
            return
        lost = slot.put(frame)
        if lost is frame:  # the slot closed meanwhile (deactivate)
            self.stats.on_discarded()
        elif lost is not None:
            self.stats.on_dropped()

    def _plausible(self, msg: bytes) -> bool:
        """Run the checks that need no decoding (header, sizes, data length); a frame that
        fails them is counted as rejected and logged here. Microseconds per frame."""
        try:
            check_frame(from_serialized(msg, compressed=self._input_type is CompressedImage),
                        max_side=self._io.max_image_side, max_pixels=self._io.max_image_pixels)
        except ImageDecodeError as exc:
            self._reject(exc)
            return False
        return True

    def _reject(self, exc: ImageDecodeError) -> None:
        count = self.stats.on_rejected(exc.cause)
        self._log_throttled(exc.cause, f"skipping frame ({exc.cause}, {count} so far): {exc}")

    def _process(self, frame: Frame) -> None:
        with self._gate:
            if not self._enabled or self.predictor is None:  # paused after it was taken
                self.stats.on_discarded()
                return
            started = time.monotonic()
            try:
                msg = from_serialized(frame.msg, compressed=self._input_type is CompressedImage)
                rgb, size = camera_rgb8(msg, max_side=self._io.max_image_side, max_pixels=self._io.max_image_pixels,
                                        min_size=self.predictor.input_size)
            except ImageDecodeError as exc:  # found by the decoder (or limits changed meanwhile)
                self._reject(exc)
                return
            wanted = self._wanted_outputs()
            # ~/panoptic is written by the predictor straight into its message's pixels.
            panoptic = ImageMessage(*size, "32SC1", msg.header) if "panoptic" in wanted else None
            result = self.predictor.predict(rgb, panoptic_out=None if panoptic is None else panoptic.pixels,
                                            output_size=size)
            timings = self.predictor.last_timings
            if rgb.shape[:2] != size and "overlay" in wanted:  # decoded at reduced scale
                rgb = cv2.resize(rgb, size[::-1], interpolation=cv2.INTER_LINEAR)
            self._publish(msg.header, rgb, result, wanted, panoptic)
            del rgb, result, panoptic
            self._memory.after_frame(size[0] * size[1])
            done = time.monotonic()
            self.stats.on_published(frame, done, timings.model_ms, (done - started) * 1e3 - timings.total_ms)

    def _wanted_outputs(self) -> list[str]:
        """The enabled outputs that have a subscriber, in :data:`messages.OUTPUT_TYPES` order."""
        return [name for name in messages.OUTPUT_TYPES
                if getattr(self._io, f"publish_{name}") and self._pubs[name].get_subscription_count() > 0]

    def _publish(self, header, rgb, result, wanted: list[str], panoptic: ImageMessage | None) -> None:
        """Publish the ``wanted`` outputs, each as soon as it is built (``~/panoptic`` is
        ``panoptic``, already holding ``result``'s id map)."""
        io, pubs = self._io, self._raw_pubs
        if panoptic is not None:
            pubs["panoptic"].publish(panoptic.data)
        outputs = messages.output_messages(result, rgb, header, which=[n for n in wanted if n != "panoptic"],
                                           label_space=self.predictor.label_space,
                                           low_res=self.predictor.last_model_result,
                                           overlay_alpha=io.overlay_alpha, stuff_detections=io.stuff_detections)
        for name, data in outputs:
            pubs[name].publish(data)

    def _on_worker_error(self, exc: BaseException) -> None:
        self.stats.on_error()
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
            if slot is not None and slot.clear() is not None:
                self.stats.on_discarded()
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
        values = {"state": self.state_label, "enabled": self._enabled, **self.stats.snapshot()}
        p = self.predictor
        if p is not None:
            values.update(model=p.kind, backend=p.backend_name, device=str(p.device), provider=p.provider)
        level, message = health(values, configure_error=self.configure_error, state=self.state_label,
                                enabled=self._enabled)
        header = Header(stamp=self.get_clock().now().to_msg())
        self._diag_pub.publish(diagnostic_array(
            header, name=f"{self.get_name()}: panoptic segmentation", hardware_id=values.get("device", "none"),
            level=level, message=message, values=values))


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
