"""Step time and peak memory of MTL methods with SegNet-MTAN at full resolution (NYUv2, Cityscapes).

Usage: ``python -m benchmarks.dense_step_time [--datasets nyuv2 cityscapes]
[--methods ls pcgrad nashmtl fairgrad fairgrad+cost] [--steps 2] [--warmup 1]
[--output results/benchmarks/dense_step_time.csv]``

Sizes are those of the paper profile: NYUv2 288×384 with batch size 2 (3 tasks),
Cityscapes 128×256 with batch size 8 (2 tasks). The images are generated arrays in the
MTAN ``.npy`` layout (``datasets.dense.synthetic``), so no download is needed; step time
does not depend on pixel values.

Each (dataset, method) runs in its own Python process, so that the peak resident memory of
one does not hide that of another. The process composes the suite's config
(``configs/dataset/<dataset>.yaml`` with the paper profile and ``configs/method/<name>.yaml``,
its reference gradient clipping included), builds the shared
:class:`benchmarks.trainer.Trainer` and times ``Trainer.train_step`` on one fixed training
batch after untimed warm-up steps. ``<method>+cost`` attaches the COST layer with
``configs/cost/quick.yaml`` (at most one teleport per epoch, allowed from the first timed
step) and the overrides of ``--cost-overrides``. Steps with and without a teleport are
reported separately, and a step where the trigger did not fire costs a Jacobian and the
trigger check on top of the base method.

Time: wall-clock seconds per step (``step_s_*``) and the CPU seconds of the process summed
over its threads (``step_cpu_s_median``), which depends less on other load of a shared
machine; the 1-minute load average before and after the timed steps is recorded.
Memory on CPU: the peak resident set size of the process (``ru_maxrss``) and its increase
over the resident size just before the first step. Methods that are not in
``methods.REGISTRY`` are reported as missing.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.runio import REPO_ROOT, atomic_write_text, rows_to_csv, seed_everything

log = logging.getLogger("benchmarks.dense_step_time")

DEFAULT_DATASETS = ("nyuv2", "cityscapes")
DEFAULT_METHODS = ("ls", "pcgrad", "nashmtl", "fairgrad", "fairgrad+cost")
DEFAULT_OUTPUT = Path("results/benchmarks/dense_step_time.csv")
# COST settings that keep one teleport short on a CPU: one inner step on one reference
# batch. The "always" trigger makes a teleport step happen whatever the gradients of the
# generated batch. By estimate, a teleport with more inner steps costs about inner_steps
# times more.
DEFAULT_COST_OVERRIDES = ("cost.inner_steps=1", "cost.reference_batches=1", "cost.trigger=always")
# Warm-up steps run in this epoch and timed steps in the next one. COST may teleport only
# from the timed epoch on, so a warm-up step never uses up the teleport of an epoch.
WARMUP_EPOCH = 0
TIMED_EPOCH = 1


def resident_mb() -> float:
    """Return the current resident set size of this process in MiB (Linux ``/proc``)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def peak_resident_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def split_label(label: str) -> tuple[str, bool]:
    """Return (method name, COST on) for ``ls`` or ``fairgrad+cost``."""
    if label.endswith("+cost"):
        return label[: -len("+cost")], True
    return label, False


