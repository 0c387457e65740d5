"""Getting the real datasets: resumable, atomic downloads with recorded checksums, and verified extraction.

    fetch_cuhk()                                  # official archives -> data/raw/ -> data/cuhk/{image,gt}
    fetch_dut("/path/or/url/to/DUT.zip")          # any mirror's archive -> data/dut/DUT600S_Training, ...

- Downloads go to `<name>.part`, resume with an HTTP Range request when a `.part` exists, and are renamed to the
  final name only when complete (size checked against Content-Length).
- sha256 of each archive is recorded in data/raw/checksums.json the first time it is seen and checked every later
  time; a mismatch is a DataError naming the file and both hashes.
- No network: a DataError within seconds (CONNECT_TIMEOUT_S) naming the address and the manual alternative.
- Extraction goes to a temporary folder next to the destination; counts are verified (704 CUHK defocus images and
  masks; DUT 600 train / 500 test pairs) before anything is moved into place.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Callable

from mdbd.data.readers import CUHK_DEFOCUS_COUNT, DUT_LAYOUTS
from mdbd.core.errors import DataError
from mdbd.core.io import atomic_write_text, sha256_file
from mdbd.core.paths import data_dir

CUHK_BASE_URL = "http://www.cse.cuhk.edu.hk/leojia/projects/dblurdetect/data/"
CUHK_ARCHIVES = {"image": "BlurDatasetImage.zip", "gt": "BlurDatasetGT.zip"}
CUHK_PAGE = "http://www.cse.cuhk.edu.hk/leojia/projects/dblurdetect/dataset.html"
DUT_PAIRS = {"train": 600, "test": 500}  # DUT600 / DUT500
# every folder of every DUT layout the readers know -> the files it must hold (official names first)
DUT_COUNTS = {folder: DUT_PAIRS[split] for split, layouts in DUT_LAYOUTS.items()
              for pair in layouts for folder in pair}
CONNECT_TIMEOUT_S = 5.0
CHUNK = 1 << 20


def _default_raw_dir() -> Path:
    return data_dir() / "raw"


# -- checksums ---------------------------------------------------------------------------------------------

def verify_or_record(path: Path, checksums_file: Path | None = None) -> str:
    """Check `path` against its recorded sha256, or record it when first seen; returns the hash."""
    checksums_file = checksums_file or path.parent / "checksums.json"
    recorded = json.loads(checksums_file.read_text()) if checksums_file.is_file() else {}
    actual = sha256_file(path)
    expected = recorded.get(path.name)
    if expected is None:
        recorded[path.name] = actual
        atomic_write_text(checksums_file, json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    elif expected != actual:
        raise DataError(f"checksum mismatch for {path}: sha256 {actual}, recorded {expected} in {checksums_file}; "
                        f"the archive is corrupt or a different file: delete it and fetch again")
    return actual


# -- download ------------------------------------------------------------------------------------------------

def download(url: str, dest: str | Path, timeout: float = CONNECT_TIMEOUT_S, manual_hint: str = "",
             progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Fetch `url` to `dest` (resumable from `dest.part`, renamed into place when complete)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "mdbd"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the .part is already complete
            os.replace(part, dest)
            return dest
        raise DataError(f"download of {url} failed: HTTP {exc.code} {exc.reason}.{manual_hint}") from None
    except OSError as exc:  # URLError, timeouts and refused connections are all OSErrors
        reason = getattr(exc, "reason", exc)
        raise DataError(f"cannot reach {url} ({reason}): no network or the server is down.{manual_hint}") from None
    with response:
        resumed = have and response.status == 206
        total = response.headers.get("Content-Length")
        total = int(total) + (have if resumed else 0) if total is not None else None
        done = have if resumed else 0
        try:
            with open(part, "ab" if resumed else "wb") as fh:
                while block := response.read(CHUNK):
                    fh.write(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
        except OSError as exc:  # timeouts and dropped connections included
            raise DataError(f"download of {url} interrupted after {done} bytes ({exc}); run the same command "
                            f"again to resume from {part}.{manual_hint}") from None
    if total is not None and done != total:
        raise DataError(f"download of {url} incomplete: {done} of {total} bytes in {part}; run again to resume")
    os.replace(part, dest)
    return dest


def _tqdm_progress(desc: str):
    from tqdm.auto import tqdm

    bar = None

    def update(done: int, total: int | None) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, initial=done, unit="B", unit_scale=True, desc=desc)
        bar.n = done
        bar.refresh()

    return update


def obtain_archive(source: str, raw_dir: Path, name: str | None = None, manual_hint: str = "",
                   progress: bool = True) -> Path:
    """A local archive path is used in place; a URL is downloaded to raw_dir (unless already there). Checksum
    verified."""
    if "://" in source:
        dest = raw_dir / (name or Path(urllib.request.url2pathname(source.split("?")[0])).name)
        if not dest.is_file():
            download(source, dest, manual_hint=manual_hint, progress=_tqdm_progress(dest.name) if progress else None)
    else:
        dest = Path(source).expanduser()
        if not dest.is_file():
            raise DataError(f"archive not found: {dest}")
    verify_or_record(dest, raw_dir / "checksums.json")
    return dest


# -- extraction ----------------------------------------------------------------------------------------------

def extract(archive: Path, into: Path) -> None:
    """Unpack a .zip or .tar(.gz/.bz2/.xz) archive; members escaping `into` are refused."""
    into.mkdir(parents=True, exist_ok=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                bad = zf.testzip()
                if bad:
                    raise DataError(f"corrupt archive {archive}: member {bad} fails its CRC check")
                zf.extractall(into)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                tf.extractall(into, filter="data")
        else:
            raise DataError(f"{archive} is neither a zip nor a tar archive (rar/7z: unpack it yourself and pass "
                            f"the folder's parent to `mdbd data summary --root`, or repack it as zip)")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise DataError(f"corrupt or truncated archive {archive}: {exc}") from None


def _find_dir(tree: Path, name: str) -> Path | None:
    hits = sorted(p for p in tree.rglob(name) if p.is_dir() and "__MACOSX" not in p.parts)
    return hits[0] if hits else None


def _count(folder: Path, prefix: str = "") -> int:
    return sum(1 for p in folder.iterdir()
               if p.is_file() and p.name.lower().startswith(prefix) and not p.name.startswith("."))


def _install(staged: dict[str, Path], out_dir: Path) -> None:
    """Move verified folders into out_dir, replacing older copies (each rename is atomic)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, folder in staged.items():
        target = out_dir / name
        if target.exists():
            shutil.rmtree(target)
        os.replace(folder, target)


