"""Plots: per-epoch curves from epochs.csv and the Δm% bar chart with and without COST."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from benchmarks import plots, tables
from benchmarks.runio import rows_to_csv
from tests.test_tables import TOY_METRICS, write_summary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_run(results: Path, method: str, seed: int, errors: list[float], cost: bool = False) -> None:
    """Write a finished toy run: abs_err per epoch as given, miou fixed at the STL value."""
    final = {"abs_err": errors[-1], "miou": 0.5}
    run_dir = write_summary(results, "toy", method, seed, final, cost=cost)
    rows = [{"epoch": epoch, "train/loss_depth": 1.0, "test/abs_err": value, "test/miou": 0.5,
             "test/delta_m": 50.0 * (value - 2.0) / 2.0} for epoch, value in enumerate(errors)]
    (run_dir / "epochs.csv").write_text(rows_to_csv(rows))


@pytest.fixture
def results(tmp_path: Path) -> Path:
    write_run(tmp_path, "ls", 0, [3.0, 2.0, 1.0])
    write_run(tmp_path, "ls", 1, [5.0, 4.0, 3.0])
    write_run(tmp_path, "ls", 0, [2.0, 1.5, 1.0], cost=True)
    return tmp_path


def test_files_written_as_png(results):
    written = plots.write_plots(results, metrics={"toy": TOY_METRICS})
    assert sorted(p.name for p in written) == ["toy_quick_curves.png", "toy_quick_delta_m.png"]
    for path in written:
        assert path.read_bytes().startswith(PNG_MAGIC)


def test_curves_show_seed_mean(results):
    epochs = plots.read_epochs(results)
    figure = plots.plot_curves(epochs, TOY_METRICS, "toy")
    first_panel = figure.axes[0]
    assert first_panel.get_title() == "abs_err [m] ↓"
    lines = {line.get_label(): list(line.get_ydata()) for line in first_panel.get_lines()}
    assert lines["ls"] == [4.0, 3.0, 2.0]
    assert lines["ls+cost"] == [2.0, 1.5, 1.0]
    titles = [axis.get_title() for axis in figure.axes if axis.get_visible()]
    assert titles == ["abs_err [m] ↓", "miou [fraction] ↑", "Δm% ↓"]
    plt.close(figure)


def test_bars_match_table(results):
    table = tables.build_tables(results, metrics={"toy": TOY_METRICS})["toy"]
    figure = plots.plot_delta_m(table, "quick")
    bars = {container.get_label(): [patch.get_height() for patch in container.patches]
            for container in figure.axes[0].containers if hasattr(container, "patches")}
    expected_without = tables.delta_m({"abs_err": 2.0, "miou": 0.5}, TOY_METRICS)
    expected_with = tables.delta_m({"abs_err": 1.0, "miou": 0.5}, TOY_METRICS)
    assert bars["without COST"] == pytest.approx([expected_without])
    assert bars["with COST"] == pytest.approx([expected_with])
    assert expected_with == pytest.approx(-25.0)
    plt.close(figure)


def test_no_stl_skips_bar_chart(tmp_path):
    no_stl = [tables.Metric("l1", task="t1", unit="", higher_is_better=False)]
    run_dir = write_summary(tmp_path, "toy", "ls", 0, {"l1": 1.0})
    (run_dir / "epochs.csv").write_text(rows_to_csv([{"epoch": 0, "test/l1": 1.0}]))
    written = plots.write_plots(tmp_path, metrics={"toy": no_stl})
    assert [p.name for p in written] == ["toy_quick_curves.png"]


def test_unfinished_run_still_plotted(results):
    run_dir = results / "runs" / "toy" / "quick" / "pcgrad" / "seed0"
    run_dir.mkdir(parents=True)
    (run_dir / "epochs.csv").write_text(rows_to_csv([{"epoch": 0, "test/abs_err": 7.0, "test/miou": 0.1}]))
    epochs = plots.read_epochs(results)
    assert sorted(epochs["name"].unique()) == ["ls", "ls+cost", "pcgrad"]
    assert epochs.loc[epochs["name"] == "pcgrad", "seed"].tolist() == [0]
