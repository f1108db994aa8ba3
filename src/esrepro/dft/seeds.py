"""Shipped DFT seeds: the engine's products in the repository as content-verified archives.

Layout (see docs/dft-cache.md, "Shipped seeds")::

    seeds/manifest.json            per archive: path, kind, sha256, bytes, the keys it holds
    seeds/<kind>/<NNNN>.tar.xz     products and failure records in the cache layout
                                   (<key[:2]>/<key>.npz, <key[:2]>/<key>.failed.json;
                                   band-structure kinds under bands/, G0W0 kinds under gw/,
                                   as in a cache)

`<kind>` names the settings and code versions a product was computed with (`product_kind`,
`band_product_kind`, `gw_product_kind`), so DOSnp/ALIGNN-DOS plane-wave products, LDOS LCAO
products, Bandformer's band structures and VAE-GW's G0W0 products are separate kinds. Archives
are only ever added (`pack`), never rewritten, so git stores each product once. The engine
reads a shipped seed through `unpacked_seed_dirs`: each archive is checked against the
manifest's sha256 and unpacked once, atomically, under ``$XDG_CACHE_HOME/esrepro/seeds/``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import lzma
import os
import re
import shutil
import tarfile
import tempfile
import zipfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: The manifest's file name; a seed directory holding it is a shipped seed.
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
#: Set (to anything but "", "0", "false", "no") to ignore every seed: shipped and plain.
NO_SEEDS_ENV = "ESREPRO_NO_SEEDS"
#: Uncompressed bytes per archive. Products are deflated .npz files that xz shrinks by only
#: ~5%, so archives stay under ~5 MB, a size git hosts handle well.
ARCHIVE_MEMBER_BYTES = 4_500_000
#: Written last into an unpacked archive's directory, before it is renamed into place.
COMPLETE_MARKER = ".complete"
#: Kind of failure records that name no settings (the farm does not record them yet) and
#: match no key of a known table.
UNKNOWN_KIND = "unknown-settings"

#: Kinds of band-structure products (`band_product_kind`) start with this. Their archive
#: members lie under ``bands/``, so an unpacked archive has them where a cache keeps them
#: (`esrepro.dft.stage.band_cache` reads ``<seed>/bands/``).
BAND_KIND_PREFIX = "bands-"
BAND_DIR = "bands"
#: Kinds of G0W0 products (`gw_product_kind`) start with this; their members lie under ``gw/``
#: (`esrepro.dft.gw_product.gw_cache` reads ``<seed>/gw/``).
GW_KIND_PREFIX = "gw-"
GW_DIR = "gw"

_KEY = re.compile(r"[0-9a-f]{64}")
_MEMBER = re.compile(r"(?:bands/|gw/)?(?P<prefix>[0-9a-f]{2})/(?P<key>(?P=prefix)[0-9a-f]{62})"
                     r"(?P<suffix>\.npz|\.failed\.json)")
_ARCHIVE_PATH = re.compile(r"(?P<kind>[A-Za-z0-9._-]+)/(?P<number>\d{4,})\.tar\.xz")
_SUFFIX = {"product": ".npz", "failure": ".failed.json"}
#: The fixed metadata of every archive member (reproducible archives).
_MEMBER_MTIME = 0
_MEMBER_MODE = 0o444


class SeedError(ValueError):
    """A shipped seed that cannot be used or written; the message names the file."""


def seeds_disabled() -> bool:
    """Whether `NO_SEEDS_ENV` asks to ignore every seed."""
    return os.environ.get(NO_SEEDS_ENV, "").strip().lower() not in ("", "0", "false", "no")


def is_shipped_seed(path: Path) -> bool:
    """A directory holding a manifest: read through its archives, not as a plain cache."""
    return (Path(path) / MANIFEST_NAME).is_file()


def product_kind(settings: Mapping[str, Any], versions: Mapping[str, str]) -> str:
    """``<mode>-<xc>-<8 hex>``: the hash covers what the cache key holds besides the structure
    (`DFTSettings.key_dict`, GPAW / gpaw-data / product-format versions), so products that
    can share a calculation share a kind."""
    from esrepro.dft.settings import DFTSettings

    try:
        parsed = DFTSettings(**settings)
    except TypeError as err:
        raise ValueError(f"settings unknown to this engine: {err}") from err
    payload = {
        "settings": parsed.key_dict(),
        "versions": {k: str(v) for k, v in versions.items() if k != "ase"},
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    xc = re.sub(r"[^A-Za-z0-9.]+", "_", parsed.xc)
    return f"{parsed.mode}-{xc}-{hashlib.sha256(blob).hexdigest()[:8]}"


def band_product_kind(settings: Mapping[str, Any], versions: Mapping[str, str]) -> str:
    """``bands-<xc>-<8 hex>``: as `product_kind`, the hash covers what a band product's cache
    key holds besides the structure (`esrepro.dft.band_product.band_cache_key`: the product
    name, `BandSettings.key_dict`, the versions with the band product's format)."""
    from esrepro.dft.band_product import BANDS, BandSettings

    try:
        parsed = BandSettings.from_dict(settings)
    except (TypeError, KeyError, AttributeError) as err:
        raise ValueError(f"band settings unknown to this engine: {err!r}") from err
    payload = {
        "product": BANDS,
        "settings": parsed.key_dict(),
        "versions": {k: str(v) for k, v in versions.items() if k != "ase"},
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    xc = re.sub(r"[^A-Za-z0-9.]+", "_", parsed.scf.xc)
    return f"{BAND_KIND_PREFIX}{xc}-{hashlib.sha256(blob).hexdigest()[:8]}"


def gw_product_kind(settings: Mapping[str, Any], versions: Mapping[str, str]) -> str:
    """``gw-<xc>-<8 hex>``: as `band_product_kind`, for G0W0 products (the hash covers
    `"product": "gw"`, `GWSettings.key_dict`, the versions with the GW product's format)."""
    from esrepro.dft.gw_product import GW, GWSettings

    try:
        parsed = GWSettings.from_dict(settings)
    except (TypeError, KeyError, AttributeError) as err:
        raise ValueError(f"GW settings unknown to this engine: {err!r}") from err
    payload = {
        "product": GW,
        "settings": parsed.key_dict(),
        "versions": {k: str(v) for k, v in versions.items() if k != "ase"},
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    xc = re.sub(r"[^A-Za-z0-9.]+", "_", parsed.xc)
    return f"{GW_KIND_PREFIX}{xc}-{hashlib.sha256(blob).hexdigest()[:8]}"


def is_band_kind(kind: str) -> bool:
    return kind.startswith(BAND_KIND_PREFIX)


def is_gw_kind(kind: str) -> bool:
    return kind.startswith(GW_KIND_PREFIX)


# --- manifest -----------------------------------------------------------------------------


@dataclass
class ArchiveEntry:
    """One archive as the manifest records it; `products`/`failures` map key -> material id."""

    path: str  # relative to the seed directory: <kind>/<NNNN>.tar.xz
    kind: str
    sha256: str
    bytes: int
    products: dict[str, str | None] = field(default_factory=dict)
    failures: dict[str, str | None] = field(default_factory=dict)

    def members(self) -> set[str]:
        """The archive member names the manifest promises."""
        return {member_name(k, "product", self.kind) for k in self.products} | {
            member_name(k, "failure", self.kind) for k in self.failures
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path, "kind": self.kind, "sha256": self.sha256, "bytes": self.bytes,
            "products": dict(sorted(self.products.items())),
            "failures": dict(sorted(self.failures.items())),
        }


@dataclass
class Manifest:
    """``seeds/manifest.json``: the archives of a shipped seed and the settings of each kind."""

    root: Path
    archives: list[ArchiveEntry] = field(default_factory=list)
    #: kind -> {"settings": DFTSettings.to_dict(), "versions": {...}}; {} for UNKNOWN_KIND
    kinds: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.root / MANIFEST_NAME

    @classmethod
    def load(cls, root: Path, *, missing_ok: bool = False) -> Manifest:
        """Read and check the manifest of seed directory `root`; errors name the file."""
        root = Path(root)
        path = root / MANIFEST_NAME
        if not path.is_file():
            if missing_ok:
                return cls(root)
            raise SeedError(f"{path}: no seed manifest")
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise SeedError(f"{path}: unreadable seed manifest: {err}") from err
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise SeedError(
                f"{path}: not a seed manifest of format {MANIFEST_FORMAT} "
                f"(format {data.get('format') if isinstance(data, dict) else None!r})"
            )
        kinds = data.get("kinds", {})
        raw = data.get("archives", [])
        if not isinstance(kinds, dict) or not isinstance(raw, list):
            raise SeedError(f"{path}: 'kinds' must be a mapping and 'archives' a list")
        archives = [_parse_entry(item, f"{path} archives[{i}]") for i, item in enumerate(raw)]
        seen: dict[str, str] = {}
        for entry in archives:
            if entry.kind not in kinds:
                raise SeedError(f"{path}: archive {entry.path} has kind {entry.kind!r}, "
                                "which 'kinds' does not describe")
            for member in entry.members():
                if member in seen:
                    raise SeedError(f"{path}: {member} is listed in both {seen[member]} "
                                    f"and {entry.path}")
                seen[member] = entry.path
        return cls(root, archives, kinds)

    def save(self) -> None:
        """Write atomically; archives sorted by path, keys sorted (stable diffs in git)."""
        data = {
            "format": MANIFEST_FORMAT,
            "kinds": {k: self.kinds[k] for k in sorted(self.kinds)},
            "archives": [e.to_json() for e in sorted(self.archives, key=lambda e: e.path)],
        }
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{MANIFEST_NAME}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        tmp.replace(self.path)

    def shipped(self, what: str) -> dict[str, ArchiveEntry]:
        """key -> archive holding it, for "product" or "failure" entries."""
        return {
            key: entry
            for entry in self.archives
            for key in (entry.products if what == "product" else entry.failures)
        }


def _parse_entry(item: Any, label: str) -> ArchiveEntry:
    if not isinstance(item, dict):
        raise SeedError(f"{label}: expected a mapping, got {item!r}")
    try:
        entry = ArchiveEntry(
            path=str(item["path"]), kind=str(item["kind"]), sha256=str(item["sha256"]),
            bytes=item["bytes"], products=item.get("products", {}),
            failures=item.get("failures", {}),
        )
    except KeyError as err:
        raise SeedError(f"{label}: missing field {err}") from None
    match = _ARCHIVE_PATH.fullmatch(entry.path)
    if match is None or match["kind"] != entry.kind:
        raise SeedError(f"{label}: path {entry.path!r} is not <kind>/<NNNN>.tar.xz of its kind "
                        f"{entry.kind!r}")
    if not _KEY.fullmatch(entry.sha256):
        raise SeedError(f"{label} ({entry.path}): sha256 {entry.sha256!r} is not 64 hex digits")
    if not isinstance(entry.bytes, int) or isinstance(entry.bytes, bool) or entry.bytes < 0:
        raise SeedError(f"{label} ({entry.path}): bytes {entry.bytes!r} is not a byte count")
    for what in ("products", "failures"):
        keys = getattr(entry, what)
        if not isinstance(keys, dict) or not all(
            isinstance(k, str) and _KEY.fullmatch(k) and (v is None or isinstance(v, str))
            for k, v in keys.items()
        ):
            raise SeedError(f"{label} ({entry.path}): {what} must map cache keys "
                            "(64 hex digits) to a material id or null")
    return entry


def member_name(key: str, what: str, kind: str | None = None) -> str:
    """Where `key`'s product or failure lies in an archive (and in a cache) of `kind`: band
    kinds under ``bands/``, G0W0 kinds under ``gw/``, every other kind at the top level."""
    folder = ""
    if kind is not None and is_band_kind(kind):
        folder = f"{BAND_DIR}/"
    elif kind is not None and is_gw_kind(kind):
        folder = f"{GW_DIR}/"
    return f"{folder}{key[:2]}/{key}{_SUFFIX[what]}"


# --- reading: verify and unpack -----------------------------------------------------------


def unpack_root() -> Path:
    """Where archives are unpacked: ``$XDG_CACHE_HOME/esrepro/seeds`` (default ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "esrepro" / "seeds"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_archive(manifest: Manifest, entry: ArchiveEntry) -> Path:
    """The archive's path once it is on disk with the manifest's size and sha256."""
    path = manifest.root / entry.path
    if not path.is_file():
        raise SeedError(f"{path}: archive listed in {manifest.path} is missing")
    size = path.stat().st_size
    if size != entry.bytes:
        raise SeedError(f"{path}: {size} bytes, but {manifest.path} records {entry.bytes} "
                        "(truncated or replaced)")
    digest = file_sha256(path)
    if digest != entry.sha256:
        raise SeedError(f"{path}: sha256 {digest[:16]}... differs from {manifest.path}'s "
                        f"{entry.sha256[:16]}... (damaged or altered)")
    return path


def unpack_archive(manifest: Manifest, entry: ArchiveEntry, dest: Path | None = None) -> Path:
    """Verify one archive and unpack it once into ``<dest>/<sha256[:16]>``; return that dir.

    The archive is checked against the manifest every time (a damaged or missing archive is
    an error even if an earlier copy was unpacked). Unpacking goes to a temporary directory
    that gets the `COMPLETE_MARKER` and is then renamed into place, so a reader never sees a
    half-unpacked seed and two processes unpacking at once both end with the same complete one.
    """
    path = verify_archive(manifest, entry)
    dest = Path(dest) if dest is not None else unpack_root()
    final = dest / entry.sha256[:16]
    if (final / COMPLETE_MARKER).is_file():
        return final
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=dest))
    try:
        _extract(path, manifest, entry, tmp)
        (tmp / COMPLETE_MARKER).write_text(f"{entry.sha256}\n")
        try:
            tmp.rename(final)
            log.info("DFT seed: unpacked %s into %s", path, final)
        except OSError:
            if (final / COMPLETE_MARKER).is_file():
                pass  # another process unpacked the same archive first: use theirs
            elif final.is_dir():
                # Not ours and not complete (copied by hand?): keep it aside, never delete it.
                final.rename(final.with_name(f"{final.name}.incomplete-{os.getpid()}"))
                tmp.rename(final)
            else:
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _extract(path: Path, manifest: Manifest, entry: ArchiveEntry, target: Path) -> None:
    """Extract exactly the members the manifest lists, as plain files (tarfile's data filter).

    The sha256 already matched, so a read error here means the packer wrote a bad archive.
    """
    try:
        with tarfile.open(path, "r:xz") as tar:
            members = tar.getmembers()
            names = [m.name for m in members]
            bad = [m.name for m in members if not m.isfile() or not _MEMBER.fullmatch(m.name)]
            if bad:
                raise SeedError(f"{path}: members outside the cache layout: {bad[:3]}")
            if sorted(names) != sorted(entry.members()):
                extra = sorted(set(names) - entry.members())
                missing = sorted(entry.members() - set(names))
                raise SeedError(
                    f"{path}: does not hold what {manifest.path} lists "
                    f"({len(missing)} listed but absent, e.g. {missing[:1]}; "
                    f"{len(extra)} present but unlisted, e.g. {extra[:1]})"
                )
            tar.extractall(target, members=members, filter="data")
    except (tarfile.TarError, EOFError, lzma.LZMAError) as err:
        raise SeedError(f"{path}: unreadable archive: {type(err).__name__}: {err}") from err


def unpacked_seed_dirs(root: Path, dest: Path | None = None) -> list[Path]:
    """Every archive of the shipped seed `root`, verified and unpacked: plain seed directories."""
    manifest = Manifest.load(root)
    return [unpack_archive(manifest, entry, dest) for entry in manifest.archives]


# --- writing: pack ------------------------------------------------------------------------


@dataclass
class _Entry:
    """A product or failure record found in a source cache, ready to be packed."""

    key: str
    what: str  # "product" | "failure"
    path: Path
    kind: str
    material_id: str | None
    kind_info: dict[str, Any]


def scan_cache(root: Path) -> dict[tuple[str, str], Path]:
    """(key, "product"|"failure") -> file, for the entries of a plain cache directory.

    Only files in the cache layout count: temporary files, damaged entries set aside, GPAW
    logs and the journal are never shipped.
    """
    found: dict[tuple[str, str], Path] = {}
    root = Path(root)
    if not root.is_dir():
        return found
    for path in sorted(root.glob("??/*")):
        match = _MEMBER.fullmatch(path.relative_to(root).as_posix())
        if match and path.is_file():
            what = "product" if match["suffix"] == ".npz" else "failure"
            found[(match["key"], what)] = path
    return found


def journal_material_ids(root: Path) -> dict[str, str]:
    """cache key -> material id from a writable cache's journal (lines the farm appends)."""
    ids: dict[str, str] = {}
    journal = Path(root) / "journal.jsonl"
    if not journal.is_file():
        return ids
    for line in journal.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill; the others still count
        if isinstance(record, dict) and isinstance(record.get("cache_key"), str):
            if isinstance(record.get("material_id"), str):
                ids.setdefault(record["cache_key"], record["material_id"])
    return ids


def pack(
    seed_root: Path,
    sources: Sequence[Path],
    *,
    material_ids: Mapping[str, str] | None = None,
    failure_kinds: Mapping[str, tuple[str, dict[str, Any]]] | None = None,
    max_bytes: int = ARCHIVE_MEMBER_BYTES,
) -> list[ArchiveEntry]:
    """Pack every product and failure of `sources` that the seed does not ship yet into new
    archives, and add them to the manifest. Returns the new archives ([] if nothing is new).

    Each source is read at its top level (ground-state products) and in its ``bands/``
    folder (band products, where `esrepro.dft.stage.band_cache` keeps them); what an entry
    is comes from its content, so a ``bands/`` folder given as a source packs as well.
    Existing archives are never rewritten. A source listed first wins for a key found in two.
    A failure is not packed for a key that has (or gets) a product. Every entry is read first
    (`DFTProduct.load` / `BandProduct.load`, the failure record's JSON): a damaged one stops
    the pack before any file is written, naming it. Material ids come from the product's
    meta, the failure record, `material_ids` (key -> id) and the sources' journals, in that
    order. `failure_kinds` (key -> (kind, kind info)) places failure records that do not name
    their settings.
    """
    manifest = Manifest.load(seed_root, missing_ok=True)
    shipped_products = manifest.shipped("product")
    shipped_failures = manifest.shipped("failure")
    found: dict[tuple[str, str], Path] = {}
    folders = [f for source in sources
               for f in (Path(source), Path(source) / BAND_DIR, Path(source) / GW_DIR)]
    for folder in folders:
        for item, path in scan_cache(folder).items():
            found.setdefault(item, path)
    have_product = set(shipped_products) | {k for k, w in found if w == "product"}
    todo = sorted(
        (key, what) for key, what in found
        if (what == "product" and key not in shipped_products)
        or (what == "failure" and key not in have_product and key not in shipped_failures)
    )
    ids = dict(material_ids or {})
    for folder in folders:
        for key, material_id in journal_material_ids(folder).items():
            ids.setdefault(key, material_id)
    entries: list[_Entry] = []
    problems: list[str] = []
    for key, what in todo:
        path = found[key, what]
        try:
            if what == "product":
                kind, kind_info, material_id = _read_product(path)
            else:
                kind, kind_info, material_id = _read_failure(path, key, failure_kinds or {})
        except (ValueError, KeyError, TypeError) as err:
            problems.append(str(err) if str(path) in str(err) else f"{path}: {err}")
            continue
        entries.append(_Entry(key, what, path, kind, material_id or ids.get(key), kind_info))
    if problems:
        raise SeedError(f"refusing to pack {len(problems)} damaged cache entr"
                        f"{'y' if len(problems) == 1 else 'ies'}: " + "; ".join(problems))

    by_kind: dict[str, list[_Entry]] = defaultdict(list)
    for entry in entries:
        by_kind[entry.kind].append(entry)
    new: list[ArchiveEntry] = []
    for kind in sorted(by_kind):
        manifest.kinds.setdefault(kind, by_kind[kind][0].kind_info)
        number = _next_number(manifest, kind)
        for chunk in _chunks(by_kind[kind], max_bytes):
            archive = _write_archive(manifest, kind, number, chunk)
            manifest.archives.append(archive)
            new.append(archive)
            number += 1
    if new:
        manifest.save()
    return new


def _is_band_file(path: Path) -> bool:
    """Whether a product file is a band product: it names its kind (ground states do not);
    an unreadable one counts as what its folder holds, for the loader to name it."""
    return _product_name(path) == "bands"


def _product_name(path: Path) -> str | None:
    """The kind a product file names ("bands", "gw"; None: a ground state, which names none).
    An unreadable one counts as what its folder holds, for the loader to name it."""
    import numpy as np

    try:
        with zipfile.ZipFile(path) as archive:
            if "product.npy" not in archive.namelist():
                return None
            with archive.open("product.npy") as member:
                return bytes(np.lib.format.read_array(member)).decode()
    except (OSError, zipfile.BadZipFile, ValueError, UnicodeDecodeError):
        folder = path.parent.parent.name
        return {BAND_DIR: "bands", GW_DIR: "gw"}.get(folder)


def _read_product(path: Path) -> tuple[str, dict[str, Any], str | None]:
    """(kind, kind info, material id) of a product file, read in full (ValueError if damaged)."""
    from esrepro.dft.band_product import BANDS, BandProduct
    from esrepro.dft.gw_product import GW, GWProduct
    from esrepro.dft.product import DFTProduct

    name = _product_name(path)
    if name is not None and name not in (BANDS, GW):
        raise ValueError(f"{path}: a {name!r} product, which seeds do not ship")
    if name == GW:
        meta = GWProduct.load(path).meta
        info = {"product": GW, "settings": meta["settings"], "versions": meta["versions"]}
        return gw_product_kind(meta["settings"], meta["versions"]), info, None
    if _is_band_file(path):
        meta = BandProduct.load(path).meta
        info = {"product": BANDS, "settings": meta["settings"], "versions": meta["versions"]}
        return band_product_kind(meta["settings"], meta["versions"]), info, None
    meta = DFTProduct.load(path).meta
    info = {"settings": meta["settings"], "versions": meta["versions"]}
    return product_kind(meta["settings"], meta["versions"]), info, meta.get("material_id")


def _read_failure(
    path: Path, key: str, failure_kinds: Mapping[str, tuple[str, dict[str, Any]]]
) -> tuple[str, dict[str, Any], str | None]:
    """(kind, kind info, material id) of a failure record: the kind its settings name (band
    failures say ``"product": "bands"``), else `failure_kinds`' entry, else `UNKNOWN_KIND`."""
    from esrepro.dft.band_product import BANDS
    from esrepro.dft.cache import read_failure
    from esrepro.dft.gw_product import GW

    record, problem = read_failure(path)
    if record is None:
        raise ValueError(f"{path}: {problem}")
    material_id = record.get("material_id")
    material_id = material_id if isinstance(material_id, str) else None
    if not isinstance(record.get("settings"), dict):
        if record.get("product") in (BANDS, GW):
            name = {BANDS: "band", GW: "GW"}[record["product"]]
            raise ValueError(f"{path}: a {name} failure record without its settings")
        kind, info = failure_kinds.get(key, (UNKNOWN_KIND, {}))
        return kind, info, material_id
    settings, versions = record["settings"], record.get("versions") or {}
    if record.get("product") == BANDS:
        info = {"product": BANDS, "settings": settings, "versions": versions}
        return band_product_kind(settings, versions), info, material_id
    if record.get("product") == GW:
        info = {"product": GW, "settings": settings, "versions": versions}
        return gw_product_kind(settings, versions), info, material_id
    info = {"settings": settings, "versions": versions}
    return product_kind(settings, versions), info, material_id


def _next_number(manifest: Manifest, kind: str) -> int:
    """One past the highest archive number of `kind`, in the manifest or on disk."""
    numbers = [int(_ARCHIVE_PATH.fullmatch(e.path)["number"])
               for e in manifest.archives if e.kind == kind]
    numbers += [int(p.name.split(".")[0]) for p in (manifest.root / kind).glob("*.tar.xz")
                if p.name.split(".")[0].isdigit()]
    return max(numbers, default=-1) + 1


def _chunks(entries: list[_Entry], max_bytes: int) -> list[list[_Entry]]:
    """Consecutive runs (in key order) of at most `max_bytes` of member files (at least one)."""
    chunks: list[list[_Entry]] = []
    size = 0
    for entry in sorted(entries, key=lambda e: (e.key, e.what)):
        n = entry.path.stat().st_size
        if not chunks or (size + n > max_bytes and chunks[-1]):
            chunks.append([])
            size = 0
        chunks[-1].append(entry)
        size += n
    return chunks


def write_archive_bytes(members: Sequence[tuple[str, bytes]]) -> bytes:
    """A reproducible .tar.xz: members sorted by name, fixed mtime, owner and mode."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz", format=tarfile.USTAR_FORMAT, preset=6) as tar:
        for name, data in sorted(members):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = _MEMBER_MTIME
            info.mode = _MEMBER_MODE
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _write_archive(manifest: Manifest, kind: str, number: int, chunk: list[_Entry]) -> ArchiveEntry:
    relative = f"{kind}/{number:04d}.tar.xz"
    path = manifest.root / relative
    data = write_archive_bytes(
        [(member_name(e.key, e.what, kind), e.path.read_bytes()) for e in chunk]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    try:
        os.link(tmp, path)  # unlike a rename, never replaces an archive that exists
    except FileExistsError:
        raise SeedError(f"{path}: exists but {manifest.path} does not list it; "
                        "move it away or add it to the manifest") from None
    finally:
        tmp.unlink()
    return ArchiveEntry(
        path=relative, kind=kind, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data),
        products={e.key: e.material_id for e in chunk if e.what == "product"},
        failures={e.key: e.material_id for e in chunk if e.what == "failure"},
    )


# --- commands -----------------------------------------------------------------------------


DEFAULT_SEED_DIR = "seeds"


def _resolve(path: str | Path, root: Path) -> Path:
    path = Path(path).expanduser()
    return path if path.is_absolute() else root / path


def shipped_seed_dir(root: Path | None, seeds_dir: Path | None) -> Path:
    """The shipped-seed directory: `seeds_dir` (relative to the repository root) or seeds/."""
    from esrepro.config import repo_root

    return _resolve(seeds_dir or DEFAULT_SEED_DIR, Path(root) if root is not None else repo_root())


def _context(root: Path | None, seeds_dir: Path | None):
    """(params, shipped-seed directory, plain seed directories, writable cache) of a checkout."""
    from esrepro.config import load_params, repo_root

    root = Path(root) if root is not None else repo_root()
    params = load_params(root / "params.yaml")
    dft = params.get("dft") or {}
    seed_dir = shipped_seed_dir(root, seeds_dir)
    configured = dft.get("seed_caches") or []
    if not isinstance(configured, (list, tuple)):
        raise ValueError(f"params.yaml dft.seed_caches: expected a list, got {configured!r}")
    plain = [
        p for p in (_resolve(s, root) for s in configured)
        if p.resolve() != seed_dir.resolve() and not is_shipped_seed(p)
    ]
    cache = _resolve(dft.get("cache") or "data/dft-cache", root)
    return params, seed_dir, plain, cache


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def dosnp_table(params: Mapping[str, Any]):
    """The DOSnp table, its material ids in the seeded order of the paper-scale selection
    (``dosnp.subset_seed``) and their structures. Fetches the table and POSCARs (mirror)."""
    from esrepro.config import mirror_dir
    from esrepro.selection import fetch_structures, fetch_table, seeded_order

    table = fetch_table(params["dosnp"]["table_commit"], mirror_dir(dict(params)))
    seed = int((params.get("dosnp") or {}).get("subset_seed", 0))
    ids = seeded_order([f"mp-{i}" for i in table["material_id"]], seed)
    return table, ids, fetch_structures(ids, mirror_dir(dict(params)))


def dosnp_table_keys(params: Mapping[str, Any]) -> tuple[list[str], list[str], Any]:
    """The DOSnp table in the seeded order of the paper-scale selection: (material ids, cache
    keys under params `dft.settings`, the settings). Fetches the table and POSCARs (mirror)."""
    from esrepro.dft.settings import DFTSettings, cache_key

    _, ids, structures = dosnp_table(params)
    settings = DFTSettings.from_params(params["dft"]["settings"])
    return ids, [cache_key(structures[i], settings) for i in ids], settings


def bandformer_params(params: Mapping[str, Any]):
    """(BandSettings, Selection) from params' `bandformer` block (its `dft` settings, its
    n_materials / max_sites / subset_seed, 0 when absent); None when params have no such
    block. A malformed block is a ValueError naming the key."""
    from esrepro.checks import expect_int, expect_mapping
    from esrepro.config import Selection
    from esrepro.dft.band_product import BandSettings

    block = params.get("bandformer")
    if block is None:
        return None
    block = expect_mapping(block, "params.yaml bandformer")
    settings = BandSettings.from_params(block.get("dft") or {}, "params.yaml bandformer.dft")
    selection = Selection(**{
        name: expect_int(block.get(name, 0), f"params.yaml bandformer.{name}", minimum=0)
        for name in ("n_materials", "max_sites", "subset_seed")
    })
    return settings, selection


def run_status(root: Path | None = None, seeds_dir: Path | None = None, *,
               table: bool = True) -> int:
    """Print what the shipped seed holds per kind, and how much of the DOSnp table the seeds
    and caches cover (ground states; band structures and Bandformer's selection when params
    have a `bandformer` block; G0W0 products of VAE-GW's 2D set with a `vae_gw` block).
    Exit 1 when an archive is missing or does not match the manifest."""
    try:
        params, seed_dir, plain, cache_dir = _context(root, seeds_dir)
        manifest = Manifest.load(seed_dir, missing_ok=True)
    except (ValueError, OSError) as err:
        print(f"error: {err}")
        return 2
    print(f"shipped seed {seed_dir}: {len(manifest.archives)} archives, "
          f"{_fmt_bytes(sum(e.bytes for e in manifest.archives))}"
          + ("" if manifest.path.is_file() else " (no manifest yet: `esrepro seed pack`)"))
    damaged: list[str] = []
    rows: dict[str, list[int]] = {kind: [0, 0, 0, 0] for kind in manifest.kinds}
    for entry in manifest.archives:
        row = rows.setdefault(entry.kind, [0, 0, 0, 0])
        row[0] += 1
        row[1] += len(entry.products)
        row[2] += len(entry.failures)
        row[3] += entry.bytes
        try:
            verify_archive(manifest, entry)
        except SeedError as err:
            damaged.append(str(err))
    if rows:
        print(f"  {'kind':<24} {'archives':>8} {'products':>8} {'failures':>8} {'bytes':>9}")
        for kind, (n_archives, n_products, n_failures, n_bytes) in sorted(rows.items()):
            print(f"  {kind:<24} {n_archives:>8} {n_products:>8} {n_failures:>8} "
                  f"{_fmt_bytes(n_bytes):>9}")
    for problem in damaged:
        print(f"error: {problem}")
    listed = {seed_dir / e.path for e in manifest.archives}
    for stray in sorted(set(seed_dir.glob("*/*.tar.xz")) - listed):
        print(f"warning: {stray}: not in {manifest.path}, so the engine ignores it "
              "(left by an interrupted pack?)")
    if table:
        _print_table_status(params, manifest, cache_dir, plain)
        _print_gw_status(params, manifest, cache_dir, plain)
    return 1 if damaged else 0


@dataclass
class Coverage:
    """Which of a list of cache keys of one kind the seeds and caches hold (product or
    failure), key by key."""

    in_seed: list[bool]
    in_cache: list[bool]
    in_plain: list[bool]
    products: list[bool]  # a product (not only a failure) somewhere

    @property
    def done(self) -> list[bool]:
        return [a or b or c for a, b, c in zip(self.in_seed, self.in_cache, self.in_plain,
                                               strict=True)]


def coverage(keys: Sequence[str], kind: str, manifest: Manifest, cache_dir: Path,
             plain: Sequence[Path]) -> Coverage:
    """Where each of `keys` (of product kind `kind`) is finished: the shipped seed, the
    writable cache, the plain seeds (band kinds in their ``bands/`` folders)."""
    shipped_products = set(manifest.shipped("product"))
    shipped = shipped_products | set(manifest.shipped("failure"))

    def present(directory: Path, key: str, what: Sequence[str] = tuple(_SUFFIX)) -> bool:
        return any((directory / member_name(key, w, kind)).is_file() for w in what)

    return Coverage(
        in_seed=[k in shipped for k in keys],
        in_cache=[present(cache_dir, k) for k in keys],
        in_plain=[any(present(d, k) for d in plain) for k in keys],
        products=[k in shipped_products or any(present(d, k, ("product",))
                                               for d in (cache_dir, *plain)) for k in keys],
    )


def _prefix(flags: list[bool]) -> int:
    return flags.index(False) if False in flags else len(flags)


def _print_coverage(title: str, found: Coverage, cache_dir: Path, plain: list[Path]) -> None:
    print(title)
    print(f"  shipped seed:    {sum(found.in_seed):>5}  "
          f"(first {_prefix(found.in_seed)} of the seeded order)")
    print(f"  writable cache:  {sum(found.in_cache):>5}  ({cache_dir})")
    print(f"  other seeds:     {sum(found.in_plain):>5}  "
          f"({', '.join(map(str, plain)) or 'none'})")


def _print_table_status(params, manifest: Manifest, cache_dir: Path, plain: list[Path]) -> None:
    from esrepro.config import Selection
    from esrepro.dft.band_product import band_cache_key, band_versions
    from esrepro.dft.settings import DFTSettings, cache_key, code_versions
    from esrepro.selection import select_materials, selected_ids

    try:
        table, ids, structures = dosnp_table(params)
        settings = DFTSettings.from_params(params["dft"]["settings"])
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        print(f"DOSnp table: not counted ({type(err).__name__}: {err})")
        return
    kind = product_kind(settings.to_dict(), code_versions())
    found = coverage([cache_key(structures[i], settings) for i in ids], kind, manifest,
                     cache_dir, plain)
    done = found.done
    _print_coverage(f"DOSnp table ({len(ids)} materials, kind {kind} = params dft.settings):",
                    found, cache_dir, plain)
    print(f"  finished in any: {sum(done):>5}  (first {_prefix(done)} of the seeded order: "
          f"n_materials: {_prefix(done)}, max_sites: 0 needs no new DFT)")
    try:
        bandformer = bandformer_params(params)
    except ValueError as err:
        print(f"band products: not counted ({err})")
        return
    if bandformer is None:
        return
    band_settings, selection = bandformer
    kind = band_product_kind(band_settings.to_dict(), band_versions())
    keys = {i: band_cache_key(structures[i], band_settings) for i in ids}
    found = coverage(list(keys.values()), kind, manifest, cache_dir, plain)
    _print_coverage(f"band products of the DOSnp table (kind {kind} = params bandformer.dft; "
                    "caches' bands/ folders):", found, cache_dir / BAND_DIR,
                    [p / BAND_DIR for p in plain])
    done = found.done
    print(f"  finished in any: {sum(done):>5}  (first {_prefix(done)} of the seeded order)")
    if selection.max_sites:
        # The band warm-up and the profile's n_materials take the small cells in the seeded
        # order, so that is the prefix which says what a partial run can use.
        small = selected_ids(
            table, Selection(n_materials=0, max_sites=selection.max_sites,
                             subset_seed=selection.subset_seed))
        finished = dict(zip(ids, done, strict=True))
        prefix = _prefix([finished[i] for i in small])
        print(f"  first {prefix} of the {len(small)} cells with <= {selection.max_sites} sites "
              f"in the seeded order (n_materials: {prefix}, max_sites: {selection.max_sites} "
              "needs no new DFT)")
    chosen = set(select_materials(table, selection)["mp_id"])
    flags = {i: (d, p) for i, d, p in zip(ids, done, found.products, strict=True)}
    n_done = sum(flags[i][0] for i in chosen)
    n_failed = sum(flags[i][0] and not flags[i][1] for i in chosen)
    print(f"Bandformer selection (n_materials {selection.n_materials}, max_sites "
          f"{selection.max_sites}, subset_seed {selection.subset_seed}): {n_done} of "
          f"{len(chosen)} finished ({n_failed} of them recorded failures)")


def _print_gw_status(params, manifest: Manifest, cache_dir: Path, plain: list[Path]) -> None:
    """G0W0 products of VAE-GW's 2D set, in the seeded order its `n_materials` takes prefixes
    of, and how many of the current profile's selection are finished."""
    from esrepro.dft.gw_product import GWSettings, gw_cache_key, gw_versions
    from esrepro.papers.vae_gw.structures import select_materials

    block = params.get("vae_gw")
    if block is None:
        return
    try:
        settings = GWSettings.from_params(block["dft"], source="params.yaml vae_gw.dft")
        materials = select_materials(0, int(block.get("subset_seed", 0)))
        n_selected = int(block.get("n_materials", 0)) or len(materials)
    except (ValueError, KeyError, TypeError) as err:
        print(f"G0W0 products: not counted ({type(err).__name__}: {err})")
        return
    kind = gw_product_kind(settings.to_dict(), gw_versions())
    found = coverage([gw_cache_key(m.atoms(), settings) for m in materials], kind, manifest,
                     cache_dir, plain)
    _print_coverage(f"G0W0 products of the VAE-GW 2D set ({len(materials)} materials, kind "
                    f"{kind} = params vae_gw.dft; caches' gw/ folders):", found,
                    cache_dir / GW_DIR, [p / GW_DIR for p in plain])
    done = found.done
    print(f"  finished in any: {sum(done):>5}  (first {_prefix(done)} of the seeded order: "
          f"vae_gw.n_materials: {_prefix(done)} needs no new G0W0)")
    print(f"VAE-GW selection (n_materials {n_selected}): {sum(done[:n_selected])} of "
          f"{min(n_selected, len(done))} finished")


def run_pack(root: Path | None = None, seeds_dir: Path | None = None, *,
             sources: Sequence[Path] | None = None, table: bool = True) -> int:
    """Pack what the writable cache and the plain seed directories hold beyond the shipped
    seed into new archives (their band products too, from their ``bands/`` folders).
    `table`: label DOSnp products with their material ids (and place failure records) by
    computing the table's keys; band products too when params have a `bandformer` block."""
    try:
        params, seed_dir, plain, cache_dir = _context(root, seeds_dir)
    except (ValueError, OSError) as err:
        print(f"error: {err}")
        return 2
    source_dirs = [Path(s).expanduser() for s in sources] if sources else [cache_dir, *plain]
    ids: dict[str, str] = {}
    failure_kinds: dict[str, tuple[str, dict[str, Any]]] = {}
    if table:
        try:
            ids, failure_kinds = _table_labels(params)
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            print(f"warning: DOSnp material ids not added ({type(err).__name__}: {err})")
    try:
        new = pack(seed_dir, source_dirs, material_ids=ids, failure_kinds=failure_kinds)
    except (SeedError, OSError) as err:
        print(f"error: {err}")
        return 1
    if not new:
        print(f"nothing new to pack: {seed_dir} already ships every product and failure of "
              + ", ".join(map(str, source_dirs)))
        return 0
    for entry in new:
        print(f"{seed_dir / entry.path}: {len(entry.products)} products, "
              f"{len(entry.failures)} failures, {_fmt_bytes(entry.bytes)}")
    print(f"updated {seed_dir / MANIFEST_NAME}; commit it with the new archives")
    return 0


def _table_labels(params: Mapping[str, Any]):
    """(cache key -> material id, key -> (kind, kind info)) of the DOSnp table's ground-state
    keys, and of its band keys when params have a `bandformer` block (band failure records
    name their settings, so only their ids are needed)."""
    from esrepro.dft.band_product import band_cache_key
    from esrepro.dft.settings import DFTSettings, cache_key, code_versions

    _, table_ids, structures = dosnp_table(params)
    settings = DFTSettings.from_params(params["dft"]["settings"])
    kind = product_kind(settings.to_dict(), code_versions())
    info = {"settings": settings.to_dict(), "versions": dict(code_versions())}
    ids: dict[str, str] = {}
    failure_kinds: dict[str, tuple[str, dict[str, Any]]] = {}
    for material_id in table_ids:
        key = cache_key(structures[material_id], settings)
        ids.setdefault(key, material_id)
        failure_kinds[key] = (kind, info)
    bandformer = bandformer_params(params)
    if bandformer is not None:
        for material_id in table_ids:
            ids.setdefault(band_cache_key(structures[material_id], bandformer[0]), material_id)
    return ids, failure_kinds


def run_unpack(root: Path | None = None, seeds_dir: Path | None = None) -> int:
    """Verify and unpack every archive now (the engine otherwise does it on first use)."""
    try:
        seed_dir = shipped_seed_dir(root, seeds_dir)
        directories = unpacked_seed_dirs(seed_dir)
    except (SeedError, ValueError, OSError) as err:
        print(f"error: {err}")
        return 1
    print(f"{len(directories)} archives verified and unpacked under {unpack_root()}")
    return 0
