"""Declarations every benchmark dataset provides to the shared trainer.

A dataset package (``datasets/<name>/``) exposes a :class:`Benchmark`: its tasks, its
metrics declared once (name, unit, direction, single-task baseline), its loaders, its
model and its model-selection rule. The trainer, the Δm% code, the tables and the plots
read these declarations and never index metrics by position.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import nn


@dataclass(frozen=True)
class Metric:
    """One reported metric of one task.

    ``stl`` is the single-task-learning baseline in the same unit, used by Δm%.
    """

    name: str
    task: str
    unit: str
    higher_is_better: bool
    stl: float | None = None

    @property
    def sign(self) -> int:
        """Return −1 when higher is better and +1 otherwise, the factor (−1)^s of Δm%."""
        return -1 if self.higher_is_better else 1


@dataclass
class Splits:
    """Data loaders of one run. ``val`` is None where the protocol has no validation split."""

    train: Iterable
    val: Iterable | None
    test: Iterable
    info: dict[str, Any] = field(default_factory=dict)


class MetricAccumulator(abc.ABC):
    """Accumulates model outputs over one split and returns every declared metric."""

    @abc.abstractmethod
    def update(self, outputs: Mapping[str, torch.Tensor], batch: Any) -> None: ...

    @abc.abstractmethod
    def compute(self) -> dict[str, float]: ...


class MTLModel(nn.Module):
    """A multi-task model whose parameters split into shared and task-specific ones.

    ``forward`` returns one prediction per task name. ``lora_targets(mode)`` names the
    shared modules that a COST adapter may wrap (PEFT ``target_modules``).
    """

    task_names: Sequence[str]

    def shared_parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def task_specific_parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def lora_targets(self, mode: str = "paper") -> list[str]:
        raise NotImplementedError(f"{type(self).__name__} declares no LoRA targets")


class Benchmark(abc.ABC):
    """Everything the shared trainer needs to know about one dataset.

    ``selection`` is the reporting rule:
      - ``"best_val_delta_m"``: test metrics at the epoch with the best validation Δm% (QM9);
      - ``"best_val_mean"``: test metrics at the epoch with the best mean validation value of
        the higher-is-better metrics (CelebA, mean F1);
      - ``"last_k_mean"``: test metrics averaged over the last ``selection_last_k`` epochs
        (NYUv2, Cityscapes).
    """

    name: str
    tasks: Sequence[str]
    metrics: Sequence[Metric]
    selection: str = "best_val_delta_m"
    selection_last_k: int = 10

    def __init__(self, cfg: Mapping[str, Any]):
        self.cfg = cfg

    @abc.abstractmethod
    def build_splits(self, seed: int) -> Splits:
        """Create the train/val/test loaders. Data order depends on ``seed`` only."""

    @abc.abstractmethod
    def build_model(self) -> MTLModel: ...

    @abc.abstractmethod
    def to_device(self, batch: Any, device: torch.device) -> Any: ...

    @abc.abstractmethod
    def task_losses(self, outputs: Mapping[str, torch.Tensor], batch: Any) -> torch.Tensor:
        """Return the K task losses as one 1-D tensor, in ``self.tasks`` order."""

    @abc.abstractmethod
    def new_accumulator(self) -> MetricAccumulator: ...

    def scheduler(self, optimizer: torch.optim.Optimizer):
        """Return the learning-rate scheduler, or None. See ``scheduler_monitor``."""
        return None

    # "val_delta_m" makes the trainer call ``scheduler.step(validation Δm%)`` each epoch;
    # "epoch" calls ``scheduler.step()``.
    scheduler_monitor: str = "epoch"

    def forward(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        """Run the model on one batch. Override when the input is not ``batch[0]``."""
        return model(batch[0])

    def batch_size_of(self, batch: Any) -> int:
        return int(batch[0].shape[0])

    def metric_names(self) -> list[str]:
        return [m.name for m in self.metrics]
