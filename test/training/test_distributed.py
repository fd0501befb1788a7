"""DistributedDataParallel on CPU (gloo): two processes give the gradients and weights of one
process on the same global batch; the step sampler shards and resumes data order."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
import yaml
from safetensors.torch import load_file, save_file

from panoptic_ros.training.sampling import DistributedStepSampler

# A real PanoNet, tiny. (CIAE is not used here: its loss updates memory buffers in the
# forward pass, which DDP takes from rank 0, so its buffers legitimately differ.)
TINY_PANONET = {
    "model": {"kind": "panonet", "label_space": "cityscapes", "input_size": [64, 128], "width": 0.125,
              "blocks": [1, 1, 1, 1], "psp_bins": [1, 2], "embedding_dim": 4},
    "data": {"dataset": "synthstreet", "synth_train": {"seed": 11, "count": 8}, "synth_val": {"seed": 12, "count": 1},
             "scene_size": [64, 128], "crop_size": [64, 128], "min_scale": 0.75, "max_scale": 1.25,
             "batch_size": 1, "workers": 0},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4},
    "schedule": {"total_steps": 3, "policy": "poly"},
    "runtime": {"seed": 5, "device": "cpu", "tensorboard": False, "amp": "off"},  # fp32: the 1e-4 equality below
}
STEPS = 3


def run_steps(rank: int, world_size: int, config_path: str, result_path: str, port: int, overrides: list) -> None:
    """Train STEPS steps with the real trainer pieces; rank 0 saves gradients and weights."""
    from panoptic_ros.training import distributed
    from panoptic_ros.training.config import load_train_config
    from panoptic_ros.training.data import build_train_loader, seed_everything
    from panoptic_ros.training.engine import train_steps
    from panoptic_ros.training.logs import RunLogger
    from panoptic_ros.training.optim import build_optimizer
    from panoptic_ros.training.train import prepare_model, step_context

    if world_size > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                          LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    config = load_train_config(config_path, overrides)
    dist = distributed.init_distributed("cpu")
    try:
        seed_everything(config.runtime.seed)
        module, model, _ = prepare_model(config, dist)
        optimizer = build_optimizer(model, config.optimizer)
        initial = {f"init.{n}": p.detach().clone() for n, p in model.named_parameters()}
        grads = []
        optimizer.register_step_pre_hook(lambda *_: grads.append(
            {f"step{len(grads)}.{n}": p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
        loader, sampler = build_train_loader(config, dist)
        ctx = step_context(config, optimizer, None, None, dist, RunLogger(".", enabled=False))
        sampler.set_position(0, 0)
        assert train_steps(module, loader, ctx, step=0, stop_step=STEPS) == STEPS
        if dist.is_main:
            tensors = {k: v for g in grads for k, v in g.items()} | initial
            tensors.update({f"param.{n}": p.detach().clone() for n, p in model.named_parameters()})
            save_file({k: v.contiguous() for k, v in tensors.items()}, result_path)
    finally:
        distributed.shutdown_distributed()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TINY_CIAE_UNFUSED = {
    **TINY_PANONET,
    "model": {"kind": "ciae", "label_space": "cityscapes", "input_size": [64, 128], "depth": 18, "base_channels": 8,
              "fpn_channels": 16, "seg_channels": 16, "embed_dim": 8, "box_embed_channels": 8, "head_convs": 1,
              "fuse_box_embeddings": False},
}


@pytest.mark.timeout(180)
def test_two_process_ddp_trains_a_model_with_parameters_unused_by_design(tmp_path):
    # CIAE without box-embedding fusion leaves the box embedding without gradient: DDP
    # raises on the second step unless find_unused_parameters is set (from the config).
    config = tmp_path / "tiny_ciae.yaml"
    config.write_text(yaml.safe_dump(TINY_CIAE_UNFUSED))
    out = tmp_path / "ddp.safetensors"
    mp.spawn(run_steps, args=(2, str(config), str(out), free_port(), []), nprocs=2, join=True)
    assert any(k.startswith("step2.") for k in load_file(out))


def choose_resume(rank: int, world_size: int, paths: list, port: int, result_dir: str) -> None:
    """Each rank passes its own ``--resume-from`` path; writes the folder it was given."""
    from pathlib import Path

    from panoptic_ros.training import distributed
    from panoptic_ros.training.state import Resume, ResumeMode
    from panoptic_ros.training.train import resume_choice

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size))
    dist = distributed.init_distributed("cpu")
    try:
        (Path(result_dir) / f"rank{rank}").write_text(str(resume_choice(Resume(ResumeMode.FROM_PATH, Path(paths[rank])),
                                                                      Path(result_dir), dist)))
    finally:
        distributed.shutdown_distributed()


@pytest.mark.timeout(120)
def test_every_rank_resumes_from_rank_0s_choice(tmp_path):
    # Rank 0 sees a checkpoint folder; rank 1 is given a path that does not exist on its
    # disk: it still gets rank 0's folder (and would fail loading it, by name, not hang).
    chosen = tmp_path / "run" / "checkpoints" / "step_4"
    chosen.mkdir(parents=True)
    (chosen / "state.json").write_text("{}")
    mp.spawn(choose_resume, args=(2, [str(chosen), str(tmp_path / "absent")], free_port(), str(tmp_path)),
             nprocs=2, join=True)
    assert (tmp_path / "rank0").read_text() == (tmp_path / "rank1").read_text() == str(chosen)


@pytest.mark.timeout(180)
def test_two_process_ddp_equals_one_process_on_the_same_global_batch(tmp_path):
    config = tmp_path / "tiny_panonet.yaml"
    config.write_text(yaml.safe_dump(TINY_PANONET))
    ddp, single = tmp_path / "ddp.safetensors", tmp_path / "single.safetensors"
    port = free_port()
    # 2 processes x 1 image per step ...
    mp.spawn(run_steps, args=(2, str(config), str(ddp), port, []), nprocs=2, join=True)
    # ... versus 1 process accumulating 2 micro-batches of 1 image (the same 2 images per step).
    mp.spawn(run_steps, args=(1, str(config), str(single), port, ["optimizer.accumulate=2"]), nprocs=1, join=True)
    a, b = load_file(ddp), load_file(single)
    assert a.keys() == b.keys() and any(k.startswith("step2.") for k in a)
    for key in sorted(a):
        assert torch.allclose(a[key], b[key], rtol=1e-4, atol=1e-6), key
    # ... and training did something for both to agree on: every step had a gradient, and
    # most weights moved away from their initial values (a few may get no gradient)
    for step in range(STEPS):
        assert sum(float(a[k].abs().sum()) for k in a if k.startswith(f"step{step}.")) > 0, step
    names = [k.removeprefix("param.") for k in a if k.startswith("param.")]
    moved = [n for n in names if not torch.allclose(a[f"param.{n}"], a[f"init.{n}"], rtol=0, atol=1e-6)]
    assert len(moved) >= 0.8 * len(names), sorted(set(names) - set(moved))


def shipped_panonet_recipe() -> tuple[dict, dict]:
    """(recipe evaluating the shipped PanoNet on 4 small SynthStreet scenes, its weights):
    a trained model, so the scores hold matches whose IoU sums the reduction must get
    exactly right (an untrained tiny model matches nothing)."""
    from panoptic_ros.checkpoint import load_checkpoint
    from panoptic_ros.config import to_dict
    from panoptic_ros.resources import default_weights

    shipped = load_checkpoint(default_weights("panonet"))
    recipe = {**TINY_PANONET, "model": {**to_dict(shipped.model_config), "input_size": [256, 512]},
              "postprocess": shipped.postprocess, "eval": {"count": 4},
              "data": {**TINY_PANONET["data"], "synth_val": {"seed": 12, "count": 4}, "scene_size": [256, 512]}}
    return recipe, shipped.model.state_dict()


def validate_on_ranks(rank: int, world_size: int, result_dir: str, port: int) -> None:
    """Every rank evaluates its share of the recipe's validation images; writes the summary."""
    import json
    from pathlib import Path

    from panoptic_ros.kinds import build_model
    from panoptic_ros.training import distributed
    from panoptic_ros.training.config import train_config_from_dict
    from panoptic_ros.training.evaluate import evaluate_model

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    recipe, weights = shipped_panonet_recipe()
    config = train_config_from_dict(recipe)
    distributed.init_distributed("cpu")
    try:
        model = build_model(config.model)
        model.load_state_dict(weights)
        summary = evaluate_model(model, config, count=config.eval.count)
        (Path(result_dir) / f"rank{rank}.json").write_text(json.dumps(summary, default=str))
    finally:
        distributed.shutdown_distributed()


