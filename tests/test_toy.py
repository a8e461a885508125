"""The toy problem: its functions, its benchmark through the shared trainer, and trajectories."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from benchmarks import train
from benchmarks.runio import seed_everything
from benchmarks.trainer import TrainConfig, Trainer
from benchmarks.toy_trajectories import CONFIG_DIR, STARTS, plot_trajectories, run_trajectory
from datasets import build_benchmark
from datasets.toy.problem import LOWER_BOUND, pareto_set, toy_losses
from methods import REGISTRY, build_method


def by_hand(x1: float, x2: float) -> tuple[float, float]:
    """The CAGrad toy losses written out with math (scale 1)."""
    f1 = math.log(max(abs(0.5 * (-x1 - 7) - math.tanh(-x2)), 5e-6)) + 6
    f2 = math.log(max(abs(0.5 * (-x1 + 3) + math.tanh(-x2) + 2), 5e-6)) + 6
    g1 = ((-x1 + 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    g2 = ((-x1 - 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    c1 = max(math.tanh(0.5 * x2), 0.0)
    c2 = max(math.tanh(-0.5 * x2), 0.0)
    return c1 * f1 + c2 * g1, c1 * f2 + c2 * g2


@pytest.mark.parametrize("point", [(-8.5, 7.5), (9.0, -1.0), (0.0, -8.0), (3.0, 2.0), (0.0, 0.0)])
def test_toy_losses_match_definition(point: tuple[float, float]) -> None:
    expected = by_hand(*point)
    losses = toy_losses(torch.tensor(point, dtype=torch.float64), scale=0.1)
    assert float(losses[0]) == pytest.approx(0.1 * expected[0], rel=1e-12)
    assert float(losses[1]) == pytest.approx(expected[1], rel=1e-12)


def test_origin_is_not_stationary() -> None:
    """(0, 0) is a reference start point; the subgradient of max(·, 0) at 0 must let it move."""
    point = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    losses = toy_losses(point, scale=1.0)
    for k in range(2):
        gradient, = torch.autograd.grad(losses[k], point, retain_graph=True)
        assert float(gradient.norm()) > 1.0


def test_toy_losses_above_lower_bound() -> None:
    grid = torch.linspace(-12, 12, 121, dtype=torch.float64)
    points = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), dim=-1)
    losses = toy_losses(points, scale=1.0)
    assert float(losses.min()) > -LOWER_BOUND
    assert float(losses.min()) < -19.0


def test_pareto_points_are_stationary() -> None:
    """At each Pareto point some convex combination of the two task gradients vanishes."""
    for x1, x2 in pareto_set(9):
        point = torch.tensor([x1, x2], dtype=torch.float64, requires_grad=True)
        losses = toy_losses(point, scale=1.0)
        g1, = torch.autograd.grad(losses[0], point, retain_graph=True)
        g2, = torch.autograd.grad(losses[1], point)
        weight = (x1 + 7.0) / 14.0
        combined = weight * g1 + (1 - weight) * g2
        assert float(combined.norm()) < 1e-5 * max(float(g1.norm()), float(g2.norm()), 1.0)


def test_toy_benchmark_registered() -> None:
    benchmark = build_benchmark("toy", {"start": [1.0, 2.0], "scale": 0.1, "steps_per_epoch": 3})
    model = benchmark.build_model()
    losses = benchmark.task_losses(benchmark.forward(model, None), None)
    raw = toy_losses(torch.tensor([1.0, 2.0], dtype=torch.float64), 0.1)
    torch.testing.assert_close(losses, raw + torch.tensor([2.1, 21.0], dtype=torch.float64))
    assert bool((losses > 0).all())
    assert model.task_specific_parameters() == []


def toy_config(tmp_path: Path, method: str, *overrides: str):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR), job_name="test_toy"):
        return compose(config_name="config", overrides=[
            "dataset=toy", f"method={method}", "logger=csv", f"results_dir={tmp_path}", "progress=false",
            "dataset.steps_per_epoch=15", "dataset.epochs=2", *overrides])


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("method", sorted(REGISTRY))
def test_every_method_trains_toy(tmp_path: Path, method: str) -> None:
    overrides = ("method.hparams.task=l2", "run_name=l2") if method == "stl" else ()
    summary = train.run(toy_config(tmp_path, method, *overrides))
    start = toy_losses(torch.tensor([-8.5, 7.5], dtype=torch.float64), 0.1)
    assert math.isfinite(float(summary["l1"]))
    assert float(summary["l1"]) + float(summary["l2"]) < float(start.sum())
    epochs = read_rows(Path(tmp_path) / "runs" / "toy" / "quick" / train.method_label(toy_config(tmp_path, method, *overrides))
                       / "seed0" / "epochs.csv")
    assert len(epochs) == 2


def test_famo_toy_has_no_weight_decay(tmp_path: Path) -> None:
    assert toy_config(tmp_path, "famo").method.hparams.gamma == 0.0


def train_toy(run_dir: Path, method_name: str, epochs: int) -> dict:
    """Train (or resume) a toy run in ``run_dir`` with fresh objects, as a new process would."""
    config = toy_config(run_dir, method_name)
    seed_everything(0)
    benchmark = build_benchmark("toy", config.dataset)
    method = build_method(method_name, 2, "cpu", **config.method.hparams)
    train_cfg = TrainConfig(epochs=epochs, lr=1e-3, clip_grad_norm=config.method.clip_grad_norm, progress=False)
    return Trainer(benchmark, method, train_cfg, run_dir, torch.device("cpu")).fit()


@pytest.mark.parametrize("method", ["famo", "uw", "dwa", "rlw", "pcgrad", "graddrop", "nashmtl"])
def test_resumed_toy_run_matches(tmp_path: Path, method: str) -> None:
    """Stop after epoch 1, resume from the checkpoint with new objects: same result as a straight run."""
    straight = train_toy(tmp_path / "straight", method, epochs=3)
    train_toy(tmp_path / "resumed", method, epochs=1)
    resumed = train_toy(tmp_path / "resumed", method, epochs=3)
    assert resumed["l1"] == straight["l1"]
    assert resumed["l2"] == straight["l2"]


def test_run_trajectory_shape_and_descent() -> None:
    points = run_trajectory("ls", STARTS[0], steps=40, lr=1e-2)
    assert points.shape == (41, 2)
    np.testing.assert_array_equal(points[0], STARTS[0])
    losses = toy_losses(torch.tensor(points), 0.1).sum(dim=-1)
    assert float(losses[-1]) < float(losses[0])
    np.testing.assert_array_equal(run_trajectory("ls", STARTS[0], steps=40, lr=1e-2), points)


def test_run_trajectory_uses_config_clipping() -> None:
    """PCGrad's config clips the shared gradient to norm 1.0.

    Adam undoes a constant rescaling, so the runs differ only where the clip factor changes
    between steps: from (−7.5, −0.5) the gradient norms exceed 1 and vary.
    """
    clipped = run_trajectory("pcgrad", STARTS[3], steps=30, lr=1e-2)
    unclipped = run_trajectory("pcgrad", STARTS[3], steps=30, lr=1e-2, clip_grad_norm=None)
    assert float(np.abs(clipped - unclipped).max()) > 1e-3


def test_plot_trajectories_writes_png(tmp_path: Path) -> None:
    runs = {"ls": [np.array([[-8.5, 7.5], [-8.0, 7.0]])], "mgda": [np.array([[0.0, 0.0], [0.1, -0.1]])]}
    path = tmp_path / "toy.png"
    plot_trajectories(runs, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
