"""Δm% and mean rank, computed from the metric declarations of a benchmark.

Δm% follows "Multi-Task Learning as a Bargaining Game" (Navon et al., 2022) and the
MTAN/CAGrad papers: Δm% = (100 / K) · Σ_k (−1)^{s_k} (M_k − B_k) / B_k over all K metrics
pooled, where B is the single-task (STL) baseline and s_k = 1 when higher is better.
Lower is better; a negative value beats STL.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Mapping, Sequence

from datasets.base import Metric


def delta_m(values: Mapping[str, float], metrics: Sequence[Metric],
            baseline: Mapping[str, float] | None = None) -> float:
    """Return the pooled Δm% (in percent) of ``values`` against the STL baseline.

    ``baseline`` overrides the ``stl`` of each metric (same keys as ``values``).
    Raises ``KeyError`` naming a metric that has no value or no baseline.
    """
    total = 0.0
    for metric in metrics:
        if metric.name not in values:
            raise KeyError(f"no value for metric {metric.name!r}")
        base = baseline[metric.name] if baseline is not None else metric.stl
        if base is None or base == 0:
            raise KeyError(f"metric {metric.name!r} has no non-zero STL baseline")
        total += metric.sign * (values[metric.name] - base) / base
    return 100.0 * total / len(metrics)


def delta_p_task_averaged(values: Mapping[str, float], metrics: Sequence[Metric],
                          baseline: Mapping[str, float] | None = None) -> float:
    """Return LibMTL's Δp: relative improvement averaged per task, then over tasks.

    Higher is better and the value is a fraction, not a percentage. Reported only as an
    extra column beside the pooled Δm%.
    """
    per_task: dict[str, list[float]] = defaultdict(list)
    for metric in metrics:
        base = baseline[metric.name] if baseline is not None else metric.stl
        per_task[metric.task].append(-metric.sign * (values[metric.name] - base) / base)
    return sum(sum(v) / len(v) for v in per_task.values()) / len(per_task)


def average_ranks(scores: Sequence[float], higher_is_better: bool) -> list[float]:
    """Rank ``scores`` from 1 (best); tied scores share the average of their ranks."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i] if higher_is_better else scores[i])
    ranks = [0.0] * len(scores)
    position = 0
    while position < len(order):
        end = position
        while end + 1 < len(order) and scores[order[end + 1]] == scores[order[position]]:
            end += 1
        shared_rank = (position + end) / 2 + 1
        for i in order[position : end + 1]:
            ranks[i] = shared_rank
        position = end + 1
    return ranks


def mean_rank(table: Mapping[str, Mapping[str, float]], metrics: Sequence[Metric]) -> dict[str, float]:
    """Return the mean rank (MR) of each method over all metrics.

    ``table`` maps a method name to its metric values. Each metric ranks the methods from
    1 (best in the metric's direction); ties get the average of the tied ranks. Metrics
    that some method lacks or that are NaN for some method are skipped.
    """
    methods = list(table)
    sums = {m: 0.0 for m in methods}
    counted = 0
    for metric in metrics:
        column = [table[m].get(metric.name, math.nan) for m in methods]
        if any(v is None or math.isnan(v) for v in column):
            continue
        for method, rank in zip(methods, average_ranks(column, metric.higher_is_better)):
            sums[method] += rank
        counted += 1
    if counted == 0:
        return {m: math.nan for m in methods}
    return {m: sums[m] / counted for m in methods}
