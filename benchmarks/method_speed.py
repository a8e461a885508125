"""Step time and peak memory of every MTL method relative to LS and to a per-task-gradient floor.

Usage: ``python -m benchmarks.method_speed [--models qm9 segnet] [--methods ls,mgda,...]
[--steps 5] [--warmup 1] [--threads 1] [--jacobian loop|batched]
[--output results/benchmarks/method_speed.csv]``

Models (CPU):

- ``qm9``: the QM9 MPNN at the paper's width (64) on one batch of 120 real molecules from
  the cached 2,000-molecule QM9 subset under ``data_root``. Without that cache the batch is
  120 generated molecules of QM9-like size (9–29 atoms, complete graphs), and the
  ``batch`` column records which one was timed.
- ``segnet``: SegNet-MTAN with the published filters and NYUv2's three tasks on a small
  batch (2 images, 96×128 by default) of random tensors.

Each (model, method) runs in its own Python process, which builds the shared
:class:`benchmarks.trainer.Trainer` with the method's config (reference clipping included)
and times ``Trainer.train_step`` on one fixed batch after ``--warmup`` untimed steps. The
pseudo-method ``floor`` times one forward pass plus K backward passes (one per task) of
the shared parameters, the least work any method that needs per-task gradients does.

Time: wall-clock seconds per step (median) and the process CPU seconds per step (all
threads), which depends less on other load on a shared machine. Memory: the process's
peak resident set size (``ru_maxrss``) minus its resident size just before the first step,
so a method's peak includes the warm-up step. Python's tracemalloc is not used because it
does not see PyTorch's tensor memory.
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
from typing import Any, Mapping

import torch

from benchmarks.runio import atomic_write_text, rows_to_csv, seed_everything
from datasets.base import Benchmark, Metric, MetricAccumulator, Splits

log = logging.getLogger("benchmarks.method_speed")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = Path("results/benchmarks/method_speed.csv")
FLOOR = "floor"
NYUV2_TASKS = {"segmentation": 13, "depth": 1, "normal": 3}


def resident_mb() -> float:
    """Return this process's current resident set size in MiB (Linux ``/proc``)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS missing from /proc/self/status")


def peak_resident_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# Models ---------------------------------------------------------------------------------------------
class FixedBatchAccumulator(MetricAccumulator):
    def update(self, outputs: Mapping[str, torch.Tensor], batch: Any) -> None:
        pass

    def compute(self) -> dict[str, float]:
        return {}


class SyntheticDenseBenchmark(Benchmark):
    """SegNet-MTAN with NYUv2's tasks on one batch of random tensors (timing only, no metrics)."""

    name = "segnet_synthetic"
    tasks = tuple(NYUV2_TASKS)
    metrics: tuple[Metric, ...] = ()

    def __init__(self, batch_size: int, height: int, width: int):
        super().__init__({})
        generator = torch.Generator().manual_seed(0)
        normal = torch.randn(batch_size, 3, height, width, generator=generator)
        self.batch = (
            torch.rand(batch_size, 3, height, width, generator=generator),
            {
                "segmentation": torch.randint(0, NYUV2_TASKS["segmentation"], (batch_size, height, width),
                                              generator=generator),
                "depth": torch.rand(batch_size, 1, height, width, generator=generator) + 0.5,
                "normal": normal / normal.norm(dim=1, keepdim=True),
            },
        )

    def build_splits(self, seed: int) -> Splits:
        return Splits(train=[self.batch], val=None, test=[self.batch])

    def build_model(self):
        from datasets.dense.model import build_segnet

        return build_segnet("mtan", NYUV2_TASKS)

    def to_device(self, batch: Any, device: torch.device) -> Any:
        return batch

    def task_losses(self, outputs: Mapping[str, torch.Tensor], batch: Any) -> torch.Tensor:
        from datasets.dense.losses import depth_loss, normal_loss, segmentation_loss

        targets = batch[1]
        return torch.stack([
            segmentation_loss(outputs["segmentation"], targets["segmentation"]),
            depth_loss(outputs["depth"], targets["depth"]),
            normal_loss(outputs["normal"], targets["normal"]),
        ])

    def new_accumulator(self) -> FixedBatchAccumulator:
        return FixedBatchAccumulator()


