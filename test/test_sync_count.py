"""The torch call / host read counter (panoptic_ros.sync_count) on code with known reads."""
import torch

from panoptic_ros.sync_count import count_torch


def test_counts_each_kind_of_host_read_once():
    x = torch.arange(-5.0, 5.0)
    with count_torch() as counts:
        x[x > 0]                  # boolean mask: data-dependent size
        (x > 0).nonzero()
        x.sum().item()
        x[:3].tolist()
        x.numpy()
        torch.unique(x)
        bool((x > 4).any())
    assert counts.reads_by_op == {"index": 1, "nonzero": 1, "_local_scalar_dense": 2, "tolist": 1,
                                  "numpy": 1, "_unique2": 1}
    assert counts.host_reads == 7


def test_device_side_work_reads_nothing_and_calls_are_top_level():
    x = torch.rand(100, 3)
    with count_torch() as counts:
        y = torch.cdist(x, x)              # one call, whatever cdist runs inside
        z = (y <= 0.5).float() @ x         # le, float, matmul
        torch.zeros(4).index_add_(0, torch.tensor([0, 1, 1, 3]), torch.ones(4))
    assert counts.host_reads == 0
    assert counts.calls == 1 + 3 + 4
