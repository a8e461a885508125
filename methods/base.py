"""The interface every MTL method implements, and the result type of a gradient method.

Two kinds of methods share one interface:

* loss-weighting methods (LS, SI, RLW, DWA, UW, FAMO, STL) turn the K task losses into one
  scalar in :meth:`Method.total_loss`; the trainer calls ``backward`` on it and never
  computes per-task gradients for them;
* gradient methods (MGDA, GradDrop, PCGrad, CAGrad, IMTL-G, Nash-MTL, FairGrad) set
  ``needs_jacobian = True`` and implement :meth:`Method.aggregate`, which maps the
  Jacobian J (K × n, row k = gradient of task loss k with respect to the flattened shared
  parameters) to the shared gradient. The trainer writes that vector into ``.grad`` of the
  shared parameters and back-propagates ``Σ_k task_loss_weights_k · L_k`` into the
  task-specific parameters.

Every method also implements :meth:`Method.aggregate` so that tests (and COST, which needs
the update direction) can compare methods on the same Jacobian.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch


@dataclass
class Aggregation:
    """Result of combining the task gradients of the shared parameters.

    ``weights`` are the per-task weights the method reports (its own convention; see
    each method's docstring). ``shared_grad`` is the flattened gradient written into the
    shared parameters. ``task_loss_weights`` weight the task losses whose backward pass
    fills the task-specific parameters.
    """

    shared_grad: torch.Tensor
    weights: torch.Tensor
    task_loss_weights: torch.Tensor
    stats: dict[str, float] = field(default_factory=dict)


class Method:
    """Base class of all MTL methods.

    Subclasses override ``total_loss`` (loss weighting) or ``aggregate`` with
    ``needs_jacobian = True`` (gradient methods). Stateful methods override
    ``state_dict``/``load_state_dict`` so that their state survives a resume.
    """

    name: str = "base"
    needs_jacobian: bool = False
    # True makes the trainer run a second forward pass on the same batch after the
    # optimiser step and pass those losses to ``after_step`` (FAMO).
    needs_losses_after_step: bool = False

    def __init__(self, num_tasks: int, device: torch.device | str = "cpu", **hparams: Any):
        if hparams:
            raise TypeError(f"{type(self).__name__} got unknown hyperparameters: {sorted(hparams)}")
        self.num_tasks = num_tasks
        self.device = torch.device(device)
        self.counters: Counter[str] = Counter()

    def bind_task_names(self, task_names: Sequence[str]) -> None:
        """Store the dataset's task names, in loss order, so that a method can name tasks.

        The trainer calls this once after building the method; methods built by hand (tests)
        work without it.
        """
        if len(task_names) != self.num_tasks:
            raise ValueError(f"{type(self).__name__} was built for {self.num_tasks} tasks but the dataset "
                             f"has {len(task_names)}: {list(task_names)}")
        self.task_names = list(task_names)

    def task_label(self, index: int) -> str:
        """Return the task name when bound, else ``task<index>``; used in log lines."""
        names = getattr(self, "task_names", None)
        return names[index] if names else f"task{index}"

    # Loss-weighting path ------------------------------------------------------------
    def loss_weights(self, losses: torch.Tensor) -> torch.Tensor:
        """Return the effective factor d(total_loss)/dL_k of each task loss (detached)."""
        return torch.ones_like(losses)

    def reported_weights(self, losses: torch.Tensor) -> torch.Tensor:
        """Return the weights in the convention of the method's reference code (for logs and tests).

        Defaults to :meth:`loss_weights`; DWA, UW and FAMO report other quantities (see
        their docstrings).
        """
        return self.loss_weights(losses)

    def total_loss(self, losses: torch.Tensor) -> torch.Tensor:
        """Return the scalar whose backward pass sets every gradient."""
        return (self.loss_weights(losses.detach()) * losses).sum()

    # Gradient path ------------------------------------------------------------------
    def aggregate(self, jacobian: torch.Tensor, losses: torch.Tensor) -> Aggregation:
        """Combine the task gradients. The default is the loss-weighted sum ``wᵀJ``."""
        weights = self.loss_weights(losses.detach()).to(jacobian.dtype)
        reported = self.reported_weights(losses.detach()).to(jacobian.dtype)
        return Aggregation(shared_grad=weights @ jacobian, weights=reported, task_loss_weights=weights)

    # Hooks --------------------------------------------------------------------------
    def after_step(self, losses: torch.Tensor, losses_after: torch.Tensor | None = None) -> None:
        """Update internal state after the optimiser step (learnable weights, history)."""

    def on_epoch_start(self, epoch: int) -> None:
        """Hook called by the trainer before each training epoch."""

    def pop_counters(self) -> dict[str, int]:
        """Return and reset event counters (e.g. solver fallbacks) for the epoch log."""
        counts = dict(self.counters)
        self.counters.clear()
        return counts

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} is stateless but got state keys {sorted(state)}")


def new_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """Return a torch generator for a method's own random draws.

    ``seed=None`` takes ``torch.initial_seed()``, which is the run seed because
    ``benchmarks.train`` seeds torch before it builds the method. A method that owns a generator saves its state
    in ``state_dict`` so that a resumed run draws the same numbers.
    """
    generator = torch.Generator(device=device)
    generator.manual_seed(torch.initial_seed() if seed is None else int(seed))
    return generator