def synthetic_molecules(count: int, seed: int = 0):
    """Return ``count`` random molecules of QM9-like size (9–29 atoms) on complete graphs."""
    from torch_geometric.data import Data

    from datasets.qm9.data import complete_graph_with_distance

    generator = torch.Generator().manual_seed(seed)
    graphs = []
    for _ in range(count):
        atoms = int(torch.randint(9, 30, (1,), generator=generator))
        heavy = torch.randint(0, 5, (atoms,), generator=generator)
        x = torch.zeros(atoms, 11)
        x[torch.arange(atoms), heavy] = 1.0
        x[:, 5] = heavy.float() + 1.0
        bonds = torch.stack([torch.arange(atoms - 1), torch.arange(1, atoms)])
        edge_index = torch.cat([bonds, bonds.flip(0)], dim=1)
        edge_attr = torch.zeros(edge_index.shape[1], 4)
        edge_attr[:, 0] = 1.0
        data = Data(x=x, pos=torch.randn(atoms, 3, generator=generator) * 1.5, edge_index=edge_index,
                    edge_attr=edge_attr, y=torch.randn(1, 19, generator=generator))
        graph = complete_graph_with_distance(data)
        graph.y_raw = graph.y[:, :11]
        graph.y = graph.y[:, :11]
        graphs.append(graph)
    return graphs


class SyntheticQM9Benchmark(Benchmark):
    """The QM9 MPNN on one batch of generated molecules (used when the QM9 cache is missing)."""

    name = "qm9_synthetic"

    def __init__(self, qm9_cfg: Mapping[str, Any], batch_size: int):
        from datasets.qm9.spec import QM9Benchmark

        super().__init__(qm9_cfg)
        self.reference = QM9Benchmark(qm9_cfg)
        self.tasks = self.reference.tasks
        self.metrics = ()
        from torch_geometric.loader import DataLoader

        self.batch = next(iter(DataLoader(synthetic_molecules(batch_size), batch_size=batch_size)))

    def build_splits(self, seed: int) -> Splits:
        return Splits(train=[self.batch], val=None, test=[self.batch])

    def build_model(self):
        return self.reference.build_model()

    def to_device(self, batch: Any, device: torch.device) -> Any:
        return batch.to(device)

    def forward(self, model, batch):
        return model(batch)

    def task_losses(self, outputs: Mapping[str, torch.Tensor], batch: Any) -> torch.Tensor:
        return self.reference.task_losses(outputs, batch)

    def new_accumulator(self) -> FixedBatchAccumulator:
        return FixedBatchAccumulator()


def compose_config(method: str, data_root: Path):
    from hydra import compose, initialize_config_dir

    overrides = ["dataset=qm9", "profile=paper", f"method={method}", "logger=csv", f"data_root={data_root}",
                 "dataset.subset=2000", "dataset.split.test=200", "dataset.split.val=200", "dataset.batch_size=120"]
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO_ROOT / "configs"), job_name="method_speed"):
        return compose(config_name="config", overrides=overrides)


def build_benchmark_for(model: str, cfg, args: argparse.Namespace) -> tuple[Benchmark, str]:
    """Return the benchmark to time and a label of its batch (real or synthetic)."""
    if model == "segnet":
        return SyntheticDenseBenchmark(args.segnet_batch, args.segnet_height, args.segnet_width), (
            f"synthetic {args.segnet_batch}x3x{args.segnet_height}x{args.segnet_width}")
    from datasets import build_benchmark

    benchmark = build_benchmark("qm9", cfg.dataset)
    try:
        benchmark.load_graphs()
        return benchmark, "120 real molecules"
    except Exception as error:  # noqa: BLE001 - any loading failure falls back to generated molecules
        log.warning("QM9 graphs unavailable (%s); timing 120 generated molecules instead", error)
        return SyntheticQM9Benchmark(cfg.dataset, 120), "120 generated molecules"


