"""Training checkpoints: stored without pickle, complete or absent, and foreign or malicious
files refused without being executed."""
import json
import pickle
import random

import numpy as np
import pytest
import torch
from panoptic_ros.checkpoint import CheckpointError
from panoptic_ros.models.ciae import CIAE, CIAEConfig
from panoptic_ros.training.state import (Progress, capture_rng, list_checkpoints, load_training_checkpoint,
                                         read_training_state, resolve_resume, restore_rng,
                                         save_training_checkpoint)


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine extra threads mostly spin."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Evil:
    """Unpickling this object creates ``marker``: proof that a file was executed."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write_evil_files(tmp_path):
    marker = tmp_path / "executed.marker"
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps({"state_dict": Evil(marker)}))
    zipped = tmp_path / "evil.pt"
    torch.save({"state_dict": Evil(marker)}, zipped)
    return marker, [raw, zipped]


def tiny_model():
    """A real (tiny) CIAE: its buffers include the category memory."""
    torch.manual_seed(0)
    config = CIAEConfig(depth=18, base_channels=8, fpn_channels=16, seg_channels=16, box_embed_channels=8,
                        embed_dim=8, head_convs=1, input_size=(64, 64))
    return CIAE(config)


def train_a_little(model, optimizer):
    for _ in range(2):
        outputs = model(torch.rand(2, 3, 64, 64) * 255)
        loss = sum(v.float().square().mean() for k, v in outputs.items() if v.requires_grad)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


@pytest.mark.parametrize("name", ["sgd", "adadelta", "adamw"])
def test_optimizer_state_round_trips_exactly(tmp_path, name):
    from panoptic_ros.training import state

    model = tiny_model()
    optimizer = {"sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
                 "adadelta": lambda p: torch.optim.Adadelta(p, lr=0.1),
                 "adamw": lambda p: torch.optim.AdamW(p, lr=0.1, betas=(0.8, 0.95))}[name](model.parameters())
    train_a_little(model, optimizer)
    folder = _save(tmp_path, model, optimizer)
    body, tensors = read_training_state(folder)
    restored = state._unflatten(body["optimizer"], tensors, "x")
    original = optimizer.state_dict()
    assert restored["param_groups"] == original["param_groups"]
    for index, values in original["state"].items():
        for key, value in values.items():
            assert torch.equal(torch.as_tensor(restored["state"][index][key]), torch.as_tensor(value))


def _save(tmp_path, model, optimizer, step=7):
    return save_training_checkpoint(tmp_path, model=model, model_config=model.config, optimizer=optimizer,
                                    progress=Progress(step, 1, 3), config={"a": 1})


def test_rng_states_round_trip(tmp_path):
    from panoptic_ros.training import state

    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    tensors = {}
    flat = json.loads(json.dumps(state._flatten(capture_rng(), "rng", tensors)))
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng(state._unflatten(flat, tensors, "x"))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_checkpoint_folders_are_complete_and_pruned(tmp_path):
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in (1, 2, 3):
        _save(tmp_path, model, optimizer, step=step)
    found = list_checkpoints(tmp_path)
    assert [p.name for p in found] == ["step_00000002", "step_00000003"]  # keep=2
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))
    assert resolve_resume(tmp_path) == found[-1]


def test_truncated_state_is_refused_by_name(tmp_path):
    model = tiny_model()
    folder = _save(tmp_path, model, torch.optim.SGD(model.parameters(), lr=0.1))
    data = (folder / "state.safetensors").read_bytes()
    (folder / "state.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="state.safetensors: missing, truncated or altered"):
        read_training_state(folder)
    (folder / "state.json").write_text('{"format": "something/else"}')
    with pytest.raises(CheckpointError, match="unknown training state format"):
        read_training_state(folder)


def test_malicious_pickle_as_training_state_is_not_executed(tmp_path):
    marker, files = write_evil_files(tmp_path)
    for path in files:
        with pytest.raises(CheckpointError, match=r"evil\.(pkl|pt): a pickle / torch\.save file; resume takes"):
            resolve_resume(path)
        folder = tmp_path / f"run_{path.name}"
        folder.mkdir()
        (folder / "state.json").write_bytes(path.read_bytes())
        (folder / "state.safetensors").write_bytes(path.read_bytes())
        model = tiny_model()
        with pytest.raises(CheckpointError, match="not a panoptic_ros training state file"):
            load_training_checkpoint(folder, model=model, optimizer=torch.optim.SGD(model.parameters(), lr=1))
    assert not marker.exists()


@pytest.mark.parametrize("head, kind", [
    (pickle.dumps([1]), "a pickle / torch.save file"),       # protocol 2+ starts with 0x80
    (b"PK\x03\x04 zip", "a pickle / torch.save file"),        # torch.save's zip container
    (b"\x89PNG\r\n", "not a checkpoint"),
    (b"hello", "not a checkpoint"),
])
def test_foreign_files_are_named_by_what_they_are(tmp_path, head, kind):
    path = tmp_path / "foreign.bin"
    path.write_bytes(head)
    with pytest.raises(CheckpointError) as caught:
        resolve_resume(path)
    assert str(caught.value).startswith(f"{path}: {kind}; resume takes a run folder")


def test_full_state_restores_model_optimizer_and_rng(tmp_path):
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    train_a_little(model, optimizer)
    model.category_memory.mul_(0.5)  # buffers travel with the weights
    torch.manual_seed(5)
    folder = _save(tmp_path, model, optimizer)
    expected_draw = torch.rand(3)
    train_a_little(model, optimizer)
    expected_weights = {k: v.clone() for k, v in model.state_dict().items()}

    fresh = tiny_model()
    fresh_optimizer = torch.optim.SGD(fresh.parameters(), lr=0.01, momentum=0.9)
    torch.manual_seed(99)
    progress, config, batch = load_training_checkpoint(folder, model=fresh, optimizer=fresh_optimizer)
    assert progress == Progress(7, 1, 3, 0.0) and config == {"a": 1} and batch is None
    assert torch.equal(torch.rand(3), expected_draw)
    train_a_little(fresh, fresh_optimizer)
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, expected_weights[key]), key


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_rng_state_is_this_processs_gpus_only():
    torch.zeros(1, device="cuda")                        # CUDA initialised: its state is captured
    state = capture_rng()
    assert isinstance(state["cuda"], torch.Tensor)       # the current GPU's, not every GPU's
    expected = torch.rand(3, device="cuda")
    restore_rng(state)
    assert torch.equal(torch.rand(3, device="cuda"), expected)
    # older checkpoints: one state per GPU of rank 0's node; more than this machine has
    restore_rng({**state, "cuda": [state["cuda"]] * (torch.cuda.device_count() + 1)})
    assert torch.equal(torch.rand(3, device="cuda"), expected)


@pytest.mark.parametrize("half, dtype", [(False, "float32"), (True, "float16")])
def test_saved_files_say_what_they_hold(tmp_path, half, dtype):
    from safetensors import safe_open

    from panoptic_ros.checkpoint import FORMAT, save_checkpoint
    from panoptic_ros.kinds import build_model, model_config_from_dict
    from panoptic_ros.tiny_models import tiny_model_section

    config = model_config_from_dict(tiny_model_section("panonet"))
    model = build_model(config)
    wrapper = torch.nn.Module()
    wrapper.module = model  # as DDP wraps it: the checkpoint holds the inner model's names
    weights, meta_path = save_checkpoint(tmp_path / "net", wrapper, config, half=half)
    text = meta_path.read_text()
    meta = json.loads(text)
    assert text == json.dumps(meta, indent=2, sort_keys=True) + "\n"
    assert (meta["weights"], meta["dtype"], meta["format"]) == ("net.safetensors", dtype, FORMAT)
    with safe_open(str(weights), "pt") as stored:
        assert stored.metadata() == {"format": FORMAT}
        assert set(stored.keys()) == set(model.state_dict())
        assert {str(stored.get_tensor(k).dtype) for k in stored.keys()} >= {f"torch.{dtype}"}


def _tiny_panonet(tmp_path):
    from panoptic_ros.checkpoint import save_checkpoint
    from panoptic_ros.kinds import build_model, model_config_from_dict
    from panoptic_ros.tiny_models import tiny_model_section

    config = model_config_from_dict(tiny_model_section("panonet"))
    model = build_model(config)
    weights, meta = save_checkpoint(tmp_path / "net", model, config, postprocess={"bandwidth": 0.7},
                                    metadata={"step": 3})
    return model, weights, meta


def test_foreign_files_and_weights_that_do_not_fit_are_refused_exactly(tmp_path):
    from safetensors.torch import load_file, save_file

    from panoptic_ros.checkpoint import load_checkpoint

    model, weights, _ = _tiny_panonet(tmp_path)
    foreign = (("w.pt", b"\x80\x04junk", "a pickle / torch.save file"), ("w.bin", b"junk", "not a checkpoint"))
    for name, content, kind in foreign:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError) as refused:
            load_checkpoint(tmp_path / name)
        assert str(refused.value) == (f"{tmp_path / name}: {kind}; weights must be a panoptic_ros checkpoint "
                                      "(.safetensors + .json, named by either or their stem), never unpickled")
    loaded = load_checkpoint(tmp_path / "net.json")
    assert (loaded.postprocess, loaded.metadata, loaded.weights_path) == ({"bandwidth": 0.7}, {"step": 3}, weights)
    assert not loaded.model.training
    tensors = load_file(str(weights))
    names = sorted(tensors)
    for key in names[:7]:
        del tensors[key]
    tensors["extra"] = torch.zeros(1)
    save_file(tensors, str(weights), metadata={"format": "panoptic_ros.checkpoint/1"})
    meta = json.loads((tmp_path / "net.json").read_text())
    del meta["weights_sha256"]  # the mismatch, not the hash, is under test
    (tmp_path / "net.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(tmp_path / "net")
    assert str(refused.value) == (f"{weights}: weights do not fit the panonet model in net.json "
                                  f"(missing {names[:5]}, unexpected ['extra'], wrong shape [])")
