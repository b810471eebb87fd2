"""The training loop: epochs of AMP/DDP steps, validation, checkpoints, TensorBoard, Ctrl-C."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import torch
from torch.nn.parallel import DistributedDataParallel

from ..config import Config, config_to_dict
from ..errors import InputError
from ..model import load_state
from ..precision import autocast, autocast_dtype, precision_name
from .checkpointing import (atomic_copy, atomic_save, capture_rng_state, describe,
                            rank_rng_state, read_resume_checkpoint, restore_rng_state,
                            stale_temporaries, unwrap_model)
from .data import build_train_loader, per_rank_batch_size, seed_everything
from .distributed import DistributedContext, any_rank, gather_objects, ranks_where
from .monitor import Monitor, progress
from .recipe import SegmentationLoss, build_optimizer, build_scheduler, scaled_lr
from .stop import StopRequest
from .validation import ValidationResult, Validator

__all__ = ["Trainer", "TrainResult", "EpochStats", "TrainingDiverged"]

logger = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite (a learning rate too high for the batch, usually)."""


@dataclass
class EpochStats:
    """Means over one epoch's iterations (this rank's), its speed, and validation if run."""

    epoch: int
    loss: float
    loss_ce: float
    loss_dice: float
    lr: float
    seconds: float
    slices_per_second: float
    val_dice: Optional[float] = None


@dataclass
class TrainResult:
    """How a run ended."""

    output_dir: Path
    epochs_done: int
    global_step: int
    best_metric: Optional[float]
    interrupted: bool = False
    history: list[EpochStats] = field(default_factory=list)
    last_validation: Optional[dict] = None
    config: Optional[Config] = None  # the run's resolved config (set by train())
    already_finished: bool = False  # --resume of a finished run: nothing run or written


