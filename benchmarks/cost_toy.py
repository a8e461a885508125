"""Base method versus base method + COST on the two-task toy problem, side by side.

``python -m benchmarks.cost_toy [--methods ls,fairgrad] [--epochs 10] [--steps-per-epoch 1000]``
runs each method with and without the COST layer ("Continual Optimization with Symmetry
Teleportation for Multi-Task Learning", Zhou et al., NeurIPS 2025). Every run starts from
one of the five start points of the Nash-MTL and FAMO toy experiments and goes through the
shared trainer. Outputs: ``results/toy/cost_trajectories.png`` with one panel per (method,
with/without COST) and teleport jumps drawn as dashed segments, and
``results/toy/cost_trajectories.csv`` with the end points, final losses and teleport counts.

COST settings come from ``configs/cost/toy.yaml`` (a dense displacement of the point x,
because PEFT cannot wrap a bare parameter); ``--cost-override key=value`` changes them.
The per-epoch teleport cap spaces teleports out, so runs have several epochs of
``--steps-per-epoch`` steps.
"""
from __future__ import annotations

import argparse
import csv
import logging
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from benchmarks.runio import seed_everything
from benchmarks.toy_trajectories import CONFIG_DIR, STARTS, method_config
from benchmarks.trainer import TrainConfig, Trainer
from cost import build_cost_layer
from datasets.toy.problem import pareto_set, toy_losses
from datasets.toy.spec import ToyBenchmark
from methods import build_method

log = logging.getLogger("benchmarks.cost_toy")


@dataclass
class Trajectory:
    """Points visited by one run: row 0 is the start, row t the point after optimiser step t.

    ``jumps`` contains (row, before, after) for every teleport. The teleport moved the point
    from ``before`` (= row ``row``) to ``after``, and the next optimiser step then led from
    ``after`` to row ``row + 1``.
    """

    points: np.ndarray
    jumps: list[tuple[int, np.ndarray, np.ndarray]]

    @property
    def teleports(self) -> int:
        return len(self.jumps)

    def segments(self) -> list[np.ndarray]:
        """Split the polyline at every teleport; each later piece starts at the teleported point."""
        pieces = []
        first = 0
        head: list[np.ndarray] = []
        for row, _, after in self.jumps:
            pieces.append(np.array(head + list(self.points[first : row + 1])))
            head = [after]
            first = row + 1
        pieces.append(np.array(head + list(self.points[first:])))
        return [piece for piece in pieces if len(piece)]