@pytest.mark.timeout(300)
def test_validation_sharded_over_two_processes_equals_one_process_exactly(tmp_path):
    import json

    from panoptic_ros.kinds import build_model
    from panoptic_ros.training.config import train_config_from_dict
    from panoptic_ros.training.evaluate import evaluate_model, shard

    assert [list(shard(4, rank, 2)) for rank in (0, 1)] == [[0, 1], [2, 3]]
    assert [len(shard(5, rank, 3)) for rank in range(3)] == [1, 2, 2]
    mp.spawn(validate_on_ranks, args=(2, str(tmp_path), free_port()), nprocs=2, join=True)
    recipe, weights = shipped_panonet_recipe()
    config = train_config_from_dict(recipe)
    model = build_model(config.model)
    model.load_state_dict(weights)
    single = json.dumps(evaluate_model(model, config, count=config.eval.count), default=str)
    assert (tmp_path / "rank0.json").read_text() == (tmp_path / "rank1.json").read_text() == single
    summary = json.loads(single)
    assert summary["images"] == 4 and summary["Things"]["rq"] > 0 and summary["Stuff"]["rq"] > 0


def test_step_sampler_shards_like_accumulation_and_resumes():
    size, batch = 20, 2
    two_ranks = [list(DistributedStepSampler(size, batch_size=batch, world_size=2, rank=r, seed=3)) for r in (0, 1)]
    accumulating = list(DistributedStepSampler(size, batch_size=batch, accumulate=2, seed=3))
    steps = len(accumulating) // 2
    assert steps == 5
    for step in range(steps):
        assert two_ranks[0][step] == accumulating[2 * step]
        assert two_ranks[1][step] == accumulating[2 * step + 1]
    # every sample once per epoch; epochs differ; a resumed epoch continues the same order
    flat = [i for b in accumulating for i in b]
    assert sorted(flat) == list(range(size))
    sampler = DistributedStepSampler(size, batch_size=batch, seed=3)
    sampler.set_position(epoch=1, start_step=4)
    resumed = list(sampler)
    sampler.set_position(epoch=1)
    full = list(sampler)
    assert resumed == full[4:] and full != list(DistributedStepSampler(size, batch_size=batch, seed=3))
    with pytest.raises(ValueError, match="smaller than one global batch"):
        DistributedStepSampler(3, batch_size=2, world_size=2)


