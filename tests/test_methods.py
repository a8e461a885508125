"""Unit tests of the MTL methods on tiny matrices: weights, invariances, degenerate Jacobians, state."""
from __future__ import annotations

import logging
import math
from pathlib import Path

import cvxpy
import numpy as np
import pytest
import torch
import yaml

from methods import REGISTRY, build_method
from methods.cagrad import cagrad_weights
from methods.fairgrad import fairgrad_weights
from methods.graddrop import graddrop_direction
from methods.gramian import ZERO_GRADIENT_COUNTER, GramianMethod
from methods.imtl import imtl_g_weights
from methods.mgda import min_norm_on_segment, min_norm_weights, project_to_simplex
from methods.nash_mtl import SOLVER_FAILURE_COUNTER, NashMTL
from methods.pcgrad import pcgrad_weights

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "method"
LOSS_WEIGHTING = ("ls", "si", "rlw", "dwa", "uw", "famo", "stl")
GRADIENT_METHODS = ("mgda", "graddrop", "pcgrad", "cagrad", "imtl_g", "nashmtl", "fairgrad")
# Gradient methods whose weights are a deterministic function of the Gramian.
GRAMIAN_METHODS = ("mgda", "cagrad", "imtl_g", "nashmtl", "fairgrad")


def random_jacobian(num_tasks: int = 3, dim: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randn(num_tasks, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def make(name: str, num_tasks: int = 3, **hparams):
    if name == "stl":
        hparams.setdefault("task", 0)
    return build_method(name, num_tasks, **hparams)


def exact_min_norm(gramian: np.ndarray) -> np.ndarray:
    weights = cvxpy.Variable(gramian.shape[0])
    root = np.linalg.cholesky(gramian + 1e-12 * np.eye(gramian.shape[0]))
    problem = cvxpy.Problem(cvxpy.Minimize(cvxpy.sum_squares(root.T @ weights)), [weights >= 0, cvxpy.sum(weights) == 1])
    problem.solve(solver="CLARABEL")
    return weights.value


# Registry and configs ------------------------------------------------------------------------------
def test_registry_lists_every_method() -> None:
    assert set(REGISTRY) == set(LOSS_WEIGHTING) | set(GRADIENT_METHODS)


@pytest.mark.parametrize("name", LOSS_WEIGHTING)
def test_loss_weighting_needs_no_jacobian(name: str) -> None:
    assert make(name).needs_jacobian is False


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_gradient_methods_need_jacobian(name: str) -> None:
    assert make(name).needs_jacobian is True


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_config_builds_its_method(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    assert set(config) == {"name", "clip_grad_norm", "hparams"}
    hparams = dict(config["hparams"] or {})
    if config["name"] == "stl":
        hparams["task"] = 0
    method = build_method(config["name"], 3, **hparams)
    assert method.name == config["name"]


def test_unknown_hyperparameter_raises() -> None:
    with pytest.raises(TypeError, match="unknown hyperparameters"):
        build_method("cagrad", 2, cc=0.4)


# Pure weight functions on tiny matrices -----------------------------------------------------------
def test_min_norm_segment_interior() -> None:
    gamma, cost = min_norm_on_segment(1.0, 0.0, 1.0)
    assert gamma == pytest.approx(0.5)
    assert cost == pytest.approx(0.5)


def test_min_norm_segment_end_points() -> None:
    assert min_norm_on_segment(1.0, 2.0, 5.0) == (0.999, 1.0)
    assert min_norm_on_segment(5.0, 2.0, 1.0) == (0.001, 1.0)


def test_simplex_projection() -> None:
    projected = project_to_simplex(np.array([0.8, 0.6, -0.5]))
    np.testing.assert_allclose(projected, [0.6, 0.4, 0.0])


def test_min_norm_orthogonal_pair() -> None:
    np.testing.assert_allclose(min_norm_weights(torch.eye(2, dtype=torch.float64)), [0.5, 0.5])


@pytest.mark.parametrize("solver", ["projected_gradient", "frank_wolfe"])
def test_min_norm_close_to_exact(solver: str) -> None:
    jacobian = random_jacobian(4, 7, seed=3)
    gramian = (jacobian @ jacobian.T).numpy()
    weights = min_norm_weights(gramian, solver=solver)
    exact = exact_min_norm(gramian)
    assert weights.sum() == pytest.approx(1.0)
    assert float(weights @ gramian @ weights) == pytest.approx(float(exact @ gramian @ exact), rel=1e-3)


def test_pcgrad_keeps_aligned_gradients() -> None:
    gramian = torch.tensor([[1.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(pcgrad_weights(gramian, [[0, 1], [0, 1]]), torch.ones(2, dtype=torch.float64))


def test_pcgrad_projects_conflicting_pair() -> None:
    # Unit vectors at 120°: ⟨g1, g2⟩ = −0.5; each removes −0.5 of the other.
    gramian = torch.tensor([[1.0, -0.5], [-0.5, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(pcgrad_weights(gramian, [[1], [0]]), torch.tensor([1.5, 1.5], dtype=torch.float64))


def test_pcgrad_projection_is_orthogonal() -> None:
    jacobian = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    # Task 0 is projected against task 1; task 1 is left as it is.
    weights = pcgrad_weights(jacobian @ jacobian.T, [[1], []])
    projected_first = weights @ jacobian - jacobian[1]
    assert float(projected_first @ jacobian[1]) == pytest.approx(0.0, abs=1e-12)
    torch.testing.assert_close(projected_first, torch.tensor([0.5, 0.5], dtype=torch.float64))


def test_imtl_g_equal_projections() -> None:
    jacobian = random_jacobian(4, 9, seed=1)
    weights = imtl_g_weights(jacobian @ jacobian.T)
    update = weights @ jacobian
    projections = (jacobian / jacobian.norm(dim=1, keepdim=True)) @ update
    assert float(weights.sum()) == pytest.approx(1.0)
    torch.testing.assert_close(projections, projections[0].expand(4), rtol=1e-9, atol=1e-12)


def test_cagrad_zero_c_is_sum() -> None:
    jacobian = random_jacobian(3, 5, seed=2)
    shared, _, converged = cagrad_weights(jacobian @ jacobian.T, c=0.0)
    assert converged
    torch.testing.assert_close(shared, torch.ones(3, dtype=torch.float64))


def test_cagrad_within_ball_of_mean() -> None:
    """CAGrad's d satisfies ‖d − g₀‖ = c‖g₀‖ (before the K/(1 + c²) scaling)."""
    jacobian = random_jacobian(3, 5, seed=4)
    c = 0.4
    shared, _, _ = cagrad_weights(jacobian @ jacobian.T, c=c, rescale=0)
    direction = shared @ jacobian / 3
    mean = jacobian.mean(dim=0)
    assert float((direction - mean).norm()) == pytest.approx(c * float(mean.norm()), rel=1e-6)


def test_nash_fixed_point() -> None:
    jacobian = random_jacobian(3, 6, seed=5)
    method = NashMTL(3)
    aggregation = method.aggregate(jacobian, torch.ones(3, dtype=torch.float64))
    alpha = aggregation.weights
    gramian = jacobian @ jacobian.T
    torch.testing.assert_close(alpha * (gramian @ alpha), torch.ones(3, dtype=torch.float64), rtol=1e-5, atol=0)
    assert float(aggregation.shared_grad.norm()) == pytest.approx(math.sqrt(3), rel=1e-5)


def test_fairgrad_alpha_one_matches_nash() -> None:
    jacobian = random_jacobian(3, 6, seed=5)
    gramian = jacobian @ jacobian.T
    weights, residual = fairgrad_weights(gramian, 1.0)
    nash = NashMTL(3).aggregate(jacobian, torch.ones(3, dtype=torch.float64)).weights
    assert residual < 1e-9
    torch.testing.assert_close(weights, nash, rtol=1e-5, atol=0)


def test_fairgrad_alpha_two_condition() -> None:
    jacobian = random_jacobian(3, 6, seed=6)
    gramian = jacobian @ jacobian.T
    weights, residual = fairgrad_weights(gramian, 2.0)
    assert residual < 1e-9
    torch.testing.assert_close(gramian @ weights, weights.pow(-0.5), rtol=1e-8, atol=0)


def test_graddrop_keeps_one_sign_per_coordinate() -> None:
    jacobian = torch.tensor([[1.0, -2.0, 3.0, 0.0], [-1.0, -1.0, 1.0, 0.0]], dtype=torch.float64)
    # Purity: [0.5, 0, 1, 0.5]. Draws below the purity keep positives, above keep negatives.
    direction = graddrop_direction(jacobian, torch.tensor([0.4, 0.5, 0.5, 0.1], dtype=torch.float64))
    torch.testing.assert_close(direction, torch.tensor([1.0, -3.0, 4.0, 0.0], dtype=torch.float64))
    direction = graddrop_direction(jacobian, torch.tensor([0.6, 0.5, 0.5, 0.9], dtype=torch.float64))
    torch.testing.assert_close(direction, torch.tensor([-1.0, -3.0, 4.0, 0.0], dtype=torch.float64))


# Invariances --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", GRAMIAN_METHODS)
def test_permutation_equivariance(name: str) -> None:
    jacobian = random_jacobian(3, 6, seed=7)
    losses = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    order = torch.tensor([2, 0, 1])
    base = make(name).aggregate(jacobian, losses)
    permuted = make(name).aggregate(jacobian[order], losses[order])
    torch.testing.assert_close(permuted.shared_grad, base.shared_grad, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("name", ["mgda", "imtl_g", "nashmtl", "fairgrad"])
def test_update_direction_scale_invariant(name: str) -> None:
    """Scaling every task gradient by the same factor keeps the update's direction."""
    jacobian = random_jacobian(3, 6, seed=8)
    losses = torch.ones(3, dtype=torch.float64)
    base = make(name).aggregate(jacobian, losses).shared_grad
    scaled = make(name).aggregate(10.0 * jacobian, losses).shared_grad
    torch.testing.assert_close(scaled / scaled.norm(), base / base.norm(), rtol=1e-4, atol=1e-7)


# Degenerate Jacobians ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mgda", "pcgrad", "cagrad", "imtl_g", "nashmtl", "fairgrad"])
def test_zero_gradient_task_left_out(name: str, caplog: pytest.LogCaptureFixture) -> None:
    jacobian = random_jacobian(3, 6, seed=9)
    jacobian[1] = 0.0
    method = make(name, shuffle=False) if name == "pcgrad" else make(name)
    losses = torch.ones(3, dtype=torch.float64)
    with caplog.at_level(logging.WARNING):
        aggregation = method.aggregate(jacobian, losses)
    assert float(aggregation.weights[1]) == 0.0
    assert float(aggregation.task_loss_weights[1]) == 0.0
    assert bool(torch.isfinite(aggregation.shared_grad).all())
    assert method.pop_counters()[ZERO_GRADIENT_COUNTER] == 1
    assert "zero shared gradient" in caplog.text
    assert "task1" in caplog.text

    reference = make(name, 2, shuffle=False) if name == "pcgrad" else make(name, 2)
    expected = reference.aggregate(jacobian[[0, 2]], losses[[0, 2]])
    torch.testing.assert_close(aggregation.shared_grad, expected.shared_grad, rtol=1e-5, atol=1e-9)


def test_zero_gradient_logged_once_per_epoch(caplog: pytest.LogCaptureFixture) -> None:
    jacobian = random_jacobian(2, 4)
    jacobian[0] = 0.0
    method = make("mgda", 2)
    with caplog.at_level(logging.WARNING):
        for epoch in range(2):
            method.on_epoch_start(epoch)
            for _ in range(3):
                method.aggregate(jacobian, torch.ones(2, dtype=torch.float64))
    assert caplog.text.count("zero shared gradient") == 2
    assert method.pop_counters() == {ZERO_GRADIENT_COUNTER: 6}


@pytest.mark.parametrize("name", ["mgda", "pcgrad", "cagrad", "imtl_g", "nashmtl", "fairgrad", "graddrop"])
def test_all_zero_jacobian(name: str) -> None:
    jacobian = torch.zeros(3, 5, dtype=torch.float64)
    aggregation = make(name).aggregate(jacobian, torch.ones(3, dtype=torch.float64))
    assert bool((aggregation.shared_grad == 0).all())


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_identical_rows_do_not_raise(name: str) -> None:
    row = random_jacobian(1, 5, seed=10)
    jacobian = torch.cat([row, row, 2.0 * random_jacobian(1, 5, seed=11)])
    aggregation = make(name).aggregate(jacobian, torch.ones(3, dtype=torch.float64))
    assert bool(torch.isfinite(aggregation.shared_grad).all())
    assert bool(torch.isfinite(aggregation.weights).all())


def test_identical_rows_imtl_g_equal_projections() -> None:
    row = random_jacobian(1, 5, seed=12)
    jacobian = torch.cat([row, row, random_jacobian(1, 5, seed=13)])
    update = make("imtl_g").aggregate(jacobian, torch.ones(3, dtype=torch.float64)).shared_grad
    projections = (jacobian / jacobian.norm(dim=1, keepdim=True)) @ update
    torch.testing.assert_close(projections, projections[0].expand(3), rtol=1e-8, atol=1e-10)


# Nash-MTL solver failures --------------------------------------------------------------------------
def test_nash_solver_failure_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    """Opposite gradients have no Nash solution: the step keeps the previous weights, loudly."""
    method = NashMTL(2)
    good = torch.tensor([[1.0, 0.2], [0.1, 1.0]], dtype=torch.float64)
    losses = torch.ones(2, dtype=torch.float64)
    previous = method.aggregate(good, losses).weights.clone()
    assert method.pop_counters() == {}

    opposite = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    with caplog.at_level(logging.WARNING, logger="methods.nash_mtl"):
        aggregation = method.aggregate(opposite, losses)
    torch.testing.assert_close(aggregation.weights, previous)
    torch.testing.assert_close(aggregation.shared_grad, previous @ opposite)
    assert "Nash-MTL step 1 (epoch 0): solver failure" in caplog.text
    assert method.pop_counters() == {SOLVER_FAILURE_COUNTER: 1}
    assert method.pop_counters() == {}


def test_nash_first_step_failure_keeps_ones(caplog: pytest.LogCaptureFixture) -> None:
    method = NashMTL(3)
    jacobian = random_jacobian(3, 10, seed=0)  # one task opposes the sum: α = 1 is outside the domain
    with caplog.at_level(logging.WARNING, logger="methods.nash_mtl"):
        aggregation = method.aggregate(jacobian, torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(aggregation.weights, torch.ones(3, dtype=torch.float64))
    assert "⟨g_k, Jᵀα⟩ ≤ 0 for task(s) task" in caplog.text
    assert method.counters[SOLVER_FAILURE_COUNTER] == 1


def test_nash_least_squares_fallback() -> None:
    method = NashMTL(3, fallback="least_squares")
    jacobian = random_jacobian(3, 10, seed=0)
    alpha = method.aggregate(jacobian, torch.ones(3, dtype=torch.float64)).weights
    gramian = jacobian @ jacobian.T
    torch.testing.assert_close(alpha * (gramian @ alpha), torch.ones(3, dtype=torch.float64), rtol=1e-6, atol=0)
    assert method.pop_counters() == {SOLVER_FAILURE_COUNTER: 1, "least_squares_fallbacks": 1}


def test_nash_missing_ecos_names_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cvxpy, "installed_solvers", lambda: ["CLARABEL", "SCS"])
    with pytest.raises(RuntimeError, match="pip install ecos"):
        NashMTL(2)


def test_nash_reuses_weights_between_updates() -> None:
    method = NashMTL(2, update_weights_every=2)
    losses = torch.ones(2, dtype=torch.float64)
    first = method.aggregate(random_jacobian(2, 4, seed=1), losses).weights
    second = method.aggregate(random_jacobian(2, 4, seed=2), losses).weights
    torch.testing.assert_close(second, first)


# Loss-weighting methods --------------------------------------------------------------------------
def test_si_gradient_is_inverse_loss_weighted() -> None:
    method = make("si", 2)
    losses = torch.tensor([2.0, 4.0], dtype=torch.float64, requires_grad=True)
    method.total_loss(losses).backward()
    torch.testing.assert_close(losses.grad, torch.tensor([0.5, 0.25], dtype=torch.float64))


def test_si_rejects_non_positive_loss() -> None:
    with pytest.raises(ValueError, match="non-positive"):
        make("si", 2).total_loss(torch.tensor([1.0, -0.5]))


def test_rlw_weights_fixed_within_step() -> None:
    method = make("rlw", 3, seed=1)
    losses = torch.ones(3)
    first = method.loss_weights(losses)
    torch.testing.assert_close(method.loss_weights(losses), first)
    method.after_step(losses)
    assert not torch.equal(method.loss_weights(losses), first)
    assert float(first.sum()) == pytest.approx(1.0, rel=1e-6)


def test_dwa_weights_after_window() -> None:
    method = make("dwa", 2, window=2)
    # Task 0's loss stays flat, task 1's halves: task 0 gets the larger weight.
    for losses in ([1.0, 1.0], [1.0, 1.0], [1.0, 0.5], [1.0, 0.5]):
        method.after_step(torch.tensor(losses))
    weights = method.reported_weights(torch.tensor([1.0, 0.5]))
    ratios = torch.tensor([1.0, 0.5 / 0.75])
    expected = 2 * torch.softmax(ratios / 2.0, dim=0)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(method.loss_weights(torch.tensor([1.0, 0.5])), expected / 2)


def test_uw_steps_its_log_variances() -> None:
    method = make("uw", 2)
    losses = torch.tensor([3.0, 0.5], requires_grad=True)
    method.total_loss(losses).backward()
    method.after_step(losses.detach())
    # Adam's first step moves each s by lr against the sign of ½(1 − e^{−s}L).
    torch.testing.assert_close(method.log_variances.detach(), torch.tensor([0.025, -0.025], dtype=torch.float64),
                               rtol=1e-5, atol=1e-7)
    assert method.log_variances.grad is None


def test_famo_requires_second_forward() -> None:
    method = make("famo", 2)
    assert method.needs_losses_after_step
    with pytest.raises(RuntimeError, match="second forward pass"):
        method.after_step(torch.ones(2), None)


def test_famo_effective_weights_sum_to_one() -> None:
    method = make("famo", 3, min_losses=[0.0, 0.5, 0.0])
    weights = method.loss_weights(torch.tensor([1.0, 2.0, 3.0]))
    assert float(weights.sum()) == pytest.approx(1.0, rel=1e-6)
    with pytest.raises(ValueError, match="min_losses"):
        make("famo", 3, min_losses=[0.0, 1.0])


def test_stl_by_index() -> None:
    weights = make("stl", 3, task=2).loss_weights(torch.ones(3))
    torch.testing.assert_close(weights, torch.tensor([0.0, 0.0, 1.0]))


def test_stl_by_name() -> None:
    method = build_method("stl", 3, task="b")
    method.bind_task_names(["a", "b", "c"])
    torch.testing.assert_close(method.loss_weights(torch.ones(3)), torch.tensor([0.0, 1.0, 0.0]))


def test_stl_name_errors() -> None:
    method = build_method("stl", 3, task="b")
    with pytest.raises(RuntimeError, match="no task names were bound"):
        method.loss_weights(torch.ones(3))
    with pytest.raises(ValueError, match="valid names: a, x, c"):
        method.bind_task_names(["a", "x", "c"])
    with pytest.raises(ValueError, match="out of range"):
        build_method("stl", 3, task=3)


def test_bind_task_names_checks_count() -> None:
    with pytest.raises(ValueError, match="built for 3 tasks"):
        make("ls").bind_task_names(["a", "b"])


# State: save, restore, fresh per run --------------------------------------------------------------
def run_steps(method, jacobians: list[torch.Tensor], losses: list[torch.Tensor]) -> list[torch.Tensor]:
    """Feed steps to ``method`` as the trainer does; return each step's shared update."""
    updates = []
    for jacobian, loss in zip(jacobians, losses):
        if method.needs_jacobian:
            updates.append(method.aggregate(jacobian, loss).shared_grad)
        else:
            leaf = loss.clone().requires_grad_(True)
            method.total_loss(leaf).backward()
            updates.append(leaf.grad @ jacobian)
        method.after_step(loss, loss * 0.9)
    return updates


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_state_dict_resume_matches(name: str) -> None:
    jacobians = [random_jacobian(3, 5, seed=s) for s in range(8)]
    losses = [torch.rand(3, generator=torch.Generator().manual_seed(s), dtype=torch.float64) + 0.5 for s in range(8)]
    extra = {"window": 2} if name == "dwa" else {}
    straight = make(name, seed=0, **extra) if name in ("rlw", "pcgrad", "graddrop") else make(name, **extra)
    expected = run_steps(straight, jacobians, losses)

    first = make(name, seed=0, **extra) if name in ("rlw", "pcgrad", "graddrop") else make(name, **extra)
    run_steps(first, jacobians[:5], losses[:5])
    state = first.state_dict()
    resumed = make(name, seed=123, **extra) if name in ("rlw", "pcgrad", "graddrop") else make(name, **extra)
    resumed.load_state_dict(state)
    for got, want in zip(run_steps(resumed, jacobians[5:], losses[5:]), expected[5:]):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("name", ["dwa", "uw", "famo", "nashmtl", "rlw"])
def test_new_method_starts_fresh(name: str) -> None:
    jacobians = [random_jacobian(3, 5, seed=s) for s in range(4)]
    losses = [torch.rand(3, generator=torch.Generator().manual_seed(s), dtype=torch.float64) + 0.5 for s in range(4)]
    extra = {"seed": 0} if name == "rlw" else {}
    first = run_steps(make(name, **extra), jacobians, losses)
    second = run_steps(make(name, **extra), jacobians, losses)
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b)


def test_gramian_method_subclass_contract() -> None:
    class Uniform(GramianMethod):
        name = "uniform"

        def weights_from_gramian(self, gramian, losses):
            from methods.gramian import GramianWeights

            return GramianWeights(shared=torch.full((gramian.shape[0],), 0.5, dtype=gramian.dtype))

    jacobian = random_jacobian(2, 3)
    aggregation = Uniform(2).aggregate(jacobian, torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(aggregation.shared_grad, 0.5 * jacobian.sum(dim=0))
    torch.testing.assert_close(aggregation.task_loss_weights, torch.full((2,), 0.5, dtype=torch.float64))


def test_nash_failure_logs_limited(caplog: pytest.LogCaptureFixture) -> None:
    method = NashMTL(2)
    opposite = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    with caplog.at_level(logging.WARNING, logger="methods.nash_mtl"):
        for _ in range(8):
            method.aggregate(opposite, torch.ones(2, dtype=torch.float64))
    assert caplog.text.count("solver failure (") == 5
    assert "later ones this epoch are only counted" in caplog.text
    assert method.pop_counters() == {SOLVER_FAILURE_COUNTER: 8}
