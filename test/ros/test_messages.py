"""PanopticResult -> ROS messages."""
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from std_msgs.msg import Header

from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.ros import messages
from panoptic_ros.ros.image_codec import image_to_numpy
from panoptic_ros.types import PanopticResult
from panoptic_ros.viz import panoptic_overlay

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


def test_label_images_carry_the_header_and_the_contract_values():
    result, header = _result(), _header()
    panoptic = messages.panoptic_image(result, header)
    semantic = messages.semantic_image(result, CITYSCAPES, header)
    instances = messages.instance_image(result, header)
    for msg, encoding in ((panoptic, "32SC1"), (semantic, "mono8"), (instances, "mono16")):
        assert msg.header == header and msg.encoding == encoding and (msg.height, msg.width) == (6, 10)
    np.testing.assert_array_equal(image_to_numpy(panoptic), result.panoptic)
    sem = image_to_numpy(semantic)
    assert sem[0, 0] == CITYSCAPES.train_index(ROAD) and sem[5, 0] == 255 and sem[2, 3] == CITYSCAPES.train_index(CAR)
    np.testing.assert_array_equal(image_to_numpy(instances), result.instance_map())
    assert set(np.unique(image_to_numpy(instances)).tolist()) == {0, 1, 2}


def test_overlay_message_is_the_viz_overlay():
    result = _result()
    rgb = np.random.default_rng(1).integers(0, 255, (6, 10, 3), dtype=np.uint8)
    msg = messages.overlay_image(rgb, result, CITYSCAPES, _header(), alpha=0.3)
    assert msg.encoding == "rgb8"
    np.testing.assert_array_equal(image_to_numpy(msg), panoptic_overlay(rgb, result, CITYSCAPES, alpha=0.3))


def test_detections_list_things_with_ids_names_scores_and_pixel_boxes():
    result, header = _result(), _header()
    msg = messages.detections(result, CITYSCAPES, header)
    assert msg.header == header
    by_id = {d.id: d for d in msg.detections}
    assert set(by_id) == {str(CAR * 1000), str(CAR * 1000 + 1), str(PERSON * 1000 + 3)}
    car = by_id[str(CAR * 1000 + 1)]
    assert car.header == header
    assert car.results[0].hypothesis.class_id == "car" and car.results[0].hypothesis.score == 0.75
    assert (car.bbox.center.position.x, car.bbox.center.position.y) == (2 + 3 / 2, 1 + 3 / 2)
    assert (car.bbox.size_x, car.bbox.size_y, car.bbox.center.theta) == (3.0, 3.0, 0.0)
    person = by_id[str(PERSON * 1000 + 3)]
    assert person.results[0].hypothesis.class_id == "person"
    assert (person.bbox.center.position.x, person.bbox.size_x, person.bbox.size_y) == (8.0, 2.0, 4.0)


def test_stuff_detections_are_optional():
    with_stuff = messages.detections(_result(), CITYSCAPES, _header(), include_stuff=True)
    road = [d for d in with_stuff.detections if d.id == str(ROAD * 1000)]
    assert len(with_stuff.detections) == 4 and road[0].results[0].hypothesis.class_id == "road"


def test_label_info_maps_semantic_values_to_names():
    msg = messages.label_info(CITYSCAPES, _header(), threshold=0.4)
    assert abs(msg.threshold - 0.4) < 1e-6
    names = {c.class_id: c.class_name for c in msg.class_map}
    assert names[CITYSCAPES.train_index(CAR)] == "car" and names[0] == "road" and names[255] == "void"
    assert len(names) == 20


def test_diagnostics_format_values_as_strings():
    msg = messages.diagnostic_array(_header(), name="n", hardware_id="cpu", level=DiagnosticStatus.WARN,
                                    message="m", values={"rate": 2.5, "dropped": 3, "device": "cpu"})
    status = msg.status[0]
    assert (status.level, status.name, status.hardware_id, status.message) == (DiagnosticStatus.WARN, "n", "cpu", "m")
    assert {kv.key: kv.value for kv in status.values} == {"rate": "2.500", "dropped": "3", "device": "cpu"}


@pytest.mark.parametrize("size", [(37, 50), (120, 200), (12, 30)])
def test_label_images_from_the_model_resolution_result_are_identical(size):
    rng = np.random.default_rng(5)
    cells = rng.choice([ROAD * 1000, CAR * 1000 + 1, CAR * 1000 + 2, PERSON * 1000 + 1, CAR * 1000, 0], (6, 8))
    low = PanopticResult.from_panoptic_map(np.kron(cells, np.ones((4, 5), np.int64)).astype(np.int32), CITYSCAPES)
    height, width = size
    result = low.resize(width, height)  # what the Predictor returns for a (H, W) image
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    header = _header()
    for fast, plain in (
            (messages.semantic_image(result, CITYSCAPES, header, low_res=low), messages.semantic_image(
                result, CITYSCAPES, header)),
            (messages.instance_image(result, header, low_res=low), messages.instance_image(result, header)),
            (messages.overlay_image(rgb, result, CITYSCAPES, header, low_res=low),
             messages.overlay_image(rgb, result, CITYSCAPES, header))):
        np.testing.assert_array_equal(image_to_numpy(fast), image_to_numpy(plain))