def save_rng_on_ranks(rank: int, world_size: int, out: str, port: int) -> None:
    """Each rank draws a different amount, then rank 0 checkpoints every rank's RNG states
    (as ``save_progress`` does); each rank writes the draws that follow the capture."""
    import json
    import random
    from pathlib import Path

    import numpy as np

    from panoptic_ros.models.panonet import PanoNet, PanoNetConfig
    from panoptic_ros.training import distributed
    from panoptic_ros.training.state import Progress, capture_rng, save_training_checkpoint

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size))
    dist = distributed.init_distributed("cpu")
    try:
        torch.manual_seed(0)
        model = PanoNet(PanoNetConfig(input_size=(64, 128), width=0.125, blocks=(1, 1, 1, 1), psp_bins=(1, 2),
                                      embedding_dim=4))
        random.seed(3), np.random.seed(3), torch.manual_seed(3)
        for _ in range(rank + 1):   # rank-specific states
            random.random(), np.random.rand(), torch.rand(1)
        states = distributed.all_objects(capture_rng())
        if dist.is_main:
            save_training_checkpoint(Path(out), model=model, model_config=model.config,
                                     optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                                     progress=Progress(2, 0, 2), rng_states=states)
        (Path(out) / f"draws{rank}.json").write_text(json.dumps(rng_draws()))
    finally:
        distributed.shutdown_distributed()


