"""CIAE losses under torch.distributed (2 gloo processes) when only one rank has things.

A rank whose crop holds no thing has no positive FCOS location. Every collective in the
loss must still run on every rank in the same order; otherwise the all-reduces pair up
wrongly and training under torchrun hangs (or mixes tensors of different sizes).
"""
import datetime
import os

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from panoptic_ros.kinds import build_model, model_config_from_dict
from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.training.losses.ciae import CIAELossConfig, ciae_losses
from panoptic_ros.training.targets import ciae_targets
from panoptic_ros.types import PanopticResult

TINY_CIAE = {"kind": "ciae", "depth": 18, "base_channels": 8, "fpn_channels": 16, "seg_channels": 16,
             "box_embed_channels": 8, "embed_dim": 8, "head_convs": 1}
SIZE = (64, 96)
LOSS = CIAELossConfig(memory_rate=0.5)
PROGRESS = 0.25
COLLECTIVE_TIMEOUT_S = 30  # a mismatched collective fails after this instead of hanging


def _panoptic(with_things: bool) -> np.ndarray:
    """Road with sky on top; with_things adds a car and a person."""
    pan = np.full(SIZE, 7000, np.int32)
    pan[:16] = 23000
    if with_things:
        pan[30:60, 10:40] = 26001
        pan[30:60, 50:60] = 24001
    return pan


def _batch(with_things_per_image: list[bool]) -> tuple[torch.Tensor, dict]:
    """Seeded images and collated CIAE targets (tensors stacked, segment lists per image)."""
    per_image = [ciae_targets(PanopticResult.from_panoptic_map(_panoptic(t), CITYSCAPES), CITYSCAPES)
                 for t in with_things_per_image]
    targets = {}
    for key in per_image[0]:
        values = [torch.from_numpy(t[key]) for t in per_image]
        targets[key] = values if key.startswith("segment_") and key != "segment_map" else torch.stack(values)
    images = torch.cat([torch.rand(1, 3, *SIZE, generator=torch.Generator().manual_seed(1 + t)) * 255
                        for t in with_things_per_image])
    return images, targets


def _model() -> torch.nn.Module:
    torch.manual_seed(0)  # the same weights and initial memory on every rank
    return build_model(model_config_from_dict(TINY_CIAE)).train()


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_S))
    try:
        model = _model()
        images, targets = _batch([rank == 1])  # rank 0: all stuff (no positive location)
        losses = ciae_losses(model(images), targets, config=LOSS, progress=PROGRESS)
        sum(losses.values()).backward()
        dist.barrier()  # both ranks got here, with the same number of collectives behind them
        grads_finite = all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        np.savez(os.path.join(out_dir, f"rank{rank}.npz"), memory=model.category_memory.numpy(),
                 grads_finite=grads_finite, **{k: v.detach().numpy() for k, v in losses.items()})
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(150)
def test_rank_without_things_runs_the_same_collectives(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    stuff_only, with_things = np.load(tmp_path / "rank0.npz"), np.load(tmp_path / "rank1.npz")
    assert stuff_only["grads_finite"] and with_things["grads_finite"]
    # the rank without positives has no center-ness or box loss; the other has both
    assert stuff_only["fcos_ctr"] == 0 and stuff_only["fcos_reg"] == 0
    assert with_things["fcos_ctr"] > 0 and with_things["fcos_reg"] > 0
    # one memory update from the embeddings of both ranks ...
    np.testing.assert_array_equal(stuff_only["memory"], with_things["memory"])
    # ... the same as one process seeing both images in one batch
    model = _model()
    images, targets = _batch([False, True])
    ciae_losses(model(images), targets, config=LOSS, progress=PROGRESS)
    np.testing.assert_allclose(stuff_only["memory"], model.category_memory.numpy(), atol=1e-6)
    assert not np.allclose(stuff_only["memory"], _model().category_memory.numpy())  # it did move