def build_trainer(dataset: str, label: str, data_root: Path, run_dir: Path, batched_jacobian: bool,
                  cost_overrides: list[str]):
    """Compose the suite's config for (dataset, method) and build the shared trainer."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from benchmarks.train import clip_norm
    from benchmarks.trainer import TrainConfig, Trainer
    from datasets import build_benchmark
    from methods import build_method

    method_name, with_cost = split_label(label)
    overrides = [f"dataset={dataset}", f"method={method_name}", "profile=paper", "logger=csv",
                 f"data_root={data_root}", f"cost={'quick' if with_cost else 'none'}"]
    if with_cost:
        overrides += [f"cost.start_epoch={TIMED_EPOCH}", *cost_overrides]
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO_ROOT / "configs")):
        cfg = compose(config_name="config", overrides=overrides)

    seed_everything(0)
    benchmark = build_benchmark(dataset, cfg.dataset)
    device = torch.device("cpu")
    method = build_method(cfg.method.name, len(benchmark.tasks), device, **(cfg.method.get("hparams") or {}))
    cost = None
    if with_cost:
        from cost import build_cost_layer

        cost = build_cost_layer(OmegaConf.to_container(cfg.cost, resolve=True))
    train_cfg = TrainConfig(epochs=1, lr=cfg.dataset.lr, clip_grad_norm=clip_norm(cfg), seed=0,
                            batched_jacobian=batched_jacobian, progress=False)
    return Trainer(benchmark, method, train_cfg, run_dir, device, cost=cost), cfg


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Time ``train_step`` of one (dataset, method) in this process; return one result row."""
    from datasets.dense.synthetic import write_synthetic_cityscapes, write_synthetic_nyuv2

    dataset, label = args.single_dataset, args.single
    with tempfile.TemporaryDirectory(prefix="dense_step_") as scratch:
        scratch = Path(scratch)
        writer = write_synthetic_nyuv2 if dataset == "nyuv2" else write_synthetic_cityscapes
        batch_size = 2 if dataset == "nyuv2" else 8
        writer(scratch / "data" / dataset, train=2 * batch_size, test=1)
        trainer, cfg = build_trainer(dataset, label, scratch / "data", scratch / "run", args.jacobian == "batched",
                                     args.cost_overrides)
        if int(cfg.dataset.batch_size) != batch_size:
            raise RuntimeError(f"paper profile batch size {cfg.dataset.batch_size} differs from {batch_size}")
        if trainer.splits.train is not None and hasattr(trainer.splits.train, "set_epoch"):
            trainer.splits.train.set_epoch(0)
        batch = trainer.benchmark.to_device(next(iter(trainer.splits.train)), trainer.device)
        teleport_table = "teleports"
        if label.endswith("+cost"):
            from cost import RECORD_TABLE as teleport_table
        resident_before = resident_mb()

        def teleports() -> int:
            return len(trainer.state.records.get(teleport_table, []))

        for step in range(args.warmup):
            trainer.train_step(batch, epoch=WARMUP_EPOCH, step=step)
        plain_seconds, plain_cpu_seconds, teleport_seconds, teleport_cpu_seconds = [], [], [], []
        load_before = os.getloadavg()[0]
        for step in range(args.warmup, args.warmup + args.steps):
            before = teleports()
            started, cpu_started = time.perf_counter(), time.process_time()
            trainer.train_step(batch, epoch=TIMED_EPOCH, step=step)
            elapsed, cpu_elapsed = time.perf_counter() - started, time.process_time() - cpu_started
            if teleports() > before:
                teleport_seconds.append(elapsed)
                teleport_cpu_seconds.append(cpu_elapsed)
            else:
                plain_seconds.append(elapsed)
                plain_cpu_seconds.append(cpu_elapsed)

        height, width = batch[0].shape[-2:]
        row: dict[str, Any] = {
            "dataset": dataset, "method": label, "status": "ok", "device": "cpu",
            "torch_threads": torch.get_num_threads(), "tasks": len(trainer.benchmark.tasks),
            "batch_size": batch_size, "resolution": f"{height}x{width}",
            "jacobian": args.jacobian if trainer.method.needs_jacobian or label.endswith("+cost") else "none",
            "clip_grad_norm": trainer.cfg.clip_grad_norm, "steps": args.steps, "warmup": args.warmup,
            "step_s_median": statistics.median(plain_seconds) if plain_seconds else None,
            "step_s_min": min(plain_seconds) if plain_seconds else None,
            "step_cpu_s_median": statistics.median(plain_cpu_seconds) if plain_cpu_seconds else None,
            "teleport_steps": len(teleport_seconds),
            "teleport_step_s_median": statistics.median(teleport_seconds) if teleport_seconds else None,
            "teleport_step_cpu_s_median": statistics.median(teleport_cpu_seconds) if teleport_cpu_seconds else None,
            "peak_mb": peak_resident_mb(),
            "load_average_before": load_before, "load_average_after": os.getloadavg()[0],
        }
        row["step_peak_increase_mb"] = row["peak_mb"] - resident_before
        row.update({f"counter_{name}": count for name, count in trainer.method.pop_counters().items()})
    return row


