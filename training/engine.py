"""The model-agnostic training step loop and evaluation.

:func:`train_steps` runs optimizer steps over a stream of batches (mixed precision,
gradient accumulation, clipping, DDP) and stops the run with :class:`NonFiniteLossError`
on a NaN/inf loss term. :func:`evaluate` runs a predictor over a dataset and scores it with
the project's PQ evaluator (PQ/SQ/RQ for All/Things/Stuff) and mIoU
(:class:`~panoptic_ros.eval.scores.PanopticScores`).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping

import torch
from torch import nn

from panoptic_ros.eval.scores import PanopticScores
from panoptic_ros.training.distributed import mean_across_ranks
from panoptic_ros.training.optim import clip_gradients

LossFn = Callable[[object, object, float], Mapping[str, torch.Tensor]]


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; training cannot continue."""


@dataclass
class StepContext:
    """What :func:`train_steps` needs besides the model and the data.

    Attributes:
        loss_fn: ``loss_fn(outputs, targets, progress) -> {term: weighted loss}``.
        optimizer: the optimizer (its lr is set per step by ``set_lr``).
        set_lr: ``set_lr(step) -> lr`` sets the schedule's learning rate.
        total_steps: length of training (``progress = step / total_steps``).
        device: compute device.
        amp_dtype: autocast dtype of the forward pass (None = full precision); the
            losses always run in float32 on outputs cast back to it.
        scaler: gradient scaler for float16 autocast (None otherwise).
        grad_clip: max global gradient norm (0 = off).
        accumulate: micro-batches per optimizer step.
        on_log: ``on_log(step, values)`` called every ``log_every`` steps with the
            rank-averaged loss terms, total loss, lr and gradient norm.
        log_every: logging period in steps.
    """

    loss_fn: LossFn
    optimizer: torch.optim.Optimizer
    set_lr: Callable[[int], float]
    total_steps: int
    device: torch.device
    amp_dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None
    grad_clip: float = 0.0
    accumulate: int = 1
    on_log: Callable[[int, dict], None] = lambda step, values: None
    log_every: int = 1


def train_steps(model: nn.Module, batches: Iterable, ctx: StepContext, *, step: int, stop_step: int) -> int:
    """Train on ``batches`` (micro-batches, ``ctx.accumulate`` per step) until they run out
    or ``stop_step`` is reached; returns the number of optimizer steps completed so far.

    A step reads device values on the host once: the rank-averaged loss terms (with the
    gradient norm on logging steps), for the non-finite check before the optimizer steps.
    (A float16 ``GradScaler`` reads its inf flag once more, inside ``scaler.step``.)

    Raises:
        NonFiniteLossError: a loss term is NaN/inf (names the term and the step); the
            check uses rank-averaged values, so every process stops together, before
            the optimizer changes any weight.
    """
    model.train()
    stream = iter(batches)
    while step < stop_step:
        micro = _take(stream, ctx.accumulate)
        if micro is None:
            break
        lr = ctx.set_lr(step)
        logging = (step + 1) % ctx.log_every == 0 or step + 1 == stop_step
        names, terms = _accumulate_gradients(model, micro, ctx, step)
        if ctx.scaler is not None:
            ctx.scaler.unscale_(ctx.optimizer)
        grad_norm = clip_gradients(model.parameters(), ctx.grad_clip, measure=logging)
        values, norm = _read_step(names, terms, grad_norm if logging else None, step, ctx.optimizer)
        if ctx.scaler is not None:
            ctx.scaler.step(ctx.optimizer)
            ctx.scaler.update()
        else:
            ctx.optimizer.step()
        ctx.optimizer.zero_grad(set_to_none=True)
        step += 1
        if logging:
            ctx.on_log(step, {**values, "loss": sum(values.values()), "lr": lr, "grad_norm": norm})
    return step


def _take(stream: Iterator, count: int) -> list | None:
    """``count`` items of ``stream``, or None when it cannot deliver that many."""
    items = []
    for item in stream:
        items.append(item)
        if len(items) == count:
            return items
    return None


