"""Run loggers: W&B (offline unless W&B is configured online) and a CSV-only logger.

The trainer always writes its own CSV files in the run folder; a logger adds a second
sink. Both receive the same keys, so the W&B UI compares runs by identical summary names.
"""
from __future__ import annotations

import logging
import netrc
import os
import secrets
from pathlib import Path
from typing import Any, Mapping

log = logging.getLogger(__name__)


class RunLogger:
    """CSV-only logger: everything already lands in the run folder, so it does nothing more."""

    def start(self, run_dir: Path, config: Mapping[str, Any], name: str, group: str, tags: list[str]) -> None:
        pass

    def log_epoch(self, metrics: Mapping[str, Any], epoch: int) -> None:
        pass

    def log_record(self, table: str, record: Mapping[str, Any]) -> None:
        pass

    def log_summary(self, summary: Mapping[str, Any]) -> None:
        pass

    def log_table(self, name: str, rows: list[Mapping[str, Any]]) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass


def wandb_online_configured() -> bool:
    """Return True when the user configured W&B online: an API key in the environment or netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].rstrip("/")
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


class WandbLogger(RunLogger):
    """Log config, per-epoch metrics, records, the summary and tables to Weights & Biases.

    ``mode="auto"`` runs online only when :func:`wandb_online_configured` and ``WANDB_MODE``
    is unset; otherwise offline, with files under ``<run_dir>/wandb``. The W&B run id is
    stored in the run folder so that a resumed run continues the same W&B run.
    """

    def __init__(self, project: str = "mtl-cost-bench", entity: str | None = None, mode: str = "auto"):
        self.project = project
        self.entity = entity
        self.mode = mode
        self.run = None

    def resolved_mode(self) -> str:
        if self.mode != "auto":
            return self.mode
        if os.environ.get("WANDB_MODE"):
            return os.environ["WANDB_MODE"]
        return "online" if wandb_online_configured() else "offline"

    def start(self, run_dir: Path, config: Mapping[str, Any], name: str, group: str, tags: list[str]) -> None:
        import wandb

        id_file = Path(run_dir) / "wandb_id.txt"
        run_id = id_file.read_text().strip() if id_file.exists() else secrets.token_hex(4)
        id_file.write_text(run_id)
        mode = self.resolved_mode()
        self.run = wandb.init(
            project=self.project, entity=self.entity, mode=mode, dir=str(run_dir), id=run_id,
            resume="allow", name=name, group=group, tags=tags, config=dict(config),
            settings=wandb.Settings(silent=True, console="off"),
        )
        self.run.define_metric("epoch")
        self.run.define_metric("*", step_metric="epoch")
        log.info("W&B run %s (%s mode) in %s", run_id, mode, run_dir)

    def log_epoch(self, metrics: Mapping[str, Any], epoch: int) -> None:
        self.run.log({**metrics, "epoch": epoch})

    def log_record(self, table: str, record: Mapping[str, Any]) -> None:
        self.run.log({f"{table}/{key}": value for key, value in record.items()
                      if isinstance(value, (int, float))})

    def log_summary(self, summary: Mapping[str, Any]) -> None:
        for key, value in summary.items():
            self.run.summary[key] = value

    def log_table(self, name: str, rows: list[Mapping[str, Any]]) -> None:
        import wandb

        if not rows:
            return
        columns = list(rows[0])
        self.run.log({name: wandb.Table(columns=columns, data=[[row.get(c) for c in columns] for row in rows])})

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None


def build_logger(cfg: Mapping[str, Any]) -> RunLogger:
    """Create the logger named by ``cfg['kind']`` (``wandb`` or ``csv``)."""
    kind = cfg.get("kind", "csv")
    if kind == "csv":
        return RunLogger()
    if kind == "wandb":
        return WandbLogger(project=cfg.get("project", "mtl-cost-bench"), entity=cfg.get("entity"),
                           mode=cfg.get("mode", "auto"))
    raise ValueError(f"unknown logger kind {kind!r}; use 'wandb' or 'csv'")
