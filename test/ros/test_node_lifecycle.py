"""Lifecycle transitions over the node's services, and configure failures that leave the
node alive (missing or corrupt weights)."""
from __future__ import annotations

import shutil
import threading
import time

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetAvailableTransitions, GetState
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from ros_helpers import Probe, camera_image, make_node, running

pytestmark = pytest.mark.ros


class LifecycleClient:
    def __init__(self, probe_node, spinner, name):
        self.spinner = spinner
        self.change = probe_node.create_client(ChangeState, f"/{name}/change_state")
        self.get = probe_node.create_client(GetState, f"/{name}/get_state")
        self.available = probe_node.create_client(GetAvailableTransitions, f"/{name}/get_available_transitions")
        assert self.change.wait_for_service(timeout_sec=30) and self.get.wait_for_service(timeout_sec=30)
        assert self.available.wait_for_service(timeout_sec=30)

    def transition(self, transition_id: int) -> bool:
        request = ChangeState.Request()
        request.transition.id = transition_id
        return self.spinner.future(self.change.call_async(request)).success

    def state(self) -> int:
        return self.spinner.future(self.get.call_async(GetState.Request())).current_state.id

    def transitions(self) -> set[str]:
        """Labels of the transitions the node offers now (what `ros2 lifecycle list` shows)."""
        response = self.spinner.future(self.available.call_async(GetAvailableTransitions.Request()))
        return {t.transition.label for t in response.available_transitions}


def test_transitions_load_subscribe_pause_and_free(ros_context, spinner, tiny_weights):
    name, topic = "lifecycle_under_test", "/lifecycle_test/image"
    node = make_node(ros_context, tiny_weights["ciae"], name=name, topic=topic, autostart=False,
                     **{"qos.reliability": "reliable"})
    probe = Probe(ros_context, spinner, name=name, topic=topic)
    with running(spinner, node, probe.node):
        client = LifecycleClient(probe.node, spinner, name)
        assert client.state() == State.PRIMARY_STATE_UNCONFIGURED and node.predictor is None

        assert client.transition(Transition.TRANSITION_CONFIGURE)
        assert client.state() == State.PRIMARY_STATE_INACTIVE
        assert node.predictor is not None and node.input_subscription is None

        assert client.transition(Transition.TRANSITION_ACTIVATE)
        assert client.state() == State.PRIMARY_STATE_ACTIVE
        probe.connect(node)
        probe.send(camera_image(1), outputs=("panoptic", "detections"))

        assert client.transition(Transition.TRANSITION_DEACTIVATE)
        assert client.state() == State.PRIMARY_STATE_INACTIVE
        assert node.input_subscription is None and node.predictor is not None
        spinner.until(lambda: probe.pub.get_subscription_count() == 0, what="the input subscription to go")

        assert client.transition(Transition.TRANSITION_CLEANUP)
        assert client.state() == State.PRIMARY_STATE_UNCONFIGURED and node.predictor is None
        spinner.until(lambda: node.count_publishers(f"/{name}/panoptic") == 0, what="the publishers to go")

        # configure-time parameters may change while unconfigured, and apply on configure
        assert node.set_parameters([Parameter("input_size", value=[96, 128])])[0].successful
        assert client.transition(Transition.TRANSITION_CONFIGURE)
        assert node.predictor.input_size == (96, 128)
        assert client.transition(Transition.TRANSITION_ACTIVATE)
        probe.connect(node)
        probe.send(camera_image(2), outputs=("panoptic",))
        assert client.transition(Transition.TRANSITION_ACTIVE_SHUTDOWN)
        assert client.state() == State.PRIMARY_STATE_FINALIZED and node.predictor is None


def _error_status(spinner, probe_node, name):
    seen = []
    sub = probe_node.create_subscription(DiagnosticArray, "/diagnostics",
                                         lambda m: seen.extend(s for s in m.status if s.name.startswith(name)), 10)
    spinner.until(lambda: seen, what="diagnostics")
    probe_node.destroy_subscription(sub)
    return seen[-1]


@pytest.mark.parametrize("damage", ["missing", "truncated", "foreign_json"])
def test_bad_weights_fail_configure_and_the_node_stays_up(ros_context, spinner, tiny_weights, tmp_path, damage):
    source = tiny_weights["ciae"]
    stem = tmp_path / "broken"
    if damage != "missing":
        shutil.copy(source.with_name(source.name + ".json"), stem.with_name("broken.json"))
        data = source.with_name(source.name + ".safetensors").read_bytes()
        stem.with_name("broken.safetensors").write_bytes(data[: len(data) // 2] if damage == "truncated" else data)
    if damage == "foreign_json":
        stem.with_name("broken.json").write_text('{"format": "something else"}')
    name = f"broken_weights_{damage}"
    node = make_node(ros_context, stem, name=name)
    probe_node = rclpy.create_node(f"probe_{name}", context=ros_context)
    with running(spinner, node, probe_node):
        assert node.state_label == "unconfigured" and node.predictor is None
        expected = {"missing": "not found", "truncated": "sha256", "foreign_json": "format"}
        assert str(stem) in node.configure_error and expected[damage] in node.configure_error
        status = _error_status(spinner, probe_node, name)
        assert status.level == DiagnosticStatus.ERROR and expected[damage] in status.message
        # what docs/node.md tells the user: from here only configure (again) or shutdown
        assert LifecycleClient(probe_node, spinner, name).transitions() == {"configure", "shutdown"}
        # the node is alive: fix the parameter and configure again
        assert node.set_parameters([Parameter("weights", value=str(source))])[0].successful
        assert node.autostart() and node.state_label == "active" and node.configure_error == ""


def test_a_checkpoint_of_the_other_model_is_refused(ros_context, spinner, tiny_weights):
    with running(spinner, make_node(ros_context, tiny_weights["ciae"], name="wrong_kind_node", model="panonet")) \
            as (node,):
        assert node.state_label == "unconfigured"
        assert "holds a ciae model, but model 'panonet'" in node.configure_error


def test_deactivate_and_cleanup_wait_for_the_frame_in_flight(ros_context, spinner, tiny_weights):
    # The frame in flight is held inside predict() until deactivation has begun (its first
    # step removes the input subscription, which the probe's publisher sees): so the frame
    # is still running when deactivate starts, by construction rather than by timing.
    name, topic = "slow_frame_node", "/slow_frame_test/image"
    node = make_node(ros_context, tiny_weights["ciae"], name=name, topic=topic, **{"qos.reliability": "reliable"})
    probe = Probe(ros_context, spinner, name=name, topic=topic)
    entered = threading.Event()
    predict = node.predictor.predict

    def held_predict(*args, **kwargs):
        entered.set()
        deadline = time.monotonic() + 30
        while probe.pub.get_subscription_count() > 0 and time.monotonic() < deadline:
            time.sleep(0.005)  # waiting for a condition, not for time to pass
        return predict(*args, **kwargs)

    node.predictor.predict = held_predict
    with running(spinner, node, probe.node):
        probe.connect(node)
        probe.pub.publish(camera_image(9))
        spinner.until(entered.is_set, what="processing of the frame to start")
        assert node.stats.processed == 0  # held until deactivate begins
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        # the transition returned after the frame finished, with every output published
        assert (node.stats.processed, node.stats.errors) == (1, 0)
        spinner.until(lambda: all(9 in probe.got[o] for o in ("panoptic", "overlay", "detections")),
                      what="the outputs of the frame in flight")
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        assert node.predictor is None and node.stats.errors == 0
