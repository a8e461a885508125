"""Aggregate finished runs into per-dataset result tables and compare them with the paper.

``python -m benchmarks.tables [--results results] [--dataset qm9] [--profile quick]`` reads
every ``<results>/runs/<dataset>/<profile>/<name>/seed<seed>/summary.csv`` and writes

- ``<results>/tables/<dataset>.{csv,md,tex}``: one row per run name (method, COST on/off and
  ``run_name``) and profile. Each metric is given as mean ± sample std over seeds, followed
  by Δm% of the seed-mean metrics with the std of the per-seed Δm%, and the mean rank (MR)
  within the profile. The methods that MR ranks are named under each table.
- ``<results>/tables/<dataset>_vs_paper.{csv,md}``: the suite's seed means beside the values
  printed in "Continual Optimization with Symmetry Teleportation for Multi-Task Learning"
  (Zhou et al., NeurIPS 2025), read from ``results/paper/paper-results.csv``, and the
  difference per cell. Paper values sit only in columns labelled ``paper``.

Δm% and MR follow ``benchmarks.delta_m`` (pooled Δm% against each metric's STL baseline; tied
ranks share their average rank). Metric names, units and directions come from the dataset's
``Benchmark.metrics`` declaration.
"""
from __future__ import annotations

import argparse
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd
from omegaconf import OmegaConf

from benchmarks.delta_m import delta_m, mean_rank
from benchmarks.runio import REPO_ROOT, atomic_write_text
from datasets import build_benchmark
from datasets.base import Metric

log = logging.getLogger("benchmarks.tables")

PAPER_RESULTS = REPO_ROOT / "results" / "paper" / "paper-results.csv"

# Paper metrics printed in percent (segmentation and normal fractions); the suite may
# declare them as fractions, see :func:`paper_scale`.
PAPER_PERCENT_METRICS = frozenset({"miou", "pixacc", "within_11_25", "within_22_5", "within_30"})

# The paper's main comparison table per dataset, and the tables that add COST to other base
# methods, searched in this order for rows the main table lacks.
PAPER_MAIN_TABLE = {"cityscapes": "Table 1", "nyuv2": "Table 2", "celeba": "Table 3", "qm9": "Table 3"}
PAPER_COST_TABLES = {"cityscapes": ("Table 5",), "nyuv2": ("Table 6",)}

# Normalised paper method name -> normalised suite method name, where they differ.
# NOTE: Table 3 (CelebA, QM9) names its FairGrad row "FairGrad-R". This module reads it as
# the authors' own FairGrad run, so it is compared with the suite's FairGrad without COST.
PAPER_METHOD_ALIASES = {"fairgradr": "fairgrad"}
SUITE_METHOD_ALIASES = {"imtl": "imtlg", "nash": "nashmtl"}