def rng_draws() -> list:
    import random

    import numpy as np

    return [random.random(), float(np.random.rand()), torch.rand(1).item()]


def restore_rng_on_ranks(rank: int, world_size: int, out: str, port: int) -> None:
    """Each rank restores the checkpoint's RNG states for its rank; writes its next draws."""
    import json
    from pathlib import Path

    from panoptic_ros.models.panonet import PanoNet, PanoNetConfig
    from panoptic_ros.training import distributed
    from panoptic_ros.training.state import list_checkpoints, load_training_checkpoint

    if world_size > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                          LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size))
    dist = distributed.init_distributed("cpu")
    try:
        model = PanoNet(PanoNetConfig(input_size=(64, 128), width=0.125, blocks=(1, 1, 1, 1), psp_bins=(1, 2),
                                      embedding_dim=4))
        torch.manual_seed(99)
        load_training_checkpoint(list_checkpoints(Path(out))[-1], model=model,
                                 optimizer=torch.optim.SGD(model.parameters(), lr=0.1), rank=dist.rank)
        (Path(out) / f"restored{world_size}_{rank}.json").write_text(json.dumps(rng_draws()))
    finally:
        distributed.shutdown_distributed()


@pytest.mark.timeout(180)
def test_each_rank_restores_its_own_rng_states_also_on_fewer_ranks(tmp_path):
    import json

    from panoptic_ros.training.state import list_checkpoints, read_training_state

    mp.spawn(save_rng_on_ranks, args=(2, str(tmp_path), free_port()), nprocs=2, join=True)
    body, _ = read_training_state(list_checkpoints(tmp_path)[-1])
    assert len(body["rng"]) == 2        # one entry per rank
    expected = [json.loads((tmp_path / f"draws{rank}.json").read_text()) for rank in (0, 1)]
    assert expected[0] != expected[1]
    mp.spawn(restore_rng_on_ranks, args=(2, str(tmp_path), free_port()), nprocs=2, join=True)
    assert [json.loads((tmp_path / f"restored2_{rank}.json").read_text()) for rank in (0, 1)] == expected
    # 2 -> 1: the single process continues rank 0's streams (no IndexError)
    mp.spawn(restore_rng_on_ranks, args=(1, str(tmp_path), free_port()), nprocs=1, join=True)
    assert json.loads((tmp_path / "restored1_0.json").read_text()) == expected[0]


def train_on_ranks(rank: int, world_size: int, config_path: str, out: str, port: int) -> None:
    """``panoptic-train``'s training on ``world_size`` processes (gloo) into ``out``."""
    from pathlib import Path

    from panoptic_ros.training.config import load_train_config
    from panoptic_ros.training.state import Resume
    from panoptic_ros.training.train import train

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    train(load_train_config(config_path), Path(out), Resume(), command="test")


def logged_losses(out) -> dict:
    import json

    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if r["kind"] == "train"}


