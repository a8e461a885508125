"""Shared test settings.

``MTL_SHARED_DATA`` points at the folder of small real dataset samples (QM9, Cityscapes,
CelebA, NYUv2). It defaults to ``shared/data`` beside the repository checkout. Tests that
need a sample skip, naming the missing path, when it is absent.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("MTL_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def require_shared(relative: str) -> Path:
    """Return ``SHARED_DATA / relative`` or skip the test when that sample is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data sample {path} is absent; set MTL_SHARED_DATA to the samples folder")
    return path


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"real data samples folder {SHARED_DATA} is absent; set MTL_SHARED_DATA")
    return SHARED_DATA
