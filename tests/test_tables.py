"""Result tables: aggregation over seeds, Δm%, mean rank, rendering, and the comparison with
results/paper/paper-results.csv."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from benchmarks import tables
from benchmarks.delta_m import delta_m
from benchmarks.runio import rows_to_csv
from datasets.base import Metric

# Two toy metrics: an error (lower is better) and an accuracy declared as a fraction.
TOY_METRICS = [
    Metric("abs_err", task="depth", unit="m", higher_is_better=False, stl=2.0),
    Metric("miou", task="seg", unit="fraction", higher_is_better=True, stl=0.5),
]


def write_summary(results: Path, dataset: str, method: str, seed: int, values: dict[str, float],
                  cost: bool = False, profile: str = "quick", run_name: str | None = None) -> Path:
    name = method
    if cost:
        name += "+cost"
    if run_name:
        name += f"-{run_name}"
    run_dir = results / "runs" / dataset / profile / name / f"seed{seed}"
    run_dir.mkdir(parents=True)
    row = {"dataset": dataset, "method": method, "cost": cost, "seed": seed, "profile": profile,
           "name": name, "device": "cpu", **values, "delta_m": 0.0, "selected_epoch": "0",
           "epochs": 1, "wall_time_s": 1.0, "teleports": 0, "git_commit": "abc"}
    (run_dir / "summary.csv").write_text(rows_to_csv([row]))
    return run_dir


@pytest.fixture
def toy_results(tmp_path: Path) -> Path:
    write_summary(tmp_path, "toy", "ls", 0, {"abs_err": 1.0, "miou": 0.6})
    write_summary(tmp_path, "toy", "ls", 1, {"abs_err": 3.0, "miou": 0.4})
    write_summary(tmp_path, "toy", "pcgrad", 0, {"abs_err": 2.0, "miou": 0.7})
    write_summary(tmp_path, "toy", "pcgrad", 0, {"abs_err": 1.0, "miou": 0.7}, cost=True)
    return tmp_path


def build_toy(results: Path, profile: str | None = None) -> tables.DatasetTable:
    return tables.build_tables(results, profile=profile, metrics={"toy": TOY_METRICS})["toy"]


def row_named(table: tables.DatasetTable, name: str) -> tables.TableRow:
    return next(row for row in table.rows if row.name == name)


def test_seed_mean_and_sample_std(toy_results):
    ls = row_named(build_toy(toy_results), "ls")
    assert ls.seeds == [0, 1]
    assert ls.mean == {"abs_err": 2.0, "miou": 0.5}
    assert ls.std["abs_err"] == pytest.approx(math.sqrt(2.0))
    assert ls.std["miou"] == pytest.approx(math.sqrt(0.02))


def test_delta_m_of_seed_means(toy_results):
    table = build_toy(toy_results)
    ls = row_named(table, "ls")
    # The seed means equal the STL baseline, so Δm% of the means is 0 ...
    assert ls.delta_m == pytest.approx(0.0)
    # ... while the per-seed Δm% are -35 and +35, whose sample std is 35·√2.
    per_seed = [delta_m({"abs_err": 1.0, "miou": 0.6}, TOY_METRICS), delta_m({"abs_err": 3.0, "miou": 0.4}, TOY_METRICS)]
    assert per_seed == pytest.approx([-35.0, 35.0])
    assert ls.delta_m_std == pytest.approx(35.0 * math.sqrt(2.0))


def test_single_seed_has_no_std(toy_results):
    pcgrad = row_named(build_toy(toy_results), "pcgrad")
    assert math.isnan(pcgrad.std["abs_err"])
    assert math.isnan(pcgrad.delta_m_std)
    assert tables.mean_std(pcgrad.mean["abs_err"], pcgrad.std["abs_err"]) == "2"


def test_cost_rows_kept_apart(toy_results):
    table = build_toy(toy_results)
    assert [(r.name, r.method, r.cost) for r in table.rows] == [
        ("ls", "ls", False), ("pcgrad", "pcgrad", False), ("pcgrad+cost", "pcgrad", True)]


def test_mean_rank_averages_ties(toy_results):
    table = build_toy(toy_results)
    # abs_err: pcgrad+cost 1.0 (1), ls 2.0 and pcgrad 2.0 tie (2.5 each).
    # miou: pcgrad and pcgrad+cost tie at 0.7 (1.5 each), ls 0.5 (3).
    assert row_named(table, "ls").mean_rank == pytest.approx((2.5 + 3) / 2)
    assert row_named(table, "pcgrad").mean_rank == pytest.approx((2.5 + 1.5) / 2)
    assert row_named(table, "pcgrad+cost").mean_rank == pytest.approx((1 + 1.5) / 2)


def test_profiles_ranked_separately(toy_results):
    write_summary(toy_results, "toy", "ls", 0, {"abs_err": 9.0, "miou": 0.1}, profile="paper")
    table = build_toy(toy_results)
    assert table.profiles() == ["paper", "quick"]
    assert [r.mean_rank for r in table.rows_of("paper")] == [1.0]
    only_quick = build_toy(toy_results, profile="quick")
    assert only_quick.profiles() == ["quick"]


def test_run_name_gets_own_row(toy_results):
    write_summary(toy_results, "toy", "ls", 0, {"abs_err": 1.5, "miou": 0.5}, run_name="lr3")
    names = [r.name for r in build_toy(toy_results).rows]
    assert "ls-lr3" in names
    assert "ls" in names


def test_written_files_have_units(toy_results, tmp_path):
    table = build_toy(toy_results)
    written = tables.write_tables(table, tmp_path / "out", paper=None)
    assert sorted(p.name for p in written) == ["toy.csv", "toy.md", "toy.tex"]
    markdown = (tmp_path / "out" / "toy.md").read_text()
    assert "abs_err [m] ↓" in markdown
    assert "miou [fraction] ↑" in markdown
    assert "MR ranks 3 rows against each other: ls, pcgrad, pcgrad+cost." in markdown
    assert "| ls | no | 2 | 2 ± 1.414 | 0.5 ± 0.1414 | 0 ± 49.5 | 2.75 |" in markdown
    latex = (tmp_path / "out" / "toy.tex").read_text()
    assert r"\begin{tabular}" in latex
    assert r"abs\_err [m] $\downarrow$" in latex
    frame = pd.read_csv(tmp_path / "out" / "toy.csv")
    assert list(frame["name"]) == ["ls", "pcgrad", "pcgrad+cost"]
    assert frame.loc[0, "abs_err_std"] == pytest.approx(math.sqrt(2.0))
    assert frame.loc[0, "seed_list"] == "0 1"


def test_no_comparison_for_unreported_dataset(toy_results, tmp_path):
    # paper-results.csv has no toy rows, so no _vs_paper files are written for it.
    written = tables.write_tables(build_toy(toy_results), tmp_path / "out", paper=tables.read_paper_results())
    assert sorted(p.name for p in written) == ["toy.csv", "toy.md", "toy.tex"]


def test_missing_metric_column_named(tmp_path):
    write_summary(tmp_path, "toy", "ls", 0, {"abs_err": 1.0})
    with pytest.raises(KeyError, match="miou"):
        build_toy(tmp_path)


def test_summary_with_two_rows_rejected(tmp_path):
    run_dir = write_summary(tmp_path, "toy", "ls", 0, {"abs_err": 1.0, "miou": 0.5})
    text = (run_dir / "summary.csv").read_text()
    (run_dir / "summary.csv").write_text(text + text.splitlines()[1] + "\n")
    with pytest.raises(ValueError, match="exactly one"):
        build_toy(tmp_path)


def toy_paper(tmp_path: Path) -> pd.DataFrame:
    path = tmp_path / "paper.csv"
    path.write_text("table,dataset,method,metric,value\n"
                    "Table 9,toy,STL,abs_err,2.0\nTable 9,toy,STL,miou,50.0\n"
                    "Table 9,toy,LS,abs_err,1.5\nTable 9,toy,LS,miou,55.0\nTable 9,toy,LS,delta_m,-10.0\n"
                    "Table 9,toy,LS,mr,2.0\nTable 9,toy,PCGrad+COST,miou,80.0\n")
    return tables.read_paper_results(path)


def test_paper_percent_converted(toy_results, tmp_path, monkeypatch):
    monkeypatch.setitem(tables.PAPER_MAIN_TABLE, "toy", "Table 9")
    frame = tables.comparison_frame(build_toy(toy_results), toy_paper(tmp_path)).set_index("name")
    assert frame.loc["ls", "miou_paper"] == pytest.approx(0.55)
    assert frame.loc["ls", "miou_suite"] == pytest.approx(0.5)
    assert frame.loc["ls", "miou_diff"] == pytest.approx(-0.05)
    assert frame.loc["ls", "abs_err_diff"] == pytest.approx(0.5)
    assert frame.loc["ls", "delta_m_paper"] == pytest.approx(-10.0)
    assert frame.loc["ls", "mr_paper"] == pytest.approx(2.0)
    assert frame.loc["pcgrad+cost", "miou_paper"] == pytest.approx(0.8)


def test_paper_blank_where_absent(toy_results, tmp_path, monkeypatch):
    monkeypatch.setitem(tables.PAPER_MAIN_TABLE, "toy", "Table 9")
    frame = tables.comparison_frame(build_toy(toy_results), toy_paper(tmp_path)).set_index("name")
    assert math.isnan(frame.loc["pcgrad", "miou_paper"])
    assert math.isnan(frame.loc["pcgrad", "miou_diff"])
    assert frame.loc["pcgrad", "paper_source"] == ""
    assert math.isnan(frame.loc["pcgrad+cost", "abs_err_paper"])


def test_percent_unit_kept(tmp_path):
    metric = Metric("miou", task="seg", unit="%", higher_is_better=True, stl=50.0)
    assert tables.paper_scale(metric) == 1.0
    assert tables.paper_scale(TOY_METRICS[1]) == 0.01
    assert tables.paper_scale(TOY_METRICS[0]) == 1.0


def test_paper_method_names_mapped():
    assert tables.paper_method_key("FairGrad+COST") == ("fairgrad", True)
    assert tables.paper_method_key("FairGrad-R") == ("fairgrad", False)
    assert tables.paper_method_key("IMTL-G") == tables.suite_method_key("imtl_g", False)
    assert tables.paper_method_key("Nash-MTL") == tables.suite_method_key("nashmtl", False)
    assert tables.paper_method_key("Nash-MTL (FAMO code)+COST")[0] != "nashmtl"


def test_qm9_table_against_paper(tmp_path):
    # Real QM9 declarations (targets from configs/dataset/qm9.yaml) and the QM9 rows of Table 3
    # in results/paper/paper-results.csv.
    stl = {m.name: m.stl for m in tables.declared_metrics("qm9", [])}
    write_summary(tmp_path, "qm9", "ls", 0, {name: 2 * value for name, value in stl.items()})
    write_summary(tmp_path, "qm9", "ls", 1, {name: 4 * value for name, value in stl.items()})
    out = tmp_path / "tables"
    assert tables.main(["--results", str(tmp_path), "--dataset", "qm9", "--out", str(out)]) == 0

    table = pd.read_csv(out / "qm9.csv")
    assert table.loc[0, "delta_m"] == pytest.approx(200.0)
    assert table.loc[0, "delta_m_std"] == pytest.approx(math.sqrt(2) * 100.0)
    comparison = pd.read_csv(out / "qm9_vs_paper.csv")
    assert comparison.loc[0, "paper_source"] == "Table 3"
    assert comparison.loc[0, "delta_m_paper"] == pytest.approx(177.6)
    assert comparison.loc[0, "delta_m_diff"] == pytest.approx(200.0 - 177.6)
    assert math.isnan(comparison.loc[0, "mu_paper"])
    markdown = (out / "qm9.md").read_text()
    assert "homo [meV] ↓" in markdown
    assert "177.6" not in markdown
    comparison_markdown = (out / "qm9_vs_paper.md").read_text()
    assert "Paper MR ranks LS, SI, RLW" in comparison_markdown
    assert "The paper reports no qm9 values for mu, alpha, homo" in comparison_markdown
    assert "mu paper" not in comparison_markdown
    assert "| ls | no | Table 3 | 200 | 177.6 | 22.4 |" in comparison_markdown


def test_no_runs_returns_error(tmp_path):
    assert tables.main(["--results", str(tmp_path), "--paper", "none"]) == 1


@pytest.mark.parametrize("dataset", ["nyuv2", "cityscapes"])
def test_paper_stl_matches_declarations(dataset, caplog):
    # After the percent conversion, the STL row of paper-results.csv agrees with the declared
    # STL baselines.
    metrics = tables.declared_metrics(dataset, [])
    paper = tables.read_paper_results()
    with caplog.at_level("WARNING", logger="benchmarks.tables"):
        tables.check_paper_units(paper, dataset, metrics)
    assert caplog.records == []
    stl = tables.paper_rows(paper, dataset, metrics)[("stl", False)]
    for metric in metrics:
        assert stl.values[metric.name] == pytest.approx(metric.stl, rel=0.02)


def test_paper_cost_rows_found():
    metrics = tables.declared_metrics("nyuv2", [])
    rows = tables.paper_rows(tables.read_paper_results(), "nyuv2", metrics)
    assert rows[("fairgrad", True)].source == "Table 2"
    assert rows[("cagrad", True)].source == "Table 6"
    assert rows[("cagrad", True)].values["miou"] == pytest.approx(0.4076)
    assert rows[("ls", False)].values["delta_m"] == pytest.approx(5.46)


def test_wrong_unit_logs_warning(caplog):
    # miou declared in percent while its STL baseline is a fraction: the check must notice.
    metrics = [Metric("miou", task="seg", unit="%", higher_is_better=True, stl=0.383)]
    with caplog.at_level("WARNING", logger="benchmarks.tables"):
        tables.check_paper_units(tables.read_paper_results(), "nyuv2", metrics)
    assert len(caplog.records) == 1
    assert "check the unit of miou" in caplog.records[0].getMessage()
