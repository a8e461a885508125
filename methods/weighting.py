"""Loss-weighting methods without learned state: SI, RLW and STL.

None of them needs per-task gradients: the trainer back-propagates ``total_loss`` once.
"""
from __future__ import annotations

from typing import Any

import torch

from methods.base import Method, new_generator


class ScaleInvariantLS(Method):
    """SI: minimise Σ_k log L_k, which is invariant to rescaling any task loss.

    Listed as a baseline in "Multi-Task Learning as a Bargaining Game" (Navon et al., 2022).
    The effective loss weights are 1/L_k; the reported weights are ones, as in the
    reference code. Losses must be positive.
    """

    name = "si"

    def loss_weights(self, losses: torch.Tensor) -> torch.Tensor:
        return 1.0 / losses.detach()

    def reported_weights(self, losses: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(losses)

    def total_loss(self, losses: torch.Tensor) -> torch.Tensor:
        if bool((losses.detach() <= 0).any()):
            raise ValueError(f"SI takes the log of each task loss but got non-positive losses "
                             f"{losses.detach().tolist()}; use a method without log or shift the losses")
        return losses.log().sum()


class RandomLossWeighting(Method):
    """RLW: weights softmax(z) with z ~ N(0, I), redrawn every training step.

    "Reasonable Effectiveness of Random Weighting: A Litmus Test for Multi-Task Learning"
    (Lin et al., TMLR 2022). The weights of a step are drawn on first use and kept until
    ``after_step``, so every call within one step returns the same weights. ``seed`` seeds the
    draws (default: the run seed).
    """

    name = "rlw"

    def __init__(self, num_tasks: int, device: torch.device | str = "cpu", seed: int | None = None,
                 **hparams: Any):
        super().__init__(num_tasks, device, **hparams)
        self.generator = new_generator(seed)
        self.current: torch.Tensor | None = None

    def loss_weights(self, losses: torch.Tensor) -> torch.Tensor:
        if self.current is None:
            draws = torch.randn(self.num_tasks, generator=self.generator, dtype=torch.float64)
            self.current = torch.softmax(draws, dim=0)
        return self.current.to(device=losses.device, dtype=losses.dtype)

    def after_step(self, losses: torch.Tensor, losses_after: torch.Tensor | None = None) -> None:
        self.current = None

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "generator" in state:
            self.generator.set_state(state["generator"])
        self.current = None


class SingleTask(Method):
    """STL: train on one task's loss only, to produce single-task baselines.

    ``task`` is the task's index in the dataset's task order, or its name. A name is
    resolved once the trainer has bound the task names (:meth:`Method.bind_task_names`).
    The other tasks' heads get a zero gradient, so Adam leaves them unchanged.
    """

    name = "stl"

    def __init__(self, num_tasks: int, device: torch.device | str = "cpu", task: int | str | None = None,
                 **hparams: Any):
        super().__init__(num_tasks, device, **hparams)
        if task is None:
            raise ValueError("STL needs the task to train: set method.hparams.task=<task name or index>")
        self.task = task
        self.index: int | None = None
        if isinstance(task, int) or (isinstance(task, str) and task.isdigit()):
            self.index = int(task)
            if not 0 <= self.index < num_tasks:
                raise ValueError(f"STL task index {self.index} is out of range for {num_tasks} tasks")

    def bind_task_names(self, task_names) -> None:
        super().bind_task_names(task_names)
        if self.index is None:
            if self.task not in self.task_names:
                raise ValueError(f"STL task {self.task!r} is not a task of this dataset; valid names: "
                                 f"{', '.join(self.task_names)}")
            self.index = self.task_names.index(self.task)

    def loss_weights(self, losses: torch.Tensor) -> torch.Tensor:
        if self.index is None:
            raise RuntimeError(f"STL task {self.task!r} is a name but no task names were bound; pass the task's "
                               "index instead, or call bind_task_names(dataset tasks) first")
        weights = torch.zeros_like(losses)
        weights[self.index] = 1.0
        return weights
