"""CIAE loss on hand-built embeddings: exact values, zero loss, box filtering, memory."""
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.training.losses.ciae import CIAELossConfig, ciae_losses, embedding_loss, memory_momentum
from panoptic_ros.training.targets import ciae_targets
from panoptic_ros.types import PanopticResult

MARGIN = 0.15
S19 = math.sqrt(0.19)


def l_emb(hinge: float) -> float:
    """Eq. 8 for a hinge value l'."""
    return -math.log(1 - hinge / (2 + MARGIN))


def _case(p1=(0, 3, 0, 0), p2=(0, 0.9, S19, 0), batch=1):
    """A 1 x 4 grid at 1/4 scale (a 4 x 16 image), E = 4, memory [e0, e3, e1] (2 stuff + thing).

    u0: stuff class 0, u1: thing A, u2: thing B, u3: VOID. A's box expanded 1.5x covers u0 and
    u1 (pixel centres x = 2.5, 6.5) but not u2 (x = 10.5); B's covers only u2.
    """
    raw = torch.tensor([[1.2, 1.6, 0, 0], p1, p2, [0.3, -1, 2, 0.5]], dtype=torch.float32)
    emb = raw.t().reshape(1, 4, 1, 4).repeat(batch, 1, 1, 1).requires_grad_(True)
    memory = torch.eye(4)[[0, 3, 1]].clone()
    outputs = {"cls_logits": torch.full((batch, 2, 8), -4.0), "centerness_logits": torch.zeros(batch, 2),
               "box_reg": torch.ones(batch, 2, 4), "embeddings": emb, "category_memory": memory}
    boxes = torch.tensor([[0, 0, 16, 4], [1, 0, 7, 4], [9, 0, 12, 4]], dtype=torch.float32)
    targets = {"fcos_labels": torch.full((batch, 2), -1), "fcos_boxes": torch.zeros(batch, 2, 4),
               "fcos_centerness": torch.zeros(batch, 2),
               "category_map": torch.tensor([[[0, 2, 2, 255]]]).repeat(batch, 1, 1),
               "segment_map": torch.tensor([[[0, 1, 2, -1]]]).repeat(batch, 1, 1),
               "segment_category": [torch.tensor([0, 2, 2])] * batch,
               "segment_is_thing": [torch.tensor([False, True, True])] * batch,
               "segment_boxes": [boxes] * batch}
    return outputs, targets


def test_memory_momentum_schedule():
    assert memory_momentum(0.0) == pytest.approx(1 - 1e-4, abs=1e-15)
    assert memory_momentum(0.5) == pytest.approx(1 - 1e-4 * 0.125, abs=1e-15)
    assert memory_momentum(1.0) == 1.0
    assert memory_momentum(0.0, rate=1.0) == 0.0
    with pytest.raises(ValueError, match="progress"):
        memory_momentum(1.5)


def test_exact_value_with_box_filtering():
    outputs, targets = _case()
    losses = ciae_losses(outputs, targets, config=CIAELossConfig(), progress=0.5)
    # CAE: only u0 has a loss (to the thing memory e1: d_pos 0.4, d_neg 0.2 -> l' = 0.35)
    assert losses["ciae_cae"].item() == pytest.approx(l_emb(0.35) / 3, rel=1e-5)
    # IAE: u0 vs instance A (inside A's box): l' = 0.35; B is filtered (d = 1);
    # u2 would hinge on A (cos 0.9) but lies outside A's expanded box.
    assert losses["ciae_iae"].item() == pytest.approx(2 * l_emb(0.35) / 3, rel=1e-5)
    assert set(losses) == {"fcos_cls", "fcos_ctr", "fcos_reg", "ciae_cae", "ciae_iae"}
    sum(losses.values()).backward()
    assert outputs["embeddings"].grad.abs().sum() > 0


def test_exact_value_without_box_filtering_uses_thing_weight_and_alpha():
    outputs, targets = _case()
    losses = ciae_losses(outputs, targets, config=CIAELossConfig(box_filter=False), progress=0.5)
    # u0: A (l' 0.35) and B (cos 0.72 -> l' 0.27); u1 and u2: each other (cos 0.9 -> l' 0.05), weight 5
    expected = (l_emb(0.35) + l_emb(0.27) + 5 * l_emb(0.05) + 5 * l_emb(0.05)) / 3
    assert losses["ciae_iae"].item() == pytest.approx(2 * expected, rel=1e-5)


