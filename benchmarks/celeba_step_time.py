"""Step time and peak memory of MTL methods on CelebA (K = 40 tasks, 64×64 images), relative to LS.

Usage: ``python -m benchmarks.celeba_step_time --root <CelebA folder> [--batch-size 256]
[--methods ls pcgrad nashmtl fairgrad] [--steps 3] [--output results/benchmarks/celeba_step_time.csv]``

Each method runs in its own Python process, so that the peak resident memory of one does
not hide that of another. The process builds the shared :class:`benchmarks.trainer.Trainer`
with the method's config from ``configs/method/<name>.yaml``, reference gradient clipping
included. It times ``Trainer.train_step`` on one fixed batch of real images, drawn with
replacement from the training split because a sample has fewer images than a batch.
Warm-up steps run first and are not timed. Each step records wall time and the process's
CPU time (``time.process_time``, all threads), because on a shared machine wall time also
counts waiting for a CPU.

On CPU, memory is the peak resident set size of the process (``ru_maxrss``) and its
increase over the resident size just before the first step. On CUDA, it is
``torch.cuda.max_memory_allocated`` during the steps. Methods that are not in ``methods.REGISTRY`` are reported as missing.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.runio import REPO_ROOT, atomic_write_text, rows_to_csv, seed_everything, select_device

log = logging.getLogger("benchmarks.celeba_step_time")

DEFAULT_METHODS = ("ls", "pcgrad", "nashmtl", "fairgrad")
DEFAULT_OUTPUT = Path("results/benchmarks/celeba_step_time.csv")


def resident_mb() -> float:
    """Return the current resident set size of this process in MiB (Linux ``/proc``)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def peak_resident_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def build_trainer(root: Path, cache_dir: Path, method_name: str, batch_size: int, batched_jacobian: bool,
                  device: torch.device, run_dir: Path):
    """Compose the suite's config for (celeba, method) and build the shared trainer."""
    from hydra import compose, initialize_config_dir

    from benchmarks.train import clip_norm
    from benchmarks.trainer import TrainConfig, Trainer
    from datasets import build_benchmark
    from methods import build_method

    overrides = [
        "dataset=celeba", f"method={method_name}", "profile=paper", "logger=csv", f"data_root={root}",
        f"dataset.cache_dir={cache_dir}", f"dataset.batch_size={batch_size}",
        # The small sample lists only training images; the official partition is unaffected.
        "dataset.carve_from_train.val=1", "dataset.carve_from_train.test=1",
    ]
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO_ROOT / "configs")):
        cfg = compose(config_name="config", overrides=overrides)

    seed_everything(0)
    benchmark = build_benchmark("celeba", cfg.dataset)
    method = build_method(cfg.method.name, len(benchmark.tasks), device, **(cfg.method.get("hparams") or {}))
    train_cfg = TrainConfig(epochs=1, lr=cfg.dataset.lr, clip_grad_norm=clip_norm(cfg), seed=0,
                            batched_jacobian=batched_jacobian, progress=False)
    return Trainer(benchmark, method, train_cfg, run_dir, device), train_cfg


def fixed_batch(trainer, batch_size: int) -> Any:
    """Draw ``batch_size`` training images with replacement (seed 0) and move them to the device."""
    arrays = trainer.benchmark.load_arrays()["train"]
    rows = np.sort(np.random.default_rng(0).integers(0, len(arrays), size=batch_size))
    batch = (torch.from_numpy(np.ascontiguousarray(arrays.images[rows])),
             torch.from_numpy(arrays.labels[rows].astype(np.float32)))
    return trainer.benchmark.to_device(batch, trainer.device)


