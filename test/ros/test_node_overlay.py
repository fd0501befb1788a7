"""The node builds ``~/overlay`` only while someone subscribes to it (real rclpy, real DDS)."""
from __future__ import annotations

import pytest
import rclpy
from sensor_msgs.msg import Image

from panoptic_ros import outputs
from ros_helpers import RELIABLE, camera_image, make_node, running

pytestmark = pytest.mark.ros

NAME, TOPIC = "overlay_under_test", "/overlay_test/image"


def test_the_overlay_is_computed_only_while_the_overlay_topic_has_subscribers(ros_context, spinner, tiny_weights,
                                                                                monkeypatch):
    built = []
    real = outputs.overlay_image

    def counted(*args, **kwargs):  # the real overlay, counted
        built.append(kwargs["header"] if "header" in kwargs else args[3])
        return real(*args, **kwargs)

    monkeypatch.setattr(outputs, "overlay_image", counted)
    node = make_node(ros_context, tiny_weights["ciae"], name=NAME, topic=TOPIC, **{"qos.reliability": "reliable"})
    probe = rclpy.create_node("overlay_probe", context=ros_context)
    with running(spinner, node, probe):
        assert node.state_label == "active", node.configure_error
        camera = probe.create_publisher(Image, TOPIC, RELIABLE)
        got: dict[str, list[int]] = {"panoptic": [], "overlay": []}
        probe.create_subscription(Image, f"/{NAME}/panoptic", lambda m: got["panoptic"].append(m.header.stamp.nanosec),
                                  RELIABLE)
        publishers = node.output_publishers
        spinner.until(lambda: camera.get_subscription_count() > 0
                      and publishers["panoptic"].get_subscription_count() > 0, what="discovery")

        for seq in range(3):
            camera.publish(camera_image(seq))
            spinner.until(lambda: seq in got["panoptic"], what=f"~/panoptic of frame {seq}")
        assert publishers["overlay"].get_subscription_count() == 0
        assert built == [], "an overlay was built with nobody subscribed to ~/overlay"

        probe.create_subscription(Image, f"/{NAME}/overlay", lambda m: got["overlay"].append(m.header.stamp.nanosec),
                                  RELIABLE)
        spinner.until(lambda: publishers["overlay"].get_subscription_count() > 0, what="the overlay subscriber")
        camera.publish(camera_image(10))
        spinner.until(lambda: 10 in got["overlay"], what="~/overlay of frame 10")
        assert [h.stamp.nanosec for h in built] == [10]