def normalise_method(name: str) -> str:
    """Lower-case ``name`` and drop everything but letters and digits ("IMTL-G" -> "imtlg")."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


# --------------------------------------------------------------------------------------
# Reading runs
# --------------------------------------------------------------------------------------
def read_summaries(results_dir: Path, dataset: str | None = None, profile: str | None = None) -> pd.DataFrame:
    """Return one row per finished run below ``results_dir/runs``, with its folder in ``run_dir``.

    Each ``summary.csv`` contains exactly one row; a file with another row count raises
    ``ValueError`` naming the file.
    """
    runs_root = Path(results_dir) / "runs"
    pattern = f"{dataset or '*'}/{profile or '*'}/*/seed*/summary.csv"
    frames = []
    for path in sorted(runs_root.glob(pattern)):
        frame = pd.read_csv(path)
        if len(frame) != 1:
            raise ValueError(f"{path} has {len(frame)} rows; a run summary has exactly one. "
                             "Delete the run folder and run it again.")
        frame["run_dir"] = str(path.parent)
        frames.append(frame)
    if not frames:
        return pd.DataFrame()
    runs = pd.concat(frames, ignore_index=True)
    runs["cost"] = runs["cost"].map(parse_bool)
    runs["name"] = runs["name"].fillna(runs["method"]).astype(str)
    runs["profile"] = runs["profile"].astype(str)
    return runs


def parse_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes"}
    return bool(value)


def dataset_config(dataset: str, run_dirs: Iterable[str]) -> dict[str, Any]:
    """Return the dataset config of the first run that saved one, else ``configs/dataset/<name>.yaml``.

    The run's own config is preferred because options such as QM9's ``targets`` decide
    which metrics the dataset declares.
    """
    for run_dir in run_dirs:
        saved = Path(run_dir) / "config.yaml"
        if saved.exists():
            return OmegaConf.to_container(OmegaConf.load(saved).dataset, resolve=False)
    default = REPO_ROOT / "configs" / "dataset" / f"{dataset}.yaml"
    if not default.exists():
        raise FileNotFoundError(f"no config.yaml in the {dataset} run folders and no {default}; "
                                "cannot read the dataset's metric declarations")
    return OmegaConf.to_container(OmegaConf.load(default), resolve=False)


def declared_metrics(dataset: str, run_dirs: Iterable[str]) -> list[Metric]:
    """Return the metric declarations of ``dataset`` (building a Benchmark loads no data)."""
    return list(build_benchmark(dataset, dataset_config(dataset, run_dirs)).metrics)


# --------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------
@dataclass
class TableRow:
    """Seed statistics of one run name (method, COST setting, run_name) in one profile."""

    profile: str
    name: str
    method: str
    cost: bool
    seeds: list[int]
    mean: dict[str, float]
    std: dict[str, float]
    delta_m: float
    delta_m_std: float
    mean_rank: float = math.nan


@dataclass
class DatasetTable:
    """All rows of one dataset with the metric declarations they are reported in."""

    dataset: str
    metrics: list[Metric]
    rows: list[TableRow] = field(default_factory=list)

    def profiles(self) -> list[str]:
        return sorted({row.profile for row in self.rows})

    def rows_of(self, profile: str) -> list[TableRow]:
        return [row for row in self.rows if row.profile == profile]


def sample_std(values: pd.Series) -> float:
    """Return the sample standard deviation (ddof 1); NaN for fewer than two values."""
    return float(values.std(ddof=1)) if values.count() > 1 else math.nan


def safe_delta_m(values: Mapping[str, float], metrics: Sequence[Metric]) -> float:
    if any(m.stl is None for m in metrics) or any(math.isnan(values.get(m.name, math.nan)) for m in metrics):
        return math.nan
    return delta_m(values, metrics)


def aggregate(runs: pd.DataFrame, dataset: str, metrics: Sequence[Metric]) -> DatasetTable:
    """Build the table of ``dataset`` from its run rows; see the module docstring for the columns."""
    missing = [m.name for m in metrics if m.name not in runs.columns]
    if missing:
        raise KeyError(f"the {dataset} summaries lack the declared metric column(s) {missing}; "
                       f"they hold {list(runs.columns)}. Rerun those runs with the current code.")
    table = DatasetTable(dataset, list(metrics))
    names = [m.name for m in metrics]
    for (profile, name), group in runs.groupby(["profile", "name"], sort=True):
        values = group[names].astype(float)
        per_seed_delta = [safe_delta_m(dict(row), metrics) for _, row in values.iterrows()]
        mean = {n: float(values[n].mean()) for n in names}
        table.rows.append(TableRow(
            profile=str(profile), name=str(name), method=str(group["method"].iloc[0]),
            cost=bool(group["cost"].iloc[0]), seeds=sorted(int(s) for s in group["seed"]),
            mean=mean, std={n: sample_std(values[n]) for n in names},
            delta_m=safe_delta_m(mean, metrics), delta_m_std=sample_std(pd.Series(per_seed_delta)),
        ))
    for profile in table.profiles():
        rows = table.rows_of(profile)
        ranks = mean_rank({row.name: row.mean for row in rows}, metrics)
        for row in rows:
            row.mean_rank = ranks[row.name]
    table.rows.sort(key=lambda r: (r.profile, r.method, r.cost, r.name))
    return table


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------
def format_number(value: float, digits: int = 4) -> str:
    """Format with ``digits`` significant digits; NaN becomes an empty string."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.{digits}g}"