def test_top_k_keeps_only_the_largest_losses():
    pixels = F.normalize(torch.tensor([[1.0, 0.2, 0.1, 0.05]]), dim=1)
    queries = torch.eye(4)
    full = embedding_loss(pixels, queries, torch.tensor([0]), margin=1.9, top_k=5)
    top1 = embedding_loss(pixels, queries, torch.tensor([0]), margin=1.9, top_k=1)
    d_pos = 1 - pixels[0, 0].item()
    each = [l_emb_m(d_pos - (1 - pixels[0, k].item()) + 1.9, 1.9) for k in (1, 2, 3)]
    assert full.item() == pytest.approx(sum(each), rel=1e-5)
    assert top1.item() == pytest.approx(max(each), rel=1e-5)


def l_emb_m(hinge: float, margin: float) -> float:
    return -math.log(1 - hinge / (2 + margin))


def test_zero_when_every_pixel_is_nearer_its_queries_by_the_margin_and_positive_otherwise():
    separated = dict(p1=(0, 0.9, S19, 0), p2=(0, 0.9, -S19, 0))  # cos(A, B) = 0.62 -> d = 0.38 > margin
    for box_filter in (True, False):
        outputs, targets = _case(**separated)
        outputs["embeddings"].data[0, :, 0, 0] = torch.tensor([2.0, 0, 0, 0])  # u0 exactly on its memory
        losses = ciae_losses(outputs, targets, config=CIAELossConfig(box_filter=box_filter), progress=0.0)
        assert losses["ciae_cae"].item() == 0.0 and losses["ciae_iae"].item() == 0.0
    outputs, targets = _case(p1=(0, 0.9, 0.3, 0), p2=(0, 0.9, 0.2, 0))  # A and B nearly parallel
    outputs["embeddings"].data[0, :, 0, 0] = torch.tensor([2.0, 0, 0, 0])
    losses = ciae_losses(outputs, targets, config=CIAELossConfig(box_filter=False), progress=0.0)
    assert losses["ciae_cae"].item() == 0.0 and losses["ciae_iae"].item() > 0.0
    # ... but their boxes are apart, so with box filtering they need not be told apart
    losses = ciae_losses(outputs, targets, config=CIAELossConfig(), progress=0.0)
    assert losses["ciae_iae"].item() == 0.0
    outputs, targets = _case(**separated)
    outputs["embeddings"].data[0, :, 0, 0] = torch.tensor([1.0, 0.0, 0, 1.0])  # halfway to stuff 1
    losses = ciae_losses(outputs, targets, config=CIAELossConfig(), progress=0.0)
    assert losses["ciae_cae"].item() > 0.0 and losses["ciae_iae"].item() > 0.0


def test_box_filter_sets_similarity_to_zero_outside_boxes():
    pixels = F.normalize(torch.tensor([[1.0, 0.95]]), dim=1)  # close to query 1
    queries = torch.eye(2)
    keep = torch.tensor([[True, False]])
    filtered = embedding_loss(pixels, queries, torch.tensor([0]), margin=MARGIN, top_k=5, keep=keep)
    d_pos = 1 - pixels[0, 0].item()
    assert filtered.item() == pytest.approx(l_emb(max(d_pos - 1 + MARGIN, 0)), abs=1e-7)  # d_neg = 1 - 0
    unfiltered = embedding_loss(pixels, queries, torch.tensor([0]), margin=MARGIN, top_k=5)
    assert unfiltered.item() == pytest.approx(l_emb(d_pos - (1 - pixels[0, 1].item()) + MARGIN), rel=1e-6)


