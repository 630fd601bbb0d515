"""scripts/download_data.py against a local HTTP server: verified files land where data=<name>
reads them; corrupted or unreachable downloads leave nothing behind."""

from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from forecast.data import catalog
from forecast.errors import DataError

REPO = Path(__file__).resolve().parents[1]
ETTH1 = REPO / "data" / "ETT-small" / "ETTh1.csv"


@pytest.fixture
def server(tmp_path):
    """A static file server on 127.0.0.1 over ``tmp_path/www``; yields (base URL, folder)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()
    httpd.server_close()


def run_script(*args, env_extra: dict[str, str]):
    import os

    env = {**os.environ, **env_extra}
    env.pop("FORECAST_DATA_DIR", None)
    return subprocess.run([sys.executable, str(REPO / "scripts" / "download_data.py"), *args],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120)


def test_a_served_file_is_verified_and_put_where_the_config_reads_it(server, tmp_path):
    url, www = server
    (www / "ETT-small").mkdir()
    (www / "ETT-small" / "ETTh1.csv").write_bytes(ETTH1.read_bytes())
    out = run_script("etth1", "--dir", str(tmp_path / "data"), env_extra={catalog.MIRROR_ENV: url})
    assert out.returncode == 0, out.stderr
    saved = tmp_path / "data" / "ETT-small" / "ETTh1.csv"
    assert saved.read_bytes() == ETTH1.read_bytes()
    # the digest published with the data (data/README.md), not one computed by the code under test
    assert "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066" in (REPO / "data" / "README.md").read_text()
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066"
    assert "verified" in out.stdout


def test_a_corrupted_download_is_rejected_and_removed(server, tmp_path):
    url, www = server
    (www / "ETT-small").mkdir()
    data = bytearray(ETTH1.read_bytes())
    data[1000] ^= 1   # one flipped bit
    (www / "ETT-small" / "ETTh1.csv").write_bytes(bytes(data))
    target = tmp_path / "data" / "ETT-small" / "ETTh1.csv"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"stale partial file")   # an earlier broken copy is not left in place either
    out = run_script("etth1", "--dir", str(tmp_path / "data"), env_extra={catalog.MIRROR_ENV: url})
    assert out.returncode == 1
    assert "SHA-256" in out.stderr and "nothing was kept" in out.stderr
    assert not target.exists()


def test_offline_names_the_url_and_where_to_put_the_file(tmp_path):
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = run_script("ettm1", "--dir", str(tmp_path / "data"), env_extra={catalog.MIRROR_ENV: f"http://127.0.0.1:{port}"})
    assert out.returncode == 1
    assert f"http://127.0.0.1:{port}/ETT-small/ETTm1.csv" in out.stderr
    assert str(tmp_path / "data" / "ETT-small" / "ETTm1.csv") in out.stderr
    assert "Traceback" not in out.stderr


def test_a_zip_source_gives_the_member_with_the_file_name(server, tmp_path, monkeypatch):
    url, www = server
    content = b"date,a,OT\r\n2020-01-01,1,2\r\n"
    with zipfile.ZipFile(www / "release.zip", "w") as zf:
        zf.writestr("__MACOSX/x/._toy.csv", b"resource fork")
        zf.writestr("x/toy.csv", content)
    toy = catalog.Dataset("toy", "x/toy.csv", f"{url}/release.zip", (hashlib.sha256(content).hexdigest(),), "test")
    monkeypatch.setitem(catalog.DATASETS, "toy", toy)
    monkeypatch.delenv(catalog.MIRROR_ENV, raising=False)
    path = catalog.download("toy", tmp_path / "data", progress=_silent)
    assert path.read_bytes() == content


def test_every_benchmark_config_path_is_in_the_catalogue():
    import yaml

    for conf in sorted((REPO / "conf" / "data").glob("*.yaml")):
        path = yaml.safe_load(conf.read_text()).get("path", "")
        if "${data_dir}" in path:
            assert catalog.for_path(path.replace("${data_dir}", "data")) is not None, conf.name


def test_an_unknown_name_is_refused_with_the_known_ones():
    with pytest.raises(DataError, match="ettm1"):
        catalog.download("ettm3")


class _silent:
    def __init__(self, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n):
        pass
