"""Δm% and mean rank against the COST paper's printed tables and hand-made cases."""
from __future__ import annotations

import csv
import math
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from benchmarks.delta_m import average_ranks, delta_m, delta_p_task_averaged, mean_rank
from datasets.base import Metric

PAPER_CSV = Path(__file__).parent / "data" / "paper-results.csv"

# STL constants of the benchmark protocol, in the units the paper prints (percent for
# segmentation and normal fractions). NYUv2's printed STL depth row is rounded (0.68, 0.28),
# so the exact constants below differ from it.
STL = {
    "cityscapes": {"miou": 74.01, "pixacc": 93.16, "abs_err": 0.0125, "rel_err": 27.77},
    "nyuv2": {"miou": 38.30, "pixacc": 63.76, "abs_err": 0.6754, "rel_err": 0.2780, "angle_mean": 25.01,
              "angle_median": 19.21, "within_11_25": 30.14, "within_22_5": 57.20, "within_30": 69.15},
}
HIGHER_IS_BETTER = {"miou", "pixacc", "within_11_25", "within_22_5", "within_30"}
TASK_OF = {"miou": "seg", "pixacc": "seg", "abs_err": "depth", "rel_err": "depth", "angle_mean": "normal",
           "angle_median": "normal", "within_11_25": "normal", "within_22_5": "normal", "within_30": "normal"}


def declarations(dataset: str) -> list[Metric]:
    return [Metric(name, TASK_OF[name], "", name in HIGHER_IS_BETTER, stl) for name, stl in STL[dataset].items()]


def half_unit(printed: str) -> float:
    """Half a unit of the last printed digit, e.g. '5.46' -> 0.005."""
    exponent = Decimal(printed).as_tuple().exponent
    return 0.5 * 10.0 ** exponent


def paper_rows() -> list[tuple[str, str, str, dict[str, str]]]:
    rows: dict[tuple[str, str, str], dict[str, str]] = defaultdict(dict)
    with open(PAPER_CSV, newline="") as handle:
        for row in csv.DictReader(handle):
            if row["table"] in {"Table 1", "Table 2", "Table 5", "Table 6", "Table 7", "Table 8"}:
                rows[(row["table"], row["dataset"], row["method"])][row["metric"]] = row["value"]
    return [(t, d, m, values) for (t, d, m), values in rows.items() if m != "STL" and "delta_m" in values]


def interval_of_delta_m(dataset: str, printed: dict[str, str]) -> tuple[float, float]:
    """Return the range of Δm% over all metric values that round to the printed ones."""
    low = high = 0.0
    metrics = declarations(dataset)
    for metric in metrics:
        value, slack = float(printed[metric.name]), half_unit(printed[metric.name])
        ends = [metric.sign * (value + d - metric.stl) / metric.stl for d in (-slack, slack)]
        low, high = low + min(ends), high + max(ends)
    return 100 * low / len(metrics), 100 * high / len(metrics)


ROWS = paper_rows()


def test_paper_rows_are_found():
    assert len(ROWS) == 42
    assert {d for _, d, _, _ in ROWS} == {"cityscapes", "nyuv2"}


@pytest.mark.parametrize("table,dataset,method,printed", ROWS, ids=[f"{t}-{d}-{m}" for t, d, m, _ in ROWS])
def test_delta_m_matches_paper_row(table, dataset, method, printed):
    low, high = interval_of_delta_m(dataset, printed)
    reported = float(printed["delta_m"])
    slack = half_unit(printed["delta_m"])
    assert low - slack <= reported <= high + slack, f"{table} {dataset} {method}: Δm% {reported} not in [{low:.3f}, {high:.3f}]"

    centre = delta_m({k: float(printed[k]) for k in STL[dataset]}, declarations(dataset))
    assert low <= centre <= high


def test_nyuv2_ls_interval_example():
    printed = next(values for t, d, m, values in ROWS if (t, d, m) == ("Table 2", "nyuv2", "LS"))
    low, high = interval_of_delta_m("nyuv2", printed)
    assert low == pytest.approx(5.45, abs=0.01)
    assert high == pytest.approx(6.05, abs=0.01)


def test_delta_m_sign_and_scale():
    metrics = [Metric("acc", "a", "", True, 0.5), Metric("err", "b", "", False, 2.0)]
    assert delta_m({"acc": 0.5, "err": 2.0}, metrics) == pytest.approx(0.0)
    # acc 10 % better, err 10 % worse: they cancel.
    assert delta_m({"acc": 0.55, "err": 2.2}, metrics) == pytest.approx(0.0)
    # both 10 % better: -10 %.
    assert delta_m({"acc": 0.55, "err": 1.8}, metrics) == pytest.approx(-10.0)


def test_delta_m_missing_metric_names_it():
    metrics = [Metric("acc", "a", "", True, 0.5)]
    with pytest.raises(KeyError, match="acc"):
        delta_m({}, metrics)


def test_delta_p_averages_within_task_first():
    metrics = [Metric("a1", "a", "", True, 1.0), Metric("a2", "a", "", True, 1.0), Metric("b", "b", "", False, 1.0)]
    values = {"a1": 1.2, "a2": 1.0, "b": 0.5}
    # task a: mean(+0.2, 0) = 0.1; task b: +0.5; mean over tasks 0.3.
    assert delta_p_task_averaged(values, metrics) == pytest.approx(0.3)
    assert delta_m(values, metrics) == pytest.approx(-100 * (0.2 + 0 + 0.5) / 3)


def test_average_ranks_ties():
    assert average_ranks([3.0, 1.0, 3.0, 2.0], higher_is_better=True) == [1.5, 4.0, 1.5, 3.0]
    assert average_ranks([3.0, 1.0, 3.0, 2.0], higher_is_better=False) == [3.5, 1.0, 3.5, 2.0]


def test_mean_rank_over_metrics():
    metrics = [Metric("acc", "a", "", True, 1.0), Metric("err", "b", "", False, 1.0)]
    table = {"x": {"acc": 0.9, "err": 0.2}, "y": {"acc": 0.8, "err": 0.1}, "z": {"acc": 0.9, "err": 0.3}}
    ranks = mean_rank(table, metrics)
    assert ranks == {"x": pytest.approx((1.5 + 2) / 2), "y": pytest.approx((3 + 1) / 2), "z": pytest.approx((1.5 + 3) / 2)}


def test_mean_rank_skips_nan_metric():
    metrics = [Metric("acc", "a", "", True, 1.0), Metric("err", "b", "", False, 1.0)]
    table = {"x": {"acc": 0.9, "err": math.nan}, "y": {"acc": 0.8, "err": 0.1}}
    assert mean_rank(table, metrics) == {"x": 1.0, "y": 2.0}
