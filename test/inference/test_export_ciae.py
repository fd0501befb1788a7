"""CIAE exports to ONNX; ONNX Runtime + post-processing reproduce torch."""
import onnx
import onnxruntime as ort
import pytest
import torch

from panoptic_ros.inference.export import export_onnx, onnx_parity
from panoptic_ros.kinds import build_model, model_config_from_dict
from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.models.ciae import CIAE
from panoptic_ros.postprocess.ciae import CIAEPostprocessConfig, postprocess_ciae, select_proposals
from ort_reference import max_abs_differences

SIZE = (70, 100)  # deliberately not multiples of 4 or 32


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(model_config_from_dict({
        "kind": "ciae", "depth": 18, "base_channels": 8, "fpn_channels": 16, "seg_channels": 16,
        "box_embed_channels": 8, "embed_dim": 8, "input_size": list(SIZE)})).eval()
    with torch.no_grad():  # a trained-looking memory and spread-out scores
        model.category_memory.copy_(torch.nn.functional.normalize(torch.randn(12, 8), dim=1))
        model.head.cls_logits.weight.normal_(std=0.3)
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "ciae.onnx", input_size=SIZE)
    assert not model.training  # export leaves the model in eval mode
    images = torch.rand(1, 3, *SIZE, generator=torch.Generator().manual_seed(1)) * 255
    return model, path, images


def test_graph_names(exported):
    _, path, _ = exported
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["images"]
    assert tuple(o.name for o in graph.output) == CIAE.OUTPUT_NAMES


def test_onnx_runtime_matches_torch_within_1e4(exported):
    model, path, images = exported
    diffs = max_abs_differences(model, path, images)
    assert set(diffs) == set(CIAE.OUTPUT_NAMES)
    assert max(diffs.values()) <= 1e-4, diffs
    assert onnx_parity(model, path, images) == diffs   # the figure export prints is the true one
    assert diffs["stuff_memory"] == 0.0 and diffs["image_size"] == 0.0 and diffs["locations"] == 0.0


def test_postprocessing_of_onnx_outputs_reproduces_torch(exported):
    model, path, images = exported
    with torch.no_grad():
        expected = model(images)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = dict(zip(CIAE.OUTPUT_NAMES, (torch.from_numpy(v) for v in session.run(None, {"images": images.numpy()}))))
    config = CIAEPostprocessConfig(score_threshold=0.2, stuff_min_area=0)
    ref_props, onnx_props = select_proposals(expected, config), select_proposals(got, config)
    assert len(ref_props.scores) > 3  # the test exercises instances, not only stuff
    assert torch.equal(ref_props.classes, onnx_props.classes)
    torch.testing.assert_close(ref_props.boxes, onnx_props.boxes, atol=1e-4, rtol=0)
    ref = postprocess_ciae(expected, config=config, label_space=CITYSCAPES)
    res = postprocess_ciae(got, config=config, label_space=CITYSCAPES)
    assert res.panoptic.shape == SIZE
    # a pixel whose two best similarities differ by less than the float noise may flip
    assert (ref.panoptic == res.panoptic).mean() > 0.999
    assert {s.id for s in ref.segments} == {s.id for s in res.segments}
