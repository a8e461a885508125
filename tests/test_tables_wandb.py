"""The results table logged as a W&B Table, read back from the offline run files."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from benchmarks import tables
from benchmarks.wandb_offline import find_run_files, read_offline_run
from tests.test_tables import TOY_METRICS, write_summary


def test_table_read_back_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    write_summary(tmp_path, "toy", "ls", 0, {"abs_err": 1.0, "miou": 0.6})
    write_summary(tmp_path, "toy", "ls", 1, {"abs_err": 3.0, "miou": 0.4})
    write_summary(tmp_path, "toy", "pcgrad", 0, {"abs_err": 2.0, "miou": 0.7}, cost=True)
    table = tables.build_tables(tmp_path, metrics={"toy": TOY_METRICS})
    run_ids = tables.log_tables_to_wandb(table, tmp_path / "wandb")

    run_files = find_run_files(tmp_path / "wandb")
    assert [f.stem for f in run_files] == [f"run-{run_ids[0]}"]
    run = read_offline_run(run_files[0])
    assert run["config"]["dataset"] == "toy"
    logged = run["history"][0]
    assert logged["table/toy/_type"] == "table-file"
    assert logged["table/toy/nrows"] == 2

    # The table file the history row points to contains the same rows as the CSV table.
    table_file = run_files[0].parent / "files" / logged["table/toy/path"]
    content = json.loads(table_file.read_text())
    expected = tables.table_frame(table["toy"])
    assert content["columns"] == list(expected.columns)
    read_back = pd.DataFrame(content["data"], columns=content["columns"])
    assert read_back["name"].tolist() == ["ls", "pcgrad+cost"]
    assert read_back["abs_err_mean"].tolist() == pytest.approx([2.0, 2.0])
    assert read_back["delta_m"].tolist() == pytest.approx(expected["delta_m"].tolist())
    # A single seed has no std: logged as null, not as NaN.
    assert content["data"][1][content["columns"].index("abs_err_std")] is None