def _accumulate_gradients(model: nn.Module, micro_batches: list, ctx: StepContext,
                          step: int) -> tuple[list[str], torch.Tensor]:
    """Forward/backward every micro-batch; DDP synchronises gradients on the last only.

    Returns:
        The loss term names and their values, (T,) float32 on the device, averaged over
        the micro-batches and all ranks (no host read).
    """
    total: torch.Tensor | None = None
    progress = step / ctx.total_steps
    for i, (images, targets) in enumerate(micro_batches):
        images = float_images(images.to(ctx.device, non_blocking=True))
        targets = move_to(targets, ctx.device)
        last = i == len(micro_batches) - 1
        sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            with _autocast(ctx):
                outputs = model(images)
            if ctx.amp_dtype is not None:
                outputs = to_float32(outputs)
            losses = ctx.loss_fn(outputs, targets, progress)
            loss = sum(losses.values()) / len(micro_batches)
            (ctx.scaler.scale(loss) if ctx.scaler is not None else loss).backward()
        terms = torch.stack([value.detach().float().reshape(()) for value in losses.values()])
        total = terms if total is None else total + terms
    return list(losses), mean_across_ranks(total / len(micro_batches))


def _read_step(names: list[str], terms: torch.Tensor, grad_norm: torch.Tensor | None, step: int,
               optimizer: torch.optim.Optimizer) -> tuple[dict[str, float], float | None]:
    """The step's one host read: loss terms (T,) and, when given, the gradient norm.

    Returns:
        ``{term: value}`` and the gradient norm (None when not given).
    Raises:
        NonFiniteLossError: a term is NaN/inf; the gradients are dropped first.
    """
    read = torch.cat([terms, grad_norm.reshape(1).to(terms)]) if grad_norm is not None else terms
    numbers = read.tolist()
    values = dict(zip(names, numbers))
    bad = [name for name, value in values.items() if not math.isfinite(value)]
    if bad:
        optimizer.zero_grad(set_to_none=True)
        raise NonFiniteLossError(f"loss term {bad[0]!r} is {values[bad[0]]} at step {step} "
                                 f"(all terms: {values}); stopping")
    return values, numbers[-1] if grad_norm is not None else None


def float_images(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) images as float32 on their device: batches arrive as uint8 (a quarter
    of the bytes to collate, pin and copy), the models take float RGB in [0, 255] and
    normalise it themselves."""
    return images.float() if not images.is_floating_point() else images


def _autocast(ctx: StepContext):
    if ctx.amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=ctx.device.type, dtype=ctx.amp_dtype)


def to_float32(value):
    """Floating tensors in nested dicts/lists/tuples cast to float32 (others unchanged):
    losses on bf16/fp16 outputs would overflow (fp16 sums) or count inexactly (bf16
    holds integers exactly only up to 256)."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, Mapping):
        return {k: to_float32(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_float32(v) for v in value)
    return value


def move_to(value, device: torch.device):
    """Tensors in nested dicts/lists/tuples moved to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, Mapping):
        return {k: move_to(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(move_to(v, device) for v in value)
    return value


def predictions(predict: Callable, samples: Iterable, scores: PanopticScores,
                on_image: Callable | None = None) -> Iterator[tuple[str, str, object]]:
    """Predict every sample, score it, and yield ``(image_id, png_name, result)`` (the
    rows ``eval.coco_format.write_coco_panoptic`` takes, so writing can stream)."""
    for index, sample in enumerate(samples):
        result = predict(sample.image)
        scores.add(sample.target, result)
        if on_image is not None:
            on_image(index, sample, result)
        yield sample.image_id, f"{sample.image_id}.png", result


def evaluate(predict: Callable, samples: Iterable, *, label_space, on_image: Callable | None = None) -> dict:
    """Score ``predict(rgb) -> PanopticResult`` on ``samples`` (each a ``Sample``).

    Returns:
        :meth:`PanopticScores.summary` (PQ/SQ/RQ for All/Things/Stuff as fractions, mIoU).
    """
    scores = PanopticScores(label_space)
    for _ in predictions(predict, samples, scores, on_image):
        pass
    return scores.summary()