def cost_config(overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Return ``configs/cost/toy.yaml`` with command-line style overrides, as a dict."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR), job_name="cost_toy"):
        cfg = compose(config_name="config", overrides=["dataset=toy", "cost=toy",
                                                       *[f"cost.{item}" for item in overrides]])
    return OmegaConf.to_container(cfg.cost, resolve=True)


def run(method_name: str, start: Sequence[float], epochs: int, steps_per_epoch: int, lr: float,
        cost_settings: Mapping[str, Any] | None, scale: float = 0.1, seed: int = 0) -> Trajectory:
    """Run one method (with COST when ``cost_settings`` is given) through the shared trainer."""
    config = method_config(method_name)
    benchmark = ToyBenchmark({"start": list(start), "scale": scale, "steps_per_epoch": steps_per_epoch})
    seed_everything(seed)
    method = build_method(method_name, len(benchmark.tasks), "cpu", **(config.get("hparams") or {}))
    layer = build_cost_layer(cost_settings) if cost_settings else None
    train_cfg = TrainConfig(epochs=epochs, lr=lr, clip_grad_norm=config.get("clip_grad_norm"), seed=seed,
                            progress=False)
    with tempfile.TemporaryDirectory(prefix="cost-toy-") as run_dir:
        trainer = Trainer(benchmark, method, train_cfg, Path(run_dir), torch.device("cpu"), cost=layer,
                          run_info={"name": f"{method_name}-toy"})
        point = trainer.model.x
        visited = [point.detach().clone()]
        trainer.optimizer.register_step_post_hook(lambda *_: visited.append(point.detach().clone()))
        jumps: list[tuple[int, np.ndarray, np.ndarray]] = []
        if layer is not None:
            teleport = layer.maybe_teleport

            def recording_teleport(ctx) -> bool:
                before = point.detach().clone().numpy()
                moved = teleport(ctx)
                if moved:
                    jumps.append((len(visited) - 1, before, point.detach().clone().numpy()))
                return moved

            layer.maybe_teleport = recording_teleport
        trainer.fit()
    return Trajectory(points=torch.stack(visited).numpy(), jumps=jumps)


def plot(results: Mapping[str, Sequence[Trajectory]], path: Path, scale: float) -> None:
    """Draw one panel per run name: trajectories on (L₁ + L₂)/2, the Pareto set and teleport jumps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(-10.0, 10.0, 300)
    xx, yy = np.meshgrid(grid, grid)
    mean_loss = toy_losses(torch.tensor(np.stack([xx, yy], axis=-1)), scale).mean(dim=-1).numpy()
    front = pareto_set()

    columns = 2
    rows = math.ceil(len(results) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 4.2 * rows), squeeze=False)
    for axis in axes.flat[len(results):]:
        axis.axis("off")
    for axis, (name, runs) in zip(axes.flat, results.items()):
        axis.contour(xx, yy, mean_loss, levels=20, cmap="viridis", linewidths=0.6)
        axis.plot(front[:, 0], front[:, 1], color="0.5", linewidth=3, zorder=1)
        for trajectory in runs:
            points = trajectory.points
            for segment in trajectory.segments():
                axis.plot(segment[:, 0], segment[:, 1], color="tab:red", linewidth=1.2, zorder=3)
            for _, before, after in trajectory.jumps:
                axis.plot([before[0], after[0]], [before[1], after[1]], "--", color="tab:blue", linewidth=1.0,
                          zorder=4)
                axis.plot(after[0], after[1], "o", color="tab:blue", markersize=2.5, zorder=4)
            axis.plot(points[0, 0], points[0, 1], "o", color="k", markersize=4, zorder=5)
            axis.plot(points[-1, 0], points[-1, 1], "*", color="tab:red", markersize=8, zorder=6)
        total = sum(t.teleports for t in runs)
        axis.set_title(f"{name}" + (f" ({total} teleports)" if "cost" in name else ""), fontsize=10)
        axis.set_xlim(-10, 10)
        axis.set_ylim(-10, 10)
        axis.set_aspect("equal")
        axis.tick_params(labelsize=7)
    figure.suptitle(f"Toy problem (task 1 scale {scale:g}): red = trajectory, blue dashed = teleport, "
                    "grey = Pareto set", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def write_summary(results: Mapping[str, Sequence[Trajectory]], path: Path, scale: float) -> None:
    """Write one CSV row per (run name, start): end point, final losses L₁·scale and L₂, teleports."""
    rows = []
    for name, runs in results.items():
        for start, trajectory in zip(STARTS, runs):
            end = trajectory.points[-1]
            losses = toy_losses(torch.tensor(end), scale).tolist()
            rows.append({"run": name, "start_x1": start[0], "start_x2": start[1], "end_x1": float(end[0]),
                         "end_x2": float(end[1]), "loss1": losses[0], "loss2": losses[1],
                         "teleports": trajectory.teleports})
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="ls,fairgrad", help="comma-separated base methods")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per run (at most max_per_epoch teleports each)")
    parser.add_argument("--steps-per-epoch", type=int, default=1000, help="Adam steps per epoch")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--scale", type=float, default=0.1, help="factor of task 1's loss")
    parser.add_argument("--cost-override", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of configs/cost/toy.yaml (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("results/toy/cost_trajectories.png"), help="output PNG")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    settings = cost_config(args.cost_override)
    results: dict[str, list[Trajectory]] = {}
    for method_name in args.methods.split(","):
        for label, cost_settings in ((method_name, None), (f"{method_name} + cost", settings)):
            started = time.perf_counter()
            results[label] = [run(method_name, start, args.epochs, args.steps_per_epoch, args.lr, cost_settings,
                                  scale=args.scale) for start in STARTS]
            ends = "  ".join(f"({t.points[-1][0]:+.2f},{t.points[-1][1]:+.2f})" for t in results[label])
            teleports = sum(t.teleports for t in results[label])
            print(f"{label:18s} {time.perf_counter() - started:7.1f} s  teleports {teleports:3d}  ends {ends}",
                  flush=True)
    plot(results, args.out, args.scale)
    write_summary(results, args.out.with_suffix(".csv"), args.scale)
    print(f"wrote {args.out} and {args.out.with_suffix('.csv')}")


if __name__ == "__main__":
    main()
