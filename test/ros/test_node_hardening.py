"""Over real DDS: every lifecycle request is answered (invalid ones with success=false, the
state kept), and the frame counters add up after pauses and deactivations."""
from __future__ import annotations

import array

import cv2
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Header
from std_srvs.srv import SetBool

from ros_helpers import Probe, camera_image, make_node, running

pytestmark = pytest.mark.ros
ANSWER_S = 10.0  # a request that is not answered at all fails here instead of hanging


def _change(spinner, client, transition_id: int = 0, label: str = "") -> bool:
    request = ChangeState.Request()
    request.transition.id, request.transition.label = transition_id, label
    return spinner.future(client.call_async(request), timeout=ANSWER_S).success


def _state(spinner, client) -> int:
    return spinner.future(client.call_async(GetState.Request()), timeout=ANSWER_S).current_state.id


# state -> transitions that state does not have (by id, and one by label)
INVALID = {
    State.PRIMARY_STATE_ACTIVE: [(Transition.TRANSITION_CONFIGURE, ""), (Transition.TRANSITION_CLEANUP, ""),
                                 (Transition.TRANSITION_UNCONFIGURED_SHUTDOWN, ""),
                                 (Transition.TRANSITION_ACTIVATE, ""), (0, "configure"), (0, "no_such_label"),
                                 (99, "")],
    State.PRIMARY_STATE_INACTIVE: [(Transition.TRANSITION_DEACTIVATE, ""), (Transition.TRANSITION_CONFIGURE, ""),
                                   (Transition.TRANSITION_ACTIVE_SHUTDOWN, "")],
    State.PRIMARY_STATE_UNCONFIGURED: [(Transition.TRANSITION_ACTIVATE, ""), (Transition.TRANSITION_CLEANUP, ""),
                                       (Transition.TRANSITION_DEACTIVATE, ""), (0, "activate")],
}


def test_invalid_transitions_are_answered_false_and_the_state_is_kept(ros_context, spinner, tiny_weights):
    name = "invalid_transitions_node"
    node = make_node(ros_context, tiny_weights["ciae"], name=name, topic="/invalid_transitions/image")
    probe = Probe(ros_context, spinner, name=name, topic="/invalid_transitions/image")
    with running(spinner, node, probe.node):
        change = probe.node.create_client(ChangeState, f"/{name}/change_state")
        get = probe.node.create_client(GetState, f"/{name}/get_state")
        assert change.wait_for_service(timeout_sec=30) and get.wait_for_service(timeout_sec=30)
        # active (autostart) -> inactive -> unconfigured, trying every invalid request on the way
        for state, valid in ((State.PRIMARY_STATE_ACTIVE, Transition.TRANSITION_DEACTIVATE),
                             (State.PRIMARY_STATE_INACTIVE, Transition.TRANSITION_CLEANUP),
                             (State.PRIMARY_STATE_UNCONFIGURED, Transition.TRANSITION_CONFIGURE)):
            assert _state(spinner, get) == state
            for transition_id, label in INVALID[state]:
                assert _change(spinner, change, transition_id, label) is False, (state, transition_id, label)
                assert _state(spinner, get) == state
            assert _change(spinner, change, valid) is True  # the node still takes valid ones
        assert _change(spinner, change, label="activate") is True
        assert _state(spinner, get) == State.PRIMARY_STATE_ACTIVE and node.state_label == "active"
        probe.connect(node)
        probe.send(camera_image(5), outputs=("panoptic",))


def test_unknown_providers_and_pickled_weights_are_refused_with_the_reason(ros_context, spinner, tiny_weights,
                                                                         tmp_path):
    node = make_node(ros_context, tiny_weights["ciae"], name="refusing_node", autostart=False)
    with running(spinner, node):
        result = node.set_parameters([Parameter("onnx.providers", value=["cpu", "tpu"])])[0]
        assert not result.successful and "unknown ONNX Runtime provider 'tpu'" in result.reason
        assert node.set_parameters([Parameter("onnx.providers", value=["CUDAExecutionProvider", "cpu"])])[0].successful
        evil = tmp_path / "evil.pt"
        evil.write_bytes(b"\x80\x04\x95" + bytes(40))  # a pickle header
        assert node.set_parameters([Parameter("weights", value=str(evil))])[0].successful
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node.configure_error.startswith(f"{evil}: a pickle / torch.save file; weights must be")


