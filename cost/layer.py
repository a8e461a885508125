"""The COST layer: the trainer hooks that wrap any base MTL method with symmetry teleportation.

"Continual Optimization with Symmetry Teleportation for Multi-Task Learning" (Zhou et al.,
NeurIPS 2025). At a training step whose task gradients conflict (:mod:`cost.trigger`),
the shared backbone is moved to a point with nearly the same task losses but larger and
more even gradients (:mod:`cost.teleport`). The trainer then recomputes the forward pass
and makes the base method's ordinary update on the same batch. Adam's history is reused,
scaled or dropped after the move (:mod:`cost.trajectory`).

Trainer contract (``benchmarks/trainer.py``): ``attach`` once; per step ``wants_jacobian``,
``maybe_teleport``, ``before_optimizer_step``, ``after_optimizer_step``; per epoch
``pop_epoch_stats``; ``state_dict``/``load_state_dict`` in checkpoints.
"""
from __future__ import annotations

import logging
from collections import Counter
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import torch
from torch import nn

from cost.config import CostConfig
from cost.objective import sharpness_weights
from cost.teleport import TeleportOutcome, TrainingBatches, run_teleport
from cost.trajectory import TrajectoryReuse, displacement_cosine
from cost.trigger import GradientGeometry, Trigger

if TYPE_CHECKING:
    from benchmarks.trainer import StepContext, Trainer

log = logging.getLogger(__name__)

RECORD_TABLE = "teleports"


