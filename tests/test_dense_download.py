"""Download helpers of NYUv2 and Cityscapes on local files only; nothing is fetched."""
from __future__ import annotations

import urllib.request
import zipfile

import numpy as np
import pytest

from datasets.cityscapes import download as cityscapes_download
from datasets.dense.download import (DownloadError, check_archive, direct_download_url, download_release,
                                     looks_like_html)
from datasets.nyuv2 import download as nyuv2_download

HTML_PAGE = b"\n  <!DOCTYPE html>\n<html><head><title>Dropbox</title></head><body>Sign in</body></html>"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def fail_on_open(*args, **kwargs):
        raise AssertionError("a test tried to open a URL")

    monkeypatch.setattr(urllib.request, "urlopen", fail_on_open)


def write_release_zip(path, top: str, folders: list[str]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for split in ("train", "val"):
            for folder in folders:
                buffer = path.parent / "sample.npy"
                np.save(buffer, np.zeros((2, 2), dtype=np.float32))
                archive.write(buffer, f"{top}/{split}/{folder}/0.npy")


def test_dropbox_link_becomes_direct():
    url = direct_download_url(nyuv2_download.ARCHIVE_URL)
    assert url.endswith("dl=1")
    assert "dl=0" not in url
    assert url.startswith("https://www.dropbox.com/s/p2nn02wijg7peiy/nyuv2.zip")


def test_html_page_detected_by_content(tmp_path):
    page = tmp_path / "nyuv2.zip"
    page.write_bytes(b"\xef\xbb\xbf" + HTML_PAGE)
    assert looks_like_html(page)
    with pytest.raises(DownloadError, match="HTML page") as error:
        check_archive(page, "Download it by hand.")
    assert "Download it by hand." in str(error.value)


def test_zip_is_not_html(tmp_path):
    archive = tmp_path / "release.zip"
    write_release_zip(archive, "nyuv2", ["image"])
    assert not looks_like_html(archive)
    check_archive(archive, "")


def test_other_binary_rejected(tmp_path):
    blob = tmp_path / "release.zip"
    blob.write_bytes(b"\x1f\x8b\x08\x00 gzip, not zip")
    with pytest.raises(DownloadError, match="not a ZIP archive"):
        check_archive(blob, "")


def test_html_download_moved_aside_with_manual_steps(tmp_path):
    (tmp_path / "nyuv2.zip").write_bytes(HTML_PAGE)
    with pytest.raises(DownloadError) as error:
        download_release("nyuv2", nyuv2_download.ARCHIVE_URL, tmp_path, nyuv2_download.REQUIRED, None,
                         nyuv2_download.manual_steps(tmp_path))
    message = str(error.value)
    assert "HTML page" in message
    assert "browser" in message
    assert str(tmp_path / "nyuv2.zip") in message
    assert not (tmp_path / "nyuv2.zip").exists()
    assert (tmp_path / "nyuv2.zip.rejected").exists()


def test_local_archive_installed_into_root(tmp_path):
    write_release_zip(tmp_path / "cityscapes.zip", "cityscapes2", ["image", "label_7", "label_19", "depth"])
    target = download_release("cityscapes", cityscapes_download.ARCHIVE_URL, tmp_path, cityscapes_download.REQUIRED,
                              None, cityscapes_download.manual_steps(tmp_path))
    assert target == tmp_path / "cityscapes"
    assert (target / "val" / "depth" / "0.npy").exists()
    assert not (tmp_path / "cityscapes.zip").exists()
    assert not (tmp_path / "cityscapes.unpack").exists()


def test_checksum_mismatch_rejected(tmp_path):
    write_release_zip(tmp_path / "nyuv2.zip", "nyuv2", ["image", "label", "depth", "normal"])
    with pytest.raises(DownloadError, match="SHA-256"):
        download_release("nyuv2", nyuv2_download.ARCHIVE_URL, tmp_path, nyuv2_download.REQUIRED, "0" * 64, "")


def test_archive_without_layout_rejected(tmp_path):
    write_release_zip(tmp_path / "nyuv2.zip", "nyuv2", ["image"])
    with pytest.raises(DownloadError, match="train/label"):
        download_release("nyuv2", nyuv2_download.ARCHIVE_URL, tmp_path, nyuv2_download.REQUIRED, None, "")


def test_existing_install_kept(tmp_path):
    for item in nyuv2_download.REQUIRED:
        (tmp_path / "nyuv2" / item).mkdir(parents=True)
    assert download_release("nyuv2", nyuv2_download.ARCHIVE_URL, tmp_path, nyuv2_download.REQUIRED, None, "") \
        == tmp_path / "nyuv2"


def test_command_line_reports_error_and_exit(tmp_path, capsys):
    (tmp_path / "cityscapes.zip").write_bytes(HTML_PAGE)
    with pytest.raises(SystemExit) as exit_info:
        cityscapes_download.main(["--root", str(tmp_path)])
    assert "HTML page" in str(exit_info.value.code)
    assert "datasets.cityscapes.prepare" in str(exit_info.value.code)


@pytest.mark.parametrize("module", [nyuv2_download, cityscapes_download], ids=["nyuv2", "cityscapes"])
def test_download_command_exits_with_manual_steps(tmp_path, module):
    name = module.__name__.split(".")[1]
    (tmp_path / f"{name}.zip").write_bytes(HTML_PAGE)
    with pytest.raises(SystemExit) as error:
        module.main(["--root", str(tmp_path)])
    message = str(error.value.code)
    assert message.startswith("error: ")
    assert "HTML page" in message
    assert str(tmp_path / name / "train" / "image") in message


@pytest.mark.parametrize("module", [nyuv2_download, cityscapes_download], ids=["nyuv2", "cityscapes"])
def test_download_command_keeps_installed_release(tmp_path, module):
    name = module.__name__.split(".")[1]
    for item in module.REQUIRED:
        (tmp_path / name / item).mkdir(parents=True)
    module.main(["--root", str(tmp_path)])
    assert not (tmp_path / f"{name}.zip").exists()