def run_child(args: argparse.Namespace, dataset: str, label: str) -> dict[str, Any]:
    """Measure one (dataset, method) in a fresh process; return its row, or a row with the failure reason."""
    from methods import REGISTRY

    method_name, with_cost = split_label(label)
    if method_name not in REGISTRY:
        return {"dataset": dataset, "method": label, "status": "missing: not in methods.REGISTRY"}
    if with_cost:
        try:
            import cost  # noqa: F401
        except ImportError as error:
            return {"dataset": dataset, "method": label, "status": f"missing: cost package ({error})"}
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        result_path = Path(handle.name)
    command = [sys.executable, "-m", "benchmarks.dense_step_time", "--single", label, "--single-dataset", dataset,
               "--result", str(result_path), "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--jacobian", args.jacobian, "--cost-overrides", *args.cost_overrides]
    if args.max_memory_gb:
        command += ["--max-memory-gb", str(args.max_memory_gb)]
    log.info("measuring %s on %s", label, dataset)
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    try:
        if completed.returncode != 0:
            tail = (completed.stderr.strip().splitlines() or ["no output"])[-1]
            log.error("%s on %s failed (exit code %d): %s", label, dataset, completed.returncode,
                      completed.stderr[-2000:])
            return {"dataset": dataset, "method": label, "status": f"failed (exit code {completed.returncode}): {tail}"}
        return json.loads(result_path.read_text())
    finally:
        result_path.unlink(missing_ok=True)


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Add step time and memory relative to the LS row of the same dataset (when LS was measured)."""
    for row in rows:
        baseline = next((r for r in rows if r["dataset"] == row["dataset"] and r["method"] == "ls"
                         and r["status"] == "ok"), None)
        if baseline is None or row["status"] != "ok" or row.get("step_s_median") is None:
            continue
        row["step_time_vs_ls"] = row["step_s_median"] / baseline["step_s_median"]
        if row.get("step_cpu_s_median") and baseline.get("step_cpu_s_median"):
            row["step_cpu_vs_ls"] = row["step_cpu_s_median"] / baseline["step_cpu_s_median"]
        row["peak_vs_ls"] = row["peak_mb"] / baseline["peak_mb"]


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'dataset':<11} {'method':<14} {'step s':>8} {'x LS':>6} {'CPU s':>8} {'teleport s':>11} "
          f"{'peak MiB':>9} {'step +MiB':>10}")
    for row in rows:
        if row["status"] != "ok":
            print(f"{row['dataset']:<11} {row['method']:<14} {row['status']}")
            continue

        def number(key: str, digits: int) -> str:
            value = row.get(key)
            return "-" if value is None else f"{value:.{digits}f}"

        print(f"{row['dataset']:<11} {row['method']:<14} {number('step_s_median', 2):>8} "
              f"{number('step_time_vs_ls', 2):>6} {number('step_cpu_s_median', 2):>8} "
              f"{number('teleport_step_s_median', 1):>11} "
              f"{number('peak_mb', 0):>9} {number('step_peak_increase_mb', 0):>10}")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Read an earlier output CSV, with numbers parsed back from text."""

    def parse(value: str) -> Any:
        if value == "":
            return None
        try:
            return float(value)
        except ValueError:
            return value

    with open(path, newline="") as handle:
        return [{key: parse(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def merge_rows(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return ``old`` with the rows of the (dataset, method) pairs in ``new`` replaced, new pairs appended."""
    measured = {(row["dataset"], row["method"]) for row in new}
    kept = [row for row in old if (row["dataset"], row["method"]) not in measured]
    return kept + new


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=DEFAULT_DATASETS, default=list(DEFAULT_DATASETS))
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS),
                        help="method names to measure; <name>+cost attaches the COST layer")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per method")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before the timed ones")
    parser.add_argument("--jacobian", choices=("batched", "loop"), default="batched",
                        help="how gradient methods compute the task gradients (the trainer's batched_jacobian)")
    parser.add_argument("--cost-overrides", nargs="*", default=list(DEFAULT_COST_OVERRIDES),
                        help="Hydra overrides of the cost group for <name>+cost")
    parser.add_argument("--max-memory-gb", type=float, default=None,
                        help="cap on each measuring process's data memory (RLIMIT_DATA), so that a method too "
                             "large for the machine fails alone instead of exhausting its memory")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="CSV file of the results")
    parser.add_argument("--update", action="store_true",
                        help="keep the rows of --output for other (dataset, method) pairs and replace the measured ones")
    parser.add_argument("--single", help=argparse.SUPPRESS)
    parser.add_argument("--single-dataset", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.single:
        if args.max_memory_gb:
            limit = int(args.max_memory_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
        args.result.write_text(json.dumps(measure(args)))
        return

    rows = [run_child(args, dataset, label) for dataset in args.datasets for label in args.methods]
    machine = {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
               "torch": torch.__version__, "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "")}
    for row in rows:
        row.update(machine)
    if args.update and args.output.exists():
        rows = merge_rows(read_rows(args.output), rows)
    add_ratios(rows)
    atomic_write_text(args.output, rows_to_csv(rows))
    print_table(rows)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
