"""train_steps (accumulation, mixed precision on CUDA) and evaluate (PQ + mIoU)."""
import numpy as np
import pytest
import torch

from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.models.panonet import PanoNet, PanoNetConfig
from panoptic_ros.sync_count import count_torch
from panoptic_ros.synthstreet.scene import generate_scene
from panoptic_ros.training.datasets.loader import Batch, PanopticCollate
from panoptic_ros.training.engine import NonFiniteLossError, StepContext, evaluate, train_steps
from panoptic_ros.training.kinds import training_kind
from panoptic_ros.training.losses.panonet import PanoNetLossConfig
from panoptic_ros.types import PanopticResult

from test_checkpoint_safety import one_thread  # noqa: F401 (autouse fixture)


def tiny_panonet():
    torch.manual_seed(0)
    return PanoNet(PanoNetConfig(input_size=(64, 128), width=0.125, blocks=(1, 1, 1, 1), psp_bins=(1, 2),
                                 embedding_dim=4))


def batches(count, batch_size=2):
    collate = PanopticCollate(targets="panonet", label_space="cityscapes")
    return [collate([generate_scene(31, b * batch_size + i, height=64, width=128) for i in range(batch_size)])
            for b in range(count)]


def context(model, device, loss=PanoNetLossConfig(), **kwargs):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return StepContext(loss_fn=training_kind("panonet").loss_fn(loss), optimizer=optimizer,
                       set_lr=lambda step: 0.01, total_steps=10, device=device, **kwargs)


def test_steps_stop_at_stop_step_and_when_batches_run_out():
    model = tiny_panonet()
    logged = []
    ctx = context(model, torch.device("cpu"), accumulate=2, on_log=lambda step, values: logged.append((step, values)))
    data = batches(5)
    assert train_steps(model, data, ctx, step=3, stop_step=4) == 4      # one step = 2 micro-batches
    assert train_steps(model, data, ctx, step=4, stop_step=10) == 6     # 5 batches -> 2 whole steps
    assert [s for s, _ in logged] == [4, 5, 6]
    values = logged[0][1]
    assert {"semantic_ce_4", "instance_var_4", "instance_dist_16", "loss", "lr", "grad_norm"} <= set(values)
    terms = [v for k, v in values.items() if k not in ("loss", "lr", "grad_norm")]
    assert values["loss"] == pytest.approx(sum(terms))


