"""Per-attribute F1 at threshold 0.5, from TP/FP/FN counts accumulated over a whole split."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from datasets.base import MetricAccumulator

# F1 of an attribute that neither the prediction nor the target marks positive anywhere in
# the split (TP = FP = FN = 0). The prediction then agrees with the target on every image,
# so the score is that of a perfect prediction rather than NaN. The full splits have
# positives of every attribute, so only small samples reach this case.
F1_WITHOUT_POSITIVES = 1.0


def f1_from_counts(true_positives: torch.Tensor, false_positives: torch.Tensor,
                   false_negatives: torch.Tensor) -> torch.Tensor:
    """Return F1 = 2·TP / (2·TP + FP + FN) per entry, and ``F1_WITHOUT_POSITIVES`` where the denominator is 0."""
    numerator = 2.0 * true_positives.double()
    denominator = numerator + false_positives.double() + false_negatives.double()
    f1 = numerator / denominator.clamp(min=1.0)
    return torch.where(denominator > 0, f1, torch.full_like(f1, F1_WITHOUT_POSITIVES))


class F1Accumulator(MetricAccumulator):
    """Counts TP, FP and FN per attribute over every batch of a split, then returns each F1.

    A logit above 0 (sigmoid above 0.5) predicts the attribute. ``metric_names[k]`` is the
    name under which the F1 of ``tasks[k]`` is returned.
    """

    def __init__(self, tasks: Sequence[str], metric_names: Sequence[str]):
        self.tasks = list(tasks)
        self.metric_names = list(metric_names)
        self.true_positives = torch.zeros(len(self.tasks), dtype=torch.int64)
        self.false_positives = torch.zeros(len(self.tasks), dtype=torch.int64)
        self.false_negatives = torch.zeros(len(self.tasks), dtype=torch.int64)

    def update(self, outputs: Mapping[str, torch.Tensor], batch: Any) -> None:
        predicted = torch.stack([outputs[task] for task in self.tasks], dim=1).detach() > 0
        target = batch[1] > 0.5
        self.true_positives += (predicted & target).sum(dim=0).cpu()
        self.false_positives += (predicted & ~target).sum(dim=0).cpu()
        self.false_negatives += (~predicted & target).sum(dim=0).cpu()

    def compute(self) -> dict[str, float]:
        f1 = f1_from_counts(self.true_positives, self.false_positives, self.false_negatives)
        return {name: float(value) for name, value in zip(self.metric_names, f1)}
