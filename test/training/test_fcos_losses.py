"""FCOS losses: focal loss, IoU/GIoU loss and the three normalised terms, by hand."""
import math

import pytest
import torch

from panoptic_ros.training.losses.fcos import fcos_losses, iou_loss, sigmoid_focal_loss


def test_focal_loss_by_hand():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # p = 0.5, 0.75
    targets = torch.tensor([[1.0, 0.0]])
    loss = sigmoid_focal_loss(logits, targets)
    # positive: 0.25 * (1 - 0.5)^2 * -log 0.5; negative: 0.75 * 0.75^2 * -log(1 - 0.75)
    assert loss[0, 0].item() == pytest.approx(0.25 * 0.25 * math.log(2))
    assert loss[0, 1].item() == pytest.approx(0.75 * 0.5625 * math.log(4))


def test_iou_and_giou_losses_by_hand():
    pred = torch.tensor([[1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0]])
    target = torch.tensor([[2.0, 2.0, 2.0, 2.0], [2.0, 2.0, 2.0, 2.0]])
    iou = iou_loss(pred, target, "iou")
    assert iou[0].item() == pytest.approx(-math.log(4 / 16))
    assert iou[1].item() == pytest.approx(0.0, abs=1e-6)
    # pred 2 wide (l=0, r=2), target 2 wide (l=2, r=0): disjoint only in x -> IoU 0 but GIoU sees the gap
    pred = torch.tensor([[0.0, 1.0, 2.0, 1.0]])
    target = torch.tensor([[2.0, 1.0, 0.0, 1.0]])
    giou = iou_loss(pred, target, "giou")
    # inter 0, union 8, enclosing 4 x 2 = 8 -> GIoU = 0 - 0 = 0 -> loss 1
    assert giou.item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="iou_kind"):
        iou_loss(pred, target, "diou")


def _outputs(n=3, c=2, requires_grad=True):
    torch.manual_seed(0)
    out = {"cls_logits": torch.randn(1, n, c), "centerness_logits": torch.randn(1, n),
           "box_reg": torch.rand(1, n, 4) * 10 + 1}
    return {k: v.requires_grad_(requires_grad) for k, v in out.items()}


def test_fcos_terms_by_hand():
    out = _outputs()
    targets = {"fcos_labels": torch.tensor([[1, -1, 0]]),
               "fcos_boxes": torch.tensor([[[3.0, 4.0, 5.0, 6.0], [0, 0, 0, 0], [1.0, 1.0, 2.0, 2.0]]]),
               "fcos_centerness": torch.tensor([[0.5, 0.0, 0.25]])}
    losses = fcos_losses(out, targets)
    onehot = torch.tensor([[[0.0, 1.0], [0.0, 0.0], [1.0, 0.0]]])
    cls = sigmoid_focal_loss(out["cls_logits"], onehot).sum() / 2
    pos = torch.tensor([0, 2])
    ctr = torch.nn.functional.binary_cross_entropy_with_logits(
        out["centerness_logits"][0, pos], torch.tensor([0.5, 0.25]), reduction="sum") / 2
    reg_each = iou_loss(out["box_reg"][0, pos], targets["fcos_boxes"][0, pos])
    reg = (reg_each * torch.tensor([0.5, 0.25])).sum() / 0.75  # centre-ness weighted mean
    torch.testing.assert_close(losses["fcos_cls"], cls)
    torch.testing.assert_close(losses["fcos_ctr"], ctr)
    torch.testing.assert_close(losses["fcos_reg"], reg)
    sum(losses.values()).backward()
    assert all(v.grad is not None for v in out.values())


def test_no_positives_keeps_every_output_in_the_graph():
    out = _outputs()
    targets = {"fcos_labels": [torch.tensor([-1, -1, -1])], "fcos_boxes": [torch.zeros(3, 4)],
               "fcos_centerness": [torch.zeros(3)]}
    losses = fcos_losses(out, targets)
    assert losses["fcos_ctr"].item() == 0 and losses["fcos_reg"].item() == 0
    torch.testing.assert_close(losses["fcos_cls"], sigmoid_focal_loss(out["cls_logits"], torch.zeros(1, 3, 2)).sum())
    sum(losses.values()).backward()
    assert out["box_reg"].grad is not None and out["centerness_logits"].grad is not None


