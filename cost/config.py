"""Settings of the COST layer, read from the Hydra group ``configs/cost/``.

Defaults follow "Continual Optimization with Symmetry Teleportation for Multi-Task
Learning" (Zhou et al., NeurIPS 2025). Where the authors' released code behaves
differently, the difference is a named option, and ``configs/cost/released.yaml`` selects
all of them at once.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

TRIGGERS = ("dominated", "any", "weak", "always")
ADAPTERS = ("lora", "loha", "lokr", "oft", "full")
SHARPNESS_GRADS = ("functional", "copy")
SHARPNESS_PARAMS = ("shared", "all")
OBJECTIVE_BACKWARDS = ("sequential", "joint")
HTR_MODES = ("on", "off", "released")
HTR_SCOPES = ("moved", "all")
HTR_REFERENCES = ("gradient", "descent")


@dataclass
class CostConfig:
    """Every COST setting, with the paper's value as default.

    Trigger (checked on the per-task gradients of the shared parameters):
      ``trigger``: ``dominated`` fires when cos(g_min, g_0) < −τ (g_min: task gradient of
      smallest norm, g_0: mean task gradient); ``any`` (released code) fires when
      min_k cos(g_k, g_0) ≤ −τ; ``weak`` fires when some pair has cos(g_i, g_j) < −τ;
      ``always`` fires at every check (for timing a teleport or exercising it on tiny data).
      ``tau`` ≥ 0 is this suite's stand-in for the paper's stricter many-task condition.
      ``start_epoch``: no teleport before this epoch (0-based). ``max_per_epoch``: cap per
      epoch, null for no cap.

    Adapter: ``adapter`` (PEFT type ``lora``, ``loha``, ``lokr``, ``oft``, or ``full``, a
    dense ΔΘ for models without PEFT-compatible layers), ``rank``, ``alpha``, ``dropout``.
    ``targets`` is the mode passed to the model's ``lora_targets(mode)``, or an explicit
    list of module names (parameter names for ``full``).

    Objective (minimised over the adapter): ``invariance_weight``·L_t − ``gamma``·L_g.
    ``reference_batches``: training batches averaged for the reference losses L_k* (null:
    the whole training loader, as the released code). ``inner_epochs`` passes over the
    training loader or ``inner_steps`` inner steps (exactly one of them is set);
    ``inner_lr`` null means the main optimiser's current learning rate. ``delta``: norm of
    each random direction per parameter tensor; ``directions``: number n of directions.
    ``sharpness_grad``: ``functional`` lets the perturbed losses carry gradient to the
    adapter, ``copy`` evaluates them on a detached copy (released code).
    ``sharpness_abs``: use |L(θ'+ε) − L(θ')| (released code) instead of the signed difference.
    ``sharpness_params``: perturb the ``shared`` parameters or ``all`` parameters (released).
    ``objective_backward``: ``sequential`` differentiates the objective one forward pass at
    a time (memory of one pass, about n/3 extra forward passes without a graph); ``joint``
    keeps all n + 2 graphs alive and differentiates once. Both give the same gradient.

    Historical trajectory reuse: ``htr`` ``on`` | ``off`` | ``released`` (the released
    Cityscapes trainer: betas restored before the step so σ > 0 has no effect, and σ ≤ 0
    discards the state of every parameter). ``htr_scope``: ``moved`` (parameters the
    teleport moved) or ``all`` (every parameter of the optimiser). ``htr_reference``:
    σ = cos(g', ΔΘ) with g' the last applied ``gradient`` (released code), or its negative,
    the ``descent`` direction.

    ``measure_after``: compute the task Jacobian at the new point for the teleport record
    (one extra forward and Jacobian per teleport).
    """

    enabled: bool = False
    trigger: str = "dominated"
    tau: float = 0.0
    start_epoch: int = 0
    max_per_epoch: int | None = 1

    adapter: str = "lora"
    rank: int = 5
    alpha: float = 8.0
    dropout: float = 0.0
    targets: str | list[str] = "paper"

    invariance_weight: float = 1.0
    gamma: float = 0.1
    reference_batches: int | None = None
    inner_epochs: int | None = 2
    inner_steps: int | None = None
    inner_lr: float | None = None
    delta: float = 1e-4
    directions: int = 5
    sharpness_grad: str = "functional"
    sharpness_abs: bool = False
    sharpness_params: str = "shared"
    objective_backward: str = "sequential"

    htr: str = "on"
    htr_scope: str = "moved"
    htr_reference: str = "gradient"

    measure_after: bool = True

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "CostConfig":
        """Build and validate a config; unknown keys raise with the list of valid ones."""
        known = {f.name for f in fields(cls)}
        values = dict(values)
        # The config group may carry a human-readable preset name; it selects nothing here.
        values.pop("name", None)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown COST setting(s) {unknown} in the cost config group; valid keys: "
                             f"{sorted(known)}")
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ValueError naming the offending setting and its valid values."""
        choices = {
            "trigger": (self.trigger, TRIGGERS),
            "adapter": (self.adapter, ADAPTERS),
            "sharpness_grad": (self.sharpness_grad, SHARPNESS_GRADS),
            "sharpness_params": (self.sharpness_params, SHARPNESS_PARAMS),
            "objective_backward": (self.objective_backward, OBJECTIVE_BACKWARDS),
            "htr": (self.htr, HTR_MODES),
            "htr_scope": (self.htr_scope, HTR_SCOPES),
            "htr_reference": (self.htr_reference, HTR_REFERENCES),
        }
        for key, (value, valid) in choices.items():
            if value not in valid:
                raise ValueError(f"cost.{key}={value!r} is invalid; use one of {', '.join(valid)}")
        if self.tau < 0:
            raise ValueError(f"cost.tau={self.tau} is invalid; the threshold must be >= 0")
        if (self.inner_epochs is None) == (self.inner_steps is None):
            raise ValueError(f"set exactly one of cost.inner_epochs ({self.inner_epochs}) and cost.inner_steps "
                             f"({self.inner_steps}); set the other to null")
        positive = {"rank": self.rank, "directions": self.directions, "delta": self.delta,
                    "inner_epochs": self.inner_epochs, "inner_steps": self.inner_steps,
                    "reference_batches": self.reference_batches, "max_per_epoch": self.max_per_epoch,
                    "inner_lr": self.inner_lr}
        for key, value in positive.items():
            if value is not None and value <= 0:
                raise ValueError(f"cost.{key}={value} is invalid; it must be positive (or null where allowed)")
        if self.start_epoch < 0:
            raise ValueError(f"cost.start_epoch={self.start_epoch} is invalid; it must be >= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"cost.dropout={self.dropout} is invalid; it must be in [0, 1)")
