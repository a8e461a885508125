"""The toy problem as a benchmark of the shared trainer: one start point per run."""
from __future__ import annotations

from typing import Any, Mapping

import torch

from datasets.base import Benchmark, Metric, MetricAccumulator, Splits
from datasets.toy.model import ToyPoint
from datasets.toy.problem import LOWER_BOUND

TASKS = ("l1", "l2")


class StepLoader:
    """Yields ``steps`` placeholder batches: the toy losses do not depend on data."""

    def __init__(self, steps: int):
        self.steps = steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        for _ in range(self.steps):
            yield torch.zeros(1)


class ToyLossAccumulator(MetricAccumulator):
    """Reports L₁·scale and L₂ at the current point (without the positivity offsets)."""

    def __init__(self, offsets: torch.Tensor):
        self.offsets = offsets
        self.values: dict[str, float] = {}

    def update(self, outputs: Mapping[str, torch.Tensor], batch: Any) -> None:
        for k, task in enumerate(TASKS):
            self.values[task] = float(outputs[task].detach().cpu()) - float(self.offsets[k])

    def compute(self) -> dict[str, float]:
        return dict(self.values)


class ToyBenchmark(Benchmark):
    """Two-task 2-D toy problem (CAGrad paper; Nash-MTL/FAMO scaling of task 1).

    Config keys: ``start`` (x₁, x₂), ``scale`` (factor of L₁), ``loss_offset`` (added to
    L₁/scale and L₂, times (scale, 1), to make the losses positive), ``steps_per_epoch``,
    plus the trainer's ``epochs`` and ``lr``. The metrics are the unshifted final losses;
    there is no STL baseline and so no Δm%. The reported value is the last epoch's.
    """

    name = "toy"
    tasks = TASKS
    metrics = tuple(Metric(task, task=task, unit="", higher_is_better=False) for task in TASKS)
    selection = "last_k_mean"
    selection_last_k = 1

    def __init__(self, cfg: Mapping[str, Any]):
        super().__init__(cfg)
        self.scale = float(cfg.get("scale", 0.1))
        offset = float(cfg.get("loss_offset", LOWER_BOUND))
        self.offsets = torch.tensor([offset * self.scale, offset], dtype=torch.float64)
        start = cfg.get("start", (-8.5, 7.5))
        if len(start) != 2:
            raise ValueError(f"dataset.start must hold two coordinates (x1, x2), got {list(start)}")
        self.start = [float(v) for v in start]
        self.steps_per_epoch = int(cfg.get("steps_per_epoch", 1000))

    def build_splits(self, seed: int) -> Splits:
        return Splits(train=StepLoader(self.steps_per_epoch), val=None, test=StepLoader(1),
                      info={"train_steps": self.steps_per_epoch})

    def build_model(self) -> ToyPoint:
        return ToyPoint(self.start, self.scale, self.offsets.tolist(), TASKS)

    def to_device(self, batch: Any, device: torch.device) -> Any:
        return batch

    def forward(self, model, batch) -> dict[str, torch.Tensor]:
        return model(batch)

    def batch_size_of(self, batch: Any) -> int:
        return 1

    def task_losses(self, outputs: Mapping[str, torch.Tensor], batch: Any) -> torch.Tensor:
        return torch.stack([outputs[task] for task in TASKS])

    def new_accumulator(self) -> ToyLossAccumulator:
        return ToyLossAccumulator(self.offsets)
