"""Metrics of the dense-prediction benchmarks (segmentation, depth, surface normals).

Segmentation: mIoU and pixel accuracy from one confusion matrix over the whole split.
Depth: absolute error and relative error |pred − gt| / gt over valid pixels (gt ≠ 0).
Normals: angle between predicted and true unit normals in degrees over valid pixels
(true normal not all zero): mean, median and the fractions below 11.25°, 22.5° and 30°.

Two conventions aggregate the depth and normal statistics over a split:

* ``per_batch`` (default): each statistic is computed on each test batch, and the batch
  values are averaged with equal weight, as the Nash-MTL evaluation loop does. The
  "median" is then a mean of batch medians and depends on the test batch size.
* ``pooled``: every valid pixel of the split counts once. The median comes from a
  histogram of angles with ``MEDIAN_BIN_DEGREES`` bins, interpolated within the bin.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch

from datasets.base import MetricAccumulator
from datasets.dense.losses import IGNORE_INDEX, valid_pixel_mask

CONVENTIONS = ("per_batch", "pooled")
ANGLE_THRESHOLDS = {"within_11_25": 11.25, "within_22_5": 22.5, "within_30": 30.0}
MEDIAN_BIN_DEGREES = 1e-3


# Pure functions -------------------------------------------------------------------------
def confusion_matrix(prediction: torch.Tensor, label: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Return the C×C int64 count matrix, rows = true class, columns = predicted class.

    Pixels labelled −1 are left out.
    """
    valid = label != IGNORE_INDEX
    flat = label[valid].long() * num_classes + prediction[valid].long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes).cpu()


def miou_and_pixel_accuracy(confusion: torch.Tensor) -> tuple[float, float]:
    """Return (mIoU, pixel accuracy) of a confusion matrix.

    IoU_c = diag / (row + column − diag). The mean runs over the classes present in the
    target or the prediction, so a class absent from both does not make mIoU NaN. Both
    values are NaN only when the matrix is empty.
    """
    confusion = confusion.double()
    true_positive = confusion.diag()
    union = confusion.sum(dim=1) + confusion.sum(dim=0) - true_positive
    present = union > 0
    total = confusion.sum()
    if total == 0:
        return math.nan, math.nan
    miou = (true_positive[present] / union[present]).mean()
    return float(miou), float(true_positive.sum() / total)


