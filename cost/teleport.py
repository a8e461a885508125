"""One teleport: measure the reference losses, train a fresh adapter, merge it in place.

Procedure of "Continual Optimization with Symmetry Teleportation for Multi-Task Learning"
(Zhou et al., NeurIPS 2025), with the base weights frozen and the model in eval mode, so
BatchNorm statistics are not touched:

1. reference losses L_k* = mean task loss over ``reference_batches`` training batches;
2. a fresh adapter on the shared target layers (ΔΘ = 0 at the start);
3. a fresh Adam over the adapter only, ``inner_epochs`` passes over the training loader
   or ``inner_steps`` steps, minimising the objective of :mod:`cost.objective`;
4. merge, so θ ← θ + ΔΘ in place, then measure the losses again (the invariance error).

A non-finite objective aborts the teleport: the adapter is removed unmerged and the
model is left as it was.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from itertools import islice
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from cost.adapter import TeleportAdapter, snapshot
from cost.config import CostConfig
from cost.objective import TeleportObjective

log = logging.getLogger(__name__)

LossesOf = Callable[[nn.Module, Any], torch.Tensor]


@dataclass
class TeleportOutcome:
    """Outcome of one teleport. ``displacement`` is ΔΘ over the shared parameters, flattened."""

    merged: bool
    reference: torch.Tensor
    losses_after: torch.Tensor
    displacement: torch.Tensor
    moved: list[torch.Tensor]
    inner_steps: int
    inner_lr: float
    objective_first: float
    objective_last: float
    invariance_last: float
    sharpness_last: float
    seconds: float

    @property
    def invariance_error(self) -> float:
        """Return mean_k |L_k(θ + ΔΘ) − L_k*| over the reference batches."""
        return float((self.losses_after - self.reference).abs().mean())


class TrainingBatches:
    """Yield device batches of the training loader, limited as the trainer limits an epoch."""

    def __init__(self, loader: Any, to_device: Callable[[Any], Any], limit: int | None):
        self.loader = loader
        self.to_device = to_device
        self.limit = limit

    def epoch(self, limit: int | None = None) -> Iterator[Any]:
        """Yield one pass, at most ``limit`` (or the trainer's limit) batches."""
        caps = [c for c in (self.limit, limit) if c is not None]
        cap = min(caps) if caps else None
        for batch in islice(iter(self.loader), cap):
            yield self.to_device(batch)

    def steps(self, count: int) -> Iterator[Any]:
        """Yield exactly ``count`` batches, starting new passes as needed."""
        produced = 0
        while produced < count:
            before = produced
            for batch in self.epoch():
                yield batch
                produced += 1
                if produced == count:
                    return
            if produced == before:
                raise ValueError("the training loader yielded no batch; a teleport needs training data")


@torch.no_grad()
def mean_task_losses(model: nn.Module, losses_of: LossesOf, batches: Iterator[Any]) -> torch.Tensor:
    """Return the mean of the K task losses over ``batches`` (no gradient)."""
    total = None
    count = 0
    for batch in batches:
        losses = losses_of(model, batch).detach().double()
        total = losses if total is None else total + losses
        count += 1
    if total is None:
        raise ValueError("no training batch for the reference losses; check cost.reference_batches")
    return total / count


def run_teleport(model: nn.Module, losses_of: LossesOf, data: TrainingBatches, conflict_batch: Any,
                 config: CostConfig, targets: Sequence[str], shared_params: Sequence[torch.Tensor],
                 perturbed_params: Sequence[torch.Tensor], weights: torch.Tensor, lr: float,
                 generator: torch.Generator) -> TeleportOutcome:
    """Teleport ``model`` in place; see the module docstring for the steps.

    ``objective_last`` in the outcome is the objective of the last inner step, evaluated
    before that step's update.
    """
    started = time.perf_counter()
    was_training = model.training
    model.eval()
    before = snapshot(shared_params)
    try:
        reference = mean_task_losses(model, losses_of, data.epoch(config.reference_batches))
        adapter = TeleportAdapter(model, targets, kind=config.adapter, rank=config.rank, alpha=config.alpha,
                                  dropout=config.dropout)
        try:
            result = _optimise_adapter(model, losses_of, data, conflict_batch, config, adapter, reference,
                                       perturbed_params, weights, lr, generator)
        except BaseException:
            adapter.remove()
            raise
        merged = result["finite"] and all(bool(torch.isfinite(p).all()) for p in adapter.parameters)
        moved = list(adapter.target_weights)
        if merged:
            adapter.merge()
        else:
            log.warning("teleport aborted after %d inner steps: non-finite objective; the adapter was "
                        "removed and the model is unchanged", result["steps"])
            adapter.remove()
        losses_after = mean_task_losses(model, losses_of, data.epoch(config.reference_batches))
    finally:
        model.train(was_training)

    with torch.no_grad():
        displacement = torch.cat([(p.detach() - old).flatten() for p, old in zip(shared_params, before)])
    return TeleportOutcome(
        merged=merged, reference=reference.float().cpu(), losses_after=losses_after.float().cpu(),
        displacement=displacement, moved=moved, inner_steps=result["steps"], inner_lr=lr,
        objective_first=result["objective_first"], objective_last=result["objective_last"],
        invariance_last=result["invariance_last"], sharpness_last=result["sharpness_last"],
        seconds=time.perf_counter() - started,
    )


def _optimise_adapter(model: nn.Module, losses_of: LossesOf, data: TrainingBatches, conflict_batch: Any,
                      config: CostConfig, adapter: TeleportAdapter, reference: torch.Tensor,
                      perturbed_params: Sequence[torch.Tensor], weights: torch.Tensor, lr: float,
                      generator: torch.Generator) -> dict[str, Any]:
    objective = TeleportObjective(
        model, losses_of, reference, weights, perturbed_params, generator,
        invariance_weight=config.invariance_weight, gamma=config.gamma, delta=config.delta,
        directions=config.directions, sharpness_grad=config.sharpness_grad, absolute=config.sharpness_abs,
        backward=config.objective_backward,
    )
    optimizer = torch.optim.Adam(adapter.parameters, lr=lr)
    if config.inner_steps is not None:
        batches: Iterator[Any] = data.steps(config.inner_steps)
    else:
        batches = (batch for _ in range(config.inner_epochs) for batch in data.epoch())

    summary = {"steps": 0, "finite": False, "objective_first": float("nan"), "objective_last": float("nan"),
               "invariance_last": float("nan"), "sharpness_last": float("nan")}
    for batch in batches:
        value, grads = objective.gradients(batch, conflict_batch, adapter.parameters)
        total = float(value.total)
        if summary["steps"] == 0:
            summary["objective_first"] = total
        summary.update(objective_last=total, invariance_last=value.invariance, sharpness_last=value.sharpness)
        summary["finite"] = math.isfinite(total) and all(g is None or bool(torch.isfinite(g).all()) for g in grads)
        if not summary["finite"]:
            break
        for param, grad in zip(adapter.parameters, grads):
            param.grad = grad
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        summary["steps"] += 1
    return summary
