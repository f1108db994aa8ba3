from __future__ import annotations

import hashlib
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

import esrepro.fetch as fetch_module
from esrepro.fetch import MIRROR_ENV, FetchError, fetch_url, mirror_path

# A small real file present in the mirror (libAtoms simple-hexagonal Si, 128 bytes).
SH_URL = (
    "https://raw.githubusercontent.com/libAtoms/silicon-testing-framework/"
    "ec91b17fbbcd6c4a06a257acbfcba77734c0080c/tests/bulk_sh/sh.extxyz"
)
SH_SHA = "f4e70208662e0d41aa2cf805b84d5abaabb3f8d07c9b9be10362da43c73a1889"
WRONG_SHA = "0" * 64
CLOSED_PORT_URL = "http://127.0.0.1:9/x"  # discard port, closed: connection refused at once


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part"))


@pytest.fixture
def no_env_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MIRROR_ENV, raising=False)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def http_dir(tmp_path: Path):
    """Serve a directory over HTTP on 127.0.0.1 for tests of the network path.

    Yields ``(root, base_url, requested)``; ``requested`` lists the path of every GET received.
    """
    root = tmp_path / "www"
    root.mkdir()
    requested: list[str] = []

    class _RecordingHandler(_QuietHandler):
        def do_GET(self) -> None:
            requested.append(self.path)
            super().do_GET()

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_RecordingHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}", requested
    server.shutdown()
    server.server_close()


def test_mirror_path_layout(tmp_path: Path) -> None:
    assert (
        mirror_path("https://example.org/a/b/c.txt", tmp_path) == tmp_path / "example.org/a/b/c.txt"
    )
    with pytest.raises(FetchError, match=r"\.\."):
        mirror_path("https://example.org/a/../../etc/passwd", tmp_path)


def test_mirror_hit(mirror_dir: Path, tmp_path: Path, no_env_mirror: None) -> None:
    dest = fetch_url(SH_URL, SH_SHA, tmp_path / "sub" / "sh.extxyz", mirror=mirror_dir)
    assert dest.read_bytes() == mirror_path(SH_URL, mirror_dir).read_bytes()
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == SH_SHA


def test_mirror_from_env(mirror_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MIRROR_ENV, str(mirror_dir))
    assert fetch_url(SH_URL, SH_SHA, tmp_path / "sh.extxyz").is_file()


def test_hash_mismatch_names_url_hashes_and_file(mirror_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "sh.extxyz"
    with pytest.raises(FetchError) as err:
        fetch_url(SH_URL, WRONG_SHA, dest, mirror=mirror_dir)
    msg = str(err.value)
    assert SH_URL in msg and WRONG_SHA in msg and SH_SHA in msg and str(dest) in msg
    assert not dest.exists() and leftovers(tmp_path) == []


def test_missing_in_mirror_names_mirror_path(mirror_dir: Path, tmp_path: Path) -> None:
    url = "https://raw.githubusercontent.com/nobody/nothing/0000/missing.txt"
    with pytest.raises(FetchError) as err:
        fetch_url(url, WRONG_SHA, tmp_path / "missing.txt", mirror=mirror_dir)
    assert str(mirror_path(url, mirror_dir)) in str(err.value)
    assert url in str(err.value)


def test_offline_without_mirror_fails_fast(
    tmp_path: Path, no_env_mirror: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "Fast" is checked by what fetch_url does, not by a wall clock: the default number of
    # attempts (3, from the signature) with short backoff sleeps between them and none after the
    # last. The sleeps are recorded instead of slept.
    attempts: list[str] = []
    real_download = fetch_module._download

    def counting_download(url: str, tmp: Path, timeout: float) -> None:
        attempts.append(url)
        real_download(url, tmp, timeout)

    sleeps: list[float] = []
    monkeypatch.setattr(fetch_module, "_download", counting_download)
    monkeypatch.setattr(fetch_module, "time", SimpleNamespace(sleep=sleeps.append))
    dest = tmp_path / "x"
    with pytest.raises(FetchError) as err:
        fetch_url(CLOSED_PORT_URL, WRONG_SHA, dest)  # default retries
    assert attempts == [CLOSED_PORT_URL] * 3
    assert len(sleeps) == 2 and sleeps == sorted(sleeps) and sum(sleeps) < 5
    assert "after 3 attempt(s)" in str(err.value)
    assert CLOSED_PORT_URL in str(err.value) and MIRROR_ENV in str(err.value)
    assert not dest.exists() and leftovers(tmp_path) == []


def test_refetch_is_noop_when_dest_matches(
    mirror_dir: Path, tmp_path: Path, no_env_mirror: None
) -> None:
    dest = fetch_url(SH_URL, SH_SHA, tmp_path / "sh.extxyz", mirror=mirror_dir)
    mtime = dest.stat().st_mtime_ns
    # No mirror and an unreachable URL: succeeds only because nothing needs fetching.
    assert fetch_url(CLOSED_PORT_URL, SH_SHA, dest) == dest
    assert dest.stat().st_mtime_ns == mtime


def test_wrong_existing_dest_is_replaced(mirror_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "sh.extxyz"
    dest.write_text("stale")
    fetch_url(SH_URL, SH_SHA, dest, mirror=mirror_dir)
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == SH_SHA


def test_network_download_and_mismatch(http_dir, tmp_path: Path, no_env_mirror: None) -> None:
    root, base, _ = http_dir
    payload = b"real bytes\n" * 100
    (root / "f.txt").write_bytes(payload)
    sha = hashlib.sha256(payload).hexdigest()
    out = tmp_path / "out"
    out.mkdir()

    dest = fetch_url(f"{base}/f.txt", sha, out / "f.txt", retries=1)
    assert dest.read_bytes() == payload

    with pytest.raises(FetchError) as err:
        fetch_url(f"{base}/f.txt", WRONG_SHA, out / "g.txt", retries=2)
    assert sha in str(err.value) and WRONG_SHA in str(err.value)
    assert not (out / "g.txt").exists() and leftovers(out) == []


def test_http_404_is_not_retried(http_dir, tmp_path: Path, no_env_mirror: None) -> None:
    _, base, requested = http_dir
    with pytest.raises(FetchError, match="404"):
        fetch_url(f"{base}/absent.txt", WRONG_SHA, tmp_path / "absent.txt", retries=5)
    assert requested == ["/absent.txt"], "a client error must be requested once, not retried"
    assert leftovers(tmp_path) == []


def test_configured_mirror_that_does_not_exist_is_named_once(
    tmp_path: Path, no_env_mirror: None, caplog: pytest.LogCaptureFixture
) -> None:
    from esrepro.config import mirror_dir as params_mirror

    missing = tmp_path / "no-such-mirror"
    params = {"fetch": {"mirror": str(missing)}}
    with caplog.at_level("WARNING", logger="esrepro.config"):
        assert params_mirror(params) is None  # falls back to the real URLs, as documented
        assert params_mirror(params) is None
    warnings = [r.getMessage() for r in caplog.records if str(missing) in r.getMessage()]
    assert len(warnings) == 1 and "downloading the real URLs" in warnings[0]
    existing = tmp_path / "mirror"
    existing.mkdir()
    assert params_mirror({"fetch": {"mirror": str(existing)}}) == existing
