"""ONNX export of PanoNet: graph names, opset, and ONNX Runtime parity with torch."""
import signal
import subprocess
import sys

import onnx
import pytest
import torch
from torch import nn

from panoptic_ros.inference.export import export_onnx, onnx_parity
from panoptic_ros.models.panonet import PanoNet, PanoNetConfig
from ort_reference import max_abs_differences


def trained_looking(config: PanoNetConfig) -> PanoNet:
    """A model with non-trivial BatchNorm statistics (fresh ones are the identity)."""
    torch.manual_seed(0)
    model = PanoNet(config)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 1.5)
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.2, 0.2)
    return model.eval()


def assert_parity(model: PanoNet, path, size) -> None:
    images = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(1)) * 255
    diffs = max_abs_differences(model, path, images)
    assert onnx_parity(model, path, images) == diffs
    assert set(diffs) == set(PanoNet.OUTPUT_NAMES)
    assert diffs["semantic_logits"] <= 1e-4 and diffs["embedding"] <= 1e-4
    assert diffs["semantic"] <= 1e-4     # fraction of labels that differ


@pytest.mark.parametrize("kwargs,size", [
    (dict(width=0.25, blocks=(1, 1, 2, 1)), (67, 131)),          # odd size
    (dict(width=0.25, blocks=(1, 1, 1, 1), share_weights=True), (64, 96)),
])
def test_onnx_matches_torch(tmp_path, kwargs, size):
    model = trained_looking(PanoNetConfig(**kwargs))
    path = export_onnx(model, tmp_path / "m.onnx", input_size=size)
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["images"]
    assert [o.name for o in graph.output] == list(PanoNet.OUTPUT_NAMES)
    assert_parity(model, path, size)


def test_onnx_matches_torch_at_512x1024(tmp_path):
    model = trained_looking(PanoNetConfig(width=0.25, blocks=(1, 1, 2, 1), use_coords=False))
    path = export_onnx(model, tmp_path / "m.onnx", input_size=(512, 1024), opset=18)
    assert onnx.load(str(path)).opset_import[0].version == 18
    assert_parity(model, path, (512, 1024))


def test_export_rejects_old_opset_and_models_without_output_names(tmp_path):
    model = trained_looking(PanoNetConfig(width=0.125, blocks=(1, 1, 1, 1)))
    with pytest.raises(ValueError, match="opset"):
        export_onnx(model, tmp_path / "m.onnx", input_size=(32, 32), opset=13)
    with pytest.raises(ValueError, match="OUTPUT_NAMES"):
        export_onnx(nn.Conv2d(3, 3, 1), tmp_path / "c.onnx", input_size=(32, 32))


# Run in a child process: an exporter crash (SIGFPE) would otherwise kill pytest itself.
_EXPORT_SIZES_SCRIPT = """
import sys, torch
from panoptic_ros.inference.export import export_onnx, onnx_parity
from panoptic_ros.models.panonet import PanoNet, PanoNetConfig
torch.manual_seed(0)
model = PanoNet(PanoNetConfig(width=0.125, blocks=(1, 1, 1, 1), psp_bins=(1, 2, 3, 6)))
for h, w in [(128, 192), (128, 256), (192, 384)]:
    path = export_onnx(model, f"{sys.argv[1]}/m_{h}x{w}.onnx", input_size=(h, w))
    images = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(1)) * 255
    diffs = onnx_parity(model, path, images)
    assert max(diffs["semantic_logits"], diffs["embedding"]) <= 1e-4, diffs
    print(f"{h}x{w} ok", flush=True)
"""


@pytest.mark.timeout(240)
def test_sizes_whose_pyramid_pooling_map_is_smaller_than_the_bins_export(tmp_path):
    """128 x 192 and 128 x 256 give a 4-row 1/32 map, fewer rows than the 6 x 6 bins (and
    not divisible by 3 or 6); 192 x 384 divides evenly. Pooling matrices built by slice
    assignment on traced tensors made the exporter die with SIGFPE on the first two."""
    run = subprocess.run([sys.executable, "-c", _EXPORT_SIZES_SCRIPT, str(tmp_path)], capture_output=True,
                         text=True, timeout=220)
    crashed = f" (signal {signal.Signals(-run.returncode).name})" if run.returncode < 0 else ""
    assert run.returncode == 0, f"exit {run.returncode}{crashed}: {run.stdout}{run.stderr[-2000:]}"
    assert run.stdout.split() == ["128x192", "ok", "128x256", "ok", "192x384", "ok"]
