"""Train one run: ``python -m benchmarks.train dataset=qm9 method=ls seed=0 [key=value ...]``.

The run folder is ``<results_dir>/runs/<dataset>/<profile>/<method>[+cost][-<run_name>]/seed<seed>``.
Running the same command again resumes from the last checkpoint; a finished run is
reported and left untouched.
"""
from __future__ import annotations

import csv
import fcntl
import logging
import os
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from benchmarks.loggers import build_logger
from benchmarks.runio import atomic_write_text, seed_everything, select_device
from benchmarks.trainer import CHECKPOINT, SUMMARY, NonFiniteLossError, TrainConfig, Trainer
from datasets import build_benchmark
from methods import build_method

log = logging.getLogger("benchmarks.train")

# Config keys that may change between a run and its resumption: where things are stored
# and how progress is shown, but nothing that changes the numbers.
RESUME_FREE_KEYS = ("logger", "progress", "device", "interrupt_after_steps", "results_dir", "data_root")
RESUME_FREE_DATASET_KEYS = ("root", "cache_dir", "num_workers")


def method_label(cfg: DictConfig) -> str:
    label = cfg.method.name + ("+cost" if cfg.cost.get("enabled", False) else "")
    return label + (f"-{cfg.run_name}" if cfg.run_name else "")


def run_dir_for(cfg: DictConfig) -> Path:
    return Path(cfg.results_dir) / "runs" / cfg.dataset.name / cfg.profile.name / method_label(cfg) / f"seed{cfg.seed}"


def comparable_config(cfg: DictConfig) -> dict[str, Any]:
    data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    for key in RESUME_FREE_KEYS:
        data.pop(key, None)
    for key in RESUME_FREE_DATASET_KEYS:
        data.get("dataset", {}).pop(key, None)
    return data


def changed_keys(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """Return the dotted keys whose values differ between two nested configs."""
    if isinstance(saved, dict) and isinstance(current, dict):
        keys: list[str] = []
        for key in sorted(set(saved) | set(current), key=str):
            keys += changed_keys(saved.get(key), current.get(key), f"{prefix}{key}.")
        return keys
    return [] if saved == current else [prefix.rstrip(".")]


def check_same_config(run_dir: Path, cfg: DictConfig) -> None:
    """Reject a run folder that was started with another configuration."""
    saved_path = run_dir / "config.yaml"
    if not saved_path.exists():
        return
    saved = comparable_config(OmegaConf.to_container(OmegaConf.load(saved_path), resolve=True))
    changed = changed_keys(saved, comparable_config(cfg))
    if changed:
        raise SystemExit(
            f"error: {run_dir} holds a run started with a different configuration (differs in: "
            f"{', '.join(changed[:8])}). Add run_name=<tag> to start a separate run, or delete that "
            "folder to start over."
        )


def lock_run_dir(run_dir: Path):
    """Take an exclusive lock on the run folder so that two processes never train the same run.

    The lock is released by the operating system when the process ends, also on a crash.
    """
    handle = open(run_dir / ".lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise SystemExit(f"error: {run_dir} is in use by another training process; wait for it to finish "
                         "or stop it, then run the command again") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def read_summary(path: Path) -> dict[str, Any]:
    with open(path, newline="") as handle:
        return next(csv.DictReader(handle))


def clip_norm(cfg: DictConfig) -> float | None:
    if cfg.clip_grad_norm is None:
        return cfg.method.get("clip_grad_norm")
    return float(cfg.clip_grad_norm) or None


def warn_if_cost_idle(cfg: DictConfig) -> None:
    """Log a warning when the COST start epoch lies beyond the last training epoch."""
    start = cfg.cost.get("start_epoch", 0) if cfg.cost.get("enabled", False) else None
    if start is not None and start >= cfg.dataset.epochs:
        log.warning("COST never teleports in this run: cost.start_epoch=%d but dataset.epochs=%d. Lower "
                    "cost.start_epoch (cost=quick starts at 0) to exercise it.", start, cfg.dataset.epochs)


def build_cost(cfg: DictConfig):
    if not cfg.cost.get("enabled", False):
        return None
    from cost import build_cost_layer

    return build_cost_layer(OmegaConf.to_container(cfg.cost, resolve=True))


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train (or resume, or report) the run that ``cfg`` describes; return its summary row."""
    run_dir = run_dir_for(cfg)
    check_same_config(run_dir, cfg)
    if (run_dir / SUMMARY).exists():
        log.info("%s is finished; its summary is kept. Delete the folder to train it again.", run_dir)
        return read_summary(run_dir / SUMMARY)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = lock_run_dir(run_dir)
    file_handler = logging.FileHandler(run_dir / "train.log")
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(file_handler)
    try:
        return train_locked(cfg, run_dir)
    finally:
        logging.getLogger().removeHandler(file_handler)
        file_handler.close()
        lock.close()


def train_locked(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Build everything and train, with the run folder locked by the caller."""
    warn_if_cost_idle(cfg)
    device = select_device(cfg.device)
    seed_everything(cfg.seed)
    benchmark = build_benchmark(cfg.dataset.name, cfg.dataset)
    method = build_method(cfg.method.name, len(benchmark.tasks), device, **(cfg.method.get("hparams") or {}))
    train_cfg = TrainConfig(
        epochs=cfg.dataset.epochs, lr=cfg.dataset.lr, weight_decay=cfg.dataset.get("weight_decay", 0.0),
        clip_grad_norm=clip_norm(cfg), seed=cfg.seed, max_train_batches=cfg.dataset.get("max_train_batches"),
        max_eval_batches=cfg.dataset.get("max_eval_batches"), batched_jacobian=cfg.batched_jacobian,
        jacobian_chunk_size=cfg.jacobian_chunk_size,
        progress=cfg.progress, interrupt_after_steps=cfg.interrupt_after_steps,
    )
    run_info = {
        "dataset": cfg.dataset.name, "method": cfg.method.name, "cost": bool(cfg.cost.get("enabled", False)),
        "seed": cfg.seed, "profile": cfg.profile.name, "name": method_label(cfg), "device": str(device),
    }
    try:
        trainer = Trainer(benchmark, method, train_cfg, run_dir, device, logger=None, cost=build_cost(cfg),
                          run_info=run_info)
    except FileNotFoundError as error:
        log.error("%s", error)
        raise SystemExit(f"error: {error}") from None

    # The configuration is stored only once the data loaded, so that a failed start does
    # not pin the folder to settings that never trained.
    if not (run_dir / "config.yaml").exists():
        atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    resumed_from = (run_dir / CHECKPOINT).exists()
    logger = build_logger(cfg.logger)
    logger.start(run_dir, OmegaConf.to_container(cfg, resolve=True), name=f"{run_info['name']}-s{cfg.seed}",
                 group=cfg.dataset.name, tags=[cfg.method.name, "cost" if run_info["cost"] else "no-cost",
                                               cfg.profile.name])
    trainer.logger = logger
    log.info("%s %s on %s (%s), run folder %s", "resuming" if resumed_from else "starting",
             run_info["name"], cfg.dataset.name, device, run_dir)
    try:
        summary = trainer.fit()
    except NonFiniteLossError as error:
        log.error("%s", error)
        logger.finish(exit_code=1)
        raise SystemExit(f"error: {error}") from None
    except BaseException:
        logger.finish(exit_code=1)
        raise
    logger.finish()
    return summary


@hydra.main(version_base="1.3", config_path="../configs", config_name="config")
def main(cfg: DictConfig) -> float:
    summary = run(cfg)
    return float(summary.get("delta_m", "nan"))


if __name__ == "__main__":
    sys.exit(main() is None and 0)
