"""The one trainer that every dataset, method and COST setting goes through.

Per epoch: train, validate, test; step the scheduler; append a row to ``epochs.csv``;
save a checkpoint atomically. Running the same command again continues from the last
checkpoint. A finished run is never retrained or overwritten.
"""
from __future__ import annotations

import logging
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from tqdm.auto import tqdm

from benchmarks.delta_m import delta_m, delta_p_task_averaged
from benchmarks.loggers import RunLogger
from benchmarks.runio import (atomic_save_torch, atomic_write_text, git_commit, load_checkpoint,
                              rng_state, rows_to_csv, set_rng_state)
from datasets.base import Benchmark, MTLModel
from methods.base import Method
from methods.jacobian import JacobianComputer, flatten_grads, write_flat_grad

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
SUMMARY = "summary.csv"
EPOCHS = "epochs.csv"


class NonFiniteLossError(RuntimeError):
    """A task loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    """Training settings that are not part of a dataset's or method's declaration."""

    epochs: int
    lr: float
    weight_decay: float = 0.0
    clip_grad_norm: float | None = None
    seed: int = 0
    max_train_batches: int | None = None
    max_eval_batches: int | None = None
    batched_jacobian: bool = True
    jacobian_chunk_size: int | None = 4
    progress: bool = True
    # Crash simulation for tests: the process kills itself (SIGKILL) after this many
    # training steps, leaving only what was already on disk.
    interrupt_after_steps: int | None = None


@dataclass
class StepContext:
    """What a COST layer sees at one training step."""

    trainer: "Trainer"
    batch: Any
    epoch: int
    step: int
    losses: torch.Tensor | None
    jacobian: torch.Tensor | None

    def forward_losses(self, batch: Any | None = None, model: torch.nn.Module | None = None) -> torch.Tensor:
        """Run a forward pass and return the K task losses (with autograd graph)."""
        trainer = self.trainer
        batch = self.batch if batch is None else batch
        outputs = trainer.benchmark.forward(model or trainer.model, batch)
        return trainer.benchmark.task_losses(outputs, batch)


@dataclass
class RunState:
    """Everything besides tensors that a checkpoint restores."""

    epoch: int = 0
    global_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    wall_time_s: float = 0.0


class Trainer:
    """Train one (dataset, method, COST setting, seed) run into ``run_dir``."""

    def __init__(self, benchmark: Benchmark, method: Method, train_cfg: TrainConfig, run_dir: Path,
                 device: torch.device, logger: RunLogger | None = None, cost: Any | None = None,
                 run_info: Mapping[str, Any] | None = None):
        self.benchmark = benchmark
        self.method = method
        self.cfg = train_cfg
        self.run_dir = Path(run_dir)
        self.device = device
        self.logger = logger or RunLogger()
        self.cost = cost
        self.run_info = dict(run_info or {})
        self.state = RunState()
        self.jacobian = JacobianComputer(batched=train_cfg.batched_jacobian, chunk_size=train_cfg.jacobian_chunk_size)
        self.method.bind_task_names(benchmark.tasks)

        self.splits = benchmark.build_splits(train_cfg.seed)
        self.model: MTLModel = benchmark.build_model().to(device)
        self.shared_params = [p for p in self.model.shared_parameters() if p.requires_grad]
        self.task_params = [p for p in self.model.task_specific_parameters() if p.requires_grad]
        self._check_parameter_partition()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=train_cfg.lr,
                                          weight_decay=train_cfg.weight_decay)
        self.scheduler = benchmark.scheduler(self.optimizer)
        self.last_shared_grad: torch.Tensor | None = None
        if self.cost is not None:
            self.cost.attach(self)

    def _check_parameter_partition(self) -> None:
        shared = {id(p) for p in self.shared_params}
        specific = {id(p) for p in self.task_params}
        if shared & specific:
            raise ValueError(f"{type(self.model).__name__}: some parameters are both shared and task-specific")
        missing = [n for n, p in self.model.named_parameters() if p.requires_grad and id(p) not in shared | specific]
        if missing:
            raise ValueError(f"{type(self.model).__name__}: parameters neither shared nor task-specific: {missing[:5]}")

    # Checkpoints ------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        atomic_save_torch({
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "method": self.method.state_dict(),
            "cost": self.cost.state_dict() if self.cost is not None else None,
            "rng": rng_state(),
            "state": self.state.__dict__,
        }, self.run_dir / CHECKPOINT)

    def maybe_resume(self) -> bool:
        path = self.run_dir / CHECKPOINT
        if not path.exists():
            return False
        ckpt = load_checkpoint(path)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and ckpt["scheduler"] is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        self.method.load_state_dict(ckpt["method"])
        if self.cost is not None and ckpt.get("cost") is not None:
            self.cost.load_state_dict(ckpt["cost"])
        set_rng_state(ckpt["rng"])
        self.state = RunState(**ckpt["state"])
        log.info("resumed %s after epoch %d (step %d)", self.run_dir, self.state.epoch, self.state.global_step)
        return True

    # One training step ------------------------------------------------------------------
    def _check_finite(self, losses: torch.Tensor, epoch: int, step: int) -> None:
        bad = [name for name, value in zip(self.benchmark.tasks, losses.detach().tolist()) if not math.isfinite(value)]
        if bad:
            raise NonFiniteLossError(
                f"non-finite loss for task(s) {', '.join(bad)} at epoch {epoch}, step {step}; training "
                f"stopped and the last good checkpoint ({self.run_dir / CHECKPOINT}, after epoch "
                f"{self.state.epoch}) is kept. Lower the learning rate or set clip_grad_norm."
            )

    def apply_method(self, losses: torch.Tensor, jacobian: torch.Tensor | None) -> None:
        """Set ``.grad`` of every parameter according to the method."""
        if self.method.needs_jacobian:
            if jacobian is None:
                jacobian = self.jacobian(losses, self.shared_params)
            aggregation = self.method.aggregate(jacobian, losses.detach())
            task_loss = (aggregation.task_loss_weights.to(losses.dtype).detach() * losses).sum()
            if self.task_params:
                torch.autograd.backward(task_loss, inputs=self.task_params)
            write_flat_grad(aggregation.shared_grad, self.shared_params)
        else:
            self.method.total_loss(losses).backward()

    def train_step(self, batch: Any, epoch: int, step: int) -> torch.Tensor:
        self.model.train()
        losses = StepContext(self, batch, epoch, step, None, None).forward_losses()
        self._check_finite(losses, epoch, step)

        jacobian = None
        if self.method.needs_jacobian or (self.cost is not None and self.cost.wants_jacobian(epoch)):
            jacobian = self.jacobian(losses, self.shared_params)
        if self.cost is not None:
            # The context holds the only reference to the step's graph, so a teleport can free it
            # by setting context.losses to None. The losses are then computed again.
            context = StepContext(self, batch, epoch, step, losses, jacobian)
            del losses
            teleported = self.cost.maybe_teleport(context)
            if teleported:
                jacobian = None
            if teleported or context.losses is None:
                losses = context.forward_losses()
            else:
                losses = context.losses

        self.optimizer.zero_grad(set_to_none=True)
        self.apply_method(losses, jacobian)
        if self.cfg.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.shared_params, self.cfg.clip_grad_norm)
        self.last_shared_grad = flatten_grads([p.grad for p in self.shared_params], self.shared_params).detach()

        if self.cost is not None:
            self.cost.before_optimizer_step(self)
        self.optimizer.step()
        if self.cost is not None:
            self.cost.after_optimizer_step(self)

        losses_after = None
        if self.method.needs_losses_after_step:
            with torch.no_grad():
                losses_after = StepContext(self, batch, epoch, step, None, None).forward_losses().detach()
        self.method.after_step(losses.detach(), losses_after)
        return losses.detach()

    # Epochs -----------------------------------------------------------------------------
    def _limited(self, loader, limit: int | None):
        for index, batch in enumerate(loader):
            if limit is not None and index >= limit:
                return
            yield batch

    def _num_batches(self, loader, limit: int | None) -> int | None:
        try:
            total = len(loader)
        except TypeError:
            return limit
        return total if limit is None else min(total, limit)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.method.on_epoch_start(epoch)
        if hasattr(self.splits.train, "set_epoch"):
            self.splits.train.set_epoch(epoch)
        loss_sums = torch.zeros(len(self.benchmark.tasks), dtype=torch.float64)
        batches = 0
        bar = tqdm(self._limited(self.splits.train, self.cfg.max_train_batches), desc=f"epoch {epoch} train",
                   total=self._num_batches(self.splits.train, self.cfg.max_train_batches), leave=False,
                   disable=not self.cfg.progress, dynamic_ncols=True)
        for batch in bar:
            batch = self.benchmark.to_device(batch, self.device)
            losses = self.train_step(batch, epoch, self.state.global_step)
            self.state.global_step += 1
            loss_sums += losses.double().cpu()
            batches += 1
            bar.set_postfix(loss=f"{losses.sum().item():.4g}")
            if self.cfg.interrupt_after_steps is not None and self.state.global_step >= self.cfg.interrupt_after_steps:
                log.warning("interrupt_after_steps=%d reached: killing the process", self.cfg.interrupt_after_steps)
                os.kill(os.getpid(), signal.SIGKILL)
        means = loss_sums / max(batches, 1)
        return {f"train/loss_{task}": float(v) for task, v in zip(self.benchmark.tasks, means)}

    @torch.no_grad()
    def evaluate(self, loader, split: str) -> dict[str, float]:
        self.model.eval()
        accumulator = self.benchmark.new_accumulator()
        bar = tqdm(self._limited(loader, self.cfg.max_eval_batches), desc=split, leave=False,
                   total=self._num_batches(loader, self.cfg.max_eval_batches),
                   disable=not self.cfg.progress, dynamic_ncols=True)
        for batch in bar:
            batch = self.benchmark.to_device(batch, self.device)
            accumulator.update(self.benchmark.forward(self.model, batch), batch)
        return accumulator.compute()

    def _with_delta(self, values: dict[str, float]) -> dict[str, float]:
        metrics = self.benchmark.metrics
        if all(m.stl is not None for m in metrics):
            values = dict(values)
            values["delta_m"] = delta_m(values, metrics)
            values["delta_p"] = delta_p_task_averaged(values, metrics)
        return values

    def record(self, table: str, record: Mapping[str, Any]) -> None:
        """Store one event record (e.g. a teleport); saved with the epoch and sent to the logger."""
        self.state.records.setdefault(table, []).append(dict(record))
        self.logger.log_record(table, record)

    def _write_epoch_files(self) -> None:
        atomic_write_text(self.run_dir / EPOCHS, rows_to_csv(self.state.history))
        for table, rows in self.state.records.items():
            if rows:
                atomic_write_text(self.run_dir / f"{table}.csv", rows_to_csv(rows))

    def fit(self) -> dict[str, Any]:
        """Train to the configured number of epochs (resuming if possible); return the summary."""
        self.maybe_resume()
        epochs_bar = tqdm(range(self.state.epoch, self.cfg.epochs), desc=f"{self.run_info.get('name', 'run')}",
                          initial=self.state.epoch, total=self.cfg.epochs, disable=not self.cfg.progress,
                          dynamic_ncols=True)
        for epoch in epochs_bar:
            started = time.perf_counter()
            row: dict[str, Any] = {"epoch": epoch}
            row.update(self.train_epoch(epoch))
            train_seconds = time.perf_counter() - started
            if self.splits.val is not None:
                row.update({f"val/{k}": v for k, v in self._with_delta(self.evaluate(self.splits.val, "val")).items()})
            row.update({f"test/{k}": v for k, v in self._with_delta(self.evaluate(self.splits.test, "test")).items()})
            for name, count in self.method.pop_counters().items():
                row[f"method/{name}"] = count
            if self.cost is not None:
                row.update({f"cost/{k}": v for k, v in self.cost.pop_epoch_stats().items()})
            row["lr"] = self.optimizer.param_groups[0]["lr"]
            row["train_seconds"] = train_seconds
            row["epoch_seconds"] = time.perf_counter() - started
            self._step_scheduler(row)
            self.state.wall_time_s += row["epoch_seconds"]
            self.state.epoch = epoch + 1
            self.state.history.append(row)
            self._write_epoch_files()
            self.save_checkpoint()
            self.logger.log_epoch(row, epoch)
            epochs_bar.set_postfix(delta_m=f"{row.get('test/delta_m', float('nan')):.2f}")
        return self.finish()

    def _step_scheduler(self, row: Mapping[str, Any]) -> None:
        if self.scheduler is None:
            return
        if self.benchmark.scheduler_monitor == "val_delta_m":
            key = "val/delta_m" if "val/delta_m" in row else "test/delta_m"
            self.scheduler.step(row[key])
        else:
            self.scheduler.step()

    # Model selection --------------------------------------------------------------------
    def select(self) -> tuple[dict[str, float], str]:
        """Apply the benchmark's reporting rule; return test metrics and the selected epoch(s)."""
        history = self.state.history
        names = self.benchmark.metric_names()
        rule = self.benchmark.selection
        if rule == "last_k_mean":
            window = history[-self.benchmark.selection_last_k:]
            values = {n: sum(r[f"test/{n}"] for r in window) / len(window) for n in names}
            return self._with_delta(values), f"{window[0]['epoch']}-{window[-1]['epoch']}"
        if rule == "best_val_delta_m":
            key = "val/delta_m" if "val/delta_m" in history[0] else "test/delta_m"
            best = min(history, key=lambda r: r[key])
        elif rule == "best_val_mean":
            higher = [m.name for m in self.benchmark.metrics if m.higher_is_better]
            best = max(history, key=lambda r: sum(r[f"val/{n}"] for n in higher) / len(higher))
        else:
            raise ValueError(f"unknown selection rule {rule!r}")
        return self._with_delta({n: best[f"test/{n}"] for n in names}), str(best["epoch"])

    def finish(self) -> dict[str, Any]:
        values, selected = self.select()
        summary: dict[str, Any] = dict(self.run_info)
        summary.update(values)
        summary.update({
            "selected_epoch": selected,
            "epochs": self.state.epoch,
            "wall_time_s": round(self.state.wall_time_s, 2),
            "teleports": len(self.state.records.get("teleports", [])),
            "git_commit": git_commit(),
        })
        atomic_write_text(self.run_dir / SUMMARY, rows_to_csv([summary]))
        self.logger.log_summary({k: v for k, v in summary.items() if isinstance(v, (int, float, str))})
        log.info("run finished: %s", {k: summary[k] for k in ("delta_m", "selected_epoch") if k in summary})
        return summary
