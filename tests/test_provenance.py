"""The one git-commit helper asks git, so every ref layout resolves; the env is a fallback."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from esrepro.provenance import GIT_COMMIT_ENV, git_commit, machine, package_versions


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    )
    return out.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "a.txt").write_text("a")
    _git(repo, "add", "a.txt")
    _git(repo, "commit", "-q", "-m", "first")
    return repo


def test_commit_of_a_plain_repository(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(GIT_COMMIT_ENV, raising=False)
    assert git_commit(repo) == _git(repo, "rev-parse", "HEAD")
    (repo / "sub").mkdir()
    assert git_commit(repo / "sub") == git_commit(repo)


def test_head_through_a_symbolic_ref_chain(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # HEAD -> refs/heads/alias -> refs/heads/main. Reading the alias ref file by hand (as the
    # model files' former helper did) gave "ref: refs/heads/main" instead of a commit.
    monkeypatch.delenv(GIT_COMMIT_ENV, raising=False)
    _git(repo, "symbolic-ref", "refs/heads/alias", "refs/heads/main")
    _git(repo, "symbolic-ref", "HEAD", "refs/heads/alias")
    commit = git_commit(repo)
    assert commit is not None and re.fullmatch(r"[0-9a-f]{40}", commit)
    assert commit == _git(repo, "rev-parse", "main")


def test_packed_refs_and_worktrees(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(GIT_COMMIT_ENV, raising=False)
    main = _git(repo, "rev-parse", "HEAD")
    _git(repo, "pack-refs", "--all")
    assert git_commit(repo) == main
    _git(repo, "worktree", "add", "-q", "-b", "side", str(repo.parent / "wt"))
    (repo.parent / "wt" / "b.txt").write_text("b")
    _git(repo.parent / "wt", "add", "b.txt")
    _git(repo.parent / "wt", "commit", "-q", "-m", "second")
    assert git_commit(repo.parent / "wt") == _git(repo.parent / "wt", "rev-parse", "HEAD") != main


def test_a_stale_env_commit_never_overrides_the_repository(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(GIT_COMMIT_ENV, "0" * 40)
    assert git_commit(repo) == _git(repo, "rev-parse", "HEAD")


def test_the_env_commit_is_the_answer_outside_a_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.delenv(GIT_COMMIT_ENV, raising=False)
    assert git_commit(tmp_path) is None
    monkeypatch.setenv(GIT_COMMIT_ENV, "abc123")
    assert git_commit(tmp_path) == "abc123"


def test_versions_and_machine() -> None:
    versions = package_versions(["torch", "no-such-package-esrepro"])
    assert versions["torch"] and versions["no-such-package-esrepro"] is None
    info = machine()
    assert info["cpu_count"] >= 1 and info["python"].count(".") == 2
