"""Training: a short, flat loop over data resident on the device (after airbench/nanoGPT), or
streamed from files by loader workers when the split is too large to hold (``FileSplit``).

Defenses plug in through ``loss_fn`` (the training objective) and ``on_epoch_end`` (a guard that may
stop training): standard, Madry, fast and TRADES training all run this one loop. An epoch's data
order comes from (seed, epoch) and every random draw of a step from generators keyed by (seed, epoch,
step, rank), so a run resumed from its last saved state (``resume_path``: every epoch, and every
``checkpoint_every`` steps) continues exactly as if it had never stopped. Under torchrun, each rank
trains on its shard of every epoch through DistributedDataParallel.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustkit.data.base import DatasetInfo, IndexedSplit, Split
from robustkit.data.files import for_training
from robustkit.device import bf16_is_fast
from robustkit.errors import ConfigError
from robustkit.predict import accuracy
from robustkit.progress import progress_bar
from robustkit.training import distributed
from robustkit.training.augment import random_crop, random_flip
from robustkit.training.resume import TrainState, load_state, save_state

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepContext:
    """What a training objective may need besides the batch."""

    epoch: int  # 0-based
    progress: float  # epochs completed, fractional: drives ε warm-up
    generator: torch.Generator  # on the device, seeded by (seed, epoch, step, rank): inner attacks draw from it
    model: nn.Module  # the bare model (never the DDP wrapper): inner attacks run on it
    want_clean: bool  # the progress bar will show clean accuracy for this step


@dataclass(frozen=True)
class StepOutput:
    loss: Tensor
    logits: Tensor  # on the inputs trained on (adversarial ones for a defense)
    clean_logits: Tensor | None = None


LossFn = Callable[[nn.Module, Tensor, Tensor, StepContext], StepOutput]
EpochHook = Callable[[nn.Module, int], bool]  # (bare model, 0-based epoch) → stop training?


NOT_RECIPE = frozenset({"checkpoint_every"})  # TrainConfig fields that leave the trained weights alone


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Hyper-parameters in one place; ``for_model`` fills in what a model's builder recommends."""

    epochs: int = 2  # passes over the training split
    batch_size: int = 128  # global: split across ranks under torchrun
    lr: float = 0.1  # peak learning rate (one-cycle) or starting rate (cosine, constant)
    optimizer: str = "sgd"  # sgd (Nesterov, momentum 0.9) | adam (AdamW)
    weight_decay: float = 5e-4
    schedule: str = "onecycle"  # onecycle | cosine | constant
    warmup: float = 0.2  # fraction of the steps spent warming up (one-cycle)
    label_smoothing: float = 0.0
    augment: bool = False  # random crop + flip (where the data allows); pays off only over many epochs
    precision: str = "auto"  # auto (bf16 where it is fast) | bf16 | fp32
    channels_last: bool = True
    seed: int = 0
    checkpoint_every: int | None = None  # optimisation steps between mid-epoch resume states (None: per epoch only)

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "optimizer": self.optimizer in ("sgd", "adam"),
            "weight_decay": self.weight_decay >= 0,
            "schedule": self.schedule in ("onecycle", "cosine", "constant"),
            "warmup": 0 < self.warmup < 1,
            "label_smoothing": 0 <= self.label_smoothing < 1,
            "precision": self.precision in ("auto", "bf16", "fp32"),
            "checkpoint_every": self.checkpoint_every is None or self.checkpoint_every >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"bad training setting {bad[0]}={getattr(self, bad[0])!r}")

    def recipe(self) -> dict[str, Any]:
        """The settings that decide the weights (how often state is saved does not)."""
        return {k: v for k, v in asdict(self).items() if k not in NOT_RECIPE}

    @classmethod
    def for_model(cls, model_name: str, *recipes: dict[str, Any], **overrides: Any) -> TrainConfig:
        """Defaults, then the model's recipe, then further ``recipes``, then non-``None`` ``overrides``."""
        from robustkit.models import train_recipe

        known = {f.name for f in fields(cls)}
        settings = train_recipe(model_name)
        for recipe in recipes:
            settings.update(recipe)
        settings.update({k: v for k, v in overrides.items() if v is not None})
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ConfigError(f"unknown training setting(s): {', '.join(unknown)}")
        return cls(**settings)


