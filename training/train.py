"""``panoptic-train``: train PanoNet or CIAE from a YAML recipe.

    panoptic-train --config training/configs/panonet_synthstreet.yaml [key=value ...]
                   [--out runs/NAME] [--resume | --resume-from PATH | --force]

Runs as one process or under ``torchrun`` (DDP, one process per GPU or CPU slot; rank 0
logs and writes checkpoints; every rank scores its share of the validation images). Every ``runtime.checkpoint_every`` steps a resumable
checkpoint lands in ``<out>/checkpoints/step_<N>/``; ``--resume`` continues the newest
one (``--resume-from``: a given one) with the same subsequent losses. A folder that holds
a run is refused without ``--resume`` or ``--force`` (which moves the old run aside). At the end
``<out>/model.{safetensors,json}`` holds the trained model and ``<out>/eval.json`` its
validation scores.

Exit codes: 0 done; 1 the run stopped on a non-finite loss; 2 bad input (config key or
value, missing file, unusable checkpoint), reported in one line naming the file or key.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from panoptic_ros.checkpoint import CheckpointError, atomic_write_bytes, read_checkpoint_meta, save_checkpoint
from panoptic_ros.config import ConfigError, to_dict
from panoptic_ros.eval.cli import EXIT_BAD_INPUT
from panoptic_ros.kinds import build_model
from panoptic_ros.paths import os_error_line
from panoptic_ros.precision import autocast_dtype, dtype_name
from panoptic_ros.training import distributed
from panoptic_ros.training.backbone_init import backbone_prefixes
from panoptic_ros.training.config import TrainConfig, load_train_config
from panoptic_ros.training.data import build_train_loader, seed_everything
from panoptic_ros.training.datasets.loader import PanopticDataLoader
from panoptic_ros.training.engine import NonFiniteLossError, StepContext, train_steps
from panoptic_ros.training.evaluate import evaluate_model, log_evaluation
from panoptic_ros.training.init import InitResult, initialise_model
from panoptic_ros.training.kinds import training_kind
from panoptic_ros.training.logs import RunLogger
from panoptic_ros.training.optim import build_optimizer, set_learning_rate
from panoptic_ros.training.run_dir import claim_run_dir
from panoptic_ros.training.sampling import DistributedStepSampler, GlobalBatch
from panoptic_ros.training.state import (Progress, Resume, capture_rng, load_training_checkpoint,
                                         remove_partial_checkpoints, save_training_checkpoint)

# Bad input (config, checkpoint, path) exits 2 as panoptic-eval does; a run that diverged, 1.
USER_ERRORS = (ConfigError, CheckpointError, FileNotFoundError)
EXIT_FAILED = 1


@dataclass
class Run:
    """One training session: the recipe, where it writes, and what it trains with.

    Attributes:
        config: the recipe.
        out_dir: the run folder.
        dist: this process's place in the job.
        module: the module to train (DDP-wrapped under torchrun).
        model: the bare model (checkpoints, evaluation).
        steps: optimizer, loss, schedule and precision of the training steps.
        loader, sampler: the training batches and their resumable order.
        logger: the run log (a no-op on ranks other than 0).
        progress: where training stands; advanced by :func:`train_to`.
        provenance: commands and initialisation stored with every checkpoint.
        clock_origin: ``time.monotonic()`` at which ``progress.elapsed_s`` would have been 0
            (this session's start less the earlier sessions' time): elapsed time counts
            the whole session, checkpoints and evaluations included.
    """

    config: TrainConfig
    out_dir: Path
    dist: distributed.DistInfo
    module: nn.Module
    model: nn.Module
    steps: StepContext
    loader: PanopticDataLoader
    sampler: DistributedStepSampler
    logger: RunLogger
    progress: Progress
    provenance: dict
    clock_origin: float


def train(config: TrainConfig, out_dir: Path, resume: Resume = Resume(), command: str = "") -> dict:
    """Run the recipe ``config`` into ``out_dir``; returns the final evaluation summary."""
    dist = distributed.init_distributed(config.runtime.device)
    try:
        run = start_run(config, out_dir, resume, dist, command)
        try:
            total = config.schedule.total_steps
            while run.progress.step < total:
                train_to(run, next_boundary(run))
                step = run.progress.step
                if step % config.runtime.checkpoint_every == 0 or step == total:
                    save_progress(run)
                if config.eval.every and step % config.eval.every == 0 and step < total:
                    log_evaluation(run.logger, step, validate(run))
            run.logger.message(f"trained to step {run.progress.step}; {run.progress.elapsed_s:.0f} s of training "
                               "in all sessions")
            return finish(run)
        finally:
            run.logger.close()
    finally:
        distributed.shutdown_distributed()


def start_run(config: TrainConfig, out_dir: Path, resume: Resume, dist: distributed.DistInfo, command: str) -> Run:
    """Build the model, optimizer and data; load the checkpoint ``resume`` picks."""
    if config.runtime.threads:
        torch.set_num_threads(config.runtime.threads)
    seed_everything(config.runtime.seed)
    module, model, init = prepare_model(config, dist)
    optimizer = build_optimizer(model, config.optimizer, backbone_prefixes(model))
    amp_dtype = autocast_dtype(config.runtime.amp, dist.device)
    scaler = torch.amp.GradScaler(dist.device.type) if amp_dtype == torch.float16 else None
    progress, sessions = Progress(), [command]
    folder = resume_choice(resume, out_dir, dist)
    if folder is not None:
        restored = load_training_checkpoint(folder, model=model, optimizer=optimizer, scaler=scaler, rank=dist.rank)
        progress = restored.progress
        _check_same_recipe(restored.config, config, folder, same_world=restored.global_batch is None)
        if restored.global_batch is not None:
            check_global_batch(restored.global_batch, global_batch(config, dist), folder)
        sessions = _earlier_sessions(folder) + sessions
    if dist.is_main:
        remove_partial_checkpoints(out_dir)
        _write_config(out_dir, config)
    loader, sampler = build_train_loader(config, dist)
    logger = RunLogger(out_dir, enabled=dist.is_main, total_steps=config.schedule.total_steps,
                       initial_step=progress.step, tensorboard=config.runtime.tensorboard)
    start = f"resumed at step {progress.step}" if progress.step else f"{init.note}, starting at step 0"
    logger.message(f"{config.model.kind}: {sum(p.numel() for p in model.parameters())} parameters; "
                   f"{dist.world_size} process(es) on {dist.device}, {dtype_name(amp_dtype)}; {start}")
    return Run(config, out_dir, dist, module, model, step_context(config, optimizer, scaler, amp_dtype, dist, logger),
               loader, sampler, logger, progress, _provenance(sessions, init.metadata),
               clock_origin=time.monotonic() - progress.elapsed_s)


def step_context(config: TrainConfig, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
                 amp_dtype: torch.dtype | None, dist: distributed.DistInfo, logger: RunLogger) -> StepContext:
    """What the training steps of ``config`` need besides the model and the data."""
    def on_log(step: int, values: dict) -> None:
        logger.scalars(step, values)
        logger.advance(config.runtime.log_every, {"loss": values["loss"]})

    return StepContext(
        loss_fn=training_kind(config.model.kind).loss_fn(config.loss), optimizer=optimizer,
        set_lr=lambda step: set_learning_rate(optimizer, step, config.optimizer.lr, config.schedule),
        total_steps=config.schedule.total_steps, device=dist.device, amp_dtype=amp_dtype, scaler=scaler,
        grad_clip=config.optimizer.grad_clip, accumulate=config.optimizer.accumulate, on_log=on_log,
        log_every=config.runtime.log_every)


def next_boundary(run: Run) -> int:
    """The next step at which training pauses: a checkpoint, an evaluation or the end."""
    step, total = run.progress.step, run.config.schedule.total_steps
    evaluation = _next_multiple(step, run.config.eval.every) if run.config.eval.every else total
    return min(_next_multiple(step, run.config.runtime.checkpoint_every), evaluation, total)


def _next_multiple(step: int, every: int) -> int:
    return (step // every + 1) * every


def train_to(run: Run, stop_step: int) -> None:
    """Train until ``stop_step`` (or the end of the epoch's batches); advances ``run.progress``."""
    before = run.progress
    run.sampler.set_position(before.epoch, before.batch_in_epoch)
    run.loader.dataset.set_epoch(before.epoch)
    step = train_steps(run.module, run.loader, run.steps, step=before.step, stop_step=stop_step)
    in_epoch = before.batch_in_epoch + step - before.step
    elapsed = time.monotonic() - run.clock_origin
    run.progress = (Progress(step, before.epoch + 1, 0, elapsed) if in_epoch >= run.sampler.steps_per_epoch
                    else Progress(step, before.epoch, in_epoch, elapsed))


def save_progress(run: Run) -> None:
    """A resumable checkpoint of the run (rank 0 writes it with every rank's RNG states;
    the others wait)."""
    rng_states = distributed.all_objects(capture_rng())
    if run.dist.is_main:
        config, batch = run.config, global_batch(run.config, run.dist)
        save_training_checkpoint(
            run.out_dir, model=run.model, model_config=config.model, optimizer=run.steps.optimizer,
            progress=run.progress, scaler=run.steps.scaler, postprocess=to_dict(config.postprocess),
            config=config.to_dict(), metadata={**run.provenance, "global_batch": batch.to_dict()},
            keep=config.runtime.keep_checkpoints, rng_states=rng_states, global_batch=batch)
    distributed.barrier()


def global_batch(config: TrainConfig, dist: distributed.DistInfo) -> GlobalBatch:
    """The samples per optimizer step of ``config`` run on ``dist.world_size`` processes."""
    return GlobalBatch(config.data.batch_size, dist.world_size, config.optimizer.accumulate)


def check_global_batch(stored: GlobalBatch, now: GlobalBatch, folder: Path) -> None:
    """Refuse a resume that would change the samples per optimizer step (another number of
    processes without a matching ``optimizer.accumulate``): the schedule, learning rate and
    data order assume the checkpoint's.

    Raises:
        CheckpointError: one line with both global batches and the ``accumulate`` that
            would keep the stored one (where one does).
    """
    if stored.samples == now.samples:
        return
    keep = stored.accumulate_for(now.world_size)
    hint = (f"resume with optimizer.accumulate={keep} to keep it" if keep is not None
            else f"no optimizer.accumulate keeps it on {now.world_size} process(es) of batch {now.batch_size}")
    raise CheckpointError(f"{folder}: the checkpoint was trained with a global batch of {stored.describe()}, this "
                          f"run's is {now.describe()}; {hint}")


def validate(run: Run) -> dict:
    """Validation scores at the current step: every rank scores its share of the images."""
    return evaluate_model(run.model, run.config, count=run.config.eval.count, logger=run.logger,
                          step=run.progress.step)


def finish(run: Run) -> dict:
    """Final evaluation (all ranks); rank 0 writes the model and ``eval.json``."""
    summary = validate(run)
    if not run.dist.is_main:
        return {}
    config, progress, out_dir = run.config, run.progress, run.out_dir
    log_evaluation(run.logger, progress.step, summary)
    scores = {group: summary[group] for group in ("All", "Things", "Stuff")}
    save_checkpoint(out_dir / "model", run.model, config.model, postprocess=to_dict(config.postprocess),
                    metadata={"step": progress.step, "seed": config.runtime.seed, **run.provenance,
                              "train_seconds": round(progress.elapsed_s), "world_size": run.dist.world_size,
                              "global_batch": global_batch(config, run.dist).to_dict(),
                              "config": config.to_dict(), "val": scores, "miou": summary.get("miou")})
    atomic_write_bytes(out_dir / "eval.json", (json.dumps(summary, indent=1, default=str) + "\n").encode())
    run.logger.message(f"PQ {100 * summary['All']['pq']:.1f}  SQ {100 * summary['All']['sq']:.1f}  "
                       f"RQ {100 * summary['All']['rq']:.1f}  -> {out_dir / 'model.safetensors'}")
    return summary


def prepare_model(config: TrainConfig, dist: distributed.DistInfo) -> tuple[nn.Module, nn.Module, InitResult]:
    """(module to train: DDP-wrapped under torchrun, the bare model, how it was initialised)."""
    model = build_model(config.model)
    init = initialise_model(model, config.init, log=print if dist.is_main else None)
    if config.runtime.sync_bn and dist.distributed:
        if dist.device.type != "cuda":
            raise ConfigError("runtime.sync_bn: SyncBatchNorm needs CUDA (PyTorch has no CPU implementation)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(dist.device)
    if not dist.distributed:
        return model, model, init
    ids = [dist.device.index] if dist.device.type == "cuda" else None
    # Gradients as views of DDP's buckets: no second copy of them per step.
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, gradient_as_bucket_view=True,
                                               find_unused_parameters=has_unused_parameters(config.model)), model, init


def resume_choice(resume: Resume, out_dir: Path, dist: distributed.DistInfo) -> Path | None:
    """The checkpoint folder to resume from (None: start), chosen by rank 0 and broadcast.

    Ranks that each looked at their own disk could pick different steps (or some none)
    and then hang in their first collective; now they all load rank 0's choice, and a
    rank without that folder fails at once, naming it.
    """
    choice: tuple[str | None, str | None] = (None, None)
    if dist.is_main:
        try:
            folder = resume.checkpoint(out_dir)
            choice = (str(folder) if folder else None, None)
        except CheckpointError as exc:   # raised on every rank, not only here
            choice = (None, str(exc))
    folder, error = distributed.from_rank0(choice)
    if error:
        raise CheckpointError(error)
    return Path(folder) if folder else None


def has_unused_parameters(model_config) -> bool:
    """Whether some parameters get no gradient by design, which DDP must then look for
    every step (else it raises on the second): CIAE's box embedding when
    ``fuse_box_embeddings`` is off (the ablation P = f(P'))."""
    return getattr(model_config, "fuse_box_embeddings", True) is False


def _provenance(sessions: list[str], init_metadata: dict) -> dict:
    """``command``: the one that started the run (what reproduces it); ``sessions``: the
    command of every session, resumes included; ``init_backbone`` (with init.backbone):
    the file, its sha256 and the key mapping our tensor -> file tensor."""
    return {"command": sessions[0], "sessions": list(sessions), **init_metadata}


def _earlier_sessions(folder: Path) -> list[str]:
    """Commands of the sessions that made the checkpoint ``folder`` (older checkpoints
    stored only ``command``, their latest session's)."""
    meta = read_checkpoint_meta(folder / "model").get("metadata", {})
    if meta.get("sessions"):
        return list(meta["sessions"])
    return [meta["command"]] if meta.get("command") else []


def _write_config(out_dir: Path, config: TrainConfig) -> None:
    import yaml

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False).encode())


