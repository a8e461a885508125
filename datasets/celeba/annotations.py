"""Parsers of the CelebA annotation files ``list_attr_celeba.txt`` and ``list_eval_partition.txt``.

Attribute file: line 1 is the image count, line 2 the 40 attribute names, then one line
per image, ``<file> ±1 × 40``. Partition file: one line per image, ``<file> <split>`` with
0/1/2 = train/val/test. Both parsers accept CRLF or LF line ends, a missing final newline,
blank lines, and any run of spaces or tabs between fields, because copies of the release
differ in these details.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datasets.celeba.files import raise_if_html_page

# The 40 attributes in the column order of the released list_attr_celeba.txt.
ATTRIBUTE_NAMES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones",
    "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin",
    "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair",
    "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace",
    "Wearing_Necktie", "Young",
)

SPLIT_CODES: dict[str, int] = {"train": 0, "val": 1, "test": 2}

# At most this many offending entries are listed in an error message.
MAX_LISTED = 5


class AnnotationError(ValueError):
    """An annotation file is malformed, or the two annotation files disagree."""


@dataclass(frozen=True)
class AttributeTable:
    """The parsed attribute file: ``labels[i, k]`` is 1 when image ``filenames[i]`` has attribute ``names[k]``."""

    names: tuple[str, ...]
    filenames: tuple[str, ...]
    labels: np.ndarray  # (N, K) uint8 in {0, 1}


@dataclass(frozen=True)
class PartitionTable:
    """The parsed partition file: ``splits[i]`` is the split code (0/1/2) of ``filenames[i]``."""

    filenames: tuple[str, ...]
    splits: np.ndarray  # (N,) int8 in {0, 1, 2}


def read_lines(path: Path) -> list[tuple[int, list[str]]]:
    """Return ``(line number, whitespace-separated fields)`` of every non-blank line of ``path``."""
    data = Path(path).read_bytes()
    raise_if_html_page(path, data)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise AnnotationError(f"{path} is not a text file ({error}); download it again") from error
    return [(number, line.split()) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _duplicates(filenames: list[str]) -> list[str]:
    seen: set[str] = set()
    repeated: list[str] = []
    for name in filenames:
        if name in seen and name not in repeated:
            repeated.append(name)
        seen.add(name)
    return repeated


def _is_sign(value: str) -> bool:
    try:
        return int(value) in (1, -1)
    except ValueError:
        return False


def _parse_sign_values(path: Path, rows: list[tuple[int, list[str]]], num_columns: int) -> np.ndarray:
    """Convert the ±1 fields of every row to a (N, K) uint8 array of 0/1 labels."""
    tokens = itertools.chain.from_iterable(fields[1:] for _, fields in rows)
    try:
        values = np.fromiter(map(int, tokens), dtype=np.int64).reshape(len(rows), num_columns)
    except ValueError:
        values = None
    if values is not None and ((values == 1) | (values == -1)).all():
        return (values == 1).astype(np.uint8)

    # Slow path, only to name the first offending line and value.
    for number, fields in rows:
        for value in fields[1:]:
            if not _is_sign(value):
                raise AnnotationError(f"{path} line {number}: attribute value {value!r} of {fields[0]} is not "
                                      "1 or -1; the file is damaged, download it again")
    raise AssertionError(f"{path}: the fast parser rejected a value that the line-by-line check accepts")


def parse_attribute_file(path: Path) -> AttributeTable:
    """Parse ``list_attr_celeba.txt``; raise :class:`AnnotationError` naming the line on bad input."""
    lines = read_lines(path)
    if len(lines) < 2:
        raise AnnotationError(f"{path} has {len(lines)} non-blank line(s); expected the image count, the "
                              "attribute names and one line per image")

    count_line, count_fields = lines[0]
    if len(count_fields) != 1 or not count_fields[0].isdigit():
        raise AnnotationError(f"{path} line {count_line}: expected the image count, found {' '.join(count_fields)!r}")
    declared_count = int(count_fields[0])
    names = tuple(lines[1][1])
    rows = lines[2:]

    for number, fields in rows:
        if len(fields) != len(names) + 1:
            raise AnnotationError(f"{path} line {number}: {len(fields)} fields, expected a file name and "
                                  f"{len(names)} attribute values")
    if declared_count != len(rows):
        raise AnnotationError(f"{path}: line {count_line} declares {declared_count} images but the file lists "
                              f"{len(rows)}; the file is truncated or edited, download it again")

    filenames = [fields[0] for _, fields in rows]
    repeated = _duplicates(filenames)
    if repeated:
        raise AnnotationError(f"{path} lists {len(repeated)} image(s) more than once, e.g. {repeated[:MAX_LISTED]}")
    return AttributeTable(names=names, filenames=tuple(filenames), labels=_parse_sign_values(path, rows, len(names)))


def parse_partition_file(path: Path) -> PartitionTable:
    """Parse ``list_eval_partition.txt``; raise :class:`AnnotationError` naming the line on bad input."""
    lines = read_lines(path)
    valid_codes = {str(code) for code in SPLIT_CODES.values()}
    for number, fields in lines:
        if len(fields) != 2 or fields[1] not in valid_codes:
            raise AnnotationError(f"{path} line {number}: expected '<file> <split>' with split 0, 1 or 2 "
                                  f"(train/val/test), found {' '.join(fields)!r}")

    filenames = [fields[0] for _, fields in lines]
    repeated = _duplicates(filenames)
    if repeated:
        raise AnnotationError(f"{path} lists {len(repeated)} image(s) more than once, e.g. {repeated[:MAX_LISTED]}")
    splits = np.array([int(fields[1]) for _, fields in lines], dtype=np.int8)
    return PartitionTable(filenames=tuple(filenames), splits=splits)


def split_codes_for(attributes: AttributeTable, partition: PartitionTable, attribute_path: Path,
                    partition_path: Path) -> np.ndarray:
    """Return the split code of every attribute row, in attribute-file order.

    Both files must name exactly the same images; otherwise the error lists a few images
    that only one of them names.
    """
    attribute_files = set(attributes.filenames)
    partition_files = set(partition.filenames)
    if attribute_files != partition_files:
        only_attributes = sorted(attribute_files - partition_files)
        only_partition = sorted(partition_files - attribute_files)
        raise AnnotationError(
            f"{attribute_path} and {partition_path} name different images: "
            f"{len(only_attributes)} only in the attribute file (e.g. {only_attributes[:MAX_LISTED]}), "
            f"{len(only_partition)} only in the partition file (e.g. {only_partition[:MAX_LISTED]}). "
            "Use the two files of the same release."
        )

    code_of = dict(zip(partition.filenames, partition.splits.tolist()))
    return np.array([code_of[name] for name in attributes.filenames], dtype=np.int8)
