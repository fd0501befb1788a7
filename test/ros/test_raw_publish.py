"""RawPublisher over real rclpy/DDS: the bytes arrive unchanged, the buffer is free as soon as
publish returns, and an inactive lifecycle publisher sends nothing."""
import numpy as np
import pytest
import rclpy
from rclpy.lifecycle import LifecycleNode
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from panoptic_ros.ros.raw_publish import RawPublisher
from panoptic_ros.serialized.cdr import Header
from panoptic_ros.serialized.image import ImageMessage, from_serialized, image_to_numpy

from ros_helpers import running

QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def _message(seq: int, height: int = 240, width: int = 320) -> ImageMessage:
    message = ImageMessage(height, width, "32SC1", Header.from_stamp_ns(seq, "cam"))
    message.pixels[...] = np.arange(height * width, dtype=np.int32).reshape(height, width) + seq
    return message


def _pixels(data: bytes) -> np.ndarray:
    return image_to_numpy(from_serialized(data))


@pytest.fixture
def pair(ros_context, spinner):
    """(publisher node, subscriber node, received raw messages)."""
    received: list[bytes] = []
    pub_node = rclpy.create_node("raw_publish_source", context=ros_context)
    sub_node = rclpy.create_node("raw_publish_sink", context=ros_context)
    sub_node.create_subscription(Image, "/raw_publish_test", received.append, QOS, raw=True)
    with running(spinner, pub_node, sub_node):
        yield pub_node, sub_node, received


def test_bytes_arrays_and_bytearrays_arrive_unchanged_and_the_buffer_is_free_after_publish(pair, spinner):
    pub_node, _, received = pair
    publisher = pub_node.create_publisher(Image, "/raw_publish_test", QOS)
    raw = RawPublisher(publisher)
    assert raw.direct  # librcl was found: the copy-free path is under test
    spinner.until(lambda: publisher.get_subscription_count() > 0, what="discovery")

    first = _message(1)
    sent = first.data.tobytes()
    raw.publish(first.data)
    first.pixels[...] = -5  # rmw holds its own copy once publish returned
    raw.publish(first.data)
    raw.publish(_message(2).data.tobytes())
    raw.publish(bytearray(_message(3).data.tobytes()))
    spinner.until(lambda: len(received) == 4, what="four messages")

    assert received[0] == sent
    assert (_pixels(received[1]) == -5).all()
    np.testing.assert_array_equal(_pixels(received[2]), _pixels(sent) + 1)
    np.testing.assert_array_equal(_pixels(received[3]), _pixels(sent) + 2)
    assert [from_serialized(r).header.stamp.nanosec for r in received] == [1, 1, 2, 3]


def test_the_rclpy_fallback_sends_the_same_bytes(pair, spinner):
    pub_node, _, received = pair
    publisher = pub_node.create_publisher(Image, "/raw_publish_test", QOS)
    raw = RawPublisher(publisher)
    raw.direct = False  # as where librcl's symbol is not found
    spinner.until(lambda: publisher.get_subscription_count() > 0, what="discovery")
    message = _message(7, 4, 6)
    raw.publish(message.data)
    spinner.until(lambda: len(received) == 1, what="the message")
    assert received[0] == message.data.tobytes()


def test_an_inactive_lifecycle_publisher_sends_nothing(ros_context, spinner):
    received: list[bytes] = []
    node = LifecycleNode("raw_publish_lifecycle", context=ros_context)
    sink = rclpy.create_node("raw_publish_lifecycle_sink", context=ros_context)
    sink.create_subscription(Image, "/raw_publish_lifecycle_test", received.append, QOS, raw=True)
    with running(spinner, node, sink):
        node.trigger_configure()
        publisher = node.create_lifecycle_publisher(Image, "/raw_publish_lifecycle_test", QOS)
        spinner.until(lambda: publisher.get_subscription_count() > 0, what="discovery")
        raw = RawPublisher(publisher)
        raw.publish(_message(1, 2, 2).data)  # inactive: dropped
        node.trigger_activate()
        raw.publish(_message(2, 2, 2).data)
        spinner.until(lambda: len(received) == 1, what="the message")  # in order: a sent message 1 would come first
        assert [from_serialized(r).header.stamp.nanosec for r in received] == [2]


def test_what_is_not_a_byte_buffer_is_refused(pair):
    pub_node, _, _ = pair
    raw = RawPublisher(pub_node.create_publisher(Image, "/raw_publish_test", QOS))
    with pytest.raises(TypeError, match="contiguous 1-D uint8"):
        raw.publish(np.zeros((2, 2), np.int32))