@pytest.mark.timeout(300)
def test_resume_on_one_process_at_the_same_global_batch_continues_a_two_process_run(tmp_path, capsys):
    from panoptic_ros.training import train as train_cli
    from panoptic_ros.training.state import read_training_state

    recipe = {**TINY_PANONET, "schedule": {"total_steps": 4, "policy": "poly"}, "eval": {"count": 1, "images": 0},
              "runtime": {**TINY_PANONET["runtime"], "log_every": 1, "checkpoint_every": 2, "threads": 1}}
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(recipe))
    two = tmp_path / "two"
    mp.spawn(train_on_ranks, args=(2, str(config), str(two), free_port()), nprocs=2, join=True)
    checkpoint = two / "checkpoints" / "step_00000002"
    body, _ = read_training_state(checkpoint)
    assert body["global_batch"] == {"batch_size": 1, "world_size": 2, "accumulate": 1, "samples": 2}
    assert len(body["rng"]) == 2

    # One process with accumulate 1 would halve the global batch: refused in one line.
    argv = ["--config", str(config), "--out", str(tmp_path / "one"), "--resume-from", str(checkpoint)]
    assert train_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("panoptic-train: error:")
    assert ("global batch of 2 (batch 1 x 2 processes x accumulate 1), this run's is 1 (batch 1 x 1 process x "
            "accumulate 1); resume with optimizer.accumulate=2 to keep it") in err
    # ... accumulate 2 keeps it: accepted, and steps 3-4 repeat the two-process run's losses
    one = tmp_path / "one_acc2"
    assert train_cli.main(["--config", str(config), "--out", str(one), "--resume-from", str(checkpoint),
                           "optimizer.accumulate=2"]) == 0, capsys.readouterr().err
    expected, resumed = logged_losses(two), logged_losses(one)
    assert sorted(resumed) == [3, 4]
    for step in (3, 4):
        assert resumed[step] == pytest.approx(expected[step], rel=1e-4), step


def count_step_reads(rank: int, world_size: int, config_path: str, result_dir: str, port: int) -> None:
    """Host reads of 3 DDP training steps (the loader's pass started outside the count)."""
    import itertools
    from pathlib import Path

    from panoptic_ros.sync_count import count_torch
    from panoptic_ros.training import distributed
    from panoptic_ros.training.config import load_train_config
    from panoptic_ros.training.data import build_train_loader, seed_everything
    from panoptic_ros.training.engine import train_steps
    from panoptic_ros.training.logs import RunLogger
    from panoptic_ros.training.optim import build_optimizer
    from panoptic_ros.training.train import prepare_model, step_context

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    config = load_train_config(config_path, ["optimizer.grad_clip=5.0", "runtime.log_every=2"])
    dist = distributed.init_distributed("cpu")
    try:
        seed_everything(config.runtime.seed)
        module, model, _ = prepare_model(config, dist)
        loader, sampler = build_train_loader(config, dist)
        ctx = step_context(config, build_optimizer(model, config.optimizer), None, None, dist,
                           RunLogger(".", enabled=False))
        sampler.set_position(0, 0)
        # A pass reads two CPU tensors as it starts (the DataLoader's seed, the epoch's
        # order): not device reads, and once per pass; they stay outside the count.
        batches = iter(loader)
        batches = itertools.chain([next(batches)], batches)
        with count_torch() as counts:
            assert train_steps(module, batches, ctx, step=0, stop_step=STEPS) == STEPS
        (Path(result_dir) / f"reads{rank}").write_text(f"{counts.host_reads} {dict(counts.reads_by_op)}")
    finally:
        distributed.shutdown_distributed()


@pytest.mark.timeout(180)
def test_a_ddp_training_step_reads_the_device_on_the_host_once(tmp_path):
    # 2 gloo processes, the full PanoNet loss, clipping; 3 steps, 2 of them logging.
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_PANONET))
    mp.spawn(count_step_reads, args=(2, str(config), str(tmp_path), free_port()), nprocs=2, join=True)
    for rank in (0, 1):
        assert (tmp_path / f"reads{rank}").read_text() == f"{STEPS} {{'tolist': {STEPS}}}"