@dataclass
class TrainResult:
    """Per-epoch history and the final test accuracy (fractions in [0, 1], seconds)."""

    history: list[dict[str, float]] = field(default_factory=list)
    test_accuracy: float | None = None
    seconds: float = 0.0  # the whole run's training time, parts before a resume included
    seconds_here: float = 0.0  # of it, this process's (less than ``seconds`` after a resume)
    images: int = 0  # trained on over the whole run (every epoch, every rank)
    resumed_from_epoch: int = 0
    stopped_early: bool = False  # a defense's guard ended training (its best epoch restored)

    @property
    def images_per_second(self) -> float:
        """The whole run's rate: ``images`` over ``seconds``, so time, rate and summary agree after a resume."""
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    @property
    def resumed(self) -> bool:
        return self.seconds_here < self.seconds


def cross_entropy_loss(label_smoothing: float = 0.0) -> LossFn:
    def loss_fn(model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> StepOutput:
        logits = model(x)
        return StepOutput(F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing), logits)

    return loss_fn


def epoch_seed(seed: int, epoch: int, stream: int, rank: int = 0) -> int:
    """A distinct, reproducible seed per (seed, epoch, purpose, rank): tuples of ints hash the same in every run."""
    return hash((seed, epoch, stream, rank)) & 0x7FFF_FFFF_FFFF_FFFF


def epoch_generator(
    seed: int, epoch: int, stream: int, device: torch.device | str = "cpu", rank: int = 0
) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(epoch_seed(seed, epoch, stream, rank))


def step_seed(seed: int, epoch: int, step: int, stream: int, rank: int = 0) -> int:
    """A step's own seed: a run resumed at any step draws what an uninterrupted one draws there."""
    return hash((seed, epoch, step, stream, rank)) & 0x7FFF_FFFF_FFFF_FFFF


def step_generator(
    seed: int, epoch: int, step: int, stream: int, device: torch.device | str = "cpu", rank: int = 0
) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(step_seed(seed, epoch, step, stream, rank))


@dataclass
class _Run:
    """What every epoch of one ``train_model`` call shares."""

    model: nn.Module
    net: nn.Module  # the model, or its DDP wrapper
    train: IndexedSplit
    resident: Split | None  # the split on the device, when it is held there
    config: TrainConfig
    device: torch.device
    loss_fn: LossFn
    use_bf16: bool
    flip: bool
    world: int
    rank: int
    batch_size: int  # per rank
    steps: int  # per epoch
    optimizer: torch.optim.Optimizer
    scheduler: Any
    hook: EpochHook | None
    resume_path: Path | None
    fingerprint: dict[str, Any]
    progress: bool
    result: TrainResult = field(default_factory=TrainResult)
    start: float = field(default_factory=time.perf_counter)
    before: float = 0.0  # training time of the processes before a resume


