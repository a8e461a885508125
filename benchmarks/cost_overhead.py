"""Training-time overhead of the COST layer over the same base method, per epoch.

``python -m benchmarks.cost_overhead --dataset qm9 --method fairgrad --cost quick [--set key=value ...]``
trains the base method alone and with COST ("Continual Optimization with Symmetry
Teleportation for Multi-Task Learning", Zhou et al., NeurIPS 2025), with the same seed and
profile and the run name ``overhead`` (so that other runs of the same configuration are
not reused), through ``benchmarks.train.run``. It then compares the training seconds of each
epoch (``train_seconds`` in ``epochs.csv``) and reports, per epoch, the overhead in
percent, the teleports, the seconds spent inside teleports, and the invariance errors from
``teleports.csv``. Output: a Markdown table on stdout and
``<results-dir>/benchmarks/cost_overhead_<dataset>_<method>_<cost>.csv``.

Wall-clock times depend on the machine and on other processes' load, because both runs
execute one after the other in this process. The script therefore also reports the CPU
seconds (user + system, all threads) of each whole run, which other processes disturb
less. They include evaluation and data loading, which are the same for both runs.

Runs live under ``<results-dir>/runs/``. A finished run is reused, not retrained (the
trainer's rule), and then has no CPU time; delete its folder to measure again.
"""
from __future__ import annotations

import argparse
import csv
import logging
import math
import resource
from pathlib import Path
from typing import Any, Sequence

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from benchmarks.runio import atomic_write_text, rows_to_csv
from benchmarks.train import SUMMARY, run, run_dir_for

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

log = logging.getLogger("benchmarks.cost_overhead")


def compose_run(dataset: str, method: str, cost: str, profile: str, seed: int, results_dir: Path,
                overrides: Sequence[str]) -> DictConfig:
    """Compose the training config of one run, as ``python -m benchmarks.train`` would."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR), job_name="cost_overhead"):
        return compose(config_name="config", overrides=[
            f"dataset={dataset}", f"method={method}", f"cost={cost}", f"profile={profile}", f"seed={seed}",
            "logger=csv", "progress=false", f"results_dir={results_dir}", "run_name=overhead", *overrides,
        ])


def cpu_seconds() -> float:
    """Return the user + system CPU seconds this process has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed_run(cfg: DictConfig) -> float:
    """Train the run of ``cfg``; return its CPU seconds, or NaN when a finished run was reused."""
    if (run_dir_for(cfg) / SUMMARY).exists():
        log.info("%s is finished and is reused: no CPU time measured", run_dir_for(cfg))
        run(cfg)
        return math.nan
    started = cpu_seconds()
    run(cfg)
    return cpu_seconds() - started


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def compare(base_dir: Path, cost_dir: Path) -> list[dict[str, Any]]:
    """Return one row per epoch: base and COST training seconds, overhead %, teleport figures."""
    base_epochs = read_csv(base_dir / "epochs.csv")
    cost_epochs = read_csv(cost_dir / "epochs.csv")
    teleports = read_csv(cost_dir / "teleports.csv")
    rows = []
    for base, with_cost in zip(base_epochs, cost_epochs):
        epoch = int(base["epoch"])
        base_seconds = float(base["train_seconds"])
        cost_seconds = float(with_cost["train_seconds"])
        errors = [float(t["invariance_error"]) for t in teleports if int(t["epoch"]) == epoch and t["merged"] == "True"]
        relative = [float(t["invariance_rel_max"]) for t in teleports
                    if int(t["epoch"]) == epoch and t["merged"] == "True"]
        rows.append({
            "epoch": epoch,
            "base_train_s": round(base_seconds, 2),
            "cost_train_s": round(cost_seconds, 2),
            "overhead_pct": round(100.0 * (cost_seconds / base_seconds - 1.0), 1),
            "teleports": int(float(with_cost.get("cost/teleports", 0) or 0)),
            "trigger_checks": int(float(with_cost.get("cost/checks", 0) or 0)),
            "teleport_s": float(with_cost.get("cost/teleport_seconds", 0) or 0),
            "invariance_error_max": max(errors) if errors else math.nan,
            "invariance_rel_max": max(relative) if relative else math.nan,
        })
    return rows


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(f"{row[k]:.4g}" if isinstance(row[k], float) else str(row[k])
                                        for k in header) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="qm9", help="dataset config name")
    parser.add_argument("--method", default="fairgrad", help="base method config name")
    parser.add_argument("--cost", default="quick", help="COST config name (configs/cost/<name>.yaml)")
    parser.add_argument("--profile", default="quick", help="profile config name")
    parser.add_argument("--seed", type=int, default=0, help="seed of both runs")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra Hydra override for both runs (repeatable), e.g. batched_jacobian=false")
    parser.add_argument("--results-dir", type=Path, default=Path("results"),
                        help="results folder: runs go to <results-dir>/runs, the CSV to <results-dir>/benchmarks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    configs = {name: compose_run(args.dataset, args.method, cost, args.profile, args.seed, args.results_dir, args.set)
               for name, cost in (("base", "none"), ("cost", args.cost))}
    cpu = {}
    for name, cfg in configs.items():
        log.info("%s run: %s", name, run_dir_for(cfg))
        cpu[name] = timed_run(cfg)

    rows = compare(run_dir_for(configs["base"]), run_dir_for(configs["cost"]))
    if not rows:
        raise SystemExit("error: the runs wrote no epochs.csv rows; check the run folders above")
    base_total = sum(r["base_train_s"] for r in rows)
    cost_total = sum(r["cost_train_s"] for r in rows)
    print(markdown(rows))
    print(f"\ntotal training time: base {base_total:.1f} s, with COST {cost_total:.1f} s "
          f"({100.0 * (cost_total / base_total - 1.0):+.1f}%), {sum(r['teleports'] for r in rows)} teleport(s), "
          f"{sum(r['teleport_s'] for r in rows):.1f} s inside teleports")
    print(f"CPU time of the whole runs: base {cpu['base']:.1f} s, with COST {cpu['cost']:.1f} s "
          f"({100.0 * (cpu['cost'] / cpu['base'] - 1.0):+.1f}%)")
    for row in rows:
        row["base_run_cpu_s"] = round(cpu["base"], 1)
        row["cost_run_cpu_s"] = round(cpu["cost"], 1)
    out = args.results_dir / "benchmarks" / f"cost_overhead_{args.dataset}_{args.method}_{args.cost}.csv"
    atomic_write_text(out, rows_to_csv(rows))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
