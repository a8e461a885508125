"""Plot per-epoch metric curves and Δm% bar charts of the runs below a results folder.

``python -m benchmarks.plots [--results results] [--dataset qm9]`` writes, per dataset and
profile, into ``<results>/plots/``:

- ``<dataset>_<profile>_curves.png``: one panel per declared metric (and test Δm% where the
  dataset has STL baselines): the test value per epoch from each run's ``epochs.csv``, mean
  over seeds, with the range over seeds shaded. Unfinished runs are included, so the curves
  can be watched during a sweep.
- ``<dataset>_<profile>_delta_m.png``: Δm% of the seed-mean metrics per method, without and
  with COST side by side, with the std of the per-seed Δm% as error bars (finished runs, the
  same numbers as ``results/tables/<dataset>.md``). Skipped when the dataset declares no STL
  baselines.
"""
from __future__ import annotations

import argparse
import io
import logging
import math
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.ticker import MaxNLocator  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks.runio import atomic_write_bytes  # noqa: E402
from benchmarks.tables import DatasetTable, build_tables, declared_metrics, metric_header  # noqa: E402
from datasets.base import Metric  # noqa: E402

log = logging.getLogger("benchmarks.plots")


def read_epochs(results_dir: Path, dataset: str | None = None) -> pd.DataFrame:
    """Return every run's ``epochs.csv`` rows with dataset, profile, name and seed columns added."""
    frames = []
    for path in sorted((Path(results_dir) / "runs").glob(f"{dataset or '*'}/*/*/seed*/epochs.csv")):
        seed_dir = path.parent
        frame = pd.read_csv(path)
        frame["dataset"] = seed_dir.parents[2].name
        frame["profile"] = seed_dir.parents[1].name
        frame["name"] = seed_dir.parent.name
        frame["seed"] = int(seed_dir.name.removeprefix("seed"))
        frame["run_dir"] = str(seed_dir)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def save_figure(figure: plt.Figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def plot_curves(epochs: pd.DataFrame, metrics: Sequence[Metric], title: str) -> plt.Figure:
    """Draw one panel per metric: test value per epoch, seed mean as a line, seed range shaded."""
    panels = [(f"test/{m.name}", metric_header(m)) for m in metrics]
    if "test/delta_m" in epochs.columns:
        panels.append(("test/delta_m", "Δm% ↓"))
    columns = min(4, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.0 * rows), squeeze=False)
    for axis, (column, label) in zip(axes.flat, panels):
        if column not in epochs.columns:
            axis.set_title(f"{label} (not logged)")
            continue
        for name, group in epochs.groupby("name", sort=True):
            per_epoch = group.groupby("epoch")[column].agg(["mean", "min", "max"])
            axis.plot(per_epoch.index, per_epoch["mean"], marker="o", markersize=2, label=name)
            axis.fill_between(per_epoch.index, per_epoch["min"], per_epoch["max"], alpha=0.2)
        axis.set_title(label)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    for axis in list(axes.flat)[len(panels):]:
        axis.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", ncol=min(len(labels), 6), bbox_to_anchor=(0.5, 1.0))
    figure.suptitle(title, y=1.04)
    figure.tight_layout()
    return figure


def plot_delta_m(table: DatasetTable, profile: str) -> plt.Figure | None:
    """Draw Δm% per method, without and with COST side by side; None when no row has a Δm%."""
    rows = [row for row in table.rows_of(profile) if not math.isnan(row.delta_m)]
    if not rows:
        return None
    # One group of bars per method (and run_name suffix), COST off then on.
    groups = sorted({row.name.replace("+cost", "") for row in rows})
    width = 0.38
    figure, axis = plt.subplots(figsize=(max(4.0, 0.9 * len(groups) + 1.5), 3.6))
    for offset, cost in ((-width / 2, False), (width / 2, True)):
        positions, heights, errors = [], [], []
        for index, group in enumerate(groups):
            match = [r for r in rows if r.name.replace("+cost", "") == group and r.cost == cost]
            if match:
                positions.append(index + offset)
                heights.append(match[0].delta_m)
                errors.append(0.0 if math.isnan(match[0].delta_m_std) else match[0].delta_m_std)
        if positions:
            axis.bar(positions, heights, width, yerr=errors, capsize=3,
                     label="with COST" if cost else "without COST")
    axis.axhline(0.0, color="black", linewidth=0.8)
    axis.set_xticks(range(len(groups)), groups, rotation=30, ha="right")
    axis.set_ylabel("Δm% (lower is better)")
    axis.set_title(f"{table.dataset}, profile {profile}: Δm% against STL (error bars: std over seeds)")
    axis.legend()
    figure.tight_layout()
    return figure


def write_plots(results_dir: Path, dataset: str | None = None, out_dir: Path | None = None,
                metrics: Mapping[str, Sequence[Metric]] | None = None) -> list[Path]:
    """Write the curve and Δm% figures of every dataset and profile; return the written paths.

    ``metrics`` maps a dataset name to its declarations and overrides the dataset registry.
    """
    out_dir = Path(out_dir) if out_dir else Path(results_dir) / "plots"
    written: list[Path] = []
    epochs = read_epochs(results_dir, dataset)
    tables = build_tables(results_dir, dataset, metrics=metrics)
    if epochs.empty:
        return written
    for (name, profile), group in epochs.groupby(["dataset", "profile"], sort=True):
        declared = (metrics or {}).get(name) or declared_metrics(name, group["run_dir"])
        path = out_dir / f"{name}_{profile}_curves.png"
        save_figure(plot_curves(group, declared, f"{name}, profile {profile}: test metrics per epoch"), path)
        written.append(path)
        if name in tables and profile in tables[name].profiles():
            figure = plot_delta_m(tables[name], profile)
            if figure is None:
                log.info("%s (%s): no Δm%% (no STL baselines declared); bar chart skipped", name, profile)
                continue
            path = out_dir / f"{name}_{profile}_delta_m.png"
            save_figure(figure, path)
            written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results"),
                        help="results folder that contains runs/ (default: results)")
    parser.add_argument("--dataset", help="only this dataset (default: every dataset with runs)")
    parser.add_argument("--out", type=Path, help="output folder (default: <results>/plots)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    written = write_plots(args.results, args.dataset, args.out)
    if not written:
        log.error("no run with epochs.csv below %s/runs", args.results)
        return 1
    for path in written:
        log.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
