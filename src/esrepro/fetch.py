"""Download upstream files pinned by sha256, from the network or from a local mirror.

A mirror is a directory laid out as ``<mirror>/<host>/<url path>``; when one is configured
(explicit ``mirror=`` argument, else the ``ESREPRO_MIRROR`` environment variable) the file is
copied from there and the network is never touched, so CI and offline machines behave the same
way as a fresh download. Either way the bytes are written to a temporary file next to ``dest``,
checked against the pin and only then renamed onto ``dest``: a reader never sees a partial or
unverified file at the final path.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pooch
import requests

__all__ = ["MIRROR_ENV", "FetchError", "fetch_url", "mirror_path", "resolve_mirror", "sha256_of"]

MIRROR_ENV = "ESREPRO_MIRROR"

# requests recommends a connect timeout slightly above a multiple of 3 s (TCP retransmit window).
# Kept short so that an offline machine fails within seconds rather than hanging.
_CONNECT_TIMEOUT_S = 3.05
_BACKOFF_S = 0.5


class FetchError(RuntimeError):
    """A pinned file could not be obtained (network, mirror or checksum failure)."""


def sha256_of(path: str | Path) -> str:
    """Return the hex sha256 digest of a file."""
    return pooch.file_hash(str(path), alg="sha256")


def resolve_mirror(mirror: str | Path | None = None) -> Path | None:
    """Return the mirror directory to use: the explicit argument, else ``$ESREPRO_MIRROR``.

    Empty strings count as unset, so ``ESREPRO_MIRROR=`` disables the mirror.
    """
    chosen = mirror if mirror not in (None, "") else os.environ.get(MIRROR_ENV, "")
    return Path(chosen).expanduser() if chosen else None


def mirror_path(url: str, mirror: str | Path) -> Path:
    """Map ``https://<host>/<path>`` to ``<mirror>/<host>/<path>``.

    Raises ``FetchError`` for URLs that cannot be mapped safely (no host, empty path, ``..``).
    """
    parts = urlsplit(url)
    path = unquote(parts.path)
    segments = [s for s in path.split("/") if s]
    if parts.scheme not in ("http", "https") or not parts.hostname or not segments:
        raise FetchError(f"cannot map URL {url!r} into a mirror (need http(s)://<host>/<path>)")
    if any(s in (".", "..") for s in segments) or parts.query or parts.fragment:
        # A query or '..' would make the mapping ambiguous or escape the mirror directory.
        raise FetchError(f"refusing to map URL {url!r} into a mirror (query, fragment or '..')")
    return Path(mirror).joinpath(parts.hostname, *segments)


def _normalise_hash(sha256: str) -> str:
    digest = sha256.strip().lower().removeprefix("sha256:")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return digest


def _verify_and_move(tmp: Path, dest: Path, url: str, expected: str, origin: str) -> None:
    actual = sha256_of(tmp)
    if actual != expected:
        raise FetchError(
            f"sha256 mismatch for {url} (from {origin}) -> {dest}: "
            f"expected {expected}, got {actual}"
        )
    os.replace(tmp, dest)  # atomic on POSIX: same directory, same filesystem


def _download(url: str, tmp: Path, timeout: float) -> None:
    downloader = pooch.HTTPDownloader(
        progressbar=False, timeout=(min(_CONNECT_TIMEOUT_S, timeout), timeout)
    )
    downloader(url, str(tmp), None)


def _is_retryable(exc: BaseException) -> bool:
    # Client errors (404, 403) will not go away by asking again; everything else might.
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return exc.response.status_code >= 500 or exc.response.status_code == 429
    return True


def fetch_url(
    url: str,
    sha256: str,
    dest: str | Path,
    *,
    mirror: str | Path | None = None,
    retries: int = 3,
    timeout: float = 20,
) -> Path:
    """Place the file at ``url`` (pinned by ``sha256``) at ``dest`` and return ``dest``.

    If ``dest`` already holds the right bytes nothing is done. With a mirror (argument, else
    ``$ESREPRO_MIRROR``) the file is copied from ``mirror_path(url, mirror)``; a file missing
    there is an error, not a fallback to the network, so runs stay reproducible. Without a mirror
    the URL is downloaded with ``retries`` attempts and short exponential backoff.

    Raises ``FetchError`` naming the URL (and, for a checksum mismatch, both digests).
    """
    expected = _normalise_hash(sha256)
    dest = Path(dest)
    if dest.is_file() and sha256_of(dest) == expected:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    mirror_dir = resolve_mirror(mirror)

    def new_tmp() -> Path:
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        os.close(fd)
        return Path(name)

    if mirror_dir is not None:
        src = mirror_path(url, mirror_dir)
        if not src.is_file():
            raise FetchError(f"{url} is not in the mirror: {src} does not exist")
        tmp = new_tmp()
        try:
            shutil.copyfile(src, tmp)
            _verify_and_move(tmp, dest, url, expected, origin=f"mirror file {src}")
        finally:
            tmp.unlink(missing_ok=True)
        return dest

    attempts = max(1, retries)
    last: BaseException | None = None
    for attempt in range(attempts):
        tmp = new_tmp()
        try:
            _download(url, tmp, timeout)
            _verify_and_move(tmp, dest, url, expected, origin="network")
            return dest
        except FetchError as exc:  # checksum mismatch: maybe a truncated transfer, retry
            last = exc
        except Exception as exc:  # requests/pooch raise a variety of types
            last = exc
            if not _is_retryable(exc):
                break
        finally:
            tmp.unlink(missing_ok=True)
        if attempt + 1 < attempts:
            time.sleep(_BACKOFF_S * 2**attempt)
    if isinstance(last, FetchError):
        raise last
    raise FetchError(
        f"could not download {url} after {attempts} attempt(s): {type(last).__name__}: {last}. "
        f"Offline? Set {MIRROR_ENV} (or params fetch.mirror) to a mirror directory."
    ) from last
