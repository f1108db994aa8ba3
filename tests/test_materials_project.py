"""The optional Materials Project source: the key comes from the environment only."""

from __future__ import annotations

from pathlib import Path

import pytest

from esrepro.materials_project import (
    MP_API_KEY_ENV,
    MaterialsProjectError,
    api_key,
    fetch_structures,
)


def test_missing_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(MP_API_KEY_ENV, raising=False)
    with pytest.raises(MaterialsProjectError, match=MP_API_KEY_ENV):
        fetch_structures(["mp-149"], tmp_path)
    assert not any(tmp_path.iterdir())


def test_key_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MP_API_KEY_ENV, "  abc123  ")
    assert api_key() == "abc123"
