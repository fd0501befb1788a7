"""PanopticResult -> the node's output messages as CDR bytes, read back with rclpy's own
deserialiser (and rosbags') so the layouts are the real ROS ones."""
import numpy as np
import pytest
from rclpy.serialization import deserialize_message
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray, LabelInfo

from panoptic_ros import outputs
from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.replay.outbag import replay_typestore
from panoptic_ros.serialized import cdr
from panoptic_ros.serialized.image import image_to_numpy
from panoptic_ros.types import PanopticResult
from panoptic_ros.viz import panoptic_overlay, segment_boundaries

ROAD, PERSON, CAR = 7, 24, 26


def _header() -> Header:
    header = Header(frame_id="camera")
    header.stamp.sec, header.stamp.nanosec = 42, 7
    return header


def _result() -> PanopticResult:
    pan = np.full((6, 10), ROAD * 1000, np.int32)
    pan[1:4, 2:5] = CAR * 1000 + 1       # x 2..4, y 1..3
    pan[2:6, 7:9] = PERSON * 1000 + 3    # x 7..8, y 2..5
    pan[0, 9] = CAR * 1000               # crowd region
    pan[5, 0] = 0
    return PanopticResult.from_panoptic_map(pan, CITYSCAPES, scores={CAR * 1000 + 1: 0.75})


def _image(data: bytes) -> Image:
    return deserialize_message(data, Image)


def test_label_images_carry_the_header_and_the_contract_values():
    result, header = _result(), _header()
    panoptic = _image(outputs.panoptic_image(result, header))
    semantic = _image(outputs.semantic_image(result, CITYSCAPES, header))
    instances = _image(outputs.instance_image(result, header))
    for msg, encoding in ((panoptic, "32SC1"), (semantic, "mono8"), (instances, "mono16")):
        assert msg.header == header and msg.encoding == encoding and (msg.height, msg.width) == (6, 10)
    np.testing.assert_array_equal(image_to_numpy(panoptic), result.panoptic)
    sem = image_to_numpy(semantic)
    assert sem[0, 0] == CITYSCAPES.train_index(ROAD) and sem[5, 0] == 255 and sem[2, 3] == CITYSCAPES.train_index(CAR)
    np.testing.assert_array_equal(image_to_numpy(instances), result.instance_map())
    assert set(np.unique(image_to_numpy(instances)).tolist()) == {0, 1, 2}


def test_a_plain_header_serialises_like_the_rclpy_one():
    plain = cdr.Header.from_stamp_ns(42_000_000_007, "camera")
    assert outputs.panoptic_image(_result(), plain) == outputs.panoptic_image(_result(), _header())


def test_overlay_message_is_the_viz_overlay():
    result = _result()
    rgb = np.random.default_rng(1).integers(0, 255, (6, 10, 3), dtype=np.uint8)
    msg = _image(outputs.overlay_image(rgb, result, CITYSCAPES, _header(), alpha=0.3))
    assert msg.encoding == "rgb8"
    np.testing.assert_array_equal(image_to_numpy(msg), panoptic_overlay(rgb, result, CITYSCAPES, alpha=0.3))


def test_detections_list_things_with_ids_names_scores_and_pixel_boxes():
    result, header = _result(), _header()
    msg = deserialize_message(outputs.detections(result, CITYSCAPES, header), Detection2DArray)
    assert msg.header == header
    by_id = {d.id: d for d in msg.detections}
    assert set(by_id) == {str(CAR * 1000), str(CAR * 1000 + 1), str(PERSON * 1000 + 3)}
    car = by_id[str(CAR * 1000 + 1)]
    assert car.header == header and len(car.results) == 1
    assert car.results[0].hypothesis.class_id == "car" and car.results[0].hypothesis.score == 0.75
    pose = car.results[0].pose
    assert pose.pose.orientation.w == 1.0 and pose.pose.position.x == 0.0 and not any(pose.covariance)
    assert (car.bbox.center.position.x, car.bbox.center.position.y) == (2 + 3 / 2, 1 + 3 / 2)
    assert (car.bbox.size_x, car.bbox.size_y, car.bbox.center.theta) == (3.0, 3.0, 0.0)
    person = by_id[str(PERSON * 1000 + 3)]
    assert person.results[0].hypothesis.class_id == "person"
    assert (person.bbox.center.position.x, person.bbox.size_x, person.bbox.size_y) == (8.0, 2.0, 4.0)