def test_accumulation_steps_on_the_mean_of_the_micro_batch_gradients():
    # Reference, by hand: the gradient of each micro-batch's summed loss terms on the same
    # starting weights, averaged. The engine must step on exactly that (not on the sum).
    data = batches(2, batch_size=1)
    loss_fn = training_kind("panonet").loss_fn(PanoNetLossConfig())
    reference = tiny_panonet().train()
    per_batch = []
    for images, targets in data:
        reference.zero_grad()
        sum(loss_fn(reference(images), targets, 0.0).values()).backward()
        per_batch.append({n: p.grad.clone() for n, p in reference.named_parameters() if p.grad is not None})
    expected = {n: (per_batch[0][n] + per_batch[1][n]) / 2 for n in per_batch[0]}

    model = tiny_panonet()
    ctx = context(model, torch.device("cpu"), accumulate=2)
    seen = []
    ctx.optimizer.register_step_pre_hook(lambda *_: seen.append(
        {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    assert train_steps(model, data, ctx, step=0, stop_step=1) == 1
    (grads,) = seen
    assert grads.keys() == expected.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected[name], rtol=1e-4, atol=1e-6, msg=name)
    assert max(float(g.abs().max()) for g in expected.values()) > 1e-3  # not a vacuous comparison


def test_non_finite_input_stops_before_any_weight_changes():
    model = tiny_panonet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = batches(1)
    data[0].images = data[0].images.float()     # float images still go through unchanged
    data[0].images[0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"loss term 'semantic_ce_4' is nan at step 7"):
        train_steps(model, data, context(model, torch.device("cpu")), step=7, stop_step=8)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if not k.endswith(("running_mean", "running_var",
                                                                                   "num_batches_tracked")))


def test_a_training_step_reads_the_device_on_the_host_once():
    # The real PanoNet and its full loss (the discriminative terms take their slots from
    # the collate), accumulating 2 micro-batches with gradient clipping: 4 steps, 2 of
    # them logging. Each step's one read is the loss terms (with the gradient norm when
    # logging).
    model = tiny_panonet()
    logged = []
    ctx = context(model, torch.device("cpu"), accumulate=2, grad_clip=5.0, log_every=2,
                  on_log=lambda step, values: logged.append((step, values)))
    data = batches(8, batch_size=1)
    with count_torch() as counts:
        assert train_steps(model, data, ctx, step=0, stop_step=4) == 4
    assert [step for step, _ in logged] == [2, 4] and logged[-1][1]["grad_norm"] > 0
    assert logged[-1][1]["instance_var_4"] > 0 and data[0].targets["instance_slots"] > 1
    assert counts.host_reads == 4 and counts.reads_by_op == {"tolist": 4}, counts.reads_by_op


def test_uint8_batches_train_exactly_as_the_float32_collation_did():
    # The old collation gave float32 images; now uint8, converted on the device. On one
    # fixed batch the step's loss terms and the weights after it agree to 0 (tolerance 0:
    # uint8 -> float32 is exact, and the same float32 ops follow).
    (batch,) = batches(1)
    samples = batch.samples
    old = Batch(torch.from_numpy(np.stack([s.image for s in samples])).permute(0, 3, 1, 2).float().contiguous(),
                batch.targets, samples)
    assert batch.images.dtype == torch.uint8 and torch.equal(batch.images.float(), old.images)
    results = []
    for data in (batch, old):
        model, logged = tiny_panonet(), []
        train_steps(model, [data], context(model, torch.device("cpu"), grad_clip=5.0,
                                           on_log=lambda step, values: logged.append(values)), step=0, stop_step=1)
        results.append((logged[0], model.state_dict()))
    (new_values, new_weights), (old_values, old_weights) = results
    assert new_values == old_values and new_values["loss"] > 0
    assert all(torch.equal(new_weights[k], old_weights[k]) for k in old_weights)


def test_evaluate_scores_perfect_and_partial_predictions():
    samples = [generate_scene(32, i, height=64, width=128) for i in range(2)]
    perfect = evaluate(lambda rgb: next(s.target for s in samples if s.image is rgb), samples,
                       label_space=CITYSCAPES)
    assert perfect["All"]["pq"] == 1.0 and perfect["miou"] == 1.0 and perfect["images"] == 2

    def road_everywhere(rgb):
        return PanopticResult.from_panoptic_map(np.full(rgb.shape[:2], 7000, np.int32), CITYSCAPES)

    poor = evaluate(road_everywhere, samples, label_space=CITYSCAPES)
    assert poor["Things"]["pq"] == 0.0 and 0 < poor["miou"] < 0.5
    assert poor["semantic"]["per_class"][7] > 0  # road IoU


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_mixed_precision_steps_on_cuda(dtype):
    device = torch.device("cuda")
    model = tiny_panonet().to(device)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    logged = []
    ctx = context(model, device, amp_dtype=dtype, scaler=scaler, grad_clip=5.0,
                  on_log=lambda step, values: logged.append(values))
    before = [p.detach().clone() for p in model.parameters()]
    assert train_steps(model, batches(2), ctx, step=0, stop_step=2) == 2
    assert all(np.isfinite(v) for v in logged[-1].values())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_validation_logs_scalars_and_images_to_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from panoptic_ros.training.config import train_config_from_dict
    from panoptic_ros.training.evaluate import evaluate_model, log_evaluation
    from panoptic_ros.training.logs import RunLogger
    from test_distributed import TINY_PANONET

    config = train_config_from_dict({**TINY_PANONET, "eval": {"count": 1, "images": 1}})
    model = tiny_panonet()
    model.train()
    logger = RunLogger(tmp_path, total_steps=1, progress_bar=False)
    torch.manual_seed(3)
    expected = torch.rand(1)
    torch.manual_seed(3)
    forwards = []
    model.register_forward_hook(lambda module, args, output: forwards.append(args[0].shape))
    summary = evaluate_model(model, config, count=1, logger=logger, step=5)
    assert len(forwards) == 1   # the embedding image reuses the evaluated forward pass
    log_evaluation(logger, 5, summary)
    logger.close()
    assert torch.equal(torch.rand(1), expected)  # evaluation left the training RNG stream alone
    assert model.training
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0}).Reload()
    assert {"val/overlay_0", "val/embedding_pca_0"} <= set(events.Tags()["images"])
    assert {"val/pq_All", "val/pq_Things", "val/pq_Stuff", "val/miou"} <= set(events.Tags()["scalars"])