def mean_std(mean: float, std: float) -> str:
    if math.isnan(mean):
        return ""
    return format_number(mean) if math.isnan(std) else f"{format_number(mean)} ± {format_number(std)}"


def metric_header(metric: Metric) -> str:
    """Return ``name [unit] ↑`` (or ↓): the unit and the better direction of the metric."""
    unit = f" [{metric.unit}]" if metric.unit else ""
    return f"{metric.name}{unit} {'↑' if metric.higher_is_better else '↓'}"


def cost_label(cost: bool) -> str:
    return "yes" if cost else "no"


def table_frame(table: DatasetTable) -> pd.DataFrame:
    """Return the machine-readable table: separate mean and std columns for each value."""
    records = []
    for row in table.rows:
        record: dict[str, Any] = {"profile": row.profile, "name": row.name, "method": row.method,
                                  "cost": row.cost, "seeds": len(row.seeds),
                                  "seed_list": " ".join(str(s) for s in row.seeds)}
        for metric in table.metrics:
            record[f"{metric.name}_mean"] = row.mean[metric.name]
            record[f"{metric.name}_std"] = row.std[metric.name]
        record.update({"delta_m": row.delta_m, "delta_m_std": row.delta_m_std, "mean_rank": row.mean_rank})
        records.append(record)
    return pd.DataFrame.from_records(records)


def ranked_set_line(rows: Sequence[TableRow]) -> str:
    noun = "row" if len(rows) == 1 else "rows"
    return f"MR ranks {len(rows)} {noun} against each other: " + ", ".join(r.name for r in rows) + "."


def markdown_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def display_rows(table: DatasetTable, profile: str) -> tuple[list[str], list[list[str]]]:
    """Return the header and the formatted cells of the human-readable table of ``profile``."""
    header = ["method", "COST", "seeds"] + [metric_header(m) for m in table.metrics] + ["Δm% ↓", "MR ↓"]
    body = []
    for row in table.rows_of(profile):
        cells = [row.name, cost_label(row.cost), str(len(row.seeds))]
        cells += [mean_std(row.mean[m.name], row.std[m.name]) for m in table.metrics]
        cells += [mean_std(row.delta_m, row.delta_m_std), format_number(row.mean_rank, 3)]
        body.append(cells)
    return header, body


def render_markdown(table: DatasetTable) -> str:
    parts = [f"# {table.dataset}\n",
             "Test metrics as mean ± sample std over seeds. Δm% (lower is better, against each "
             "metric's STL baseline) is computed from the seed-mean metrics; its ± is the std of "
             "the per-seed Δm%. MR: mean rank over all metrics, tied ranks averaged.\n"]
    for profile in table.profiles():
        header, body = display_rows(table, profile)
        parts.append(f"## profile `{profile}`\n")
        parts.append(markdown_table(header, body) + "\n")
        parts.append(ranked_set_line(table.rows_of(profile)) + "\n")
    return "\n".join(parts)


def latex_escape(text: str) -> str:
    replacements = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                    "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}",
                    "±": r"$\pm$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "Δ": r"$\Delta$"}
    return "".join(replacements.get(char, char) for char in text)


def render_latex(table: DatasetTable) -> str:
    """Return one booktabs ``tabular`` per profile (needs ``\\usepackage{booktabs}``)."""
    parts = []
    for profile in table.profiles():
        header, body = display_rows(table, profile)
        parts.append(f"% {table.dataset}, profile {profile}. {ranked_set_line(table.rows_of(profile))}")
        parts.append(r"\begin{tabular}{" + "l" * 3 + "r" * (len(header) - 3) + "}")
        parts.append(r"\toprule")
        parts.append(" & ".join(latex_escape(h) for h in header) + r" \\")
        parts.append(r"\midrule")
        parts += [" & ".join(latex_escape(c) for c in cells) + r" \\" for cells in body]
        parts.append(r"\bottomrule")
        parts.append(r"\end{tabular}")
        parts.append("")
    return "\n".join(parts)


