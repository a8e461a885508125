"""Read back the records of an offline W&B run (``run-<id>.wandb``).

The file is a LevelDB-style log: a 7-byte header (``:W&B``, two magic bytes, a version
byte), then 32 KiB blocks of chunks, each with a 4-byte checksum, a 2-byte little-endian
length and a 1-byte type (1 full, 2 first, 3 middle, 4 last). Each reassembled payload is
a ``wandb_internal_pb2.Record``. Used by tests and for inspecting runs without syncing.
"""
from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any, Iterator

BLOCK_SIZE = 32 * 1024
FILE_HEADER = 7
CHUNK_HEADER = 7


def iter_payloads(path: Path) -> Iterator[bytes]:
    data = Path(path).read_bytes()
    if not data:
        raise ValueError(f"{path} is empty: the W&B run was not finished (wandb.finish) before the process ended")
    if not data.startswith(b":W&B"):
        raise ValueError(f"{path} is not a W&B run file (missing ':W&B' header)")
    position = FILE_HEADER
    pending = b""
    while position + CHUNK_HEADER <= len(data):
        left_in_block = BLOCK_SIZE - position % BLOCK_SIZE
        if left_in_block < CHUNK_HEADER:
            position += left_in_block
            continue
        _checksum, length, chunk_type = struct.unpack("<IHB", data[position : position + CHUNK_HEADER])
        payload = data[position + CHUNK_HEADER : position + CHUNK_HEADER + length]
        position += CHUNK_HEADER + length
        if chunk_type == 0:
            position += BLOCK_SIZE - position % BLOCK_SIZE if position % BLOCK_SIZE else 0
        elif chunk_type == 1:
            yield payload
        elif chunk_type == 2:
            pending = payload
        elif chunk_type == 3:
            pending += payload
        elif chunk_type == 4:
            yield pending + payload
            pending = b""


def _items(items) -> dict[str, Any]:
    values = {}
    for item in items:
        key = item.key or "/".join(item.nested_key)
        values[key] = json.loads(item.value_json)
    return values


def read_offline_run(run_file: Path, wait_seconds: float = 30.0) -> dict[str, Any]:
    """Return ``{"history": [rows], "summary": {...}, "config": {...}}`` of one offline run.

    The W&B service process writes the file asynchronously, and ``wandb.finish()`` can
    return before the last records reach the disk. The reader therefore polls until the
    run's ``exit`` record is present, for at most ``wait_seconds``, and then returns what
    the file contains.
    """
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            parsed, finished = _parse_run_file(run_file)
        except ValueError:
            if time.monotonic() >= deadline:
                raise
            parsed, finished = None, False
        if finished or time.monotonic() >= deadline:
            if parsed is None:
                raise ValueError(f"{run_file} holds no readable W&B records")
            return parsed
        time.sleep(0.2)


def _parse_run_file(run_file: Path) -> tuple[dict[str, Any], bool]:
    from wandb.proto import wandb_internal_pb2

    history: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    config: dict[str, Any] = {}
    finished = False
    for payload in iter_payloads(run_file):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append(_items(record.history.item))
        elif kind == "summary":
            summary.update(_items(record.summary.update))
        elif kind == "config":
            config.update(_items(record.config.update))
        elif kind == "run":
            summary.update(_items(record.run.summary.update))
            config.update(_items(record.run.config.update))
        elif kind == "exit":
            finished = True
    return {"history": history, "summary": summary, "config": config}, finished


def find_run_files(folder: Path) -> list[Path]:
    """Return the offline run files below ``folder``, oldest first."""
    return sorted(Path(folder).glob("**/offline-run-*/run-*.wandb"))