class CostLayer:
    """Symmetry teleportation with trajectory reuse around one trainer's base method."""

    def __init__(self, config: CostConfig):
        self.config = config
        self.trigger = Trigger(config.trigger, config.tau)
        self.reuse = TrajectoryReuse(mode=config.htr, scope=config.htr_scope)
        self.trainer: Trainer | None = None
        self.targets: list[str] = []
        self.total_teleports = 0
        self.epoch = -1
        self.epoch_teleports = 0
        self.stats: Counter[str] = Counter()
        self.invariance_errors: list[float] = []

    # Set-up ---------------------------------------------------------------------------
    def attach(self, trainer: "Trainer") -> None:
        """Bind to a trainer and check that the adapter targets are shared modules."""
        self.trainer = trainer
        model = trainer.model
        if isinstance(self.config.targets, str):
            try:
                self.targets = list(model.lora_targets(self.config.targets))
            except NotImplementedError as error:
                raise ValueError(f"{error}; list the target modules (or parameters, for cost.adapter=full) in "
                                 "cost.targets") from None
        else:
            self.targets = list(self.config.targets)
        _check_targets(model, self.targets, trainer.shared_params, parameters=self.config.adapter == "full")
        log.info("COST attached: trigger %s (tau %g), adapter %s rank %d on %s, start epoch %d, at most %s "
                 "teleport(s) per epoch, HTR %s", self.config.trigger, self.config.tau, self.config.adapter,
                 self.config.rank, self.targets, self.config.start_epoch, self.config.max_per_epoch, self.config.htr)

    # Per step -------------------------------------------------------------------------
    def wants_jacobian(self, epoch: int) -> bool:
        """Return True when a teleport could fire at this step (so the trigger needs the Jacobian)."""
        self._enter_epoch(epoch)
        return self._gate_open(epoch)

    def maybe_teleport(self, ctx: "StepContext") -> bool:
        """Check the trigger on this step's Jacobian; teleport when it fires. Return True after a teleport."""
        self._enter_epoch(ctx.epoch)
        if not self._gate_open(ctx.epoch):
            return False
        trainer = ctx.trainer
        jacobian = ctx.jacobian
        if jacobian is None:
            jacobian = trainer.jacobian(ctx.losses, trainer.shared_params)
        before = GradientGeometry.of(jacobian)
        cosine = self.trigger.statistic(before)
        self.stats["checks"] += 1
        if not self.trigger.fires(cosine):
            return False
        self.stats["conflicts"] += 1
        # Release the step's graph before the teleport builds its own. The trainer computes
        # the losses again when ctx.losses is None.
        ctx.losses = None

        outcome = run_teleport(
            trainer.model, _losses_of(trainer), self._training_batches(trainer), ctx.batch, self.config,
            self.targets, trainer.shared_params, self._perturbed_params(trainer),
            sharpness_weights(before.task_norms), self._inner_lr(trainer), self._generator(trainer),
        )
        after = self._geometry_after(ctx) if self.config.measure_after and outcome.merged else None
        sigma, action = self._plan_reuse(trainer, outcome)
        self._count_teleport(ctx, cosine, before, after, outcome, sigma, action)
        return outcome.merged

    def before_optimizer_step(self, trainer: "Trainer") -> None:
        """Apply a pending trajectory-reuse action to the optimiser."""
        self.reuse.before_step(trainer.optimizer)

    def after_optimizer_step(self, trainer: "Trainer") -> None:
        """Restore the optimiser's betas after a trajectory-reuse step."""
        self.reuse.after_step(trainer.optimizer)

    # Per epoch and checkpoints --------------------------------------------------------
    def pop_epoch_stats(self) -> dict[str, float]:
        """Return and reset this epoch's counters: checks, conflicts, teleports, aborted, seconds, errors."""
        errors = self.invariance_errors
        stats = {
            "checks": self.stats["checks"],
            "conflicts": self.stats["conflicts"],
            "teleports": self.stats["teleports"],
            "aborted": self.stats["aborted"],
            "teleport_seconds": round(float(self.stats["seconds"]), 3),
            "invariance_error_mean": sum(errors) / len(errors) if errors else float("nan"),
        }
        self.stats.clear()
        self.invariance_errors = []
        return stats

    def state_dict(self) -> dict[str, Any]:
        return {
            "total_teleports": self.total_teleports,
            "epoch": self.epoch,
            "epoch_teleports": self.epoch_teleports,
            "stats": dict(self.stats),
            "invariance_errors": list(self.invariance_errors),
            "reuse": self.reuse.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.total_teleports = int(state["total_teleports"])
        self.epoch = int(state["epoch"])
        self.epoch_teleports = int(state["epoch_teleports"])
        self.stats = Counter(state.get("stats", {}))
        self.invariance_errors = list(state.get("invariance_errors", []))
        self.reuse.load_state_dict(state.get("reuse", {}))

    # Helpers --------------------------------------------------------------------------
    def _enter_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch = epoch
            self.epoch_teleports = 0

    def _gate_open(self, epoch: int) -> bool:
        if epoch < self.config.start_epoch:
            return False
        cap = self.config.max_per_epoch
        return cap is None or self.epoch_teleports < cap

    def _training_batches(self, trainer: "Trainer") -> TrainingBatches:
        return TrainingBatches(trainer.splits.train, lambda batch: trainer.benchmark.to_device(batch, trainer.device),
                               trainer.cfg.max_train_batches)

    def _perturbed_params(self, trainer: "Trainer") -> list[torch.Tensor]:
        if self.config.sharpness_params == "all":
            return list(trainer.model.parameters())
        return list(trainer.shared_params)

    def _inner_lr(self, trainer: "Trainer") -> float:
        if self.config.inner_lr is not None:
            return float(self.config.inner_lr)
        return float(trainer.optimizer.param_groups[0]["lr"])

    def _generator(self, trainer: "Trainer") -> torch.Generator:
        # Seeded by (run seed, teleport index): the directions do not draw from the global
        # generator, and a resumed run draws the same ones.
        generator = torch.Generator(device=trainer.device)
        generator.manual_seed(int(trainer.cfg.seed) * 1_000_003 + self.total_teleports)
        return generator

    def _geometry_after(self, ctx: "StepContext") -> GradientGeometry:
        # Train mode, as for the trigger's Jacobian; buffers (BatchNorm running statistics)
        # are restored so that this measurement leaves no trace in the model.
        trainer = ctx.trainer
        with preserved_buffers(trainer.model):
            losses = ctx.forward_losses()
            jacobian = trainer.jacobian(losses, trainer.shared_params)
        return GradientGeometry.of(jacobian)

    def _plan_reuse(self, trainer: "Trainer", outcome: TeleportOutcome) -> tuple[float, str]:
        if not outcome.merged:
            return float("nan"), "none"
        reference = trainer.last_shared_grad
        if reference is not None and self.config.htr_reference == "descent":
            reference = -reference
        sigma = displacement_cosine(reference, outcome.displacement)
        return sigma, self.reuse.plan(sigma, outcome.moved, trainer.optimizer)

    def _count_teleport(self, ctx: "StepContext", cosine: float, before: GradientGeometry,
                        after: GradientGeometry | None, outcome: TeleportOutcome, sigma: float, action: str) -> None:
        self.epoch_teleports += 1
        self.total_teleports += 1
        self.stats["seconds"] += outcome.seconds
        if not outcome.merged:
            self.stats["aborted"] += 1
        else:
            self.stats["teleports"] += 1
            self.invariance_errors.append(outcome.invariance_error)
        record = teleport_record(ctx, self.config, cosine, before, after, outcome, sigma, action)
        ctx.trainer.record(RECORD_TABLE, record)
        log.info("teleport %d at epoch %d, step %d: trigger cosine %.3f, invariance error %.3g, |g0| %.3g -> %s, "
                 "sigma %.3f (%s), %d inner steps, %.1f s", self.total_teleports, ctx.epoch, ctx.step, cosine,
                 outcome.invariance_error, before.mean_norm,
                 f"{after.mean_norm:.3g}" if after is not None else "n/a", sigma, action, outcome.inner_steps,
                 outcome.seconds)


def teleport_record(ctx: "StepContext", config: CostConfig, cosine: float, before: GradientGeometry,
                    after: GradientGeometry | None, outcome: TeleportOutcome, sigma: float,
                    action: str) -> dict[str, Any]:
    """Build the record of one teleport (one row of ``teleports.csv``).

    ``loss_before/<task>`` are the reference losses L_k*, and ``loss_after/<task>`` are the
    same means after the merge. ``invariance_error`` is their mean absolute difference, and
    ``invariance_rel_max`` is the largest relative difference. Gradient columns describe the
    task Jacobian of the shared parameters on the conflicting batch before and after:
    ``grad_norm`` = ‖g_0‖, ``task_grad_norm_min`` = min_k ‖g_k‖, ``cos_dominated`` =
    cos(g_min, g_0), ``cos_min`` = min_k cos(g_k, g_0), ``cos_pair_min`` = min_{i<j} cos(g_i, g_j).
    """
    tasks = list(ctx.trainer.benchmark.tasks)
    difference = (outcome.losses_after - outcome.reference).abs()
    relative = difference / outcome.reference.abs().clamp_min(1e-12)
    record: dict[str, Any] = {
        "step": ctx.step,
        "epoch": ctx.epoch,
        "merged": outcome.merged,
        "trigger": config.trigger,
        "trigger_cosine": cosine,
        "invariance_error": outcome.invariance_error,
        "invariance_error_max": float(difference.max()),
        "invariance_rel_max": float(relative.max()),
    }
    for name, geometry in (("before", before), ("after", after)):
        record.update(_geometry_columns(geometry, name))
    record.update({
        "displacement_norm": float(outcome.displacement.norm()),
        "sigma": sigma,
        "htr_action": action,
        "inner_steps": outcome.inner_steps,
        "inner_lr": outcome.inner_lr,
        "objective_first": outcome.objective_first,
        "objective_last": outcome.objective_last,
        "invariance_last": outcome.invariance_last,
        "sharpness_last": outcome.sharpness_last,
        "seconds": round(outcome.seconds, 3),
    })
    for task, value in zip(tasks, outcome.reference.tolist()):
        record[f"loss_before/{task}"] = value
    for task, value in zip(tasks, outcome.losses_after.tolist()):
        record[f"loss_after/{task}"] = value
    return record


def _geometry_columns(geometry: GradientGeometry | None, suffix: str) -> dict[str, float]:
    nan = float("nan")
    return {
        f"grad_norm_{suffix}": geometry.mean_norm if geometry else nan,
        f"task_grad_norm_min_{suffix}": float(geometry.task_norms.min()) if geometry else nan,
        f"cos_dominated_{suffix}": geometry.dominated_cosine if geometry else nan,
        f"cos_min_{suffix}": geometry.min_cosine if geometry else nan,
        f"cos_pair_min_{suffix}": geometry.min_pair_cosine if geometry else nan,
    }


@contextmanager
def preserved_buffers(model: nn.Module) -> Iterator[None]:
    """Restore every buffer of ``model`` (e.g. BatchNorm running statistics) on exit."""
    saved = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}
    try:
        yield
    finally:
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                if name in saved:
                    buffer.copy_(saved[name])


