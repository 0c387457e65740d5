"""Downloads without the network: a local http.server on 127.0.0.1 (with Range support) and a closed port."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mdbd.data.download import download, fetch_cuhk, fetch_dut, verify_or_record
from mdbd.data.readers import open_dataset
from mdbd.core.errors import DataError


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    log: list[tuple[str, str | None]] = []

    def do_GET(self):  # noqa: N802 (http.server API)
        body = self.files.get(self.path)
        self.log.append((self.path, self.headers.get("Range")))
        if body is None:
            self.send_error(404)
            return
        start = 0
        if rng := self.headers.get("Range"):
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def server():
    _RangeHandler.files, _RangeHandler.log = {}, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _RangeHandler
    httpd.shutdown()
    httpd.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket goes: connections are refused


def test_download_full_and_resumed(server, tmp_path):
    base, handler = server
    payload = bytes(range(256)) * 400
    handler.files["/a.bin"] = payload
    dest = download(f"{base}/a.bin", tmp_path / "a.bin")
    assert dest.read_bytes() == payload and not (tmp_path / "a.bin.part").exists()
    # an interrupted earlier download: the .part holds the first 1000 bytes; only the rest is requested
    (tmp_path / "b.bin.part").write_bytes(payload[:1000])
    handler.files["/b.bin"] = payload
    download(f"{base}/b.bin", tmp_path / "b.bin")
    assert (tmp_path / "b.bin").read_bytes() == payload
    assert handler.log[-1] == ("/b.bin", "bytes=1000-")


def test_offline_error_is_fast_and_names_address(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/BlurDatasetImage.zip"
    started = time.monotonic()
    with pytest.raises(DataError, match=r"cannot reach http://127\.0\.0\.1:\d+/BlurDatasetImage\.zip.*put them in"):
        fetch_cuhk(raw_dir=tmp_path / "raw", out_dir=tmp_path / "cuhk", base_url=url.rsplit("/", 1)[0], progress=False)
    assert time.monotonic() - started < 30  # generous bound: the point is "seconds, not a hang"
    assert not (tmp_path / "raw" / "BlurDatasetImage.zip").exists()


def test_http_error_named(server, tmp_path):
    base, _ = server
    with pytest.raises(DataError, match=r"nothing\.zip failed: HTTP 404"):
        download(f"{base}/nothing.zip", tmp_path / "nothing.zip")


def test_checksum_recorded_then_checked(tmp_path):
    archive = tmp_path / "x.zip"
    archive.write_bytes(b"first")
    digest = verify_or_record(archive)
    assert json.loads((tmp_path / "checksums.json").read_text()) == {"x.zip": digest}
    assert verify_or_record(archive) == digest
    archive.write_bytes(b"changed")
    with pytest.raises(DataError, match=r"checksum mismatch for .*x\.zip"):
        verify_or_record(archive)


def _png_bytes(array: np.ndarray, fmt="PNG") -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def _cuhk_zips(folder: Path, n_defocus=704) -> None:
    # Shi-like masks (white = blurred, a third in focus): an all-black mask reads as a copy with inverted masks
    shi_mask = np.full((4, 6), 255, np.uint8)
    shi_mask[:, :2] = 0
    img, mask = _png_bytes(np.zeros((4, 6, 3), np.uint8), "JPEG"), _png_bytes(shi_mask)
    with zipfile.ZipFile(folder / "BlurDatasetImage.zip", "w") as zf:
        for n in range(1, n_defocus + 1):
            zf.writestr(f"image/out_of_focus{n:04d}{'.JPG' if n == 26 else '.jpg'}", img)
        zf.writestr("image/motion0001.jpg", img)
    with zipfile.ZipFile(folder / "BlurDatasetGT.zip", "w") as zf:
        for n in range(1, n_defocus + 1):
            zf.writestr(f"gt/out_of_focus{n:04d}.png", mask)


def test_fetch_cuhk_over_http_then_from_raw(server, tmp_path):
    base, handler = server
    src = tmp_path / "src"
    src.mkdir()
    _cuhk_zips(src)
    for name in ("BlurDatasetImage.zip", "BlurDatasetGT.zip"):
        handler.files[f"/data/{name}"] = (src / name).read_bytes()
    out = fetch_cuhk(tmp_path / "raw", tmp_path / "cuhk", base_url=f"{base}/data", progress=False)
    ds = open_dataset("cuhk", out, split="all")
    assert len(ds) == 704 and ds.has_images and ds[25].image.shape == (4, 6, 3)
    sums = json.loads((tmp_path / "raw" / "checksums.json").read_text())
    assert set(sums) == {"BlurDatasetImage.zip", "BlurDatasetGT.zip"}
    # second run: archives already in raw/, no request made; a tampered archive is refused
    handler.log.clear()
    fetch_cuhk(tmp_path / "raw", tmp_path / "cuhk", base_url=f"{base}/data", progress=False)
    assert handler.log == []
    with open(tmp_path / "raw" / "BlurDatasetGT.zip", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(DataError, match="checksum mismatch.*BlurDatasetGT.zip"):
        fetch_cuhk(tmp_path / "raw", tmp_path / "cuhk2", base_url=f"{base}/data", progress=False)


def test_fetch_cuhk_wrong_count_leaves_nothing(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    _cuhk_zips(raw, n_defocus=700)
    with pytest.raises(DataError, match="700 out_of_focus files, expected 704"):
        fetch_cuhk(raw, tmp_path / "cuhk", progress=False)
    assert not (tmp_path / "cuhk").exists() and not list(tmp_path.glob(".cuhk-extract-*"))


def test_fetch_dut_archive_counts(tmp_path):
    img, mask = _png_bytes(np.zeros((4, 4, 3), np.uint8), "JPEG"), _png_bytes(np.zeros((4, 4), np.uint8), "BMP")
    archive = tmp_path / "DUT.zip"
    with zipfile.ZipFile(archive, "w") as zf:  # mirrors nest the folders differently: found anywhere
        for n in range(1, 501):
            zf.writestr(f"mirror/DUT500S-Testing/{n}.jpg", img)
            zf.writestr(f"mirror/DUT500GT-Testing/{n}.bmp", mask)
    out = fetch_dut(archive, tmp_path / "raw", tmp_path / "dut", progress=False)
    assert len(open_dataset("dut", out, split="test")) == 500
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("DUT600S_Training/1.jpg", img)
    with pytest.raises(DataError, match="DUT600S_Training/ has 1 files, expected 600"):
        fetch_dut(bad, tmp_path / "raw", tmp_path / "dut2", progress=False)
    (tmp_path / "trunc.zip").write_bytes(archive.read_bytes()[:200])
    with pytest.raises(DataError, match="trunc.zip"):
        fetch_dut(tmp_path / "trunc.zip", tmp_path / "raw", tmp_path / "dut3", progress=False)
