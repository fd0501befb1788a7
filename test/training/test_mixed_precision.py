"""Mixed precision: the autocast rules, losses in float32 whatever the forward pass ran in,
bf16 training terms close to fp32 ones, a finite fp16 step, and bf16 inference results."""
import copy

import numpy as np
import pytest
import torch

from panoptic_ros.checkpoint import load_checkpoint
from panoptic_ros.inference.predictor import Predictor, PredictorConfig
from panoptic_ros.precision import autocast_dtype, cpu_flags, cpu_has_native_bf16
from panoptic_ros.resources import default_weights
from panoptic_ros.synthstreet.scene import generate_scene
from panoptic_ros.training.datasets.loader import PanopticCollate
from panoptic_ros.training.engine import StepContext, to_float32, train_steps
from panoptic_ros.training.kinds import training_kind
from panoptic_ros.training.losses.discriminative import discriminative_loss
from panoptic_ros.training.losses.semantic import semantic_cross_entropy

from test_checkpoint_safety import one_thread  # noqa: F401 (autouse fixture)

CPU = torch.device("cpu")


def test_cpu_flags_read_the_x86_and_arm_lines():
    x86 = "processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_tile\nbugs\t\t: none\n"
    arm = "processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n"
    assert {"avx512_bf16", "amx_tile"} <= cpu_flags(x86) and "bugs" not in cpu_flags(x86)
    assert "bf16" in cpu_flags(arm)
    assert cpu_flags("model name\t: something\n") == frozenset()


def test_auto_means_bf16_only_on_a_cpu_with_native_bf16():
    native = bool(cpu_flags() & {"avx512_bf16", "amx_bf16", "bf16"})
    assert cpu_has_native_bf16() is native
    assert autocast_dtype("auto", CPU) == (torch.bfloat16 if native else None)
    assert autocast_dtype("off", CPU) is None and autocast_dtype("fp32", CPU) is None
    assert autocast_dtype("bf16", CPU) == torch.bfloat16 and autocast_dtype("fp16", CPU) == torch.float16
    with pytest.raises(ValueError, match="'int4'"):
        autocast_dtype("int4", CPU)


def test_to_float32_casts_floating_tensors_in_nested_outputs_only():
    outputs = {"a": torch.ones(2, dtype=torch.bfloat16), "b": [torch.ones(1, dtype=torch.float16),
                                                              torch.arange(3)], "c": "text"}
    cast = to_float32(outputs)
    assert cast["a"].dtype == torch.float32 and cast["b"][0].dtype == torch.float32
    assert cast["b"][1].dtype == torch.int64 and cast["c"] == "text"


def test_semantic_cross_entropy_of_float16_logits_is_the_float32_value():
    # 4x64x128 pixels of loss ~10 each sum to ~3e5, beyond float16's 65504.
    torch.manual_seed(0)
    logits = (torch.randn(4, 19, 64, 128) * 8).half()
    target = torch.randint(0, 19, (4, 64, 128))
    half = semantic_cross_entropy(logits, target)
    full = torch.nn.functional.cross_entropy(logits.float(), target)
    assert torch.isfinite(half) and half.dtype == torch.float32
    assert half.item() == pytest.approx(full.item(), rel=1e-5)


def test_discriminative_loss_counts_exactly_on_bf16_embeddings():
    # One instance of 1000 pixels: bf16 holds 1000 only to the nearest 8 (1000 -> 1000,
    # but 999 + 1 steps lose increments past 256), so counts and means must be float32.
    torch.manual_seed(0)
    embedding = torch.randn(1, 4, 40, 50)
    instance = torch.zeros(1, 40, 50, dtype=torch.long)
    instance[0, :20, :] = 1                      # 1000 pixels
    instance[0, 20:, :7] = 2                     # 140 pixels
    low = discriminative_loss(embedding.bfloat16(), instance)
    full = discriminative_loss(embedding.bfloat16().float(), instance)  # the same values, float32 arithmetic
    for name in ("var", "dist", "reg"):
        assert low[name].dtype == torch.float32
        assert low[name].item() == pytest.approx(full[name].item(), rel=1e-6, abs=1e-7), name


