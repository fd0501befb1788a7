"""``compile: true``: the models trace into one torch.compile graph and give the eager
results (dynamo's ``eager`` backend keeps this fast on the CPU; inductor runs in
bench/gpu_suite.py)."""
import numpy as np
import pytest
import torch

from panoptic_ros.inference.backends import TorchBackend
from panoptic_ros.models.panonet import PanoNet, PanoNetConfig


@pytest.fixture(scope="module")
def tiny_panonet():
    torch.manual_seed(0)
    return PanoNet(PanoNetConfig(width=0.125, blocks=(1, 1, 1, 1), input_size=(64, 128))).eval()


def test_panonet_compiles_to_one_graph_and_matches_eager(tiny_panonet):
    x = torch.rand(1, 3, 64, 128) * 255
    with torch.inference_mode():
        eager = tiny_panonet(x)                         # registers the pooling buffers
        torch._dynamo.reset()
        compiled = torch.compile(tiny_panonet, backend="eager", fullgraph=True)(x)   # raises on a graph break
    for name, value in eager.items():
        torch.testing.assert_close(compiled[name], value, rtol=0, atol=0)


def test_torch_backend_with_compile_gives_the_eager_outputs(tiny_panonet):
    image = np.random.default_rng(0).integers(0, 256, (64, 128, 3), dtype=np.uint8)
    plain = TorchBackend(tiny_panonet, device=torch.device("cpu"))(image)
    torch._dynamo.reset()
    compiled = TorchBackend(tiny_panonet, device=torch.device("cpu"), compile="eager")(image)
    for name, value in plain.items():
        torch.testing.assert_close(compiled[name], value, rtol=0, atol=0)


def test_pooling_matrices_are_buffers_on_the_model_device_and_not_in_checkpoints(tiny_panonet):
    with torch.inference_mode():
        tiny_panonet(torch.rand(1, 3, 64, 128))
    pooling = [name for name, _ in tiny_panonet.named_buffers() if ".pool_" in name]
    assert pooling and not any(".pool_" in key for key in tiny_panonet.state_dict())
    fresh = PanoNet(PanoNetConfig(width=0.125, blocks=(1, 1, 1, 1), input_size=(64, 128))).eval()
    fresh.load_state_dict(tiny_panonet.state_dict())     # strict: the buffers are not expected


def test_pooling_buffers_made_in_inference_mode_serve_training(tiny_panonet):
    # The buffers of a size first seen under inference_mode must not be inference tensors.
    model = PanoNet(PanoNetConfig(width=0.125, blocks=(1, 1, 1, 1), input_size=(64, 96)))
    model.eval()
    with torch.inference_mode():
        model(torch.rand(1, 3, 64, 96))
    model.train()
    outputs = model(torch.rand(2, 3, 64, 96) * 255)
    sum(v.float().mean() for v in outputs.values() if isinstance(v, torch.Tensor) and v.is_floating_point()).backward()