def _losses_of(trainer: "Trainer"):
    benchmark = trainer.benchmark

    def losses_of(model: nn.Module, batch: Any) -> torch.Tensor:
        return benchmark.task_losses(benchmark.forward(model, batch), batch)

    return losses_of


def _check_targets(model: nn.Module, targets: list[str], shared_params: list[torch.Tensor],
                   parameters: bool = False) -> None:
    """Raise unless every target names a shared module (or, with ``parameters``, a shared parameter)."""
    shared = {id(p) for p in shared_params}
    if parameters:
        named = dict(model.named_parameters())
        for target in targets:
            if target not in named:
                raise ValueError(f"adapter target parameter {target!r} not found in {type(model).__name__}; valid "
                                 f"names include {list(named)[:6]}")
            if id(named[target]) not in shared:
                raise ValueError(f"adapter target {target!r} of {type(model).__name__} is a task-specific "
                                 "parameter; COST adapts only the shared backbone")
        return
    modules = dict(model.named_modules())
    for target in targets:
        matches = [name for name in modules if name == target or name.endswith(f".{target}")]
        if not matches:
            raise ValueError(f"adapter target {target!r} matches no module of {type(model).__name__}; fix "
                             f"cost.targets or the model's lora_targets()")
        for name in matches:
            specific = [n for n, p in modules[name].named_parameters() if id(p) not in shared]
            if specific:
                raise ValueError(f"adapter target {name!r} of {type(model).__name__} contains task-specific "
                                 f"parameters {specific}; COST adapts only the shared backbone")