def _batch(kind: str, size=(256, 512), count=2):
    collate = PanopticCollate(targets=kind, label_space="cityscapes")
    return collate([generate_scene(4242, i, height=size[0], width=size[1]) for i in range(count)])


def _loss_terms(model, kind: str, batch, dtype) -> dict[str, float]:
    """The training loss terms of one batch, forward in ``dtype`` autocast (None = fp32)."""
    model = copy.deepcopy(model).train()  # CIAE's loss updates the model's memory in place
    images, targets = batch
    with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        outputs = model(images)
    losses = training_kind(kind).loss_fn(_loss_config(kind))(to_float32(outputs), targets, 0.5)
    return {name: value.item() for name, value in losses.items()}


def _loss_config(kind: str):
    return training_kind(kind).loss_config()


@pytest.mark.parametrize("kind", ["panonet", "ciae"])
def test_bf16_loss_terms_are_within_two_percent_of_float32(kind):
    model = load_checkpoint(default_weights(kind)).model.float()
    batch = _batch(kind)
    full = _loss_terms(model, kind, batch, None)
    low = _loss_terms(model, kind, batch, torch.bfloat16)
    assert set(full) == set(low)
    for name, value in full.items():
        assert np.isfinite(low[name]), name
        assert abs(low[name] - value) <= 0.02 * abs(value) + 1e-6, (name, value, low[name])


def test_an_fp16_autocast_step_at_full_size_gives_finite_losses():
    model = load_checkpoint(default_weights("panonet")).model.float()
    logged = []
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ctx = StepContext(loss_fn=training_kind("panonet").loss_fn(_loss_config("panonet")), optimizer=optimizer,
                      set_lr=lambda step: 1e-4, total_steps=1, device=CPU, amp_dtype=torch.float16,
                      scaler=torch.amp.GradScaler("cpu"), on_log=lambda step, values: logged.append(values))
    before = [p.detach().clone() for p in model.parameters()]
    assert train_steps(model, [_batch("panonet", size=(512, 1024), count=4)], ctx, step=0, stop_step=1) == 1
    (values,) = logged
    assert all(np.isfinite(v) for v in values.values()), values
    assert values["loss"] > 0
    # The scaler stepped (a skipped step would leave every weight as it was).
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("kind", ["panonet", "ciae"])
def test_bf16_predictions_agree_with_float32(kind):
    def predictor(precision):
        return Predictor.from_config(PredictorConfig(weights=default_weights(kind), device="cpu", backend="torch",
                                                     precision=precision, input_size=(256, 512)))

    # At least 99 % of the pixels of the 5 frames agree, and every frame at least 97 %
    # (bf16 keeps ~3 significant digits: CIAE's stuff boundaries, where two stuff
    # embeddings score nearly alike, move by a few pixels).
    full, low = predictor("fp32"), predictor("bf16")
    agreeing = []
    for index in range(5):
        rgb = generate_scene(777, index, height=256, width=512).image
        a, b = full.predict(rgb), low.predict(rgb)
        agreeing.append(float((a.panoptic == b.panoptic).mean()))
        assert sorted(s.id for s in a.segments) == sorted(s.id for s in b.segments), index
    assert min(agreeing) >= 0.97 and np.mean(agreeing) >= 0.99, agreeing


def test_the_deprecated_fp16_flag_means_precision_fp16():
    with pytest.warns(DeprecationWarning, match="precision"):
        config = PredictorConfig(weights=default_weights("panonet"), fp16=True)
    assert config.precision == "fp16"
    with pytest.raises(ValueError, match="contradicts"):
        PredictorConfig(weights=default_weights("panonet"), fp16=True, precision="bf16")
