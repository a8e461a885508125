"""CelebA annotation parsers, layouts and file checks, on small files written in tmp_path."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datasets.celeba import splits as celeba_splits
from datasets.celeba.annotations import (ATTRIBUTE_NAMES, AnnotationError, parse_attribute_file,
                                         parse_partition_file, split_codes_for)
from datasets.celeba.files import (DRIVE_FILES, ReleaseFileError, file_md5, locate_release, raise_if_html_page,
                                   verify_official_md5)
from datasets.celeba.splits import assign_splits, read_annotations

NAMES = ATTRIBUTE_NAMES


def sign_row(filename: str, positives: set[int], separator: str = " ") -> str:
    values = ["1" if k in positives else "-1" for k in range(len(NAMES))]
    return filename + separator + separator.join(values)


def write_attribute_file(path: Path, rows: list[str], newline: str = "\r\n", final_newline: bool = True,
                         count: int | None = None) -> Path:
    lines = [str(len(rows) if count is None else count), " ".join(NAMES) + " ", *rows]
    text = newline.join(lines) + (newline if final_newline else "")
    path.write_bytes(text.encode())
    return path


def write_partition_file(path: Path, entries: list[tuple[str, int]], newline: str = "\n") -> Path:
    path.write_bytes(newline.join(f"{name} {code}" for name, code in entries).encode() + newline.encode())
    return path


def write_release(base: Path, layout: str, names: list[str], codes: list[int]) -> Path:
    """Write a tiny CelebA copy (annotation files and an image folder) in the given layout."""
    if layout == "official":
        attribute_path, partition_path, images = base / "Anno", base / "Eval", base / "Img" / "img_align_celeba"
    else:
        attribute_path, partition_path, images = base, base, base / "img_align_celeba"
    for folder in (attribute_path, partition_path, images):
        folder.mkdir(parents=True, exist_ok=True)
    write_attribute_file(attribute_path / "list_attr_celeba.txt", [sign_row(n, {i % 40}) for i, n in enumerate(names)])
    write_partition_file(partition_path / "list_eval_partition.txt", list(zip(names, codes)))
    return base


def test_attribute_parser_crlf_and_spacing(tmp_path):
    rows = [sign_row("000001.jpg", {0, 39}, separator="  "), sign_row("000002.jpg", {5}, separator=" \t ")]
    table = parse_attribute_file(write_attribute_file(tmp_path / "attr.txt", rows, newline="\r\n"))

    assert table.names == NAMES
    assert table.filenames == ("000001.jpg", "000002.jpg")
    assert table.labels.dtype == np.uint8
    assert table.labels.shape == (2, 40)
    assert np.flatnonzero(table.labels[0]).tolist() == [0, 39]
    assert np.flatnonzero(table.labels[1]).tolist() == [5]


def test_attribute_parser_missing_final_newline(tmp_path):
    rows = [sign_row("000001.jpg", {1}), sign_row("000002.jpg", {2})]
    for newline in ("\r\n", "\n"):
        path = write_attribute_file(tmp_path / "attr.txt", rows, newline=newline, final_newline=False)
        table = parse_attribute_file(path)
        assert table.filenames == ("000001.jpg", "000002.jpg")
        assert table.labels[1, 2] == 1


def test_attribute_parser_trailing_blank_lines(tmp_path):
    path = write_attribute_file(tmp_path / "attr.txt", [sign_row("000001.jpg", {3})])
    path.write_bytes(path.read_bytes() + b"\r\n\r\n  \r\n")
    assert parse_attribute_file(path).filenames == ("000001.jpg",)


def test_attribute_parser_count_mismatch(tmp_path):
    path = write_attribute_file(tmp_path / "attr.txt", [sign_row("000001.jpg", set())], count=3)
    with pytest.raises(AnnotationError, match=r"declares 3 images but the file lists 1"):
        parse_attribute_file(path)


def test_attribute_parser_bad_value(tmp_path):
    bad = sign_row("000002.jpg", set()).replace("-1", "0", 1)
    path = write_attribute_file(tmp_path / "attr.txt", [sign_row("000001.jpg", set()), bad])
    with pytest.raises(AnnotationError, match=r"line 4: attribute value '0' of 000002.jpg"):
        parse_attribute_file(path)


def test_attribute_parser_short_row(tmp_path):
    short = " ".join(sign_row("000001.jpg", set()).split()[:-1])
    path = write_attribute_file(tmp_path / "attr.txt", [short])
    with pytest.raises(AnnotationError, match=r"line 3: 40 fields, expected a file name and 40"):
        parse_attribute_file(path)


def test_attribute_parser_duplicate_image(tmp_path):
    path = write_attribute_file(tmp_path / "attr.txt", [sign_row("000001.jpg", set())] * 2)
    with pytest.raises(AnnotationError, match=r"more than once.*000001.jpg"):
        parse_attribute_file(path)


def test_attribute_names_must_match_release(tmp_path):
    base = write_release(tmp_path, "flat", ["000001.jpg"], [0])
    attribute_path = base / "list_attr_celeba.txt"
    attribute_path.write_bytes(attribute_path.read_bytes().replace(b"Smiling", b"Smile"))
    with pytest.raises(AnnotationError, match=r"Smile.*Smiling"):
        read_annotations(locate_release(base))


def test_partition_parser_formats(tmp_path):
    path = tmp_path / "partition.txt"
    path.write_bytes(b"000001.jpg 0\r\n000002.jpg   1\r\n000003.jpg\t2")
    partition = parse_partition_file(path)

    assert partition.filenames == ("000001.jpg", "000002.jpg", "000003.jpg")
    assert partition.splits.tolist() == [0, 1, 2]


def test_partition_parser_bad_split(tmp_path):
    path = write_partition_file(tmp_path / "partition.txt", [("000001.jpg", 0), ("000002.jpg", 3)])
    with pytest.raises(AnnotationError, match=r"line 2: expected '<file> <split>'"):
        parse_partition_file(path)


def test_mismatched_rows_listed(tmp_path):
    attribute_path = write_attribute_file(tmp_path / "attr.txt",
                                          [sign_row(f"{i:06d}.jpg", set()) for i in range(1, 5)])
    partition_path = write_partition_file(tmp_path / "partition.txt",
                                          [(f"{i:06d}.jpg", 0) for i in (1, 2, 3, 9)])
    attributes, partition = parse_attribute_file(attribute_path), parse_partition_file(partition_path)

    with pytest.raises(AnnotationError) as error:
        split_codes_for(attributes, partition, attribute_path, partition_path)
    message = str(error.value)
    assert "1 only in the attribute file (e.g. ['000004.jpg'])" in message
    assert "1 only in the partition file (e.g. ['000009.jpg'])" in message


def test_split_codes_follow_attribute_order(tmp_path):
    attribute_path = write_attribute_file(tmp_path / "attr.txt", [sign_row(n, set()) for n in ("b.jpg", "a.jpg")])
    partition_path = write_partition_file(tmp_path / "partition.txt", [("a.jpg", 2), ("b.jpg", 1)])
    codes = split_codes_for(parse_attribute_file(attribute_path), parse_partition_file(partition_path),
                            attribute_path, partition_path)
    assert codes.tolist() == [1, 2]


@pytest.mark.parametrize("name", ["list_attr_celeba.txt", "list_eval_partition.txt"])
def test_html_page_detected(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\n<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head>"
                     b"<body>Too many users have viewed or downloaded this file recently.</body></html>")
    parse = parse_attribute_file if name.startswith("list_attr") else parse_partition_file
    with pytest.raises(ReleaseFileError, match=r"is an HTML page.*download quota"):
        parse(path)


def test_html_check_accepts_annotations():
    raise_if_html_page(Path("list_attr_celeba.txt"), b"202599\r\n5_o_Clock_Shadow Arched_Eyebrows")


@pytest.mark.parametrize("layout", ["official", "flat"])
def test_locate_release_layouts(tmp_path, layout):
    write_release(tmp_path / "celeba", layout, ["000001.jpg"], [0])
    files = locate_release(tmp_path)

    assert files.layout == layout
    assert files.attributes.is_file()
    assert files.partition.is_file()
    assert files.images.is_dir()


def test_locate_release_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no CelebA copy under .*datasets.celeba.download"):
        locate_release(tmp_path)


def test_locate_release_incomplete(tmp_path):
    write_release(tmp_path, "official", ["000001.jpg"], [0])
    (tmp_path / "Eval" / "list_eval_partition.txt").unlink()
    with pytest.raises(ReleaseFileError, match=r"list_eval_partition.txt"):
        locate_release(tmp_path)


def test_md5_mismatch_named(tmp_path):
    path = write_partition_file(tmp_path / "list_eval_partition.txt", [("000001.jpg", 0)])
    with pytest.raises(ReleaseFileError) as error:
        verify_official_md5(path, "list_eval_partition.txt")
    assert file_md5(path) in str(error.value)
    assert DRIVE_FILES["list_eval_partition.txt"][1] in str(error.value)


def test_md5_checked_only_for_full_files(tmp_path, monkeypatch):
    files = locate_release(write_release(tmp_path, "flat", ["000001.jpg", "000002.jpg"], [0, 1]))
    attributes, codes = read_annotations(files)
    assert codes.tolist() == [0, 1]

    monkeypatch.setattr(celeba_splits, "FULL_IMAGE_COUNT", 2)
    with pytest.raises(ReleaseFileError, match=r"list_attr_celeba.txt has md5"):
        read_annotations(files)
    assert read_annotations(files, verify_md5=False)[1].tolist() == [0, 1]


def test_assign_splits_carve_and_limit():
    codes = np.array([0] * 10, dtype=np.int8)
    rows = assign_splits(codes, carve_from_train={"val": 2, "test": 3}, limits={"train": 4})

    assert rows["val"].tolist() == [8, 9]
    assert rows["test"].tolist() == [5, 6, 7]
    assert rows["train"].tolist() == [0, 1, 2, 3]


def test_assign_splits_carve_skips_listed_split():
    codes = np.array([0, 0, 0, 1, 2], dtype=np.int8)
    rows = assign_splits(codes, carve_from_train={"val": 2, "test": 2})

    assert rows["train"].tolist() == [0, 1, 2]
    assert rows["val"].tolist() == [3]
    assert rows["test"].tolist() == [4]


def test_assign_splits_empty_split_rejected():
    with pytest.raises(ValueError, match=r"val split of CelebA is empty.*carve_from_train.val"):
        assign_splits(np.array([0, 0, 2], dtype=np.int8))


def test_download_rejects_html_page(tmp_path, monkeypatch):
    from datasets.celeba import download

    def fetch_quota_page(file_id: str, destination: Path) -> None:
        destination.write_bytes(b"<!DOCTYPE html><html><title>Google Drive - Quota exceeded</title></html>")

    monkeypatch.setattr(download, "fetch_with_urllib", fetch_quota_page)
    with pytest.raises(ReleaseFileError, match=r"list_attr_celeba.txt.part is an HTML page"):
        download.download_file("list_attr_celeba.txt", tmp_path, use_gdown=False)
    assert not (tmp_path / "list_attr_celeba.txt").exists()


def test_download_rejects_wrong_md5(tmp_path, monkeypatch):
    from datasets.celeba import download

    monkeypatch.setattr(download, "fetch_with_urllib", lambda file_id, destination: destination.write_bytes(b"0"))
    with pytest.raises(ReleaseFileError, match=r"has md5 .* expected d32c9cbf5e040fd4025c592c306e6668"):
        download.download_file("list_eval_partition.txt", tmp_path, use_gdown=False)
    assert not (tmp_path / "list_eval_partition.txt").exists()
