"""What a fresh clone holds: data/ (outputs kept out of git), a licence and a citation."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import yaml


def _ignored(repo: Path, path: str) -> bool:
    out = subprocess.run(["git", "check-ignore", "-q", path], cwd=repo, check=False)
    assert out.returncode in (0, 1), f"git check-ignore failed on {path}"
    return out.returncode == 0


def test_data_folder_is_in_the_clone_and_its_outputs_are_not(repo_root: Path) -> None:
    assert (repo_root / "data" / "README.md").is_file()
    assert not _ignored(repo_root, "data/README.md")
    assert not _ignored(repo_root, "data/.gitignore")
    for output in ("data/dosnp/raw", "data/ldos/dft/products/x.npz", "data/dft-cache"):
        assert _ignored(repo_root, output), f"{output} would be committed to git"


def test_license_and_citation_agree_with_pyproject(repo_root: Path) -> None:
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    assert (repo_root / "LICENSE").read_text().startswith("MIT License")
    citation = yaml.safe_load((repo_root / "CITATION.cff").read_text())
    assert citation["license"] == project["license"]
    assert citation["version"] == project["version"]
    assert len([r for r in citation["references"] if r["type"] == "article"]) >= 5
