"""Build the full QM9 graph cache from qm9pack and measure building and reloading it.

    python -m benchmarks.build_qm9 --root data [--workers N] [--output results/benchmarks/qm9_build.json]

An existing cache of the same configuration is rebuilt unless ``--keep-cache`` is given.
The figures are printed and written as JSON.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import torch

from benchmarks.runio import atomic_write_text
from datasets.qm9.convert import FEATURE_MODES
from datasets.qm9.graphs import cache_path_for, load_qm9_graphs

log = logging.getLogger("benchmarks.build_qm9")

EXPECTED_MOLECULES = 130_831


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("data"),
                        help="data root; the cache goes to ROOT/qm9pack/ (default: data)")
    parser.add_argument("--workers", type=int, default=None,
                        help="conversion processes (default: one per available CPU)")
    parser.add_argument("--features", choices=FEATURE_MODES, default="rdkit",
                        help="node and edge feature values (default: rdkit)")
    parser.add_argument("--keep-cache", action="store_true",
                        help="reuse an existing cache instead of rebuilding it")
    parser.add_argument("--output", type=Path, default=Path("results/benchmarks/qm9_build.json"),
                        help="JSON file for the figures (default: results/benchmarks/qm9_build.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    built = load_qm9_graphs(args.root, workers=args.workers, features=args.features, rebuild=not args.keep_cache)
    cache_path = cache_path_for(args.root, features=args.features)

    started = time.perf_counter()
    reloaded = load_qm9_graphs(args.root, features=args.features)
    reload_seconds = time.perf_counter() - started
    if not reloaded.meta.get("from_cache"):
        raise RuntimeError(f"the second load rebuilt {cache_path} instead of reading it")

    data = reloaded._data
    n_molecules = len(reloaded)
    figures = {
        "command": " ".join(["python -m benchmarks.build_qm9", *(argv if argv is not None else sys.argv[1:])]),
        "n_molecules": n_molecules,
        "expected_molecules": EXPECTED_MOLECULES,
        "build_seconds": round(built.meta["build_seconds"], 1),
        "built_from_cache": built.meta.get("from_cache", False),
        "reload_seconds": round(reload_seconds, 2),
        "cache_path": str(cache_path),
        "cache_size_mb": round(cache_path.stat().st_size / 1e6, 1),
        "fallback_counts": reloaded.meta["fallback_counts"],
        "skipped_records": len(reloaded.meta["skipped_records"]),
        "features": args.features,
        "workers": built.meta.get("workers"),
        "mean_nodes": round(data.x.size(0) / n_molecules, 2),
        "mean_directed_edges": round(data.edge_index.size(1) / n_molecules, 2),
        "aromatic_atom_fraction": round(float(data.x[:, 6].mean()), 4),
        "molecules_with_aromatic_bond": int(_molecules_with_aromatic_bond(reloaded)),
        "rdkit_version": reloaded.meta["rdkit_version"],
        "torch_geometric_version": reloaded.meta["torch_geometric_version"],
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "machine": f"{platform.machine()} {platform.processor() or platform.platform()}",
    }
    text = json.dumps(figures, indent=2)
    print(text)
    atomic_write_text(args.output, text + "\n")
    if n_molecules != EXPECTED_MOLECULES:
        log.error("built %d molecules, expected %d", n_molecules, EXPECTED_MOLECULES)
    return figures


def _molecules_with_aromatic_bond(graphs) -> int:
    """Count graphs with at least one aromatic edge (edge_attr column 3)."""
    edges_per_graph = graphs.slices["edge_attr"].diff()
    graph_of_edge = torch.repeat_interleave(torch.arange(len(edges_per_graph)), edges_per_graph)
    aromatic = torch.zeros(len(edges_per_graph)).index_add_(0, graph_of_edge, graphs._data.edge_attr[:, 3])
    return int((aromatic > 0).sum())


if __name__ == "__main__":
    main()
