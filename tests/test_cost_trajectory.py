"""Historical trajectory reuse on a real torch Adam optimiser."""
from __future__ import annotations

import math

import pytest
import torch

from cost.trajectory import NO_ACTION, NO_REFERENCE, RESET_STATE, SCALE_BETAS, TrajectoryReuse, displacement_cosine

BETAS = (0.9, 0.999)


def warmed_up_adam(steps: int = 3):
    """Return (moved, unmoved, optimizer) after a few steps, so both have non-trivial moments."""
    torch.manual_seed(0)
    moved = torch.nn.Parameter(torch.randn(3, 2))
    unmoved = torch.nn.Parameter(torch.randn(4))
    optimizer = torch.optim.Adam([moved, unmoved], lr=1e-2, betas=BETAS)
    for _ in range(steps):
        moved.grad = torch.randn_like(moved)
        unmoved.grad = torch.randn_like(unmoved)
        optimizer.step()
    return moved, unmoved, optimizer


def moments(optimizer, param):
    state = optimizer.state[param]
    return state["exp_avg"].clone(), state["exp_avg_sq"].clone(), float(state["step"])


def step_with(reuse, optimizer, params, grads):
    for param, grad in zip(params, grads):
        param.grad = grad.clone()
    reuse.before_step(optimizer)
    optimizer.step()
    reuse.after_step(optimizer)


def test_positive_sigma_scales_betas_of_moved_params():
    moved, unmoved, optimizer = warmed_up_adam()
    m_moved, v_moved, _ = moments(optimizer, moved)
    m_other, v_other, _ = moments(optimizer, unmoved)
    group_params = list(optimizer.param_groups[0]["params"])
    sigma = 0.4
    reuse = TrajectoryReuse(mode="on", scope="moved")

    assert reuse.plan(sigma, [moved], optimizer) == SCALE_BETAS
    grads = [torch.randn_like(moved), torch.randn_like(unmoved)]
    step_with(reuse, optimizer, [moved, unmoved], grads)

    beta1, beta2 = sigma * BETAS[0], sigma * BETAS[1]
    m_new, v_new, _ = moments(optimizer, moved)
    assert torch.allclose(m_new, beta1 * m_moved + (1 - beta1) * grads[0], atol=1e-7)
    assert torch.allclose(v_new, beta2 * v_moved + (1 - beta2) * grads[0] ** 2, atol=1e-7)

    m_new, v_new, _ = moments(optimizer, unmoved)
    assert torch.allclose(m_new, BETAS[0] * m_other + (1 - BETAS[0]) * grads[1], atol=1e-7)
    assert torch.allclose(v_new, BETAS[1] * v_other + (1 - BETAS[1]) * grads[1] ** 2, atol=1e-7)

    assert len(optimizer.param_groups) == 1
    assert tuple(optimizer.param_groups[0]["betas"]) == BETAS
    assert all(a is b for a, b in zip(optimizer.param_groups[0]["params"], group_params))
    assert reuse.pending_action is None


def test_scaled_betas_last_one_step_only():
    moved, unmoved, optimizer = warmed_up_adam()
    reuse = TrajectoryReuse()
    reuse.plan(0.5, [moved], optimizer)
    step_with(reuse, optimizer, [moved, unmoved], [torch.randn_like(moved), torch.randn_like(unmoved)])
    m_old, v_old, _ = moments(optimizer, moved)
    grad = torch.randn_like(moved)
    step_with(reuse, optimizer, [moved, unmoved], [grad, torch.randn_like(unmoved)])
    m_new, v_new, _ = moments(optimizer, moved)
    assert torch.allclose(m_new, BETAS[0] * m_old + (1 - BETAS[0]) * grad, atol=1e-7)
    assert torch.allclose(v_new, BETAS[1] * v_old + (1 - BETAS[1]) * grad ** 2, atol=1e-7)


def test_whole_group_scaled_when_all_params_moved():
    moved, unmoved, optimizer = warmed_up_adam()
    m_old, _, _ = moments(optimizer, unmoved)
    reuse = TrajectoryReuse(scope="all")
    reuse.plan(0.5, [moved], optimizer)
    grads = [torch.randn_like(moved), torch.randn_like(unmoved)]
    step_with(reuse, optimizer, [moved, unmoved], grads)
    m_new, _, _ = moments(optimizer, unmoved)
    assert torch.allclose(m_new, 0.45 * m_old + 0.55 * grads[1], atol=1e-7)
    assert tuple(optimizer.param_groups[0]["betas"]) == BETAS


@pytest.mark.parametrize("sigma", [0.0, -0.7])
def test_non_positive_sigma_resets_moved_state(sigma):
    moved, unmoved, optimizer = warmed_up_adam()
    m_other, _, step_other = moments(optimizer, unmoved)
    reuse = TrajectoryReuse()
    assert reuse.plan(sigma, [moved], optimizer) == RESET_STATE
    grads = [torch.randn_like(moved), torch.randn_like(unmoved)]
    step_with(reuse, optimizer, [moved, unmoved], grads)

    m_new, v_new, step_new = moments(optimizer, moved)
    assert step_new == 1.0
    assert torch.allclose(m_new, (1 - BETAS[0]) * grads[0], atol=1e-7)
    assert torch.allclose(v_new, (1 - BETAS[1]) * grads[0] ** 2, atol=1e-7)
    m_after, _, step_after = moments(optimizer, unmoved)
    assert step_after == step_other + 1
    assert torch.allclose(m_after, BETAS[0] * m_other + (1 - BETAS[0]) * grads[1], atol=1e-7)


def test_released_mode_ignores_positive_sigma_and_resets_all():
    moved, unmoved, optimizer = warmed_up_adam()
    reuse = TrajectoryReuse(mode="released")
    assert reuse.plan(0.6, [moved], optimizer) == NO_ACTION
    assert reuse.pending_action is None

    assert reuse.plan(-0.1, [moved], optimizer) == RESET_STATE
    reuse.before_step(optimizer)
    assert len(optimizer.state) == 0


def test_off_mode_and_missing_reference_do_nothing():
    moved, _, optimizer = warmed_up_adam()
    assert TrajectoryReuse(mode="off").plan(-1.0, [moved], optimizer) == NO_ACTION
    assert TrajectoryReuse().plan(float("nan"), [moved], optimizer) == NO_REFERENCE


def test_pending_action_survives_state_dict():
    moved, unmoved, optimizer = warmed_up_adam()
    reuse = TrajectoryReuse()
    reuse.plan(0.3, [unmoved], optimizer)
    restored = TrajectoryReuse()
    restored.load_state_dict(reuse.state_dict())
    assert restored.pending_action == SCALE_BETAS
    assert restored.pending_sigma == pytest.approx(0.3)
    assert restored.pending_indices == [1]


def test_displacement_cosine():
    assert displacement_cosine(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])) == pytest.approx(1 / math.sqrt(2))
    assert displacement_cosine(torch.tensor([1.0, 0.0]), torch.tensor([-2.0, 0.0])) == pytest.approx(-1.0)
    assert math.isnan(displacement_cosine(None, torch.ones(2)))
    assert math.isnan(displacement_cosine(torch.ones(2), torch.zeros(2)))
