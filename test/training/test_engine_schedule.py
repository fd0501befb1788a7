"""Learning-rate schedules, optimizer construction and parameter groups."""
import math

import pytest
import torch
from torch import nn

from panoptic_ros.training.optim import (OptimizerConfig, ScheduleConfig, build_optimizer, clip_gradients,
                                         lr_factor, set_learning_rate)


def test_poly_schedule_values():
    config = ScheduleConfig(total_steps=100, policy="poly", power=0.9)
    assert lr_factor(0, config) == 1.0
    assert lr_factor(50, config) == pytest.approx(0.5 ** 0.9)
    assert lr_factor(100, config) == 0.0
    assert lr_factor(150, config) == 0.0


def test_step_schedule_decays_at_the_papers_fractions():
    # CIAE: x0.1 at 60k and 80k of 90k iterations.
    config = ScheduleConfig(total_steps=90_000, policy="step", milestones=(60 / 90, 80 / 90), gamma=0.1)
    assert lr_factor(59_999, config) == 1.0
    assert lr_factor(60_000, config) == pytest.approx(0.1)
    assert lr_factor(79_999, config) == pytest.approx(0.1)
    assert lr_factor(80_000, config) == pytest.approx(0.01)


def test_linear_warmup_multiplies_the_schedule():
    config = ScheduleConfig(total_steps=100, policy="constant", warmup_steps=10, warmup_factor=0.1)
    assert lr_factor(0, config) == pytest.approx(0.1)
    assert lr_factor(5, config) == pytest.approx(0.55)
    assert lr_factor(10, config) == 1.0


@pytest.mark.parametrize("kwargs, message", [
    ({"total_steps": 0}, "total_steps"),
    ({"milestones": (0.9, 0.5)}, "milestones"),
    ({"warmup_steps": 1000}, "warmup_steps"),
])
def test_schedule_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ScheduleConfig(**kwargs)


def test_optimizers_and_groups():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    sgd = build_optimizer(model, OptimizerConfig(name="sgd", lr=0.01, momentum=0.9, weight_decay=1e-4))
    assert isinstance(sgd, torch.optim.SGD)
    decays = sorted(g["weight_decay"] for g in sgd.param_groups)
    assert decays == [0.0, 1e-4]  # norms and biases are not decayed
    assert sum(len(g["params"]) for g in sgd.param_groups) == 4
    adadelta = build_optimizer(model, OptimizerConfig(name="adadelta", lr=0.003))
    assert isinstance(adadelta, torch.optim.Adadelta)
    assert set_learning_rate(adadelta, 50, 0.003, ScheduleConfig(total_steps=100, power=1.0)) == pytest.approx(0.0015)
    assert all(g["lr"] == pytest.approx(0.0015) for g in adadelta.param_groups)


def test_clip_gradients_bounds_the_global_norm():
    w = nn.Parameter(torch.zeros(4))
    w.grad = torch.tensor([3.0, 4.0, 0.0, 0.0])
    assert float(clip_gradients([w], 0.0)) == pytest.approx(5.0)
    assert clip_gradients([w], 0.0, measure=False) is None     # nothing to clip, no norm wanted
    assert float(clip_gradients([w], 1.0, measure=False)) == pytest.approx(5.0)
    assert math.isclose(float(w.grad.norm()), 1.0, rel_tol=1e-5)