def test_mismatched_targets_raise():
    out = _outputs()
    bad = {"fcos_labels": torch.tensor([[0, -1]]), "fcos_boxes": torch.zeros(1, 2, 4),
           "fcos_centerness": torch.zeros(1, 2)}
    with pytest.raises(ValueError, match="fcos_labels.*locations"):
        fcos_losses(out, bad)
    bad = {"fcos_labels": torch.tensor([[0, -1, 7]]), "fcos_boxes": torch.zeros(1, 3, 4),
           "fcos_centerness": torch.zeros(1, 3)}
    with pytest.raises(ValueError, match="-1..1"):
        fcos_losses(out, bad)


def _focal_by_hand(logit: float, target: float, alpha: float, gamma: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    p_t, alpha_t = (p, alpha) if target else (1 - p, 1 - alpha)
    return alpha_t * (1 - p_t) ** gamma * -math.log(p_t)


def test_focal_loss_with_gamma_one_and_other_alpha():
    loss = sigmoid_focal_loss(torch.tensor([[0.5, 0.5]]), torch.tensor([[1.0, 0.0]]), alpha=0.4, gamma=1.0)
    assert loss[0, 0].item() == pytest.approx(_focal_by_hand(0.5, 1, 0.4, 1.0))
    assert loss[0, 1].item() == pytest.approx(_focal_by_hand(0.5, 0, 0.4, 1.0))


def test_iou_and_giou_of_boxes_with_four_different_sides():
    pred, target = torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.tensor([[2.0, 3.0, 1.0, 5.0]])
    # intersection (1 + 1) x (2 + 4) = 12, areas 4 x 6 = 24 and 3 x 8 = 24, union 36;
    # enclosing (2 + 3) x (3 + 5) = 40
    assert iou_loss(pred, target, "iou").item() == pytest.approx(-math.log(12 / 36))
    assert iou_loss(pred, target, "giou").item() == pytest.approx(1 - (12 / 36 - (40 - 36) / 40))


def test_one_positive_location_with_other_focal_settings_and_giou():
    out = {"cls_logits": torch.tensor([[[0.5], [-1.0]]], requires_grad=True),
           "centerness_logits": torch.tensor([[0.3, 0.0]], requires_grad=True),
           "box_reg": torch.tensor([[[1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]]], requires_grad=True)}
    targets = {"fcos_labels": torch.tensor([[0, -1]]),
               "fcos_boxes": torch.tensor([[[2.0, 3.0, 1.0, 5.0], [0.0, 0.0, 0.0, 0.0]]]),
               "fcos_centerness": torch.tensor([[0.5, 0.0]])}
    losses = fcos_losses(out, targets, focal_alpha=0.4, focal_gamma=1.0, iou_kind="giou")
    cls = _focal_by_hand(0.5, 1, 0.4, 1.0) + _focal_by_hand(-1.0, 0, 0.4, 1.0)  # / one positive
    p = 1 / (1 + math.exp(-0.3))
    ctr = -(0.5 * math.log(p) + 0.5 * math.log(1 - p))
    assert losses["fcos_cls"].item() == pytest.approx(cls, rel=1e-5)
    assert losses["fcos_ctr"].item() == pytest.approx(ctr, rel=1e-5)
    assert losses["fcos_reg"].item() == pytest.approx(1 - (12 / 36 - (40 - 36) / 40), rel=1e-5)


@pytest.mark.parametrize("labels", [[[0, -1, 2]], [[0, -2, 1]]])
def test_labels_just_outside_the_classes_are_refused(labels):
    bad = {"fcos_labels": torch.tensor(labels), "fcos_boxes": torch.zeros(1, 3, 4), "fcos_centerness": torch.zeros(1, 3)}
    with pytest.raises(ValueError) as refused:
        fcos_losses(_outputs(), bad)
    assert str(refused.value) == "targets['fcos_labels']: values must lie in -1..1"


def test_refusals_name_the_target_and_the_shapes():
    good = {"fcos_labels": [torch.tensor([-1, -1, -1])], "fcos_boxes": [torch.zeros(3, 4)],
            "fcos_centerness": [torch.zeros(3)]}
    for name in good:
        with pytest.raises(ValueError) as refused:
            fcos_losses(_outputs(), {**good, name: []})
        assert str(refused.value) == f"targets['{name}']: empty list"
    with pytest.raises(ValueError) as refused:
        fcos_losses(_outputs(), {**good, "fcos_labels": torch.tensor([[0, -1]])})
    assert str(refused.value) == ("targets['fcos_labels']: shape (1, 2) does not match the model's (1, 3) "
                                  "locations (image size or level layout differs)")