def depth_errors(prediction: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return absolute and relative errors (1-D, float64) at the valid pixels (target ≠ 0)."""
    mask = valid_pixel_mask(target).expand_as(target)
    predicted = prediction[mask].double()
    true = target[mask].double()
    absolute = (predicted - true).abs()
    return absolute, absolute / true.abs()


def normal_angles_degrees(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Return the angles (1-D, float64, degrees) between N×3×H×W normals at valid pixels."""
    mask = valid_pixel_mask(target).squeeze(1)
    cosine = (prediction.double() * target.double()).sum(dim=1)[mask].clamp(-1.0, 1.0)
    return torch.rad2deg(torch.acos(cosine))


def median(values: torch.Tensor) -> float:
    """Median that averages the two middle values of an even count, as ``numpy.median`` does."""
    ordered = values.sort().values
    middle = ordered.numel() // 2
    if ordered.numel() % 2:
        return float(ordered[middle])
    return float((ordered[middle - 1] + ordered[middle]) / 2)


def angle_statistics(angles: torch.Tensor) -> dict[str, float]:
    """Return mean, median and the threshold fractions of a set of angles in degrees."""
    values = {"angle_mean": float(angles.mean()), "angle_median": median(angles)}
    for name, threshold in ANGLE_THRESHOLDS.items():
        values[name] = float((angles < threshold).double().mean())
    return values


def histogram_median(histogram: torch.Tensor, bin_width: float) -> float:
    """Return the median of values binned in ``[i·bin_width, (i+1)·bin_width)``, linear in the bin."""
    total = float(histogram.sum())
    cumulative = histogram.cumsum(0)
    half = total / 2
    index = int(torch.searchsorted(cumulative, torch.tensor(half, dtype=cumulative.dtype)))
    below = float(cumulative[index - 1]) if index > 0 else 0.0
    inside = float(histogram[index])
    return bin_width * (index + (half - below) / inside)


# Accumulators -----------------------------------------------------------------------------
class MeanOfBatches:
    """Running mean with one equal-weight entry per batch; empty batches are skipped."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: Mapping[str, float]) -> None:
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
            self.counts[name] = self.counts.get(name, 0) + 1

    def mean(self, name: str) -> float:
        if not self.counts.get(name):
            return math.nan
        return self.sums[name] / self.counts[name]


class PooledAngles:
    """Exact sums and counts of normal angles over a split, plus a fine histogram for the median."""

    def __init__(self, bin_width: float = MEDIAN_BIN_DEGREES):
        self.bin_width = bin_width
        self.bins = int(math.ceil(180.0 / bin_width)) + 1
        self.histogram = torch.zeros(self.bins, dtype=torch.float64)
        self.count = 0
        self.angle_sum = 0.0
        self.below = {name: 0 for name in ANGLE_THRESHOLDS}

    def add(self, angles: torch.Tensor) -> None:
        angles = angles.cpu()
        self.count += angles.numel()
        self.angle_sum += float(angles.sum())
        for name, threshold in ANGLE_THRESHOLDS.items():
            self.below[name] += int((angles < threshold).sum())
        index = (angles / self.bin_width).long().clamp(0, self.bins - 1)
        self.histogram += torch.bincount(index, minlength=self.bins).double()

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            return {"angle_mean": math.nan, "angle_median": math.nan, **{name: math.nan for name in ANGLE_THRESHOLDS}}
        values = {"angle_mean": self.angle_sum / self.count,
                  "angle_median": histogram_median(self.histogram, self.bin_width)}
        values.update({name: below / self.count for name, below in self.below.items()})
        return values


class DenseAccumulator(MetricAccumulator):
    """Accumulates segmentation, depth and normal metrics over one split.

    ``outputs`` maps task names to N×C×H×W predictions (segmentation: log-probabilities);
    ``batch`` is ``(image, targets)`` with ``targets`` keyed by the same task names.
    """

    def __init__(self, tasks: Sequence[str], num_classes: int, convention: str = "per_batch"):
        if convention not in CONVENTIONS:
            raise ValueError(f"unknown metric convention {convention!r}; use one of {CONVENTIONS} "
                             "(dataset.metric_convention)")
        self.tasks = list(tasks)
        self.num_classes = num_classes
        self.convention = convention
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        self.batch_means = MeanOfBatches()
        self.depth_abs_sum = 0.0
        self.depth_rel_sum = 0.0
        self.depth_count = 0
        self.pooled_angles = PooledAngles()

    def update(self, outputs: Mapping[str, torch.Tensor], batch: Any) -> None:
        targets = batch[1]
        if "segmentation" in self.tasks:
            prediction = outputs["segmentation"].argmax(dim=1)
            self.confusion += confusion_matrix(prediction, targets["segmentation"], self.num_classes)
        if "depth" in self.tasks:
            self._update_depth(*depth_errors(outputs["depth"], targets["depth"]))
        if "normal" in self.tasks:
            self._update_normal(normal_angles_degrees(outputs["normal"], targets["normal"]))

    def _update_depth(self, absolute: torch.Tensor, relative: torch.Tensor) -> None:
        if self.convention == "per_batch":
            if absolute.numel():
                self.batch_means.add({"abs_err": float(absolute.mean()), "rel_err": float(relative.mean())})
            return
        self.depth_abs_sum += float(absolute.sum())
        self.depth_rel_sum += float(relative.sum())
        self.depth_count += absolute.numel()

    def _update_normal(self, angles: torch.Tensor) -> None:
        if self.convention == "per_batch":
            if angles.numel():
                self.batch_means.add(angle_statistics(angles))
            return
        self.pooled_angles.add(angles)

    def compute(self) -> dict[str, float]:
        values: dict[str, float] = {}
        if "segmentation" in self.tasks:
            values["miou"], values["pixacc"] = miou_and_pixel_accuracy(self.confusion)
        if "depth" in self.tasks:
            if self.convention == "per_batch":
                values["abs_err"] = self.batch_means.mean("abs_err")
                values["rel_err"] = self.batch_means.mean("rel_err")
            else:
                count = self.depth_count or math.nan
                values["abs_err"] = self.depth_abs_sum / count
                values["rel_err"] = self.depth_rel_sum / count
        if "normal" in self.tasks:
            if self.convention == "per_batch":
                values["angle_mean"] = self.batch_means.mean("angle_mean")
                values["angle_median"] = self.batch_means.mean("angle_median")
                values.update({name: self.batch_means.mean(name) for name in ANGLE_THRESHOLDS})
            else:
                values.update(self.pooled_angles.compute())
        return values
