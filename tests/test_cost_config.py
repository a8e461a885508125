"""COST config group: every preset composes and validates."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from cost import build_cost_layer
from cost.config import CostConfig

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
PRESETS = sorted(p.stem for p in (CONFIG_DIR / "cost").glob("*.yaml") if p.stem != "none")


def composed_cost(name: str, overrides: tuple[str, ...] = ()) -> dict:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR), job_name="test_cost_config"):
        cfg = compose(config_name="config", overrides=[f"cost={name}", *overrides])
    return OmegaConf.to_container(cfg.cost, resolve=True)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_builds_enabled_layer(name):
    layer = build_cost_layer(composed_cost(name))
    assert layer.config.enabled


def test_paper_preset_values():
    config = CostConfig.from_dict(composed_cost("paper"))
    assert config.trigger == "dominated"
    assert (config.rank, config.alpha, config.dropout) == (5, 8.0, 0.0)
    assert (config.invariance_weight, config.gamma) == (1.0, 0.1)
    assert (config.delta, config.directions) == (1e-4, 5)
    assert config.sharpness_grad == "functional"
    assert config.htr == "on"


def test_released_preset_values():
    config = CostConfig.from_dict(composed_cost("released"))
    assert config.trigger == "any"
    assert (config.invariance_weight, config.gamma) == (10.0, 0.5)
    assert config.sharpness_grad == "copy"
    assert config.sharpness_abs
    assert config.sharpness_params == "all"
    assert config.htr == "released"
    assert config.inner_epochs == 2
    assert config.reference_batches is None


def test_command_line_override_reaches_layer():
    layer = build_cost_layer(composed_cost("paper", ("cost.start_epoch=0", "cost.trigger=weak", "cost.tau=0.2")))
    assert layer.config.start_epoch == 0
    assert layer.trigger.variant == "weak"
    assert layer.trigger.tau == 0.2


@pytest.mark.parametrize("key, value, message", [
    ("trigger", "often", "cost.trigger='often' is invalid"),
    ("tau", -0.1, "cost.tau=-0.1 is invalid"),
    ("htr", "maybe", "cost.htr='maybe' is invalid"),
    ("rank", 0, "cost.rank=0 is invalid"),
    ("adapter", "ia3", "cost.adapter='ia3' is invalid"),
])
def test_invalid_values_raise_with_key(key, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        CostConfig.from_dict({key: value})
