"""Trajectories of every method on the two-task toy problem, plotted on its loss contours.

``python -m benchmarks.toy_trajectories [--steps 20000] [--lr 1e-3] [--methods ls,cagrad]``
runs each method from the five start points of the Nash-MTL and FAMO toy experiments.
Every run goes through the shared trainer on dataset ``toy`` with the method's own config
(hyperparameters and clipping). The script writes ``results/toy/trajectories.png``: one
panel per method, trajectories on the contours of (L₁ + L₂)/2 with the Pareto set.

:func:`run_trajectory` is the reusable piece: it returns the visited points of one run, and
its ``cost`` argument passes a COST layer to the trainer.
"""
from __future__ import annotations

import argparse
import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from benchmarks.runio import seed_everything
from benchmarks.trainer import TrainConfig, Trainer
from datasets.toy.problem import pareto_set, toy_losses
from datasets.toy.spec import ToyBenchmark
from methods import REGISTRY, build_method

log = logging.getLogger("benchmarks.toy_trajectories")

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
# Start points of the Nash-MTL and FAMO toy experiments.
STARTS: tuple[tuple[float, float], ...] = ((-8.5, 7.5), (0.0, 0.0), (9.0, 9.0), (-7.5, -0.5), (9.0, -1.0))
# STL optimises one task only and is left out of the default method list.
DEFAULT_METHODS = tuple(name for name in REGISTRY if name != "stl")


def method_config(method_name: str, dataset: str = "toy") -> dict[str, Any]:
    """Return the composed ``method`` config group (with its method_dataset override) as a dict."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR), job_name="toy_trajectories"):
        cfg = compose(config_name="config", overrides=[f"dataset={dataset}", f"method={method_name}"])
    return OmegaConf.to_container(cfg.method, resolve=True)


def run_trajectory(method_name: str, start: Sequence[float], steps: int, lr: float, cost: Any | None = None, *,
                   scale: float = 0.1, seed: int = 0, hparams: Mapping[str, Any] | None = None,
                   clip_grad_norm: float | None | str = "config") -> np.ndarray:
    """Run one method from ``start`` for ``steps`` Adam steps; return the visited points, shape (steps + 1, 2).

    The run goes through :class:`benchmarks.trainer.Trainer` on the toy benchmark, in a
    temporary run folder. Hyperparameters come from the method's config, updated by
    ``hparams``, and so does the clipping unless ``clip_grad_norm`` is given. Row 0 is the
    start; row t is the point after optimiser step t. A teleport by ``cost`` shows up as a
    jump between two rows.
    """
    config = method_config(method_name)
    method_hparams = {**(config.get("hparams") or {}), **dict(hparams or {})}
    clip = config.get("clip_grad_norm") if clip_grad_norm == "config" else clip_grad_norm

    benchmark = ToyBenchmark({"start": list(start), "scale": scale, "steps_per_epoch": steps})
    seed_everything(seed)
    method = build_method(method_name, len(benchmark.tasks), "cpu", **method_hparams)
    train_cfg = TrainConfig(epochs=1, lr=lr, clip_grad_norm=clip, seed=seed, progress=False)
    with tempfile.TemporaryDirectory(prefix="toy-trajectory-") as run_dir:
        trainer = Trainer(benchmark, method, train_cfg, Path(run_dir), torch.device("cpu"), cost=cost,
                          run_info={"name": f"{method_name}-toy"})
        point = trainer.model.x
        visited = [point.detach().clone()]
        trainer.optimizer.register_step_post_hook(lambda *_: visited.append(point.detach().clone()))
        trainer.fit()
    return torch.stack(visited).numpy()


def plot_trajectories(trajectories: Mapping[str, Sequence[np.ndarray]], path: Path, scale: float = 0.1,
                      subtitle: str = "") -> None:
    """Draw one panel per method: trajectories on the contours of (L₁ + L₂)/2, starts and the Pareto set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(-10.0, 10.0, 300)
    xx, yy = np.meshgrid(grid, grid)
    points = torch.tensor(np.stack([xx, yy], axis=-1), dtype=torch.float64)
    mean_loss = toy_losses(points, scale).mean(dim=-1).numpy()
    front = pareto_set()

    columns = 4
    rows = math.ceil(len(trajectories) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.2 * rows), squeeze=False)
    for axis in axes.flat[len(trajectories):]:
        axis.axis("off")
    for axis, (name, runs) in zip(axes.flat, trajectories.items()):
        axis.contour(xx, yy, mean_loss, levels=20, cmap="viridis", linewidths=0.6)
        axis.plot(front[:, 0], front[:, 1], color="0.5", linewidth=3, zorder=1)
        for run in runs:
            axis.plot(run[:, 0], run[:, 1], color="tab:red", linewidth=1.2, zorder=3)
            axis.plot(run[0, 0], run[0, 1], "o", color="k", markersize=4, zorder=4)
            axis.plot(run[-1, 0], run[-1, 1], "*", color="tab:red", markersize=7, zorder=5)
        axis.set_title(name)
        axis.set_xlim(-10, 10)
        axis.set_ylim(-10, 10)
        axis.set_aspect("equal")
        axis.tick_params(labelsize=7)
    figure.suptitle(f"Toy problem, scale of task 1 = {scale:g}: trajectories on (L1+L2)/2, grey = Pareto set"
                    + (f"\n{subtitle}" if subtitle else ""))
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20000, help="Adam steps per run")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--scale", type=float, default=0.1, help="factor of task 1's loss")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma-separated method names")
    parser.add_argument("--out", type=Path, default=Path("results/toy/trajectories.png"), help="output PNG")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    trajectories: dict[str, list[np.ndarray]] = {}
    for name in args.methods.split(","):
        started = time.perf_counter()
        trajectories[name] = [run_trajectory(name, start, args.steps, args.lr, scale=args.scale) for start in STARTS]
        final = np.array([run[-1] for run in trajectories[name]])
        final_losses = toy_losses(torch.tensor(final), args.scale).numpy()
        print(f"{name:9s} {time.perf_counter() - started:7.1f} s  end points "
              + "  ".join(f"({x:+.2f},{y:+.2f}) L=({l1:+.2f},{l2:+.2f})"
                          for (x, y), (l1, l2) in zip(final, final_losses)), flush=True)
    plot_trajectories(trajectories, args.out, args.scale, subtitle=f"Adam, {args.steps} steps, lr {args.lr:g}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
