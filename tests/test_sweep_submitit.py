"""submitit's local executor runs a two-run sweep, each run in its own submitit job."""
from __future__ import annotations

import pytest

from benchmarks import tables
from tests.test_sweep import run_dir, sweep


@pytest.mark.slow
def test_submitit_local_two_runs(tmp_path):
    result = sweep(tmp_path, "seed=0,1", "hydra/launcher=local_submitit")
    assert result.returncode == 0, result.stderr[-2000:]

    # One submitit job folder per run, each with its result file.
    job_dirs = [d for d in (tmp_path / "multirun" / ".submitit").iterdir() if d.name != "%j"]
    assert len(job_dirs) == 2
    for job_dir in job_dirs:
        assert list(job_dir.glob("*_result.pkl"))
    for seed in (0, 1):
        assert (run_dir(tmp_path, seed) / "summary.csv").exists()
    table = tables.build_tables(tmp_path)["toy"]
    assert [(row.name, row.seeds) for row in table.rows] == [("ls", [0, 1])]
