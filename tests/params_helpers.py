"""Stage configs for tests: the repository's params.yaml with some keys changed, parsed as the
stage runner parses it (so tests use the one source of defaults, params.yaml)."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

from esrepro.config import load_params
from esrepro.registry import get_paper

REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


@cache
def _repo_params() -> dict[str, Any]:
    return load_params(REPO_PARAMS)


def repo_params(**changes: Any) -> dict[str, Any]:
    """A copy of params.yaml with ``changes`` applied: dotted keys spelled with ``__``
    (``dosnp__train__lr=2e-3``); a key that is not there is added."""
    params = copy.deepcopy(_repo_params())
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = params
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return params


def stage_config(paper: str, stage: str, **changes: Any) -> Any:
    """The typed config of ``paper``'s ``stage`` from :func:`repo_params` (``changes``)."""
    return get_paper(paper).parse(repo_params(**changes))[stage]
