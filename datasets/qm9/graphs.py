"""QM9 graph datasets with an on-disk cache.

``load_qm9_graphs`` returns the 130,831 QM9 molecules as PyG graphs, either converted from
the CSV files of the PyPI package qm9pack (offline) or from ``torch_geometric.datasets.QM9``
(which downloads its raw files). Converted graphs are cached as collated tensors under
``root / "qm9pack"``.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import rdkit
import torch
import torch_geometric
from torch_geometric.data import Data, InMemoryDataset
from tqdm import tqdm

from datasets.qm9.convert import (
    FALLBACK_KINDS,
    FEATURE_MODES,
    convert_record_or_error,
    find_qm9pack_csv,
    graph_from_arrays,
    read_molecules,
)

logger = logging.getLogger(__name__)

SOURCES = ("qm9pack", "pyg")

# Version of the cache payload layout; a cache of another version is rebuilt.
CACHE_FORMAT_VERSION = 1

# Below this many molecules per worker, starting worker processes (each imports torch and
# RDKit, a few seconds) costs more than it saves. An estimate from the per-molecule
# conversion time of about 1 ms.
_MIN_MOLECULES_PER_WORKER = 5_000

# Number of fallback molecules logged one by one; the rest are only counted. The
# hueckel_connectivity path yields correct graphs and is only counted.
_LOGGED_FALLBACKS = 10
_QUIET_FALLBACKS = {"hueckel_connectivity"}


class QM9CacheError(RuntimeError):
    """A QM9 graph cache file that cannot be read."""


class QM9Graphs(InMemoryDataset):
    """Collated QM9 graphs with build metadata.

    Supports ``len()``, integer indexing and indexing by a list, slice or LongTensor of
    indices (a view sharing the tensors). ``meta`` contains the source, ``n_molecules``,
    ``fallback_counts``, ``build_seconds`` and ``csv_paths``, among others.
    """

    def __init__(self, data: Data, slices: dict[str, torch.Tensor], meta: dict[str, Any]):
        super().__init__(root=None)
        self._data = data
        self.slices = slices
        self.meta = meta

    @classmethod
    def from_data_list(cls, graphs: Sequence[Data], meta: dict[str, Any]) -> "QM9Graphs":
        data, slices = cls.collate(list(graphs))
        return cls(data, slices, meta)


def cache_path_for(root: Path, subset: int | None = None, subset_seed: int = 0, features: str = "rdkit") -> Path:
    """Return the cache file of one qm9pack build configuration."""
    suffix = "" if features == "rdkit" else f"_{features}-features"
    return Path(root) / "qm9pack" / f"graphs_{subset or 'full'}_s{subset_seed}{suffix}.pt"


def subset_positions(total: int, subset: int | None, subset_seed: int) -> np.ndarray:
    """Return the dataset positions of a subset: the first ``subset`` of a seeded permutation.

    For a fixed seed a smaller subset is a prefix of a larger one. ``None`` selects all
    molecules in file order.
    """
    if subset is None:
        return np.arange(total)
    if not 1 <= subset <= total:
        raise ValueError(f"subset must be between 1 and the {total} molecules available, got {subset}")
    return np.random.default_rng(subset_seed).permutation(total)[:subset]


def load_qm9_graphs(
    root: Path,
    source: str = "qm9pack",
    subset: int | None = None,
    subset_seed: int = 0,
    workers: int | None = None,
    csv_path: Path | None = None,
    features: str = "rdkit",
    rebuild: bool = False,
) -> QM9Graphs:
    """Load the QM9 graphs, building and caching them on the first call.

    source: ``"qm9pack"`` converts the qm9pack CSV files, or ``csv_path`` (a file in the same
        format), and caches the result in ``cache_path_for(root, ...)``. ``"pyg"`` wraps
        ``torch_geometric.datasets.QM9(root / "pyg")``, which downloads its raw files.
    subset: number of molecules drawn with ``subset_positions`` before conversion; None for all.
    workers: conversion processes; None picks one per available CPU for large builds.
    features: node and edge feature values, see ``convert.FEATURE_MODES`` (qm9pack only).
    rebuild: convert again even when a valid cache exists.

    Raises QM9CacheError when the cache file exists but is truncated or unreadable.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if features not in FEATURE_MODES:
        raise ValueError(f"features must be one of {FEATURE_MODES}, got {features!r}")
    if subset is not None and subset < 1:
        raise ValueError(f"subset must be None or a positive number of molecules, got {subset}")
    root = Path(root)

    if source == "pyg":
        if features != "rdkit" or csv_path is not None:
            raise ValueError("features and csv_path apply to source='qm9pack' only")
        return _load_pyg(root, subset, subset_seed)

    cache_path = cache_path_for(root, subset, subset_seed, features)
    csv_paths = [Path(csv_path)] if csv_path is not None else None
    if cache_path.exists() and not rebuild:
        started = time.perf_counter()
        graphs = read_cache(cache_path)
        expected = _expected_meta(csv_paths, subset, subset_seed, features)
        stale = _stale_fields(graphs.meta, expected)
        if not stale:
            graphs.meta["load_seconds"] = time.perf_counter() - started
            graphs.meta["from_cache"] = True
            logger.info("loaded %d QM9 graphs from %s in %.1f s", len(graphs), cache_path,
                        graphs.meta["load_seconds"])
            return graphs
        logger.warning("QM9 cache %s was built with other settings (%s); rebuilding it", cache_path,
                       ", ".join(f"{key}: {graphs.meta.get(key)!r} != {value!r}" for key, value in stale.items()))

    if csv_paths is None:
        csv_paths = find_qm9pack_csv()
    graphs = build_qm9_graphs(csv_paths, subset=subset, subset_seed=subset_seed, workers=workers, features=features)
    write_cache(graphs, cache_path)
    graphs.meta["cache_path"] = str(cache_path)
    graphs.meta["from_cache"] = False
    return graphs