def test_memory_update_follows_eq_14_and_loss_uses_the_previous_memory():
    outputs, targets = _case(batch=2)
    old = outputs["category_memory"].clone()
    lam = memory_momentum(0.5)
    losses = ciae_losses(outputs, targets, config=CIAELossConfig(), progress=0.5)
    mem = outputs["category_memory"]
    batch_stuff = F.normalize(torch.tensor([1.2, 1.6, 0, 0]), dim=0)  # mean of unnormalised embeddings
    batch_thing = F.normalize(torch.tensor([0, 3.9, S19, 0]), dim=0)  # 3 e1 + (0, .9, .436, 0)
    torch.testing.assert_close(mem[0], F.normalize(lam * old[0] + (1 - lam) * batch_stuff, dim=0))
    torch.testing.assert_close(mem[1], old[1])  # stuff class 1 is absent: unchanged
    torch.testing.assert_close(mem[2], F.normalize(lam * old[2] + (1 - lam) * batch_thing, dim=0))
    assert losses["ciae_cae"].item() == pytest.approx(l_emb(0.35) / 3, rel=1e-5)  # same per-pixel mean

    outputs, targets = _case()
    ciae_losses(outputs, targets, config=CIAELossConfig(memory_rate=1.0), progress=0.0)  # lambda = 0
    torch.testing.assert_close(outputs["category_memory"][0], batch_stuff)
    again = ciae_losses(outputs, targets, config=CIAELossConfig(memory_rate=1.0), progress=1.0)
    # now M_{t-1}[0] equals u0's direction: u0 has no CAE loss left; u2 still none
    assert again["ciae_cae"].item() == pytest.approx(0.0, abs=1e-6)


def test_bad_targets_raise():
    outputs, targets = _case()
    targets["segment_map"] = torch.zeros(1, 2, 4, dtype=torch.int64)
    with pytest.raises(ValueError, match="segment_map"):
        ciae_losses(outputs, targets, config=CIAELossConfig(), progress=0.0)
    outputs, targets = _case()
    targets["category_map"] = torch.tensor([[[0, 7, 2, 255]]])
    with pytest.raises(ValueError, match="category_map"):
        ciae_losses(outputs, targets, config=CIAELossConfig(), progress=0.0)
    outputs, targets = _case()
    targets["segment_category"] = [torch.tensor([0, 2])]
    with pytest.raises(ValueError, match="segment_category"):
        ciae_losses(outputs, targets, config=CIAELossConfig(), progress=0.0)


def test_real_targets_and_model_outputs_train():
    """The loss accepts training/targets.py output and a real model's train outputs."""
    from panoptic_ros.kinds import build_model, model_config_from_dict

    pan = np.full((64, 96), 7000, np.int32)
    pan[:16] = 23000
    pan[30:60, 10:40] = 26001
    pan[30:60, 50:60] = 24001
    t = ciae_targets(PanopticResult.from_panoptic_map(pan, CITYSCAPES), CITYSCAPES)
    targets = {k: [torch.from_numpy(v)] if k.startswith("segment_") and k != "segment_map"
               else torch.from_numpy(v)[None] for k, v in t.items()}
    torch.manual_seed(0)
    model = build_model(model_config_from_dict({
        "kind": "ciae", "depth": 18, "base_channels": 8, "fpn_channels": 16, "seg_channels": 16,
        "box_embed_channels": 8, "embed_dim": 8})).train()
    losses = ciae_losses(model(torch.rand(1, 3, 64, 96) * 255), targets, config=CIAELossConfig(), progress=0.1)
    assert all(torch.isfinite(v) and v.item() > 0 for v in losses.values())
    sum(losses.values()).backward()
    assert model.embedding.predictor.weight.grad.abs().sum() > 0
    assert model.head.box_embed.weight.grad.abs().sum() > 0  # P'' carries the box embeddings' gradient


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        outputs, targets = _case(p1=(0, 3, 0, 0) if rank == 0 else (0, 1, 2, 0))
        ciae_losses(outputs, targets, config=CIAELossConfig(memory_rate=0.5), progress=0.25)
        np.save(os.path.join(out_dir, f"memory{rank}.npy"), outputs["category_memory"].numpy())
    finally:
        dist.destroy_process_group()


def test_distributed_ranks_update_memory_identically(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    mem0, mem1 = np.load(tmp_path / "memory0.npy"), np.load(tmp_path / "memory1.npy")
    np.testing.assert_array_equal(mem0, mem1)
    # equal to one process seeing both images
    outputs, targets = _case()
    outputs2, _ = _case(p1=(0, 1, 2, 0))
    outputs["embeddings"] = torch.cat([outputs["embeddings"], outputs2["embeddings"]]).detach()
    for key in ("cls_logits", "centerness_logits", "box_reg"):
        outputs[key] = torch.cat([outputs[key], outputs2[key]])
    targets = {k: torch.cat([v, v]) if torch.is_tensor(v) else v * 2 for k, v in targets.items()}
    ciae_losses(outputs, targets, config=CIAELossConfig(memory_rate=0.5), progress=0.25)
    np.testing.assert_allclose(mem0, outputs["category_memory"].numpy(), atol=1e-6)