def test_stuff_detections_are_optional():
    data = outputs.detections(_result(), CITYSCAPES, _header(), include_stuff=True)
    with_stuff = deserialize_message(data, Detection2DArray)
    road = [d for d in with_stuff.detections if d.id == str(ROAD * 1000)]
    assert len(with_stuff.detections) == 4 and road[0].results[0].hypothesis.class_id == "road"
    # rosbags reads the same bytes the same way (the output bag's reader)
    decoded = replay_typestore().deserialize_cdr(data, "vision_msgs/msg/Detection2DArray")
    assert [d.id for d in decoded.detections] == [d.id for d in with_stuff.detections]
    assert [d.bbox.size_y for d in decoded.detections] == [d.bbox.size_y for d in with_stuff.detections]


def test_label_info_maps_semantic_values_to_names():
    msg = deserialize_message(outputs.label_info(CITYSCAPES, _header(), threshold=0.4), LabelInfo)
    assert abs(msg.threshold - 0.4) < 1e-6 and msg.header == _header()
    names = {c.class_id: c.class_name for c in msg.class_map}
    assert names[CITYSCAPES.train_index(CAR)] == "car" and names[0] == "road" and names[255] == "void"
    assert len(names) == 20


def test_output_messages_builds_the_outputs_asked_for_in_order():
    result, header = _result(), _header()
    rgb = np.zeros((6, 10, 3), np.uint8)
    built = list(outputs.output_messages(result, rgb, header, which=["detections", "panoptic"],
                                          label_space=CITYSCAPES))
    assert [name for name, _ in built] == ["panoptic", "detections"]
    assert built[0][1] == outputs.panoptic_image(result, header)
    assert built[1][1] == outputs.detections(result, CITYSCAPES, header)
    with pytest.raises(ValueError, match="unknown outputs \\['depth'\\]"):
        list(outputs.output_messages(result, rgb, header, which=["depth"], label_space=CITYSCAPES))


def test_image_bytes_read_back_with_rosbags_too():
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    store = get_typestore(Stores.ROS2_JAZZY)
    msg = store.deserialize_cdr(outputs.overlay_image(pixels, PanopticResult.from_panoptic_map(
        np.zeros((2, 3), np.int32), CITYSCAPES), CITYSCAPES, _header()), "sensor_msgs/msg/Image")
    assert (msg.height, msg.width, msg.step, msg.encoding) == (2, 3, 9, "rgb8")
    np.testing.assert_array_equal(msg.data.reshape(2, 3, 3), pixels)  # all VOID: the image itself


@pytest.mark.parametrize("size", [(37, 50), (120, 200), (12, 30), (101, 173), (24, 40), (24, 81)])
def test_label_images_from_the_model_resolution_result_are_identical(size):
    rng = np.random.default_rng(5)
    cells = rng.choice([ROAD * 1000, CAR * 1000 + 1, CAR * 1000 + 2, PERSON * 1000 + 1, CAR * 1000, 0], (6, 8))
    low = PanopticResult.from_panoptic_map(np.kron(cells, np.ones((4, 5), np.int64)).astype(np.int32), CITYSCAPES)
    height, width = size
    result = low.resize(width, height)  # what the Predictor returns for a (H, W) image
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    header = _header()
    for fast, plain in (
            (outputs.semantic_image(result, CITYSCAPES, header, low_res=low), outputs.semantic_image(
                result, CITYSCAPES, header)),
            (outputs.instance_image(result, header, low_res=low), outputs.instance_image(result, header)),
            (outputs.overlay_image(rgb, result, CITYSCAPES, header, low_res=low),
             outputs.overlay_image(rgb, result, CITYSCAPES, header))):
        assert fast == plain


@pytest.mark.parametrize("low_shape, shape", [((7, 9), (50, 61)), ((5, 5), (5, 13)), ((16, 32), (1024, 2048))])
def test_overlay_outlines_from_the_model_resolution_are_the_full_size_outlines(low_shape, shape):
    rng = np.random.default_rng(sum(shape))
    low_map = rng.choice([ROAD * 1000, CAR * 1000 + 1, 0], low_shape).astype(np.int32)
    low = PanopticResult.from_panoptic_map(low_map, CITYSCAPES)
    result = low.resize(shape[1], shape[0])
    void, edges = outputs._overlay_masks(low, result)
    np.testing.assert_array_equal(edges != 0, segment_boundaries(result.panoptic))
    np.testing.assert_array_equal(void != 0, result.panoptic == 0)
