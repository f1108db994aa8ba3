"""requirements.lock: the exact environment, consistent with pyproject.toml and the DFT cache
keys."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from esrepro.dft.settings import code_versions

LOCK_ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def read_lock(path: Path) -> dict[str, tuple[str, list[str]]]:
    """Package -> (pinned version, hashes) of a ``pip-compile --generate-hashes`` lock file."""
    entries: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in path.read_text(encoding="utf-8").splitlines():
        match = LOCK_ENTRY.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            entries[current] = (match.group(2), [])
        elif current and line.strip().startswith("--hash="):
            entries[current][1].append(line.strip().split("=", 1)[1].rstrip(" \\"))
    return entries


@pytest.fixture(scope="module")
def lock(repo_root: Path) -> dict[str, tuple[str, list[str]]]:
    return read_lock(repo_root / "requirements.lock")


def test_gpaw_pins_equal_the_versions_in_the_dft_cache_keys(lock) -> None:
    # cache_key hashes gpaw's and gpaw-data's versions: another version silently invalidates
    # every cached and seeded DFT product.
    recorded = code_versions()
    for package in ("gpaw", "gpaw-data"):
        assert lock[package][0] == recorded[package], (
            f"requirements.lock pins {package}=={lock[package][0]}, the DFT cache keys of this "
            f"environment record {recorded[package]}"
        )


def test_every_declared_dependency_is_locked_within_its_range(repo_root: Path, lock) -> None:
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    declared = [*project["dependencies"], *extras["dev"], *extras["cluster"]]
    for spec in map(Requirement, declared):
        name = canonicalize_name(spec.name)
        assert name in lock, f"{spec} is in pyproject.toml but not in requirements.lock"
        version = Version(lock[name][0])
        assert spec.specifier.contains(version, prereleases=True), (
            f"requirements.lock pins {name}=={version}, outside pyproject.toml's {spec}"
        )


def test_every_pin_has_a_hash_and_no_cuda_package_is_locked(lock) -> None:
    assert len(lock) > 100
    assert [name for name, (_, hashes) in lock.items() if not hashes] == []
    # CPU-only torch: CUDA runtimes (nvidia-*-cu12, triton) would be gigabytes of wheels.
    # nvidia-ml-py (NVML bindings in pure Python, a dvclive dependency) is not one.
    cuda = [n for n in lock if re.fullmatch(r"nvidia-.*-cu\d+|triton|.*cuda.*", n)]
    assert cuda == []
    assert lock["torch"][0].endswith("+cpu")
