"""PanoNet losses on hand-built embeddings and logits with values computed by hand."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from panoptic_ros.config import ConfigError, from_dict
from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.models.panonet import PanoNet, PanoNetConfig
from panoptic_ros.training.losses.discriminative import discriminative_loss
from panoptic_ros.training.losses.panonet import PanoNetLossConfig, align_target, panonet_losses
from panoptic_ros.training.losses.semantic import semantic_cross_entropy
from panoptic_ros.training.targets import panonet_targets
from panoptic_ros.types import PanopticResult


def embedding_of(rows: list[list[list[float]]]) -> torch.Tensor:
    """(1, E, h, w) from an h x w grid of E-vectors."""
    return torch.tensor(rows, dtype=torch.float32).permute(2, 0, 1).unsqueeze(0).requires_grad_()


def test_discriminative_loss_is_zero_within_all_margins():
    # Instance 1 within delta_v = 0.25 of its mean, instance 2 a single pixel, means
    # 3 apart (> 2 delta_d = 2), norms below delta_r = 6; background ignored.
    emb = embedding_of([[[0.1, 0.0], [-0.1, 0.0], [3.0, 0.0]],
                        [[0.0, 0.2], [0.0, -0.2], [99.0, 99.0]]])
    inst = torch.tensor([[[1, 1, 2], [1, 1, 0]]])
    terms = discriminative_loss(emb, inst)
    assert all(v.item() == 0.0 for v in terms.values())


def test_discriminative_loss_two_clusters_by_hand():
    # Instance 1: (0, 0) and (1, 0) -> mean (0.5, 0), both 0.5 away.
    # Instance 2: the single pixel (0.5, 0.5).
    emb = embedding_of([[[0.0, 0.0], [1.0, 0.0], [0.5, 0.5]]])
    inst = torch.tensor([[[1, 1, 2]]])
    terms = discriminative_loss(emb, inst, delta_v=0.25, delta_d=1.0, delta_r=0.6)
    var = ((0.5 - 0.25) ** 2 + 0.0) / 2                # mean over the two instances
    dist = (2 * 1.0 - 0.5) ** 2                          # both ordered pairs, / C(C-1) = 2
    reg = (max(0.5 - 0.6, 0) ** 2 + (math.sqrt(0.5) - 0.6) ** 2) / 2
    assert terms["var"].item() == pytest.approx(var, abs=1e-6)
    assert terms["dist"].item() == pytest.approx(dist, abs=1e-6)
    assert terms["reg"].item() == pytest.approx(reg, abs=1e-6)


def test_discriminative_loss_three_clusters_by_hand():
    # Single pixels at (0, 0), (1, 0), (0, 3): distances 1, 3 and sqrt(10); margin 2 delta_d = 4.
    emb = embedding_of([[[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]]])
    terms = discriminative_loss(emb, torch.tensor([[[1, 2, 3]]]), delta_d=2.0)
    hinges = [(4 - 1) ** 2, (4 - 3) ** 2, (4 - math.sqrt(10)) ** 2]
    assert terms["dist"].item() == pytest.approx(2 * sum(hinges) / (3 * 2), abs=1e-5)  # ordered pairs / C(C-1)
    assert terms["var"].item() == 0.0


def test_discriminative_loss_defaults_and_images_without_instances():
    # Image 0: one single-pixel instance whose mean has norm 6.5 (default delta_r = 6);
    # image 1: no instance, so it is left out of the mean over images.
    emb = embedding_of([[[6.5, 0.0]]]).detach().repeat(2, 1, 1, 1)
    terms = discriminative_loss(emb, torch.tensor([[[1]], [[0]]]))
    assert set(terms) == {"var", "dist", "reg"}
    assert terms["reg"].item() == pytest.approx(0.5 ** 2, abs=1e-6)
    assert terms["var"].item() == 0.0 and terms["dist"].item() == 0.0
    assert set(discriminative_loss(emb, torch.zeros(2, 1, 1, dtype=torch.int64))) == {"var", "dist", "reg"}


def test_discriminative_loss_refusals_say_why():
    with pytest.raises(ValueError) as refused:
        discriminative_loss(torch.zeros(1, 2, 3, 4), torch.zeros(1, 3, 5, dtype=torch.int64))
    assert str(refused.value) == ("embedding (1, 2, 3, 4) and instance (1, 3, 5) do not match "
                                  "(expected (B, E, h, w) and (B, h, w))")
    with pytest.raises(ValueError) as refused:
        discriminative_loss(torch.zeros(1, 2, 1, 2), torch.tensor([[[1, -1]]]))
    assert str(refused.value) == "instance ids must be >= 0 (0 = no instance)"


def test_discriminative_loss_batches_by_image():
    torch.manual_seed(0)
    emb = torch.randn(3, 4, 5, 6, requires_grad=True)
    inst = torch.zeros(3, 5, 6, dtype=torch.int64)
    inst[0, :2], inst[0, 2:4] = 1, 2     # two instances
    inst[1, 1:3, 1:4] = 5                # one instance (ids need not be consecutive)
    # image 2: none
    batch = discriminative_loss(emb, inst)
    first = discriminative_loss(emb[:1], inst[:1])
    second = discriminative_loss(emb[1:2], inst[1:2])
    # var and reg average the images with an instance; dist the images with two.
    for key in ("var", "reg"):
        torch.testing.assert_close(batch[key], (first[key] + second[key]) / 2)
    torch.testing.assert_close(batch["dist"], first["dist"])
    assert second["dist"].item() == 0.0


def test_zero_and_one_instance_batches_give_finite_values_and_gradients():
    emb = torch.randn(2, 3, 4, 4, requires_grad=True)
    terms = discriminative_loss(emb, torch.zeros(2, 4, 4, dtype=torch.int64))
    assert all(v.item() == 0.0 for v in terms.values())
    sum(terms.values()).backward()
    assert torch.equal(emb.grad, torch.zeros_like(emb))
    emb.grad = None
    one = torch.zeros(2, 4, 4, dtype=torch.int64)
    one[0, 0, 0] = 1                                       # one single-pixel instance
    terms = discriminative_loss(emb, one)
    sum(terms.values()).backward()
    assert torch.isfinite(emb.grad).all()


def test_coincident_means_give_finite_gradients():
    emb = torch.zeros(1, 2, 2, 2, requires_grad=True)     # two instances, identical means
    inst = torch.tensor([[[1, 1], [2, 2]]])
    terms = discriminative_loss(emb, inst)
    assert terms["dist"].item() == pytest.approx(4.0)
    sum(terms.values()).backward()
    assert torch.isfinite(emb.grad).all()


def test_semantic_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 3, 5)
    target = torch.randint(0, 4, (2, 3, 5))
    target[0, 0] = 255
    torch.testing.assert_close(semantic_cross_entropy(logits, target), F.cross_entropy(logits, target, ignore_index=255))
    weights = [1.0, 2.0, 0.5, 3.0]
    torch.testing.assert_close(semantic_cross_entropy(logits, target, class_weights=weights),
                               F.cross_entropy(logits, target, weight=torch.tensor(weights), ignore_index=255))
    logits.requires_grad_()
    empty = semantic_cross_entropy(logits, torch.full((2, 3, 5), 255))
    empty.backward()
    assert empty.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))
    with pytest.raises(ValueError, match="outside"):
        semantic_cross_entropy(logits, torch.full((2, 3, 5), 7))


@pytest.mark.parametrize("logits_shape, target_shape", [((1, 3, 4, 4), (1, 4, 5)), ((1, 3, 4, 4), (2, 4, 4)),
                                                         ((3, 4, 4), (3, 4))])
def test_semantic_cross_entropy_names_both_shapes_when_they_do_not_match(logits_shape, target_shape):
    with pytest.raises(ValueError) as refused:
        semantic_cross_entropy(torch.zeros(logits_shape), torch.zeros(target_shape, dtype=torch.int64))
    assert str(refused.value) == (f"logits {logits_shape} and target {target_shape} do not match "
                                  "(expected (B, C, h, w) and (B, h, w))")


def test_semantic_cross_entropy_refuses_the_label_one_past_the_last_class_and_bad_weights():
    logits, target = torch.zeros(1, 4, 2, 2), torch.zeros(1, 2, 2, dtype=torch.int64)
    target[0, 1, 1] = 4  # classes are 0..3
    with pytest.raises(ValueError) as refused:
        semantic_cross_entropy(logits, target)
    assert str(refused.value) == "target holds labels outside [0, 4) other than 255"
    with pytest.raises(ValueError) as refused:
        semantic_cross_entropy(logits, torch.zeros_like(target), class_weights=[1.0, 2.0, 3.0])
    assert str(refused.value) == "class_weights: expected 4 values, got (3,)"


def fake_outputs(batch: int, size: tuple[int, int], classes: int = 19, dims: int = 12, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for s in (4, 8, 16):
        hs, ws = -(-size[0] // s), -(-size[1] // s)
        out[f"semantic_logits_{s}"] = torch.randn(batch, classes, hs, ws, generator=g, requires_grad=True)
        out[f"embedding_{s}"] = torch.randn(batch, dims, hs, ws, generator=g, requires_grad=True)
    return out


def fake_targets(outputs, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    targets = {}
    for s in (4, 8, 16):
        b, _, h, w = outputs[f"semantic_logits_{s}"].shape
        targets[f"semantic_{s}"] = torch.randint(0, 19, (b, h, w), generator=g)
        targets[f"instance_{s}"] = torch.randint(0, 4, (b, h, w), generator=g)
    return targets


def test_panonet_losses_weight_each_term():
    config = PanoNetLossConfig(gamma=0.5, delta_r=0.0, class_weights=tuple(np.linspace(0.5, 2, 19)))
    outputs = fake_outputs(2, (64, 96))
    targets = fake_targets(outputs)
    losses = panonet_losses(outputs, targets, config=config, progress=0.0)
    assert len(losses) == 12
    for s, lam in zip((4, 8, 16), (1.0, 0.4, 0.16)):
        ce = semantic_cross_entropy(outputs[f"semantic_logits_{s}"], targets[f"semantic_{s}"],
                                    class_weights=config.class_weights)
        torch.testing.assert_close(losses[f"semantic_ce_{s}"], lam * ce)
        terms = discriminative_loss(outputs[f"embedding_{s}"], targets[f"instance_{s}"], delta_r=0.0)
        torch.testing.assert_close(losses[f"instance_var_{s}"], lam * terms["var"])
        torch.testing.assert_close(losses[f"instance_dist_{s}"], lam * terms["dist"])
        torch.testing.assert_close(losses[f"instance_reg_{s}"], lam * 0.5 * terms["reg"])
        assert terms["reg"].item() > 0
    sum(losses.values()).backward()


def test_zero_instance_weight_gives_zero_terms_with_a_graph():
    outputs = fake_outputs(1, (64, 64))
    losses = panonet_losses(outputs, fake_targets(outputs), config=PanoNetLossConfig(instance_weight=0.0), progress=0.0)
    assert all(v.item() == 0.0 for k, v in losses.items() if k.startswith("instance_"))
    assert losses["semantic_ce_4"].item() > 0
    sum(losses.values()).backward()
    assert torch.equal(outputs["embedding_4"].grad, torch.zeros_like(outputs["embedding_4"]))


def test_floor_sized_targets_are_padded_and_other_sizes_rejected():
    target = torch.ones(1, 3, 4, dtype=torch.int64)
    padded = align_target(target, (4, 5), fill=255, name="semantic_4")
    assert padded.shape == (1, 4, 5) and padded[0, 3].tolist() == [255] * 5 and padded[0, :3, :4].eq(1).all()
    with pytest.raises(ValueError, match="semantic_4"):
        align_target(target, (6, 4), fill=255, name="semantic_4")
    outputs = fake_outputs(1, (64, 64))
    targets = fake_targets(outputs)
    del targets["instance_8"]
    with pytest.raises(KeyError, match="instance_8"):
        panonet_losses(outputs, targets, config=PanoNetLossConfig(), progress=0.0)


def test_model_outputs_align_with_training_targets_at_odd_sizes():
    height, width = 77, 149
    panoptic = np.full((height, width), 7000, np.int32)
    panoptic[10:40, 20:60] = 26001
    panoptic[50:70, 100:140] = 26002
    target = PanopticResult.from_panoptic_map(panoptic, CITYSCAPES)
    targets = {k: torch.from_numpy(v)[None] for k, v in panonet_targets(target, CITYSCAPES).items()}
    model = PanoNet(PanoNetConfig(width=0.125, blocks=(1, 1, 1, 1))).train()
    losses = panonet_losses(model(torch.rand(1, 3, height, width) * 255), targets, config=PanoNetLossConfig(),
                            progress=0.0)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["instance_dist_4"].item() > 0 or losses["instance_var_4"].item() > 0


def test_loss_config_validation():
    assert from_dict(PanoNetLossConfig, {"scale_weights": [1, 0.5, 0.25]}).scale_weights == (1.0, 0.5, 0.25)
    with pytest.raises(ConfigError, match="delta_d"):
        from_dict(PanoNetLossConfig, {"delta_d": 0.2})
    with pytest.raises(ConfigError, match="gamma"):
        from_dict(PanoNetLossConfig, {"gamma": -1})


def test_the_collates_instance_slots_give_the_same_terms_without_a_host_read():
    from panoptic_ros.sync_count import count_torch
    from panoptic_ros.synthstreet.scene import generate_scene
    from panoptic_ros.training.datasets.loader import PanopticCollate

    batch = PanopticCollate(targets="panonet", label_space="cityscapes")(
        [generate_scene(5, i, height=64, width=128) for i in range(2)])
    instance = batch.targets["instance_4"]
    assert batch.targets["instance_slots"] == int(max(batch.targets[f"instance_{s}"].max() for s in (4, 8, 16))) + 1
    assert instance.max() > 1
    emb = torch.randn(2, 4, *instance.shape[1:], requires_grad=True)
    with count_torch() as counts:
        given = discriminative_loss(emb, instance, slots=batch.targets["instance_slots"])
    read = discriminative_loss(emb, instance)
    assert counts.host_reads == 0
    for key in read:
        torch.testing.assert_close(given[key], read[key])
    with pytest.raises(ValueError, match=">= 0"):
        discriminative_loss(emb, instance - 1)


def test_panonet_losses_pass_every_margin_and_weight_on():
    config = PanoNetLossConfig(delta_v=0.1, delta_d=0.6, delta_r=0.5, alpha=2.0, beta=3.0, gamma=0.5,
                               semantic_weight=1.5, instance_weight=0.5, ignore_index=254)
    outputs = fake_outputs(1, (32, 32))
    targets = fake_targets(outputs)
    targets["semantic_4"][0, 0] = 254  # unlabelled under this config's ignore_index
    losses = panonet_losses(outputs, targets, config=config, progress=0.0)
    ce = F.cross_entropy(outputs["semantic_logits_4"], targets["semantic_4"], ignore_index=254)
    torch.testing.assert_close(losses["semantic_ce_4"], 1.5 * ce)
    terms = discriminative_loss(outputs["embedding_4"], targets["instance_4"], delta_v=0.1, delta_d=0.6, delta_r=0.5)
    assert min(v.item() for v in terms.values()) > 0
    for name, weight in (("var", 2.0), ("dist", 3.0), ("reg", 0.5)):
        torch.testing.assert_close(losses[f"instance_{name}_4"], 0.5 * weight * terms[name])


def test_floor_sized_targets_equal_targets_padded_with_the_ignore_values():
    outputs = fake_outputs(1, (60, 60))   # stride 8: 8 x 8 outputs (ceil 7.5)
    targets = fake_targets(outputs)
    floor = {k: v[:, :-1, :-1] for k, v in targets.items()}
    padded = {k: v.clone() for k, v in targets.items()}
    for key, fill in (("semantic", 255), ("instance", 0)):
        for s in (4, 8, 16):
            padded[f"{key}_{s}"][:, -1, :] = fill
            padded[f"{key}_{s}"][:, :, -1] = fill
    got = panonet_losses(outputs, floor, config=PanoNetLossConfig(), progress=0.0)
    expected = panonet_losses(outputs, padded, config=PanoNetLossConfig(), progress=0.0)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name])
    one_side = align_target(torch.ones(1, 2, 3, dtype=torch.int64), (3, 3), fill=255, name="x")
    assert one_side[0, 2].tolist() == [255] * 3 and one_side[0, :2].eq(1).all()


@pytest.mark.parametrize("key", ["semantic_4", "instance_8"])
def test_a_target_of_the_wrong_size_is_named(key):
    outputs = fake_outputs(1, (64, 64))
    targets = fake_targets(outputs)
    targets[key] = targets[key][:, :-2]
    with pytest.raises(ValueError) as refused:
        panonet_losses(outputs, targets, config=PanoNetLossConfig(), progress=0.0)
    assert str(refused.value).startswith(f"targets['{key}'] has shape ")


@pytest.mark.parametrize("where, key", [("outputs", "semantic_logits_4"), ("outputs", "embedding_8"),
                                        ("targets", "semantic_16"), ("targets", "instance_4")])
def test_a_missing_output_or_target_is_named(where, key):
    outputs = fake_outputs(1, (64, 64))
    given = {"outputs": outputs, "targets": fake_targets(outputs)}
    del given[where][key]
    with pytest.raises(KeyError) as missing:
        panonet_losses(given["outputs"], given["targets"], config=PanoNetLossConfig(), progress=0.0)
    assert missing.value.args[0].startswith(f"{where}['{key}'] is missing (have [")


@pytest.mark.parametrize("field", ["delta_v", "delta_r", "alpha", "beta", "gamma", "semantic_weight",
                                   "instance_weight"])
def test_loss_config_refusals_name_the_field_and_value(field):
    with pytest.raises(ValueError) as refused:
        PanoNetLossConfig(**{field: -1.0})
    assert str(refused.value) == f"{field}: must be >= 0, got -1.0"


def test_loss_config_margins_and_class_weights():
    with pytest.raises(ValueError, match="delta_d: must exceed delta_v"):
        PanoNetLossConfig(delta_v=0.5, delta_d=0.5)
    with pytest.raises(ValueError) as refused:
        PanoNetLossConfig(class_weights=(1.0, -0.5))
    assert str(refused.value) == "class_weights: every weight must be >= 0"
    assert PanoNetLossConfig(class_weights=()).class_weights == ()
    assert PanoNetLossConfig(class_weights=(0.0, 1.0)).class_weights == (0.0, 1.0)