# --------------------------------------------------------------------------------------
# Comparison with the paper
# --------------------------------------------------------------------------------------
def read_paper_results(path: Path = PAPER_RESULTS) -> pd.DataFrame:
    """Read the paper's numbers: columns table, dataset, method, metric, value (units as printed)."""
    if not Path(path).exists():
        raise FileNotFoundError(f"paper results {path} not found; restore results/paper/paper-results.csv "
                                "from the repository")
    return pd.read_csv(path)


def is_percent_unit(unit: str) -> bool:
    return unit.strip().lower() in {"%", "percent"}


def paper_scale(metric: Metric) -> float:
    """Return the factor that converts the paper's printed value into the suite's unit.

    The paper prints segmentation and normal-fraction metrics in percent. A suite metric
    declared in any unit other than percent is taken as a fraction of 1.
    """
    if metric.name in PAPER_PERCENT_METRICS and not is_percent_unit(metric.unit):
        return 0.01
    return 1.0


def paper_method_key(paper_name: str) -> tuple[str, bool]:
    """Return (normalised suite method name, COST on) for a paper row name such as "FairGrad+COST"."""
    cost = paper_name.endswith("+COST")
    base = normalise_method(paper_name[: -len("+COST")] if cost else paper_name)
    return PAPER_METHOD_ALIASES.get(base, base), cost


def suite_method_key(method: str, cost: bool) -> tuple[str, bool]:
    base = normalise_method(method)
    return SUITE_METHOD_ALIASES.get(base, base), cost


@dataclass
class PaperRow:
    """The paper's values for one (method, COST) row, in the suite's units, and their source table."""

    source: str
    values: dict[str, float]


def paper_rows(paper: pd.DataFrame, dataset: str, metrics: Sequence[Metric]) -> dict[tuple[str, bool], PaperRow]:
    """Return the paper's rows of ``dataset`` keyed by (normalised method, COST on).

    The main comparison table comes first; COST combinations it lacks come from the tables
    that add COST to other base methods. Paper rows without a suite counterpart are dropped.
    """
    scale = {m.name: paper_scale(m) for m in metrics}
    tables = [PAPER_MAIN_TABLE.get(dataset)] + list(PAPER_COST_TABLES.get(dataset, ()))
    found: dict[tuple[str, bool], PaperRow] = {}
    for table_name in tables:
        if table_name is None:
            continue
        subset = paper[(paper["table"] == table_name) & (paper["dataset"] == dataset)]
        for method, group in subset.groupby("method", sort=False):
            key = paper_method_key(str(method))
            if key in found:
                continue
            values = {str(r.metric): float(r.value) * scale.get(str(r.metric), 1.0) for r in group.itertuples()}
            found[key] = PaperRow(table_name, values)
    return found


def paper_ranked_set(paper: pd.DataFrame, dataset: str) -> list[str]:
    """Return the methods the paper's MR column ranks for ``dataset`` (those with an ``mr`` value)."""
    table_name = PAPER_MAIN_TABLE.get(dataset)
    subset = paper[(paper["table"] == table_name) & (paper["dataset"] == dataset) & (paper["metric"] == "mr")]
    return list(subset["method"])


def check_paper_units(paper: pd.DataFrame, dataset: str, metrics: Sequence[Metric]) -> None:
    """Log a warning when the paper's STL row, converted, disagrees with a declared STL baseline."""
    stl = paper_rows(paper, dataset, metrics).get(("stl", False))
    if stl is None:
        return
    for metric in metrics:
        printed = stl.values.get(metric.name)
        if printed is None or metric.stl is None:
            continue
        if abs(printed - metric.stl) > 0.02 * abs(metric.stl):
            log.warning("%s: paper STL %s = %s after unit conversion, declared STL %s; check the unit of %s",
                        dataset, metric.name, printed, metric.stl, metric.name)