# One measurement (worker process) -------------------------------------------------------------------
def measure(model: str, method_name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Time one (model, method) in this process and return one result row."""
    from benchmarks.train import clip_norm
    from benchmarks.trainer import TrainConfig, Trainer
    from methods import build_method

    torch.set_num_threads(args.threads)
    cfg = compose_config("ls" if method_name == FLOOR else method_name, args.data_root)
    seed_everything(0)
    benchmark, batch_label = build_benchmark_for(model, cfg, args)
    method = build_method(cfg.method.name, len(benchmark.tasks), "cpu", **(cfg.method.get("hparams") or {}))
    train_cfg = TrainConfig(epochs=1, lr=1e-4, clip_grad_norm=clip_norm(cfg), seed=0, progress=False,
                            batched_jacobian=args.jacobian == "batched")
    with tempfile.TemporaryDirectory(prefix="method_speed_") as run_dir:
        trainer = Trainer(benchmark, method, train_cfg, Path(run_dir), torch.device("cpu"))
        if hasattr(trainer.splits.train, "set_epoch"):
            trainer.splits.train.set_epoch(0)
        batch = benchmark.to_device(next(iter(trainer.splits.train)), torch.device("cpu"))

        if method_name == FLOOR:
            def step(index: int) -> None:
                losses = benchmark.task_losses(benchmark.forward(trainer.model, batch), batch)
                for k in range(losses.numel()):
                    torch.autograd.grad(losses[k], trainer.shared_params, retain_graph=k + 1 < losses.numel())
        else:
            def step(index: int) -> None:
                trainer.train_step(batch, epoch=0, step=index)

        resident_before = resident_mb()
        for index in range(args.warmup):
            step(index)
        wall, cpu = [], []
        load_before = os.getloadavg()[0]
        for index in range(args.warmup, args.warmup + args.steps):
            started, started_cpu = time.perf_counter(), time.process_time()
            step(index)
            wall.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
        peak = peak_resident_mb()

    if method_name == FLOOR:
        path = "loop (floor)"
    elif method.needs_jacobian:
        path = "batched (vmap)" if trainer.jacobian.batched else "loop"
        if args.jacobian == "batched" and not trainer.jacobian.batched:
            path = "loop (fallback from batched)"
    else:
        path = "none"
    return {
        "model": model, "method": method_name, "batch": batch_label, "tasks": len(benchmark.tasks),
        "shared_params": sum(p.numel() for p in trainer.shared_params),
        "jacobian_path": path, "clip_grad_norm": train_cfg.clip_grad_norm,
        "step_s_median": statistics.median(wall), "step_s_min": min(wall),
        "step_cpu_s_median": statistics.median(cpu), "rss_before_mb": round(resident_before, 1),
        "peak_rss_mb": round(peak, 1), "peak_delta_mb": round(peak - resident_before, 1),
        "load_before": load_before, "load_after": os.getloadavg()[0], "threads": args.threads, "steps": args.steps,
    }


def run_worker(model: str, method_name: str, args: argparse.Namespace) -> dict[str, Any] | None:
    """Run :func:`measure` in a new Python process; return its row, or None when it failed."""
    command = [sys.executable, "-m", "benchmarks.method_speed", "--worker", model, method_name,
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads),
               "--jacobian", args.jacobian,
               "--data-root", str(args.data_root), "--segnet-batch", str(args.segnet_batch),
               "--segnet-height", str(args.segnet_height), "--segnet-width", str(args.segnet_width)]
    environment = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, env=environment)
    if result.returncode != 0:
        log.error("%s/%s failed (exit %d): %s", model, method_name, result.returncode, result.stderr[-2000:])
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Add step time and peak-memory ratios to LS and step-time ratio to the floor, per model."""
    for row in rows:
        same_model = {r["method"]: r for r in rows if r["model"] == row["model"]}
        ls, floor = same_model.get("ls"), same_model.get(FLOOR)
        for key in ("step_s_median", "step_cpu_s_median"):
            suffix = key.removeprefix("step_").removesuffix("_median")
            row[f"{suffix}_vs_ls"] = round(row[key] / ls[key], 2) if ls else None
            row[f"{suffix}_vs_floor"] = round(row[key] / floor[key], 2) if floor else None
        row["peak_delta_vs_ls"] = (round(row["peak_delta_mb"] / ls["peak_delta_mb"], 2)
                                   if ls and ls["peak_delta_mb"] > 0 else None)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from methods import REGISTRY

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["qm9", "segnet"], choices=["qm9", "segnet"])
    parser.add_argument("--methods", default=",".join([FLOOR, *[m for m in REGISTRY if m != "stl"]]),
                        help="comma-separated method names; 'floor' = forward + K backward passes")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per method")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before timing")
    parser.add_argument("--threads", type=int, default=1, help="torch and OpenMP threads per process")
    parser.add_argument("--jacobian", choices=["loop", "batched"], default="loop",
                        help="per-task gradients: loop of K backward passes, or batched (vmap) as the "
                             "trainer's default; batched needs about K times the memory of one backward pass")
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("MTL_DATA_ROOT", "data")),
                        help="folder holding the QM9 cache (data_root of the suite)")
    parser.add_argument("--segnet-batch", type=int, default=2, help="images per SegNet-MTAN batch")
    parser.add_argument("--segnet-height", type=int, default=96, help="image height in pixels (multiple of 32)")
    parser.add_argument("--segnet-width", type=int, default=128, help="image width in pixels (multiple of 32)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="CSV file to write")
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "METHOD"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.worker:
        print(json.dumps(measure(args.worker[0], args.worker[1], args)))
        return

    rows = []
    for model in args.models:
        for method_name in args.methods.split(","):
            row = run_worker(model, method_name, args)
            if row is None:
                continue
            rows.append(row)
            print(f"{model:7s} {method_name:9s} {row['step_s_median']:8.3f} s/step  cpu {row['step_cpu_s_median']:8.3f} s"
                  f"  peak +{row['peak_delta_mb']:8.1f} MiB  jacobian {row['jacobian_path']}", flush=True)
    add_ratios(rows)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.output, rows_to_csv(rows))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
