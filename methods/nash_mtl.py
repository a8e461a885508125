"""Nash-MTL: the Nash bargaining solution over the task gradients.

"Multi-Task Learning as a Bargaining Game" (Navon et al., ICML 2022): the update is Jᵀα
where α > 0 solves (JJᵀ)α = 1/α (element-wise), so every task gets the same product
α_k·⟨g_k, Jᵀα⟩ = 1 and ‖Jᵀα‖ = √K. The paper approximates α by a sequence of convex
problems (its Section 3.4, a concave-convex procedure): with φ(α) = Σ_k log α_k +
log (Gα)_k linearised at the previous iterate α_τ,

    minimise  Σ_k (Gα)_k + ∇φ(α_τ)ᵀα / f   subject to  α_k·(Gα)_k ≥ 1, α ≥ 0,

where G is the Gramian divided by its Frobenius norm f (the reference code's scaling).
Each problem is solved by cvxpy with the ECOS solver, as in the reference code.
"""
from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch

from methods.fairgrad import fairgrad_weights
from methods.gramian import GramianMethod, GramianWeights

log = logging.getLogger(__name__)

# Statuses of cvxpy that count as a solution.
SOLVED_STATUSES = ("optimal", "optimal_inaccurate")
# Counter key of the steps whose solver failed; the trainer logs it per epoch as method/<key>.
SOLVER_FAILURE_COUNTER = "solver_failures"
# Solver failures logged per epoch with their step number; later ones are only counted.
LOGGED_FAILURES_PER_EPOCH = 5
# Max relative residual for the least-squares fallback to count as a solution of Gα = 1/α.
LEAST_SQUARES_RESIDUAL = 1e-6


class NashSolverError(RuntimeError):
    """A convex subproblem of Nash-MTL had no solution (solver error, infeasible, or no value).

    ``outside`` lists the positions (among the tasks passed to the solver) whose ⟨g_k, Jᵀα⟩
    is not positive at the linearisation point, where log (Gα)_k is undefined.
    """

    def __init__(self, message: str, outside: list[int] | None = None):
        super().__init__(message)
        self.outside = outside or []


def require_solver(solver: str) -> None:
    """Raise RuntimeError naming the install command when cvxpy lacks ``solver``."""
    import cvxpy as cp

    if solver.upper() not in cp.installed_solvers():
        hint = "pip install ecos" if solver.upper() == "ECOS" else f"install the {solver} solver for cvxpy"
        raise RuntimeError(
            f"Nash-MTL needs the cvxpy solver {solver.upper()}, which is not installed (cvxpy ≥ 1.6 no longer "
            f"installs ECOS). Run `{hint}`, or set method.hparams.solver to one of: {', '.join(cp.installed_solvers())}."
        )


class NashSubproblem:
    """One compiled cvxpy problem for K tasks, re-solved with new parameter values.

    The problem is DPP (disciplined parametrised), so cvxpy compiles it once per K.
    """

    def __init__(self, num_tasks: int, solver: str, max_solver_iterations: int):
        import cvxpy as cp

        self.solver = solver.upper()
        self.max_solver_iterations = max_solver_iterations
        self.alpha = cp.Variable(num_tasks, nonneg=True)
        self.gramian = cp.Parameter((num_tasks, num_tasks))
        self.linear_cost = cp.Parameter(num_tasks)
        self.log_scale = cp.Parameter()
        projected = self.gramian @ self.alpha
        constraints = [cp.log(self.alpha[k]) + cp.log(projected[k]) >= -self.log_scale for k in range(num_tasks)]
        self.problem = cp.Problem(cp.Minimize(self.linear_cost @ self.alpha), constraints)

    def solve(self, normalized_gramian: np.ndarray, scale: float, previous: np.ndarray) -> np.ndarray:
        """Return the minimiser for the linearisation at ``previous``, or raise NashSolverError."""
        import cvxpy as cp

        outside = np.flatnonzero(normalized_gramian @ previous <= 0).tolist()
        with np.errstate(divide="ignore", invalid="ignore"):
            phi_gradient = 1.0 / previous + normalized_gramian @ (1.0 / (normalized_gramian @ previous))
        if not np.all(np.isfinite(phi_gradient)):
            raise NashSolverError("the gradient of the linearised objective is not finite", outside)
        self.gramian.value = normalized_gramian
        self.linear_cost.value = normalized_gramian.sum(axis=0) + phi_gradient / scale
        self.log_scale.value = math.log(scale)
        try:
            self.problem.solve(solver=self.solver, max_iters=self.max_solver_iterations)
        except cp.SolverError as error:
            raise NashSolverError(f"{self.solver} raised: {error}", outside) from error
        value = self.alpha.value
        if self.problem.status not in SOLVED_STATUSES or value is None or not np.all(np.isfinite(value)):
            raise NashSolverError(f"{self.solver} returned status {self.problem.status!r}", outside)
        return np.asarray(value, dtype=np.float64)