def comparison_frame(table: DatasetTable, paper: pd.DataFrame) -> pd.DataFrame:
    """Return suite seed means, paper values and suite − paper for every metric, Δm% and MR.

    Cells where the paper has no value (a method or metric it does not report) stay empty.
    """
    check_paper_units(paper, table.dataset, table.metrics)
    reference = paper_rows(paper, table.dataset, table.metrics)
    columns = [(m.name, lambda row, name=m.name: row.mean[name]) for m in table.metrics]
    columns += [("delta_m", lambda row: row.delta_m), ("mr", lambda row: row.mean_rank)]
    records = []
    for row in table.rows:
        match = reference.get(suite_method_key(row.method, row.cost))
        record: dict[str, Any] = {"profile": row.profile, "name": row.name, "method": row.method,
                                  "cost": row.cost, "paper_source": match.source if match else ""}
        for column, suite_value in columns:
            suite = suite_value(row)
            printed = match.values.get(column, math.nan) if match else math.nan
            record[f"{column}_suite"] = suite
            record[f"{column}_paper"] = printed
            record[f"{column}_diff"] = suite - printed
        records.append(record)
    return pd.DataFrame.from_records(records)


def render_comparison_markdown(table: DatasetTable, frame: pd.DataFrame, paper: pd.DataFrame) -> str:
    """Render the comparison; metrics the paper never reports for this dataset are listed, not tabulated."""
    reported = set(paper.loc[paper["dataset"] == table.dataset, "metric"])
    names = [m.name for m in table.metrics if m.name in reported] + ["delta_m", "mr"]
    unreported = [m.name for m in table.metrics if m.name not in reported]
    headers = {m.name: metric_header(m) for m in table.metrics}
    headers.update({"delta_m": "Δm% ↓", "mr": "MR ↓"})
    parts = [f"# {table.dataset}: this suite vs the paper\n",
             "`suite`: this suite's seed mean. `paper`: the value printed in \"Continual "
             "Optimization with Symmetry Teleportation for Multi-Task Learning\" (percentages "
             "converted to the suite's units). `diff`: suite − paper. Empty: the paper does not "
             "report that method or metric.\n"]
    if unreported:
        parts.append(f"The paper reports no {table.dataset} values for {', '.join(unreported)}; their "
                     f"suite values are in {table.dataset}.md and their empty paper columns in "
                     f"{table.dataset}_vs_paper.csv.\n")
    for profile in table.profiles():
        subset = frame[frame["profile"] == profile]
        header = ["method", "COST", "paper table"]
        for name in names:
            header += [f"{headers[name]} suite", f"{name} paper", f"{name} diff"]
        body = []
        for record in subset.to_dict("records"):
            cells = [record["name"], cost_label(record["cost"]), record["paper_source"]]
            for name in names:
                cells += [format_number(record[f"{name}_{kind}"]) for kind in ("suite", "paper", "diff")]
            body.append(cells)
        parts.append(f"## profile `{profile}`\n")
        parts.append(markdown_table(header, body) + "\n")
        parts.append(f"Suite {ranked_set_line(table.rows_of(profile))} Paper MR ranks "
                     f"{', '.join(paper_ranked_set(paper, table.dataset)) or 'no methods'}; "
                     "the two MR columns rank different sets.\n")
    return "\n".join(parts)


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------
def write_csv(path: Path, frame: pd.DataFrame) -> None:
    atomic_write_text(path, frame.to_csv(index=False, float_format="%.10g"))


def write_tables(table: DatasetTable, out_dir: Path, paper: pd.DataFrame | None) -> list[Path]:
    """Write the table files of one dataset, and its paper comparison when ``paper`` reports the dataset."""
    out_dir = Path(out_dir)
    written = [out_dir / f"{table.dataset}.{ext}" for ext in ("csv", "md", "tex")]
    write_csv(written[0], table_frame(table))
    atomic_write_text(written[1], render_markdown(table))
    atomic_write_text(written[2], render_latex(table))
    if paper is not None and table.dataset in set(paper["dataset"]):
        frame = comparison_frame(table, paper)
        comparison = [out_dir / f"{table.dataset}_vs_paper.{ext}" for ext in ("csv", "md")]
        write_csv(comparison[0], frame)
        atomic_write_text(comparison[1], render_comparison_markdown(table, frame, paper))
        written += comparison
    return written