def _check_same_recipe(stored: dict, config: TrainConfig, folder: Path, *, same_world: bool) -> None:
    """Resuming with another model, data, loss, optimizer, schedule or seed would silently
    train something else (loader workers, the scene cache, evaluation and logging may change).

    ``optimizer.accumulate`` may change where the checkpoint records its global batch
    (``same_world`` False): :func:`check_global_batch` then holds the batch instead.
    """
    def recipe(data: dict) -> dict:
        sections = {k: data.get(k) for k in ("model", "loss", "schedule")}
        sections["optimizer"] = {k: v for k, v in (data.get("optimizer") or {}).items()
                                 if same_world or k != "accumulate"}
        sections["data"] = {k: v for k, v in (data.get("data") or {}).items() if k not in ("workers", "cache_dir")}
        sections["runtime.seed"] = (data.get("runtime") or {}).get("seed")
        return sections

    old, new = recipe(stored), recipe(config.to_dict())
    for section in new:
        if old[section] != new[section]:
            raise CheckpointError(f"{folder}: the checkpoint was trained with a different {section!r} section; "
                                  "resume with the run's own config (see config.yaml in the run folder)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="panoptic-train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, type=Path, help="training YAML (training/configs/*.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. optimizer.lr=0.01")
    parser.add_argument("--out", type=Path, help="run folder (default runs/<config name>)")
    parser.add_argument("--resume", action="store_true", help="continue the newest checkpoint of the run folder")
    parser.add_argument("--resume-from", type=Path, metavar="PATH",
                        help="continue the checkpoint at PATH (a run folder or checkpoints/step_N)")
    parser.add_argument("--force", action="store_true",
                        help="train afresh into an --out that holds a run; the old run is moved aside to "
                             "<out>.replaced-<time>, never deleted")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"],
                        help="sets runtime.device (default: the recipe's, auto unless it says otherwise: CUDA "
                             "when available; under torchrun each process takes the GPU of its LOCAL_RANK)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = [*args.overrides, *([f"runtime.device={args.device}"] if args.device else [])]
    try:
        config = load_train_config(args.config, overrides)
        out_dir = args.out or Path("runs") / args.config.stem
        command = " ".join(["panoptic-train", *(argv if argv is not None else sys.argv[1:])])
        resume = Resume.from_flags(latest=args.resume, path=args.resume_from)
        aside = claim_run_dir(out_dir, resume=resume.continues, force=args.force)
        if aside is not None:
            print(f"panoptic-train: the earlier run in {out_dir} was moved to {aside}", file=sys.stderr)
        train(config, out_dir, resume, command)
    except USER_ERRORS as exc:
        print(f"panoptic-train: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except NonFiniteLossError as exc:  # the run diverged: a training failure, not bad input
        print(f"panoptic-train: error: {exc}; training failed, no model written (checkpoints written before "
              f"stay in {out_dir / 'checkpoints'})", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:  # a path that cannot be written after all (the run folder is checked first)
        print(f"panoptic-train: error: {os_error_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
