"""The model-kind tables: panoptic_ros.kinds (inference) and training.kinds (losses) cover the
same kinds, and every record's members are what the code using them expects."""
import dataclasses
import inspect
import typing

import pytest
from torch import nn

from panoptic_ros.config import ConfigError
from panoptic_ros.kinds import KINDS, MODEL_KINDS, ModelKind, build_model, model_config_from_dict, model_kind
from panoptic_ros.labels import LabelSpace
from panoptic_ros.resources import SHIPPED_KINDS
from panoptic_ros.training.kinds import TRAINING_KINDS, training_kind
from panoptic_ros.types import PanopticResult


def test_both_tables_list_the_same_kinds_under_their_own_names():
    assert tuple(TRAINING_KINDS) == MODEL_KINDS == tuple(KINDS)
    assert all(name == record.name for name, record in KINDS.items())
    assert all(record.model is KINDS[name] for name, record in TRAINING_KINDS.items())
    assert set(SHIPPED_KINDS) <= set(KINDS)


@pytest.mark.parametrize("name", MODEL_KINDS)
def test_an_inference_record_holds_the_classes_and_function_of_its_kind(name):
    record = KINDS[name]
    assert isinstance(record, ModelKind)
    assert dataclasses.is_dataclass(record.config) and record.config.__dataclass_params__.frozen
    assert typing.get_type_hints(record.config)["kind"] == typing.Literal[name]
    assert issubclass(record.model, nn.Module)
    assert record.embedding_output in record.model.OUTPUT_NAMES
    assert dataclasses.is_dataclass(record.postprocess_config) and record.postprocess_config.__dataclass_params__.frozen
    hints = typing.get_type_hints(record.postprocess)
    assert hints["config"] is record.postprocess_config
    assert hints["label_space"] is LabelSpace and hints["return"] is PanopticResult


@pytest.mark.parametrize("name", MODEL_KINDS)
def test_every_loss_function_has_the_one_shared_signature(name):
    record = TRAINING_KINDS[name]
    assert dataclasses.is_dataclass(record.loss_config)
    parameters = inspect.signature(record.losses).parameters
    assert list(parameters) == ["outputs", "targets", "config", "progress"]
    assert [p.kind for p in parameters.values()] == [inspect.Parameter.POSITIONAL_OR_KEYWORD] * 2 + \
        [inspect.Parameter.KEYWORD_ONLY] * 2
    assert all(p.default is inspect.Parameter.empty for p in parameters.values())
    assert typing.get_type_hints(record.losses)["config"] is record.loss_config


@pytest.mark.parametrize("name", MODEL_KINDS)
def test_a_config_dict_builds_the_model_class_of_its_kind(name):
    config = model_config_from_dict({"kind": name})
    assert type(config) is KINDS[name].config
    assert type(build_model(config)) is KINDS[name].model


def test_unknown_kinds_are_refused_by_name():
    with pytest.raises(ConfigError, match=r"model.kind: unknown model 'unet'; choose one of panonet, ciae"):
        model_kind("unet")
    with pytest.raises(ConfigError, match=r"model.kind: unknown model 'unet'"):
        model_config_from_dict({"kind": "unet"})
    with pytest.raises(ConfigError, match=r"model.kind: unknown model 'unet'"):
        training_kind("unet")