def build_qm9_graphs(
    csv_paths: Sequence[Path],
    subset: int | None = None,
    subset_seed: int = 0,
    workers: int | None = None,
    features: str = "rdkit",
) -> QM9Graphs:
    """Convert qm9pack CSV files into collated graphs without touching any cache."""
    started = time.perf_counter()
    csv_paths = [Path(p) for p in csv_paths]
    molecules = read_molecules(csv_paths)
    positions = subset_positions(len(molecules), subset, subset_seed)
    records = molecules.iloc[positions].to_dict("records")
    del molecules
    workers = _resolve_workers(workers, len(records))
    logger.info("building %d QM9 graphs from %s with %d worker(s), %s features", len(records),
                ", ".join(str(p) for p in csv_paths), workers, features)

    graphs: list[Data] = []
    fallback_counts = {kind: 0 for kind in FALLBACK_KINDS}
    fallback_names: dict[str, list[str]] = {kind: [] for kind in FALLBACK_KINDS}
    logged_fallbacks = 0
    skipped: list[str] = []
    for record, result in zip(records, _convert_all(records, workers, features)):
        if isinstance(result, str):
            skipped.append(f"gdb_{record['Index']}")
            logger.warning("skipped invalid QM9 record gdb_%s: %s", record["Index"], result)
            continue
        graphs.append(graph_from_arrays(result.arrays))
        if result.fallback is not None:
            fallback_counts[result.fallback] += 1
            fallback_names[result.fallback].append(result.arrays["name"])
            if result.fallback not in _QUIET_FALLBACKS and logged_fallbacks < _LOGGED_FALLBACKS:
                logged_fallbacks += 1
                logger.warning("%s: bond perception fell back to %s (%s)", result.arrays["name"], result.fallback,
                               result.reason)
    if not graphs:
        raise ValueError(f"no valid QM9 record in {[str(p) for p in csv_paths]}")

    meta = _expected_meta(csv_paths, subset, subset_seed, features)
    meta.update(
        n_molecules=len(graphs),
        fallback_counts=fallback_counts,
        fallback_names=fallback_names,
        skipped_records=skipped,
        workers=workers,
        rdkit_version=rdkit.__version__,
        torch_geometric_version=torch_geometric.__version__,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    dataset = QM9Graphs.from_data_list(graphs, meta)
    meta["build_seconds"] = time.perf_counter() - started
    logger.info("built %d QM9 graphs in %.1f s; bond perception fallbacks: %s; skipped records: %d",
                len(graphs), meta["build_seconds"], fallback_counts, len(skipped))
    return dataset


def write_cache(graphs: QM9Graphs, path: Path) -> None:
    """Save the collated tensors and metadata to ``path`` atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format_version": CACHE_FORMAT_VERSION,
        "data": graphs._data.to_dict(),
        "slices": graphs.slices,
        "meta": graphs.meta,
    }
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f"{path.name}.", suffix=".pt.tmp", delete=False)
    try:
        with handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        # NamedTemporaryFile creates the file with mode 0600; give it the usual umask mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(handle.name, 0o666 & ~umask)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    logger.info("wrote QM9 graph cache %s (%.1f MB)", path, path.stat().st_size / 1e6)


def read_cache(path: Path) -> QM9Graphs:
    """Load a cache written by ``write_cache``; raise QM9CacheError when it is unreadable."""
    path = Path(path)
    fix = "delete it and run the same command again to rebuild it"
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as err:
        raise QM9CacheError(f"QM9 graph cache {path} is truncated or unreadable ({err}); {fix}") from err

    if not isinstance(payload, dict) or not {"format_version", "data", "slices", "meta"} <= payload.keys():
        raise QM9CacheError(f"QM9 graph cache {path} does not hold a graph payload; {fix}")
    if payload["format_version"] != CACHE_FORMAT_VERSION:
        raise QM9CacheError(f"QM9 graph cache {path} has format version {payload['format_version']}, "
                            f"this code reads version {CACHE_FORMAT_VERSION}; {fix}")
    meta = dict(payload["meta"])
    meta["cache_path"] = str(path)
    return QM9Graphs(Data.from_dict(payload["data"]), payload["slices"], meta)


def _expected_meta(csv_paths: Sequence[Path] | None, subset: int | None, subset_seed: int,
                   features: str) -> dict[str, Any]:
    """Return the metadata fields that identify a build configuration.

    CSV files are identified by name and size, so that a cache stays valid when the same
    package is installed at another path. ``csv_files`` is left out when the CSV files are
    unknown (qm9pack not installed and no ``csv_path``), so that a copied cache still loads.
    """
    meta: dict[str, Any] = {
        "source": "qm9pack",
        "format_version": CACHE_FORMAT_VERSION,
        "subset": subset,
        "subset_seed": subset_seed,
        "features": features,
    }
    if csv_paths is None:
        try:
            csv_paths = find_qm9pack_csv()
        except FileNotFoundError:
            return meta
    meta["csv_paths"] = [str(p) for p in csv_paths]
    meta["csv_files"] = [[p.name, p.stat().st_size] for p in map(Path, csv_paths)]
    return meta


def _stale_fields(meta: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """Return the identifying fields whose cached value differs from the expected one."""
    return {key: value for key, value in expected.items()
            if key != "csv_paths" and meta.get(key) != value}


def _resolve_workers(workers: int | None, n_records: int) -> int:
    if workers is not None:
        if workers < 0:
            raise ValueError(f"workers must be None or >= 0, got {workers}")
        return max(1, workers)
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(available, n_records // _MIN_MOLECULES_PER_WORKER))


def _convert_all(records: list[dict[str, Any]], workers: int, features: str):
    """Yield one conversion result per record, in record order."""
    jobs = ((record, features) for record in records)
    progress = dict(total=len(records), desc="QM9 graphs", unit="mol", mininterval=2.0)
    if workers == 1:
        yield from tqdm(map(convert_record_or_error, jobs), **progress)
        return
    # "spawn" because forking a process that has already run torch's thread pools can hang.
    # The workers import only the conversion module, not torch_geometric.
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers) as pool:
        # imap keeps the input order, so the result does not depend on the worker count.
        yield from tqdm(pool.imap(convert_record_or_error, jobs, chunksize=256), **progress)


def _load_pyg(root: Path, subset: int | None, subset_seed: int) -> QM9Graphs:
    """Wrap ``torch_geometric.datasets.QM9(root / "pyg")`` into QM9Graphs."""
    from torch_geometric.datasets import QM9

    pyg_root = root / "pyg"
    processed = pyg_root / "processed" / "data_v3.pt"
    if not processed.exists():
        _check_uncharacterized_layout(pyg_root / "raw" / "uncharacterized.txt")
    started = time.perf_counter()
    try:
        dataset = QM9(str(pyg_root))
    except OSError as err:
        raise RuntimeError(
            f"torch_geometric.datasets.QM9 could not download or read its files under {pyg_root} ({err}). "
            f"Without internet access, put gdb9.sdf, gdb9.sdf.csv and uncharacterized.txt into "
            f"{pyg_root / 'raw'}, or use source='qm9pack'"
        ) from err

    meta = {
        "source": "pyg",
        "n_molecules": len(dataset),
        "fallback_counts": {},
        "build_seconds": time.perf_counter() - started,
        "csv_paths": [],
        "pyg_root": str(pyg_root),
        "subset": subset,
        "subset_seed": subset_seed,
        "torch_geometric_version": torch_geometric.__version__,
    }
    graphs = QM9Graphs(dataset._data, dataset.slices, meta)
    if subset is not None:
        positions = subset_positions(len(graphs), subset, subset_seed)
        graphs = graphs.index_select(torch.from_numpy(positions))
        graphs.meta = {**meta, "n_molecules": len(graphs)}
    return graphs


def _check_uncharacterized_layout(path: Path) -> None:
    """Reject an uncharacterized.txt that PyG's fixed-offset parser would misread.

    PyG 2.8 takes the molecule ids from lines 10 to the third-to-last of the file, so a copy
    with extra lines at the top or bottom makes it skip the wrong molecules or crash.
    """
    if not path.exists():
        return
    lines = path.read_text().split("\n")[9:-2]
    bad = [line for line in lines if not line.split() or not line.split()[0].isdigit()]
    if bad or len(lines) != 3054:
        raise ValueError(
            f"{path} does not have the layout of the original QM9 uncharacterized.txt: PyG reads its "
            f"molecule ids from fixed line numbers and found {len(lines)} lines there "
            f"(3054 expected), e.g. {bad[:1]!r}. Replace it with the original file"
        )