def nash_mtl_weights(gramian: torch.Tensor, start: np.ndarray, subproblem: NashSubproblem,
                     max_iterations: int = 20,
                     tolerance: float = 1e-6) -> tuple[np.ndarray, int, NashSolverError | None]:
    """Run the sequence of convex problems from ``start``; return (α, solves, failure).

    The loop stops when an iterate moves less than ``tolerance`` (Euclidean) and then
    returns the iterate before that move, as the reference code does, or after
    ``max_iterations`` solves. When a solve fails the last good iterate is returned
    (``start`` if the first solve fails) with the error.
    """
    matrix = gramian.detach().cpu().double().numpy()
    scale = float(np.linalg.norm(matrix))
    normalized = matrix / scale
    alpha = np.asarray(start, dtype=np.float64)
    solves = 0
    for _ in range(max_iterations):
        try:
            candidate = subproblem.solve(normalized, scale, alpha)
        except NashSolverError as error:
            return alpha, solves, error
        solves += 1
        if np.linalg.norm(candidate - alpha) < tolerance:
            break
        alpha = candidate
    return alpha, solves, None


class NashMTL(GramianMethod):
    """Nash-MTL on the shared parameters; reported weights are the raw α.

    Hyperparameters of the reference runs: ``update_weights_every=1`` (recompute α every
    step), ``optim_niter=20`` (max convex solves per step) and ``solver="ECOS"``. The
    clipping of the shared gradient to norm 1.0 is the config's ``clip_grad_norm``. α
    starts at ones.

    A failed solve is never silent. The step keeps the previous step's α (or the last good
    iterate of this step) and logs the failure with the step number (the first five of
    each epoch). Every failure is counted under ``solver_failures``, which the trainer logs
    per epoch as ``method/solver_failures``. A missing solver raises at construction.

    The reference code keeps the previous α as well, silently. Its first linearisation
    point is α = 1, where a task whose gradient opposes the sum of all task gradients
    makes log (Gα)_k undefined and the subproblem unbounded or infeasible. ``fallback=
    "least_squares"`` then solves Gα = 1/α directly (FairGrad's solver with α = 1) instead
    of keeping the previous α; such steps are also counted under ``least_squares_fallbacks``.
    """

    name = "nashmtl"

    def __init__(self, num_tasks: int, device: torch.device | str = "cpu", update_weights_every: int = 1,
                 optim_niter: int = 20, solver: str = "ECOS", max_solver_iterations: int = 100,
                 tolerance: float = 1e-6, fallback: str = "previous", **hparams: Any):
        super().__init__(num_tasks, device, **hparams)
        if update_weights_every < 1 or optim_niter < 1:
            raise ValueError(f"Nash-MTL needs update_weights_every ≥ 1 and optim_niter ≥ 1, got "
                             f"{update_weights_every} and {optim_niter}")
        if fallback not in ("previous", "least_squares"):
            raise ValueError(f"unknown Nash-MTL fallback {fallback!r}; use 'previous' or 'least_squares'")
        require_solver(solver)
        self.fallback = fallback
        self.update_weights_every = int(update_weights_every)
        self.optim_niter = int(optim_niter)
        self.solver = solver
        self.max_solver_iterations = int(max_solver_iterations)
        self.tolerance = float(tolerance)
        self.previous_alpha = np.ones(num_tasks)
        self._failures_logged_epoch: int | None = None
        self._failures_logged = 0
        self._subproblems: dict[int, NashSubproblem] = {}

    def subproblem(self, num_tasks: int) -> NashSubproblem:
        if num_tasks not in self._subproblems:
            self._subproblems[num_tasks] = NashSubproblem(num_tasks, self.solver, self.max_solver_iterations)
        return self._subproblems[num_tasks]

    def weights_from_gramian(self, gramian: torch.Tensor, losses: torch.Tensor) -> GramianWeights:
        kept = self.kept_tasks.numpy()
        start = self.previous_alpha[kept]
        start = np.where(start > 0, start, 1.0)
        if self.step % self.update_weights_every != 0:
            return self._result(start, gramian, {"nash_solves": 0.0})

        alpha, solves, failure = nash_mtl_weights(gramian, start, self.subproblem(len(kept)), self.optim_niter,
                                                  self.tolerance)
        if failure is not None:
            self.counters[SOLVER_FAILURE_COUNTER] += 1
            kept_from = "the previous step's weights" if solves == 0 else f"the weights after {solves} good solve(s)"
            if self.fallback == "least_squares":
                solution, residual = fairgrad_weights(gramian, 1.0)
                if residual <= LEAST_SQUARES_RESIDUAL:
                    alpha = solution.cpu().numpy()
                    kept_from = "the least-squares solution of Gα = 1/α"
                    self.counters["least_squares_fallbacks"] += 1
            self._log_failure(failure, kept_from, alpha)
        full = np.zeros(self.num_tasks)
        full[kept] = alpha
        self.previous_alpha = full
        return self._result(alpha, gramian, {"nash_solves": float(solves)})

    def _log_failure(self, failure: NashSolverError, kept_from: str, alpha: np.ndarray) -> None:
        if self._failures_logged_epoch != self.epoch:
            self._failures_logged_epoch = self.epoch
            self._failures_logged = 0
        self._failures_logged += 1
        if self._failures_logged <= LOGGED_FAILURES_PER_EPOCH:
            reason = str(failure)
            if failure.outside:
                kept_indices = self.kept_tasks.tolist()
                names = ", ".join(self.task_label(kept_indices[k]) for k in failure.outside)
                reason += f"; at the linearisation point ⟨g_k, Jᵀα⟩ ≤ 0 for task(s) {names}, where log (Gα)_k is undefined"
            log.warning("Nash-MTL step %d (epoch %d): solver failure (%s); using %s: %s", self.step, self.epoch,
                        reason, kept_from, np.array2string(alpha, precision=4))
        if self._failures_logged == LOGGED_FAILURES_PER_EPOCH:
            log.warning("Nash-MTL epoch %d: %d solver failures logged; later ones this epoch are only counted "
                        "(method/%s)", self.epoch, LOGGED_FAILURES_PER_EPOCH, SOLVER_FAILURE_COUNTER)

    def _result(self, alpha: np.ndarray, gramian: torch.Tensor, stats: dict[str, float]) -> GramianWeights:
        weights = torch.as_tensor(alpha, dtype=gramian.dtype, device=gramian.device)
        return GramianWeights(shared=weights, stats=stats)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "previous_alpha": self.previous_alpha.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "previous_alpha" in state:
            self.previous_alpha = np.asarray(state["previous_alpha"], dtype=np.float64)