class Trainer:
    """One training run on prepared parts; :func:`swin_unet.training.train` builds them.

    Parameters
    ----------
    config : Config
        The resolved config (model classes and channels already set from the data).
    model : SwinUnet
        The network on ``context.device``, pretrained weights already loaded.
    train_dataset : torch Dataset with ``set_epoch``
        Training slices.
    validator : Validator or None
        Validation volumes; None (or empty) when the data set has no validation split.
    class_names : list of str
        Foreground class names, stored in checkpoints.
    output_dir : Path
        Run folder (``checkpoints/``, ``tensorboard/``); written by rank 0 only.
    context : DistributedContext
        Rank, world size and device.
    """

    def __init__(self, config: Config, model, train_dataset, validator: Optional[Validator],
                 class_names: list[str], output_dir: Path, context: DistributedContext) -> None:
        self.config, self.train_cfg = config, config.train
        self.context, self.device = context, context.device
        self.output_dir = Path(output_dir)
        self.checkpoint_dir = self.output_dir / "checkpoints"
        self.class_names = list(class_names)
        self.validator = validator if validator is not None and len(validator) else None
        self.dataset = train_dataset
        self.model = model
        self.amp_dtype = autocast_dtype(self.device, self.train_cfg.amp, self.train_cfg.amp_dtype)
        batch = per_rank_batch_size(self.train_cfg.batch_size, context.world_size)
        self.loader, self.sampler = build_train_loader(
            train_dataset, batch, context, self.train_cfg, config.data.num_workers)
        self.iters_per_epoch = self.sampler.batches_per_epoch()
        self.loss_fn = SegmentationLoss(self.train_cfg.ce_weight, self.train_cfg.dice_weight)
        self.optimizer = build_optimizer(model, self.train_cfg, self.train_cfg.batch_size)
        self.scheduler = build_scheduler(self.optimizer, self.train_cfg, self.iters_per_epoch)
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=self.amp_dtype == torch.float16
                                           and self.device.type == "cuda")
        self.epoch, self.global_step, self.step_in_epoch = 0, 0, 0
        self.best_metric: Optional[float] = None
        self._resume_rng: Optional[dict] = None
        self.network = model  # what the training step calls: DDP / compiled wrappers of model

    # ------------------------------------------------------------------ state
    def checkpoint(self, rng_ranks: Optional[list] = None) -> dict:
        """Everything the contract and an exact resume need.

        ``rng_ranks``: every rank's random state (a distributed run), stored beside this
        process's ``rng`` so that each rank resumes with its own drop-path stream.
        """
        state = {
            "model": unwrap_model(self.model).state_dict(),
            "config": config_to_dict(self.config),
            "class_names": self.class_names,
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "best_metric": self.best_metric,
            "rng": capture_rng_state(),
        }
        if rng_ranks is not None:
            state["rng_ranks"] = rng_ranks
        return state

    def resume(self, path: Union[str, Path]) -> None:
        """Continue from a checkpoint of this project: weights, optimiser, schedule, RNG, step.

        Raises
        ------
        InputError
            Not a training checkpoint, or one of a model of another shape.
        """
        path = Path(path)
        state = read_resume_checkpoint(path)
        load_state(unwrap_model(self.model), state, path, strict=True)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if state["scaler"]:
                self.scaler.load_state_dict(state["scaler"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise InputError(f"{path}: optimiser state does not fit this run "
                             f"({str(exc).splitlines()[0]})") from None
        self.epoch, self.global_step = int(state["epoch"]), int(state["global_step"])
        self.step_in_epoch = int(state["step_in_epoch"])
        self.best_metric = state["best_metric"]
        self._resume_rng = (rank_rng_state(state, self.context, path) if self.step_in_epoch
                            else None)
        if self.step_in_epoch >= self.iters_per_epoch:
            raise InputError(f"{path}: stopped {self.step_in_epoch} iterations into an epoch, "
                             f"but an epoch of this run has {self.iters_per_epoch}")
        stored = state["config"].get("train", {})
        changed = sorted(k for k, v in config_to_dict(self.config)["train"].items()
                         if k in stored and stored[k] != v)
        if changed:
            logger.warning("resuming with train settings that differ from the checkpoint's: %s",
                           ", ".join(f"{k}={getattr(self.train_cfg, k)!r} (was {stored[k]!r})"
                                     for k in changed))
        logger.info("resumed from %s: %s", path, describe(state))

    def wrap(self) -> None:
        """DistributedDataParallel and ``torch.compile`` around the model, as configured."""
        network = self.model
        if self.context.distributed:
            # No batch norm: buffers are index tables that never change, so not broadcast.
            network = DistributedDataParallel(
                network, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                broadcast_buffers=False)
        if self.train_cfg.compile:
            network = torch.compile(network)
        self.network = network

    # ------------------------------------------------------------------ saving
    def save(self, validated_best: bool) -> None:
        """Write last.pth (and best.pth) on rank 0; atomic, so a kill leaves the old file.

        Called on every rank: each rank's random state is gathered (a collective) for an exact
        mid-epoch resume, where every rank must continue its own stream.
        """
        rng_ranks = (gather_objects(capture_rng_state(), self.context)
                     if self.context.distributed else None)
        if not self.context.is_main:
            return
        last = self.checkpoint_dir / "last.pth"
        atomic_save(self.checkpoint(rng_ranks), last)
        if validated_best:
            atomic_copy(last, self.checkpoint_dir / "best.pth")

    # ------------------------------------------------------------------ loop
    def _step(self, batch: dict) -> torch.Tensor:
        """One optimiser step; returns (loss, loss_ce, loss_dice) detached, on the device."""
        non_blocking = self.device.type == "cuda"
        images = batch["image"].to(self.device, non_blocking=non_blocking)
        labels = batch["label"].to(self.device, non_blocking=non_blocking)
        with autocast(self.device, self.amp_dtype):
            logits = self.network(images)
        loss, loss_ce, loss_dice = self.loss_fn(logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return torch.stack([loss.detach(), loss_ce, loss_dice])

    def _log_step(self, losses: torch.Tensor, lr: float, monitor: Monitor, bar,
                  speed: float) -> None:
        """TensorBoard scalars and the progress bar (reading the loss syncs the GPU)."""
        loss, loss_ce, loss_dice = (float(v) for v in losses)
        # Every rank learns of a divergence on any rank here (every rank logs at the same
        # iterations), so all stop together instead of the others waiting in the next
        # all-reduce for the NCCL timeout. fp16's scaler skips non-finite steps by itself.
        diverged = ranks_where(not math.isfinite(loss) and not self.scaler.is_enabled(),
                               self.context)
        if diverged:
            where = (f" on rank {', '.join(map(str, diverged))}" if self.context.distributed
                     else "")
            raise TrainingDiverged(f"training diverged: the loss is not finite{where} at "
                                   f"iteration {self.global_step} (try a lower train.base_lr)")
        monitor.scalars({"train/loss": loss, "train/loss_ce": loss_ce,
                         "train/loss_dice": loss_dice, "train/lr": lr}, self.global_step)
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", slices_s=f"{speed:.1f}")

    def _train_epoch(self, monitor: Monitor, stop: StopRequest) -> Optional[EpochStats]:
        """One epoch (or its rest, after a mid-epoch resume); None when a stop was requested."""
        epoch = self.epoch
        seed_everything(self.train_cfg.seed, epoch, self.context.rank)
        self.sampler.set_epoch(epoch, skip=self.step_in_epoch)
        self.dataset.set_epoch(epoch)
        self.network.train()
        iterator = iter(self.loader)
        if self._resume_rng is not None:
            # The state the interrupted run had after its last finished iteration.
            restore_rng_state(self._resume_rng)
            self._resume_rng = None
        totals = torch.zeros(3, dtype=torch.float64, device=self.device)
        slices, steps, start = 0, 0, time.perf_counter()
        bar = progress(iterator, len(self.sampler),
                       f"epoch {epoch + 1}/{self.train_cfg.epochs}", self.context.is_main)
        try:
            for batch in bar:
                lr = self.optimizer.param_groups[0]["lr"]
                losses = self._step(batch)
                totals += losses.to(totals.dtype)
                slices += batch["image"].shape[0]
                steps += 1
                self.global_step += 1
                self.step_in_epoch += 1
                last = self.step_in_epoch == self.iters_per_epoch
                if steps % self.train_cfg.log_every == 0 or last:
                    speed = slices * self.context.world_size / (time.perf_counter() - start)
                    self._log_step(losses, lr, monitor, bar, speed)
                # Stop between iterations, but not after an epoch's last one: that epoch ends
                # normally and is saved as finished. Ranks agree through a collective, which
                # syncs the GPU: only every log_every iterations in a distributed run.
                check = not self.context.distributed or steps % self.train_cfg.log_every == 0
                if not last and check and any_rank(stop.requested, self.context):
                    return None
        finally:
            bar.close()
        seconds = time.perf_counter() - start
        means = (totals / max(1, steps)).tolist()
        return EpochStats(epoch=epoch + 1, loss=means[0], loss_ce=means[1], loss_dice=means[2],
                          lr=self.optimizer.param_groups[0]["lr"], seconds=seconds,
                          slices_per_second=slices * self.context.world_size / max(seconds, 1e-9))

    def _should_validate(self) -> bool:
        return self.validator is not None and (self.epoch % self.train_cfg.val_every == 0
                                               or self.epoch == self.train_cfg.epochs)

    def fit(self, monitor: Monitor) -> TrainResult:
        """Train from ``self.epoch`` to ``train.epochs``; returns early (resumable) on Ctrl-C.

        A short loop over the steps a variant may override: :meth:`_train_epoch`,
        :meth:`validate`, :meth:`is_new_best`, :meth:`log_epoch` and :meth:`save`.
        """
        result = TrainResult(output_dir=self.output_dir, epochs_done=self.epoch,
                             global_step=self.global_step, best_metric=self.best_metric)
        self._start_fit()
        with StopRequest(self.context.distributed) as stop:
            while self.epoch < self.train_cfg.epochs:
                stats = self._train_epoch(monitor, stop)
                if stats is None:
                    self._stop(result, monitor, mid_epoch=True)
                    break
                self._end_epoch(stats, monitor, result)
                if (self.epoch < self.train_cfg.epochs
                        and any_rank(stop.requested, self.context)):
                    self._stop(result, monitor, mid_epoch=False)
                    break
        self._ensure_best()
        result.epochs_done, result.global_step = self.epoch, self.global_step
        result.best_metric = self.best_metric
        return result

    def _start_fit(self) -> None:
        """Remove what a killed run left half-written; log the recipe."""
        cfg = self.train_cfg
        if self.context.is_main:
            for leftover in stale_temporaries(self.checkpoint_dir):
                logger.warning("removing %s, a checkpoint a killed run did not finish writing",
                               leftover)
                leftover.unlink()
        logger.info("training %d epochs of %d iterations (global batch %d over %d process(es), "
                    "lr %.4g = %.4g x %d / %d), %s, precision %s", cfg.epochs, self.iters_per_epoch,
                    cfg.batch_size, self.context.world_size,
                    scaled_lr(cfg, cfg.batch_size), cfg.base_lr, cfg.batch_size,
                    cfg.base_batch_size, self.device,
                    precision_name(self.device, self.amp_dtype, cfg.amp))
        if self.validator is None:
            logger.info("no validation cases (data.val_cases is empty): best.pth is the last "
                        "epoch's weights, as in the published protocol")

    def _end_epoch(self, stats: EpochStats, monitor: Monitor, result: TrainResult) -> None:
        """After a finished epoch: its scalars, validation, the best choice, the log, saving."""
        self.epoch += 1
        self.step_in_epoch = 0
        monitor.scalars({"train/epoch_loss": stats.loss,
                         "train/slices_per_second": stats.slices_per_second}, self.global_step)
        validation, seconds = None, 0.0
        if self._should_validate():
            start = time.perf_counter()
            validation = self.validate(monitor)
            seconds = time.perf_counter() - start
            stats.val_dice = validation.mean_dice
            result.last_validation = validation.summary
        is_best = self.is_new_best(validation)
        self.log_epoch(stats, validation, seconds, is_best)
        self.save(validated_best=is_best)
        monitor.flush()
        result.history.append(stats)

    def validate(self, monitor: Monitor) -> ValidationResult:
        """Score the validation volumes; their scalars and overlays to TensorBoard."""
        validation = self.validator.run(unwrap_model(self.model), self.device,
                                        amp_dtype=self.amp_dtype)
        monitor.scalars(validation.scalars(), self.global_step)
        for tag, panel in validation.overlays.items():
            monitor.image(tag, panel, self.global_step)
        monitor.write_curves()
        return validation

    def is_new_best(self, validation: Optional[ValidationResult]) -> bool:
        """Whether this epoch's weights become best.pth (recording the metric if so).

        Without validation cases every epoch is the best (the published protocol: the last);
        an epoch that is not validated is not.
        """
        if self.validator is None:
            return True
        if validation is None or not math.isfinite(validation.mean_dice):
            return False
        if self.best_metric is None or validation.mean_dice > self.best_metric:
            self.best_metric = validation.mean_dice
            return True
        return False

    def log_epoch(self, stats: EpochStats, validation: Optional[ValidationResult],
                  seconds: float, is_best: bool) -> None:
        """One log line per epoch: losses, lr, speed and the validation's numbers."""
        message = (f"epoch {self.epoch}/{self.train_cfg.epochs}: loss {stats.loss:.4f} "
                   f"(ce {stats.loss_ce:.4f}, dice {stats.loss_dice:.4f}), "
                   f"lr {stats.lr:.3g}, {stats.slices_per_second:.1f} slices/s, "
                   f"{stats.seconds:.1f} s")
        if validation is not None:
            message += (f"; {validation.line()} in {seconds:.1f} s"
                        f"{' (new best)' if is_best else ''}")
        logger.info(message)

    def _stop(self, result: TrainResult, monitor: Monitor, mid_epoch: bool) -> None:
        """A stop was requested: a resumable checkpoint (mid-epoch) and the log line."""
        last = self.checkpoint_dir / "last.pth"
        if mid_epoch:
            self.save(validated_best=False)
            monitor.flush()
            logger.warning("stopped at iteration %d of epoch %d; resumable checkpoint %s "
                           "(continue with --resume)", self.step_in_epoch, self.epoch + 1, last)
        else:
            logger.warning("stopped after epoch %d; resumable checkpoint %s (continue with "
                           "--resume)", self.epoch, last)
        result.interrupted = True

    def _ensure_best(self) -> None:
        """A finished run always has best.pth: the last epoch when no validation scored."""
        best = self.checkpoint_dir / "best.pth"
        if self.context.is_main and self.epoch >= self.train_cfg.epochs and not best.exists():
            # Every validation scored NaN (no class present anywhere): keep the contract's file.
            logger.warning("no validation produced a mean Dice; best.pth is the last epoch")
            atomic_copy(self.checkpoint_dir / "last.pth", best)