def measure_method(args: argparse.Namespace) -> dict[str, Any]:
    """Time ``train_step`` of one method in this process; return one result row."""
    device = select_device(args.device)
    with tempfile.TemporaryDirectory(prefix="celeba_step_") as run_dir:
        trainer, train_cfg = build_trainer(args.root, args.cache_dir, args.single, args.batch_size,
                                           args.jacobian == "batched", device, Path(run_dir))
        batch = fixed_batch(trainer, args.batch_size)
        synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        resident_before = resident_mb()

        for step in range(args.warmup):
            trainer.train_step(batch, epoch=0, step=step)
        seconds, cpu_seconds = [], []
        for step in range(args.warmup, args.warmup + args.steps):
            synchronize()
            started, cpu_started = time.perf_counter(), time.process_time()
            trainer.train_step(batch, epoch=0, step=step)
            synchronize()
            seconds.append(time.perf_counter() - started)
            cpu_seconds.append(time.process_time() - cpu_started)

        row: dict[str, Any] = {
            "method": args.single, "status": "ok", "device": str(device), "torch_threads": torch.get_num_threads(),
            "tasks": len(trainer.benchmark.tasks), "batch_size": args.batch_size, "image_size": 64,
            "jacobian": args.jacobian if trainer.method.needs_jacobian else "none",
            "clip_grad_norm": train_cfg.clip_grad_norm, "steps": args.steps,
            "step_s_median": statistics.median(seconds), "step_s_min": min(seconds),
            "step_cpu_s_median": statistics.median(cpu_seconds),
        }
        if device.type == "cuda":
            row["peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
            row["step_peak_increase_mb"] = row["peak_mb"]
        else:
            row["peak_mb"] = peak_resident_mb()
            row["step_peak_increase_mb"] = row["peak_mb"] - resident_before
        row.update({f"counter_{name}": count for name, count in trainer.method.pop_counters().items()})
    return row


def run_child(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """Measure ``method`` in a fresh process; return its result row, or a row with the failure reason."""
    from methods import REGISTRY

    if method not in REGISTRY:
        return {"method": method, "status": "missing: not in methods.REGISTRY"}
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        result_path = Path(handle.name)
    command = [sys.executable, "-m", "benchmarks.celeba_step_time", "--single", method, "--result", str(result_path),
               "--root", str(args.root), "--cache-dir", str(args.cache_dir), "--batch-size", str(args.batch_size),
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--jacobian", args.jacobian,
               "--device", args.device]
    if args.max_memory_gb:
        command += ["--max-memory-gb", str(args.max_memory_gb)]
    log.info("measuring %s: %s", method, " ".join(command))
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    try:
        if completed.returncode != 0:
            tail = (completed.stderr.strip().splitlines() or ["no output"])[-1]
            log.error("%s failed (exit code %d): %s", method, completed.returncode, completed.stderr[-2000:])
            return {"method": method, "status": f"failed (exit code {completed.returncode}): {tail}"}
        return json.loads(result_path.read_text())
    finally:
        result_path.unlink(missing_ok=True)


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Add step time and memory relative to the LS row (when LS was measured)."""
    baseline = next((r for r in rows if r["method"] == "ls" and r["status"] == "ok"), None)
    for row in rows:
        if baseline is None or row["status"] != "ok":
            continue
        row["step_time_vs_ls"] = row["step_s_median"] / baseline["step_s_median"]
        row["step_cpu_time_vs_ls"] = row["step_cpu_s_median"] / baseline["step_cpu_s_median"]
        row["peak_vs_ls"] = row["peak_mb"] / baseline["peak_mb"]
        row["step_peak_increase_vs_ls"] = row["step_peak_increase_mb"] / baseline["step_peak_increase_mb"]


def print_table(rows: list[dict[str, Any]]) -> None:
    columns = [("step s", "step_s_median", ".2f"), ("x LS", "step_time_vs_ls", ".2f"),
               ("CPU s", "step_cpu_s_median", ".2f"), ("x LS", "step_cpu_time_vs_ls", ".2f"),
               ("peak MiB", "peak_mb", ".0f"), ("x LS", "peak_vs_ls", ".2f"),
               ("step +MiB", "step_peak_increase_mb", ".0f"), ("x LS", "step_peak_increase_vs_ls", ".2f")]
    print(f"{'method':<10} " + " ".join(f"{title:>9}" for title, _, _ in columns))
    for row in rows:
        if row["status"] != "ok":
            print(f"{row['method']:<10} {row['status']}")
            continue
        cells = [format(row.get(key, float("nan")), spec) for _, key, spec in columns]
        print(f"{row['method']:<10} " + " ".join(f"{cell:>9}" for cell in cells))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="folder holding a CelebA copy (either layout)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="image cache folder (default: a temporary folder, deleted afterwards)")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), help="method names to measure")
    parser.add_argument("--batch-size", type=int, default=256, help="images per training step")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per method")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before the timed ones")
    parser.add_argument("--jacobian", choices=("batched", "loop"), default="batched",
                        help="how gradient methods compute the 40 task gradients (the trainer's batched_jacobian)")
    parser.add_argument("--device", default="cpu", help="torch device; auto picks CUDA when present")
    parser.add_argument("--max-memory-gb", type=float, default=None,
                        help="cap on each measuring process's data memory (RLIMIT_DATA), so that a method too "
                             "large for the machine fails alone instead of exhausting its memory")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="CSV file of the results")
    parser.add_argument("--single", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    if args.single:
        if args.max_memory_gb:
            limit = int(args.max_memory_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
        args.result.write_text(json.dumps(measure_method(args)))
        return

    with tempfile.TemporaryDirectory(prefix="celeba_cache_") as temporary:
        if args.cache_dir is None:
            args.cache_dir = Path(temporary)
        rows = [run_child(args, method) for method in args.methods]
    add_ratios(rows)
    atomic_write_text(args.output, rows_to_csv(rows))
    print_table(rows)
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
