"""The benchmark datasets the configs name: where each file lies under the data folder, where
it comes from, and its SHA-256.

``python scripts/download_data.py <name>`` fetches a file from its source, checks its digest
and puts it where ``data=<name>`` looks (``$FORECAST_DATA_DIR``, else ``data/``).
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from forecast.data.sources import file_sha256
from forecast.errors import DataError

_ETT = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/1d16c8f4f943005d613b5bc962e9eeb06058cf07/ETT-small"
# The Autoformer release's exchange-rate and ILI CSVs (the versions the papers use) are
# distributed as zip archives; this mirror holds them at a fixed commit.
_RELEASE = "https://raw.githubusercontent.com/aspire-zero/long_term_forecast_data/0045b460bd65c402f91e738b4b5ac826433b00b0"

MIRROR_ENV = "FORECAST_DATA_MIRROR"   # a base URL serving the files in the data folder's layout


@dataclass(frozen=True)
class Dataset:
    name: str
    path: str                  # relative to the data folder, as conf/data/<name>.yaml reads it
    url: str                   # a CSV, or a zip archive holding a member with the file's name
    sha256: tuple[str, ...]    # accepted digests (the release's CRLF bytes and the common LF copy)
    licence: str


DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset("etth1", "ETT-small/ETTh1.csv", f"{_ETT}/ETTh1.csv",
            ("f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066",), "CC BY-ND 4.0 (ETDataset)"),
    Dataset("etth2", "ETT-small/ETTh2.csv", f"{_ETT}/ETTh2.csv",
            ("a3dc2c597b9218c7ce1cd55eb77b283fd459a1d09d753063f944967dd6b9218b",), "CC BY-ND 4.0 (ETDataset)"),
    Dataset("ettm1", "ETT-small/ETTm1.csv", f"{_ETT}/ETTm1.csv",
            ("6ce1759b1a18e3328421d5d75fadcb316c449fcd7cec32820c8dafda71986c9e",), "CC BY-ND 4.0 (ETDataset)"),
    Dataset("ettm2", "ETT-small/ETTm2.csv", f"{_ETT}/ETTm2.csv",
            ("db973ca252c6410a30d0469b13d696cf919648d0f3fd588c60f03fdbdbadd1fd",), "CC BY-ND 4.0 (ETDataset)"),
    Dataset("exchange", "exchange_rate/exchange_rate.csv", f"{_RELEASE}/exchange_rate.zip",
            ("48b4d9d3d508f5104162e85b9a6042e3557fde11aa9f2944eba8c0d0efc89842",
             "d55e7aa2641009814a18ba3279431b13f6d413b0eab195b9ff21988d8cf94e97"), "no licence stated (LSTNet data, Autoformer release)"),
    Dataset("ili", "illness/national_illness.csv", f"{_RELEASE}/illness.zip",
            ("93601f64d2566dc796ca4305adad8b8560c2db1a1ff04543c3bd813a7263570a",
             "8594cecb98c6f2f9dc014eca11c4d5d1e38ad5ce6ed0592d4abe65b146fce395"), "no licence stated (US CDC ILINet, Autoformer release)"),
)}


def data_dir() -> Path:
    """The folder ``data=<name>`` reads from: ``$FORECAST_DATA_DIR``, else ``data/``."""
    return Path(os.environ.get("FORECAST_DATA_DIR") or "data")


def for_path(path: str | Path) -> Dataset | None:
    """The catalogued dataset a data path points at (by its place in the layout), if any."""
    text = Path(path).as_posix()
    return next((d for d in DATASETS.values() if text.endswith(d.path)), None)


def source_url(dataset: Dataset) -> str:
    mirror = os.environ.get(MIRROR_ENV)
    return f"{mirror.rstrip('/')}/{dataset.path}" if mirror else dataset.url


def _fetch(url: str, progress) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        buffer = io.BytesIO()
        with progress(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1]) as bar:
            for block in iter(lambda: response.read(1 << 16), b""):
                buffer.write(block)
                bar.update(len(block))
    return buffer.getvalue()


def _member(archive: bytes, name: str, url: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        found = [m for m in zf.namelist() if Path(m).name == name and "__MACOSX" not in m]
        if not found:
            raise DataError(f"{url}: the archive holds no file named {name}. Fix: put the file in place by hand (below).")
        return zf.read(found[0])


def download(name: str, root: Path | None = None, force: bool = False, progress=None) -> Path:
    """Fetch dataset ``name`` into ``root`` (default :func:`data_dir`) and verify its SHA-256.

    A file already in place with a known digest is kept; a download with any other digest is
    removed and refused. Offline, the error gives the URL and where to put the file by hand."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset '{name}'. Fix: use one of {sorted(DATASETS)}.")
    if progress is None:
        from tqdm import tqdm as progress
    dataset = DATASETS[name]
    target = (root or data_dir()) / dataset.path
    if target.exists() and not force and file_sha256(target) in dataset.sha256:
        return target
    url = source_url(dataset)
    by_hand = (f"Fix: check the connection, or download {url} by hand"
               f"{' and extract ' + Path(dataset.path).name if url.endswith('.zip') else ''} to {target}.")
    try:
        payload = _fetch(url, progress)
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        raise DataError(f"{name}: cannot download {url} ({getattr(error, 'reason', error)}). {by_hand}") from None
    if url.endswith(".zip"):
        payload = _member(payload, Path(dataset.path).name, url)
    digest = hashlib.sha256(payload).hexdigest()
    if digest not in dataset.sha256:
        target.unlink(missing_ok=True)
        raise DataError(f"{name}: the file from {url} has SHA-256 {digest}, expected {dataset.sha256[0]}: a corrupted "
                        f"or different file; nothing was kept. {by_hand}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:  # never a half-written file in place
        tmp.write(payload)
    os.replace(tmp.name, target)
    return target