def train_model(
    model: nn.Module,
    train: IndexedSplit,
    config: TrainConfig,
    *,
    info: DatasetInfo | None = None,
    test: IndexedSplit | None = None,
    device: torch.device | str = "cpu",
    loss_fn: LossFn | None = None,
    on_epoch_end: EpochHook | None = None,
    resume_path: Path | None = None,
    resume_key: dict[str, Any] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` in place on ``train``; with ``resume_path``, continue from its saved state.

    The state is saved there after every epoch and, with ``config.checkpoint_every``, every that many
    steps; ``resume_key`` (JSON: a defense's name and settings) must match too for a file to be resumed.

    A resident split (or a file split small enough to decode once, see ``for_training``) sits on the
    device and batches are gathered from it; a large file split streams each epoch's batches through
    its loader, in the same order. Either way one loop trains.
    """
    run = _setup(
        model, train, config, info, torch.device(device), loss_fn, on_epoch_end, resume_path, resume_key, progress
    )
    state = _resume(
        resume_path, run.fingerprint, model, run.optimizer, run.scheduler, on_epoch_end, run.result, run.steps
    )
    run.before = state.run_seconds
    log.info(
        "training %d images × %d epochs, batch %d × %d process(es), %s, %s",
        len(run.train.labels),
        config.epochs,
        run.batch_size,
        run.world,
        run.device,
        "bf16 autocast" if run.use_bf16 else "fp32",
    )
    for epoch in range(state.epoch, config.epochs):
        first = state.step if epoch == state.epoch else 0  # steps of this epoch already taken before a resume
        if _end_epoch(run, epoch, _train_epoch(run, epoch, first, state)):
            log.info("stopping after epoch %d (the defense's guard)", epoch + 1)
            break
    return _finish(run, test)


def _setup(
    model: nn.Module,
    train: IndexedSplit,
    config: TrainConfig,
    info: DatasetInfo | None,
    device: torch.device,
    loss_fn: LossFn | None,
    hook: EpochHook | None,
    resume_path: Path | None,
    resume_key: dict[str, Any] | None,
    progress: bool,
) -> _Run:
    """The model on the device, the split ready to batch, the batch size per rank, optimiser and schedule."""
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    world, rank = distributed.world_size(), distributed.rank()
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    train = for_training(train)
    n = len(train.labels)
    batch_size = max(1, min(config.batch_size, n) // world)  # per rank
    steps = n // world // batch_size  # whole batches only: a batch of one breaks BatchNorm
    if steps == 0:
        raise ConfigError(f"{n} training images cannot fill a batch on {world} process(es)")
    optimizer, scheduler = _optimizer(model, config, steps * config.epochs)
    run = _Run(
        model,
        net,
        train,
        train.to(device) if isinstance(train, Split) else None,
        config,
        device,
        loss_fn or cross_entropy_loss(config.label_smoothing),
        config.precision == "bf16" or (config.precision == "auto" and bf16_is_fast(device)),
        info is None or info.flip_invariant,
        world,
        rank,
        batch_size,
        steps,
        optimizer,
        scheduler,
        hook,
        resume_path,
        {**config.recipe(), "n_train": n, "processes": world, "objective": resume_key},
        progress,
    )
    if config.checkpoint_every and resume_path is None:
        raise ConfigError("checkpoint_every needs a resume_path to save the state to")
    return run


def _batches(run: _Run, epoch: int, first: int):
    """This rank's shard of the epoch's seeded order, from step ``first`` on, as (x, y) batches on the device."""
    n, size = len(run.train.labels), run.batch_size
    order = torch.randperm(n, generator=epoch_generator(run.config.seed, epoch, 0))
    order = order[run.rank : run.steps * size * run.world : run.world][first * size :]  # this rank's shard, the rest
    if run.resident is not None:
        return run.resident.batches(size, order=order.to(run.device))
    # per-image random preprocessing is keyed by (seed, epoch, image): resumes repeat it
    return run.train.batches(size, device=run.device, order=order, seed=epoch_seed(run.config.seed, epoch, 4))


def _train_epoch(run: _Run, epoch: int, first: int, state: TrainState) -> dict[str, float]:
    """One epoch (from step ``first`` of a resumed one) and its history row."""
    run.net.train()
    batches = _batches(run, epoch, first)
    # loss·n, correct, clean correct, clean seen; a resumed epoch's sums so far are shared out over the ranks
    sums = torch.tensor(state.sums if first else [0.0] * 4, device=run.device) / run.world
    epoch_start = time.perf_counter() - (state.seconds if first else 0.0)
    # on a terminal a live bar; elsewhere (CI logs, pipes, nohup) a line at every tenth of the epoch
    bar = progress_bar(
        range(first, run.steps),
        desc=f"epoch {epoch + 1}/{run.config.epochs}",
        leave=False,
        initial=first,
        total=run.steps,
        enabled=run.progress and run.rank == 0,
    )
    # every draw of a step comes from (seed, epoch, step, rank), seeded after its batch is read (a
    # loader draws when it starts); dropout draws from the global RNG, so it is seeded inside a fork
    # and the caller's RNG state is left as it was
    with torch.random.fork_rng(devices=[run.device] if run.device.type == "cuda" else []):
        for step, (x, y) in zip(bar, batches, strict=True):
            _step(run, epoch, step, x, y, sums)
            if step % 20 == 0 or step == run.steps - 1:  # .item() syncs; not on every step
                seen = (step + 1) * run.batch_size
                bar.set_postfix(_postfix(sums.tolist(), seen, seen / (time.perf_counter() - epoch_start)))
            every = run.config.checkpoint_every
            if (
                every and (epoch * run.steps + step + 1) % every == 0 and step + 1 < run.steps
            ):  # an epoch's end saves later
                _save_mid_epoch(run, epoch, step + 1, sums, epoch_start)
    return _epoch_row(
        epoch,
        distributed.all_reduce_sum(sums).tolist(),
        run.steps * run.batch_size * run.world,
        time.perf_counter() - epoch_start,
    )


def _step(run: _Run, epoch: int, step: int, x: Tensor, y: Tensor, sums: Tensor) -> None:
    """One optimiser step on a batch, its draws seeded by (seed, epoch, step, rank); adds to ``sums``."""
    config = run.config
    torch.manual_seed(step_seed(config.seed, epoch, step, 3, run.rank))
    if config.augment:
        augment_rng = step_generator(config.seed, epoch, step, 1, run.device)
        x = random_crop(x, max(1, x.shape[-1] // 8), augment_rng)
        x = random_flip(x, augment_rng) if run.flip else x
    if config.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    attack_rng = step_generator(config.seed, epoch, step, 2, run.device, run.rank)
    ctx = StepContext(epoch, epoch + step / run.steps, attack_rng, run.model, want_clean=step % 20 == 0)
    with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.use_bf16):
        out = run.loss_fn(run.net, x, y, ctx)
    run.optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    run.optimizer.step()
    run.scheduler.step()
    sums[0] += out.loss.detach() * len(y)
    sums[1] += (out.logits.argmax(1) == y).sum()
    if out.clean_logits is not None:
        sums[2] += (out.clean_logits.argmax(1) == y).sum()
        sums[3] += len(y)


def _save_mid_epoch(run: _Run, epoch: int, done: int, sums: Tensor, epoch_start: float) -> None:
    """The state after ``done`` steps of ``epoch`` (``config.checkpoint_every``), so a resume goes on from there."""
    so_far = distributed.all_reduce_sum(sums.clone()).tolist()
    mid = TrainState(
        epoch,
        done,
        run.result.history,
        sums=so_far,
        seconds=time.perf_counter() - epoch_start,
        run_seconds=run.before + time.perf_counter() - run.start,
    )
    if distributed.is_main():
        save_state(run.resume_path, mid, run.fingerprint, run.model, run.optimizer, run.scheduler, run.hook)


def _end_epoch(run: _Run, epoch: int, row: dict[str, float]) -> bool:
    """Record the epoch, ask the guard whether to stop, save the state; True to stop."""
    result = run.result
    result.history.append(row)
    log.info(
        "epoch %d/%d: %s",
        epoch + 1,
        run.config.epochs,
        ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch"),
    )
    if run.hook is not None:
        stop = distributed.agree(run.hook(run.model, epoch), run.device)  # rank 0 decides for all
        distributed.broadcast_module(run.model)  # a guard may have rolled rank 0's weights back
    else:
        stop = False
    result.stopped_early = stop
    if run.resume_path and distributed.is_main():
        done = TrainState(epoch + 1, 0, result.history, stop, run_seconds=run.before + time.perf_counter() - run.start)
        save_state(run.resume_path, done, run.fingerprint, run.model, run.optimizer, run.scheduler, run.hook)
    return stop


def _finish(run: _Run, test: IndexedSplit | None) -> TrainResult:
    """The model back in its usual memory format, the run's time and image count, and the test accuracy."""
    result = run.result
    if run.config.channels_last:
        run.model.to(memory_format=torch.contiguous_format)
    result.seconds_here = time.perf_counter() - run.start
    result.seconds = run.before + result.seconds_here
    result.images = len(result.history) * run.steps * run.batch_size * run.world
    if test is not None:
        result.test_accuracy = accuracy(run.model, test)
        log.info(
            "test accuracy %.4f after %.0f s of training%s", result.test_accuracy, result.seconds, since_resume(result)
        )
    return result


def since_resume(result: TrainResult) -> str:
    """`` (the whole run; 90 s of it since resuming at epoch 2)`` after a resume, else nothing."""
    if not result.resumed:
        return ""
    return (
        f" (the whole run; {result.seconds_here:.0f} s of it since resuming at epoch {result.resumed_from_epoch + 1})"
    )


def _postfix(sums: list[float], seen: int, rate: float) -> dict[str, str]:
    shown = {"loss": f"{sums[0] / seen:.3f}", "acc": f"{sums[1] / seen:.3f}"}
    if sums[3]:
        shown["clean"] = f"{sums[2] / sums[3]:.3f}"
    return {**shown, "img_s": f"{rate:.0f}"}


def _epoch_row(epoch: int, sums: list[float], seen: int, seconds: float) -> dict[str, float]:
    row = {"epoch": epoch + 1, "loss": sums[0] / seen, "train_accuracy": sums[1] / seen}
    if sums[3]:
        row["clean_train_accuracy"] = sums[2] / sums[3]
    return {**row, "seconds": seconds, "images_per_second": seen / seconds}


def _resume(
    path: Path | None, fingerprint, model, optimizer, scheduler, hook, result: TrainResult, steps: int
) -> TrainState:
    """Where to start: the saved state at ``path`` (model, optimiser, scheduler and guard restored), or the beginning."""
    state = load_state(path, fingerprint, model, optimizer, scheduler, hook) if path else None
    if state is None:
        return TrainState()
    result.history, result.stopped_early, result.resumed_from_epoch = list(state.history), state.stopped, state.epoch
    if state.stopped:
        log.info("%s: the run had already been stopped by its guard after epoch %d", path, state.epoch)
        return TrainState(fingerprint["epochs"], run_seconds=state.run_seconds)  # nothing left to train
    if state.step:
        log.info("resuming epoch %d, step %d of %d done (%s)", state.epoch + 1, state.step, steps, path)
    else:
        log.info("resuming from %s at epoch %d", path, state.epoch + 1)
    return state


def _optimizer(model: nn.Module, config: TrainConfig, total_steps: int):
    decay = [p for p in model.parameters() if p.ndim > 1]  # no weight decay on biases and norms
    rest = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=0.9, nesterov=True)
    else:
        optimizer = torch.optim.AdamW(groups, lr=config.lr)
    total_steps = max(total_steps, 1)
    if config.schedule == "onecycle":
        scheduler: Any = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=total_steps, pct_start=config.warmup
        )
    elif config.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    return optimizer, scheduler


__all__ = [
    "EpochHook",
    "LossFn",
    "StepContext",
    "StepOutput",
    "TrainConfig",
    "TrainResult",
    "cross_entropy_loss",
    "epoch_generator",
    "train_model",
]