# -- datasets -------------------------------------------------------------------------------------------------

def _cuhk_hint(raw_dir: Path) -> str:
    return (f" Manual alternative: download {' and '.join(CUHK_ARCHIVES.values())} from {CUHK_PAGE} on another "
            f"machine, put them in {raw_dir}/ and run `mdbd data fetch --dataset cuhk` again.")


def fetch_cuhk(raw_dir: str | Path | None = None, out_dir: str | Path | None = None,
               base_url: str = CUHK_BASE_URL, progress: bool = True) -> Path:
    """Shi's CUHK archives (official address, or already in raw_dir: obtain_archive then skips the download)
    -> out_dir/image and out_dir/gt, verified."""
    raw_dir = Path(raw_dir) if raw_dir else _default_raw_dir()
    out_dir = Path(out_dir) if out_dir else data_dir() / "cuhk"
    raw_dir.mkdir(parents=True, exist_ok=True)
    archives = {}
    for folder, name in CUHK_ARCHIVES.items():
        url = base_url.rstrip("/") + "/" + name
        archives[folder] = obtain_archive(url, raw_dir, name, _cuhk_hint(raw_dir), progress)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".cuhk-extract-", dir=out_dir.parent) as tmp:
        staged = {}
        for folder, archive in archives.items():
            tree = Path(tmp) / folder
            extract(archive, tree)
            found = _find_dir(tree, folder)
            if found is None:
                raise DataError(f"{archive} has no {folder}/ folder; is it the official {CUHK_ARCHIVES[folder]}?")
            n = _count(found, "out_of_focus")
            if n != CUHK_DEFOCUS_COUNT:
                raise DataError(f"{archive}: {folder}/ has {n} out_of_focus files, expected {CUHK_DEFOCUS_COUNT}")
            staged[folder] = found
        _install(staged, out_dir)
    return out_dir


def fetch_dut(archive: str | Path, raw_dir: str | Path | None = None, out_dir: str | Path | None = None,
              progress: bool = True) -> Path:
    """DUT from an archive path or URL given by the user (the lab page is dead: see docs/data.md for mirrors)."""
    raw_dir = Path(raw_dir) if raw_dir else _default_raw_dir()
    out_dir = Path(out_dir) if out_dir else data_dir() / "dut"
    raw_dir.mkdir(parents=True, exist_ok=True)
    hint = (f" Manual alternative: get the DUT archive from a mirror (docs/data.md), put it in {raw_dir}/ and run "
            f"`mdbd data fetch --dataset dut --archive {raw_dir}/<archive>`.")
    path = obtain_archive(str(archive), raw_dir, None, hint, progress)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".dut-extract-", dir=out_dir.parent) as tmp:
        extract(path, Path(tmp))
        staged = {}
        for folder, expected in DUT_COUNTS.items():
            found = _find_dir(Path(tmp), folder)
            if found is not None:
                n = _count(found)
                if n != expected:
                    raise DataError(f"{path}: {folder}/ has {n} files, expected {expected}")
                staged[folder] = found
        if not staged:
            raise DataError(f"{path} has none of the DUT folders {', '.join(DUT_COUNTS)}")
        _install(staged, out_dir)
    return out_dir