def build_tables(results_dir: Path, dataset: str | None = None, profile: str | None = None,
                 metrics: Mapping[str, Sequence[Metric]] | None = None) -> dict[str, DatasetTable]:
    """Aggregate the runs below ``results_dir`` into one :class:`DatasetTable` per dataset.

    ``metrics`` maps a dataset name to its declarations and overrides the dataset registry.
    """
    runs = read_summaries(results_dir, dataset, profile)
    tables: dict[str, DatasetTable] = {}
    if runs.empty:
        return tables
    for name, group in runs.groupby("dataset", sort=True):
        declared = (metrics or {}).get(name) or declared_metrics(str(name), group["run_dir"])
        tables[str(name)] = aggregate(group, str(name), declared)
    return tables


def wandb_project() -> str:
    """Return the W&B project of the training runs (``configs/logger/wandb.yaml``)."""
    config = REPO_ROOT / "configs" / "logger" / "wandb.yaml"
    return str(OmegaConf.load(config).get("project", "mtl-cost-bench")) if config.exists() else "mtl-cost-bench"


def log_tables_to_wandb(tables: Mapping[str, DatasetTable], wandb_dir: Path) -> list[str]:
    """Log each table as a W&B Table, one W&B run per dataset; return the run ids.

    The run joins the dataset's group (as the training runs do) with job type ``table``.
    It is offline, with its files under ``wandb_dir``, unless W&B is configured online
    (the rule of ``benchmarks.loggers.WandbLogger``).
    """
    import wandb

    from benchmarks.loggers import WandbLogger

    mode = WandbLogger(mode="auto").resolved_mode()
    run_ids = []
    for dataset, table in tables.items():
        frame = table_frame(table)
        run_dir = Path(wandb_dir) / f"table-{dataset}"
        run_dir.mkdir(parents=True, exist_ok=True)
        run = wandb.init(project=wandb_project(), dir=str(run_dir), mode=mode, group=dataset, job_type="table",
                         name=f"table-{dataset}", tags=["table", *table.profiles()],
                         config={"dataset": dataset, "profiles": table.profiles()},
                         settings=wandb.Settings(silent=True, console="off"))
        rows = frame.astype(object).where(frame.notna(), None).values.tolist()
        run.log({f"table/{dataset}": wandb.Table(columns=list(frame.columns), data=rows)})
        run.finish()
        run_ids.append(run.id)
        log.info("logged the %s table (%d rows) as W&B run %s (%s) in %s", dataset, len(rows), run.id, mode, run_dir)
    return run_ids


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results"),
                        help="results folder that contains runs/ (default: results)")
    parser.add_argument("--dataset", help="only this dataset (default: every dataset with runs)")
    parser.add_argument("--profile", help="only runs of this profile (default: all, one section each)")
    parser.add_argument("--out", type=Path, help="output folder (default: <results>/tables)")
    parser.add_argument("--paper", type=Path, default=PAPER_RESULTS,
                        help="the paper's numbers as CSV; 'none' skips the comparison")
    parser.add_argument("--wandb", action="store_true",
                        help="also log each table as a W&B Table run under <results>/wandb")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    tables = build_tables(args.results, args.dataset, args.profile)
    if not tables:
        log.error("no finished runs (summary.csv) below %s/runs%s", args.results,
                  f" for dataset {args.dataset}" if args.dataset else "")
        return 1
    paper = None if str(args.paper) == "none" else read_paper_results(args.paper)
    out_dir = args.out or args.results / "tables"
    for dataset, table in tables.items():
        for path in write_tables(table, out_dir, paper):
            log.info("wrote %s", path)
        print(render_markdown(table))
    if args.wandb:
        log_tables_to_wandb(tables, args.results / "wandb")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
