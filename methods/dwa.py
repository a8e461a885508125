"""DWA: weight each task by how slowly its loss has been falling.

"End-to-End Multi-Task Learning with Attention" (Liu et al., CVPR 2019), Eq. 7:
w_k = K·softmax_k(r_k / T) with r_k the ratio of recent to earlier loss of task k. The
paper compares the epoch-mean losses of the last two epochs. The Nash-MTL reference code,
whose variant the reference runs use, compares the mean loss of the last ``window``
iterations with the mean of the ``window`` iterations before.
"""
from __future__ import annotations

from typing import Any

import torch

from methods.base import Method


class DynamicWeightAverage(Method):
    """DWA over a window of iterations (temperature 2, window 25 in the reference runs).

    History: a first-in-first-out buffer of the last 2·window loss vectors, filled with
    ones at the start as in the reference code. The weights stay 1 for the first
    ``window + 1`` steps. Until 2·window real losses have been seen, the older half of the
    buffer still contains some of those ones. The step's own losses enter the buffer before
    the weights are computed. Reported weights sum to K; the loss is the mean of w_k·L_k, so the
    effective loss weights are w_k/K.
    """

    name = "dwa"

    def __init__(self, num_tasks: int, device: torch.device | str = "cpu", temperature: float = 2.0,
                 window: int = 25, **hparams: Any):
        super().__init__(num_tasks, device, **hparams)
        if temperature <= 0 or window < 1:
            raise ValueError(f"DWA needs temperature > 0 and window ≥ 1, got {temperature} and {window}")
        self.temperature = float(temperature)
        self.window = int(window)
        self.history = torch.ones(2 * self.window, num_tasks, dtype=torch.float64)
        self.steps_seen = 0

    def _history_with(self, losses: torch.Tensor) -> torch.Tensor:
        current = losses.detach().double().cpu().reshape(1, -1)
        return torch.cat([self.history[1:], current])

    def dwa_weights(self, losses: torch.Tensor) -> torch.Tensor:
        """Return the weights w (summing to K) of this step; does not change the history."""
        if self.steps_seen <= self.window:
            return torch.ones(self.num_tasks, dtype=torch.float64)
        history = self._history_with(losses)
        ratios = history[self.window:].mean(dim=0) / history[: self.window].mean(dim=0)
        return self.num_tasks * torch.softmax(ratios / self.temperature, dim=0)

    def reported_weights(self, losses: torch.Tensor) -> torch.Tensor:
        return self.dwa_weights(losses).to(device=losses.device, dtype=losses.dtype)

    def loss_weights(self, losses: torch.Tensor) -> torch.Tensor:
        return self.reported_weights(losses) / self.num_tasks

    def after_step(self, losses: torch.Tensor, losses_after: torch.Tensor | None = None) -> None:
        self.history = self._history_with(losses)
        self.steps_seen += 1

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history.clone(), "steps_seen": self.steps_seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = state["history"].clone().double()
        self.steps_seen = int(state["steps_seen"])
