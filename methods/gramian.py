"""Shared plumbing of the gradient methods whose update is a weighted sum of task gradients.

Such a method (MGDA, PCGrad, CAGrad, IMTL-G, Nash-MTL, FairGrad) only needs the Gramian
G = JJᵀ (K × K inner products of the task gradients on the shared parameters): its weights
w are a pure function of G, and the shared update is wᵀJ. The pure functions live in each
method's module and are unit-tested on tiny matrices; :class:`GramianMethod` adds what the
trainer needs around them: the Gramian, the handling of (near) zero task gradients, the
event counters and the step count.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from methods.base import Aggregation, Method

log = logging.getLogger(__name__)

# Counter key of the tasks left out because their shared gradient is (near) zero.
ZERO_GRADIENT_COUNTER = "zero_grad_tasks"


def gramian_of(jacobian: torch.Tensor) -> torch.Tensor:
    """Return JJᵀ in float64 (computed in the Jacobian's dtype, then cast)."""
    return (jacobian @ jacobian.T).double()


def nonzero_gradient_mask(gramian: torch.Tensor, rel_tol: float) -> torch.Tensor:
    """Mark the tasks whose gradient norm exceeds ``rel_tol`` times the largest norm.

    A row of exact zeros is always left out, and so is every row when all are zero. The
    threshold is relative so that a uniformly small set of gradients (late in training)
    is kept.
    """
    norms = gramian.diagonal().clamp_min(0).sqrt()
    largest = norms.max() if norms.numel() else torch.tensor(0.0, dtype=gramian.dtype)
    if largest <= 0:
        return torch.zeros_like(norms, dtype=torch.bool)
    return norms > rel_tol * largest


@dataclass
class GramianWeights:
    """Weights computed on the kept tasks.

    ``shared`` weights the task gradients in the shared update (wᵀJ). ``reported`` are the
    weights in the reference code's convention (defaults to ``shared``). ``task_loss``
    weights the task losses whose backward pass fills the task-specific parameters
    (defaults to ``shared``). ``stats`` are scalar diagnostics.
    """

    shared: torch.Tensor
    reported: torch.Tensor | None = None
    task_loss: torch.Tensor | None = None
    stats: dict[str, float] = field(default_factory=dict)


class GramianMethod(Method):
    """Base class of the gradient methods whose shared update is wᵀJ with w = f(JJᵀ).

    Subclasses implement :meth:`weights_from_gramian` on the Gramian of the kept tasks;
    ``self.kept_tasks`` contains their indices during that call.
    A task whose shared-gradient norm is at most ``zero_grad_rel_tol`` times the largest
    is left out of that computation with weight 0: its direction is undefined, and the
    reference implementations feed infinities or NaN to their solvers there. Each such
    event is counted under ``zero_grad_tasks`` (logged per epoch by the trainer) and the
    first one of each epoch is logged with the step number.
    """

    needs_jacobian = True

    def __init__(self, num_tasks: int, device: torch.device | str = "cpu", zero_grad_rel_tol: float = 1e-8,
                 **hparams: Any):
        super().__init__(num_tasks, device, **hparams)
        if not 0 <= zero_grad_rel_tol < 1:
            raise ValueError(f"invalid zero_grad_rel_tol={zero_grad_rel_tol}; expected a value in [0, 1)")
        self.zero_grad_rel_tol = float(zero_grad_rel_tol)
        self.step = 0
        self.epoch = 0
        self.kept_tasks = torch.arange(num_tasks)
        self._zero_gradient_logged_epoch: int | None = None

    def weights_from_gramian(self, gramian: torch.Tensor, losses: torch.Tensor) -> GramianWeights:
        """Return the weights of the kept tasks from their float64 Gramian and losses."""
        raise NotImplementedError

    def on_epoch_start(self, epoch: int) -> None:
        self.epoch = epoch

    def aggregate(self, jacobian: torch.Tensor, losses: torch.Tensor) -> Aggregation:
        gramian = gramian_of(jacobian)
        keep = nonzero_gradient_mask(gramian, self.zero_grad_rel_tol)
        if not bool(keep.all()):
            self._record_zero_gradients(keep, gramian)

        num_tasks = jacobian.shape[0]
        shared = torch.zeros(num_tasks, dtype=torch.float64, device=gramian.device)
        reported = torch.zeros_like(shared)
        task_loss = torch.zeros_like(shared)
        stats: dict[str, float] = {"kept_tasks": float(keep.sum())}
        if bool(keep.any()):
            kept_index = keep.nonzero().squeeze(1)
            self.kept_tasks = kept_index.cpu()
            kept_losses = losses.detach().double().to(gramian.device)[kept_index]
            result = self.weights_from_gramian(gramian[kept_index][:, kept_index], kept_losses)
            shared[kept_index] = result.shared
            reported[kept_index] = result.shared if result.reported is None else result.reported
            task_loss[kept_index] = result.shared if result.task_loss is None else result.task_loss
            stats.update(result.stats)
        self.step += 1

        shared_grad = shared.to(device=jacobian.device, dtype=jacobian.dtype) @ jacobian
        return Aggregation(shared_grad=shared_grad, weights=reported, task_loss_weights=task_loss, stats=stats)

    def _record_zero_gradients(self, keep: torch.Tensor, gramian: torch.Tensor) -> None:
        dropped = (~keep).nonzero().squeeze(1).tolist()
        self.counters[ZERO_GRADIENT_COUNTER] += len(dropped)
        if self._zero_gradient_logged_epoch == self.epoch:
            return
        self._zero_gradient_logged_epoch = self.epoch
        norms = gramian.diagonal().clamp_min(0).sqrt().tolist()
        log.warning("%s step %d (epoch %d): task(s) %s have a (near) zero shared gradient (norms %s); they get "
                    "weight 0 this step. Later events of this epoch are only counted (method/%s).",
                    self.name, self.step, self.epoch, ", ".join(self.task_label(k) for k in dropped),
                    ", ".join(f"{norms[k]:.3g}" for k in dropped), ZERO_GRADIENT_COUNTER)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state.get("step", 0))
