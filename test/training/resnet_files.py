"""ImageNet ResNet weight files as torchvision and timm write them, built from the two
projects' documented module names (neither installs here: there is no CPU build).

torchvision ``ResNet`` / timm ``ResNet`` (default 7x7 stem): ``conv1`` (7x7, 3 -> 64),
``bn1``, ``layer1..layer4`` of blocks; a ``Bottleneck`` (ResNet-50/101) holds ``conv1``
(1x1), ``bn1``, ``conv2`` (3x3, carries the stride), ``bn2``, ``conv3`` (1x1, x4 width),
``bn3``; a ``BasicBlock`` (ResNet-18/34) ``conv1``, ``bn1``, ``conv2``, ``bn2`` (3x3 each).
The first block of a stage whose shape changes has ``downsample.0`` (1x1 conv) and
``downsample.1`` (BatchNorm). ``fc`` is the 1000-class classifier. Convs have no bias;
every BatchNorm has ``weight``, ``bias``, ``running_mean``, ``running_var`` and an int64
``num_batches_tracked``.
"""
from __future__ import annotations

import torch

BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
PARAMETERS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160}
"""Parameter counts torchvision documents for its ImageNet ResNets (weights ``num_params``)."""


def resnet_state_dict(depth: int = 50, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under torchvision's (= timm's) ResNet-``depth`` names and shapes;
    every tensor distinct, so a wrong pairing cannot go unnoticed. Conv weights have He
    scale and BatchNorm statistics near (0, 1), so a network built from the file keeps
    finite activations and can train a few steps."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}

    def conv(name, cout, cin, k):
        state[f"{name}.weight"] = torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5

    def bn(name, c):
        state[f"{name}.weight"] = torch.rand(c, generator=g) * 0.5 + 0.25
        state[f"{name}.bias"] = torch.randn(c, generator=g) * 0.1
        state[f"{name}.running_mean"] = torch.randn(c, generator=g) * 0.1
        state[f"{name}.running_var"] = torch.rand(c, generator=g) + 0.5
        state[f"{name}.num_batches_tracked"] = torch.tensor(1000, dtype=torch.int64)

    bottleneck = depth >= 50
    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    cin = 64
    for i, count in enumerate(BLOCKS[depth]):
        planes = 64 * 2 ** i
        cout = planes * (4 if bottleneck else 1)
        for j in range(count):
            p = f"layer{i + 1}.{j}"
            if bottleneck:
                conv(f"{p}.conv1", planes, cin, 1), bn(f"{p}.bn1", planes)
                conv(f"{p}.conv2", planes, planes, 3), bn(f"{p}.bn2", planes)
                conv(f"{p}.conv3", cout, planes, 1), bn(f"{p}.bn3", cout)
            else:
                conv(f"{p}.conv1", planes, cin, 3), bn(f"{p}.bn1", planes)
                conv(f"{p}.conv2", planes, planes, 3), bn(f"{p}.bn2", planes)
            if j == 0 and (i > 0 or cin != cout):
                conv(f"{p}.downsample.0", cout, cin, 1), bn(f"{p}.downsample.1", cout)
            cin = cout
    state["fc.weight"] = torch.randn(1000, cin, generator=g) * 0.01
    state["fc.bias"] = torch.randn(1000, generator=g) * 0.01
    return state


def parameter_count(state: dict[str, torch.Tensor]) -> int:
    """Learnable parameters of a file (BatchNorm statistics and counters excluded)."""
    return sum(v.numel() for k, v in state.items()
               if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