def _counters_add_up(values: dict) -> bool:
    parts = ("frames_processed", "frames_dropped", "frames_rejected", "inference_errors", "frames_discarded")
    return int(values["frames_received"]) == sum(int(values[k]) for k in parts)


def test_counters_add_up_after_pauses_and_deactivations(ros_context, spinner, tiny_weights):
    # a large model input makes one frame slow, so a second one waits in the slot when the
    # pause or the deactivation comes: exactly one frame is discarded by each
    name, topic = "counting_node", "/counting/image"
    node = make_node(ros_context, tiny_weights["ciae"], name=name, topic=topic, record_starts=True,
                     input_size=[384, 768], diagnostics_period=0.1, **{"qos.reliability": "reliable"})
    probe = Probe(ros_context, spinner, name=name, topic=topic)
    diagnostics = []
    probe.node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diagnostics.extend(
        {kv.key: kv.value for kv in s.values} for s in m.status if s.name.startswith(name)), 50)
    enable = probe.node.create_client(SetBool, f"/{name}/enable")
    with running(spinner, node, probe.node):
        assert enable.wait_for_service(timeout_sec=30)
        seq = 0
        for pause in ("enable", "deactivate", "enable"):
            probe.connect(node)
            seq += 2
            started, received = len(node.stats.starts), node.stats.received
            probe.pub.publish(camera_image(seq, height=768, width=1536))
            spinner.until(lambda: len(node.stats.starts) > started, what="the first frame to start")
            probe.pub.publish(camera_image(seq + 1))
            spinner.until(lambda: node.stats.received == received + 2, what="the second frame to arrive")
            discarded = node.stats.discarded
            if pause == "enable":
                assert spinner.future(enable.call_async(SetBool.Request(data=False))).success
                assert node.stats.discarded == discarded + 1
                assert spinner.future(enable.call_async(SetBool.Request(data=True))).success
            else:
                assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
                assert node.stats.discarded == discarded + 1
                assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        probe.connect(node)
        probe.send(camera_image(seq + 2), outputs=("panoptic",))
        spinner.until(lambda: node.stats.processed == 4, what="the last frame to be counted")
        first = len(diagnostics)
        spinner.until(lambda: len(diagnostics) >= first + 3, what="three diagnostics messages")
        for values in diagnostics[first:]:
            assert _counters_add_up(values), values
        last = diagnostics[-1]
        assert (last["frames_received"], last["frames_processed"], last["frames_discarded"]) == ("7", "4", "3")


def test_a_large_jpeg_is_decoded_at_reduced_scale_and_answered_at_the_camera_size(ros_context, spinner,
                                                                                 tiny_weights):
    name, topic = "reduced_decode_node", "/reduced_decode/image"
    node = make_node(ros_context, tiny_weights["ciae"], name=name, topic=topic, compressed=True, input_size=[64, 96],
                     **{"qos.reliability": "reliable"})
    probe = Probe(ros_context, spinner, name=name, topic=f"{topic}/compressed", msg_type=CompressedImage)
    small = np.random.default_rng(11).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    rgb = cv2.resize(small, (512, 384), interpolation=cv2.INTER_CUBIC)
    data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
    header = Header(frame_id="camera")
    header.stamp.sec, header.stamp.nanosec = 300, 7
    msg = CompressedImage(header=header, format="jpeg")
    msg.data = array.array("B", data)
    # independently: libjpeg at 1/4 scale (384x512 -> 96x128, the coarsest keeping 64x96)
    quarter = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_COLOR_4), cv2.COLOR_BGR2RGB)
    assert quarter.shape == (96, 128, 3)
    with running(spinner, node, probe.node):
        probe.connect(node)
        got = probe.send(msg, outputs=("panoptic", "overlay"))
        expected = node.predictor.predict(quarter, output_size=(384, 512)).panoptic
    panoptic = np.frombuffer(bytes(got["panoptic"].data), np.int32).reshape(384, 512)
    assert (got["overlay"].height, got["overlay"].width) == (384, 512)
    np.testing.assert_array_equal(panoptic, expected)
