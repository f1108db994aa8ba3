"""The one entry point of every DVC stage: ``python stages/run.py <paper> <stage>``.

It loads params.yaml, checks the groups papers share, parses every stage config of the paper
(so a typo anywhere in the paper's group stops it, naming the key), and calls the stage's
function with its config and the paths its registry entry declares. A stage that stops on bad
input or a missing source (:func:`expected_errors`) prints one ``error:`` line
and exits 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from esrepro.config import load_params, resolve_path
from esrepro.errors import ConfigError, InputError
from esrepro.registry import get_paper, paper_names

#: The groups several papers read, and the keys each may hold.
SHARED_GROUPS: dict[str, frozenset[str]] = {
    "fetch": frozenset({"mirror"}),
    "model": frozenset({"pooling"}),
    "dft": frozenset({"cache", "seed_caches", "settings", "farm"}),
}
USAGE = "usage: python stages/run.py <paper> <stage>"


def expected_errors() -> tuple[type[BaseException], ...]:
    """Every exception a stage may stop on without a traceback: bad input or params
    (:class:`~esrepro.errors.InputError`), a pinned file that cannot be fetched, a structure
    file that does not parse, a Materials Project request that fails; each names its file,
    value or URL."""
    from esrepro.fetch import FetchError
    from esrepro.materials_project import MaterialsProjectError
    from esrepro.structures import StructureError

    return (InputError, FetchError, StructureError, MaterialsProjectError)


def check_shared_groups(params: Mapping[str, Any], papers: Sequence[str]) -> None:
    """Unknown top-level groups and unknown keys of the shared groups are errors naming them;
    so are bad ``dft.settings`` and ``dft.farm`` values (checked before any stage works)."""
    from esrepro.dft.farm import FarmOptions
    from esrepro.dft.settings import DFTSettings

    for group in params:
        if group not in SHARED_GROUPS and group not in papers:
            raise ConfigError(
                f"params.yaml {group}: unknown group (shared: {sorted(SHARED_GROUPS)}; "
                f"papers: {list(papers)})"
            )
    for group, keys in SHARED_GROUPS.items():
        value = params.get(group)
        if not isinstance(value, Mapping):
            raise ConfigError(f"params.yaml {group}: expected a mapping of {sorted(keys)}")
        for key in value:
            if key not in keys:
                raise ConfigError(f"params.yaml {group}.{key}: unknown key (known: {sorted(keys)})")
    pooling = params["model"].get("pooling")
    if isinstance(pooling, Mapping):
        for paper in pooling:
            if paper not in papers:
                raise ConfigError(
                    f"params.yaml model.pooling.{paper}: no such paper ({list(papers)})"
                )
    try:
        DFTSettings.from_params(params["dft"].get("settings"))
        FarmOptions.from_params(params["dft"].get("farm"))
    except ValueError as err:  # their messages name the key
        raise ConfigError(str(err)) from None


def run_stage(paper_name: str, stage_name: str, params: Mapping[str, Any] | None = None) -> None:
    """Run one stage of one paper with ``params`` (default: the repository's params.yaml)."""
    paper = get_paper(paper_name)
    stage = paper.stage(stage_name)
    params = load_params() if params is None else params
    check_shared_groups(params, paper_names())
    config = paper.parse(params).get(stage.name)
    _check_inputs(paper.dvc_name(stage), stage.inputs)
    paths = {name: resolve_path(path) for name, path in stage.paths().items()}
    function = stage.function()
    if stage.config is None:
        function(**paths)
    else:
        function(config, **paths)


def _check_inputs(stage_name: str, inputs: Mapping[str, str]) -> None:
    """A declared input that does not exist is an error naming it and the stage that writes it
    (DVC runs that stage first; run by hand, a stage may come too early)."""
    from esrepro.registry import all_papers

    for path in inputs.values():
        if resolve_path(path).exists():
            continue
        writers = [
            paper.dvc_name(s) for paper in all_papers() for s in paper.stages
            if any(path == o.path or path.startswith(o.path + "/") for o in s.outputs.values())
        ]
        made_by = f" (written by {', '.join(writers)})" if writers else ""
        raise InputError(
            f"{stage_name} needs {path}{made_by}, which does not exist: "
            f"run `dvc repro {stage_name}`"
        )


def follow_dvc() -> bool:
    """When DVC runs this stage (it sets ``DVC_STAGE``), have it get SIGTERM when its parent dies.

    A killed ``dvc repro`` or ``dvc exp run`` otherwise leaves the stage running unsupervised,
    DFT farm and workers included (the workers already die with the farm). True when armed.
    """
    if not os.environ.get("DVC_STAGE"):
        return False
    from esrepro.dft.worker import kill_me_with_my_parent

    return kill_me_with_my_parent(signal.SIGTERM)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``<paper> <stage>``, run it; exit status 0, 1 (expected error) or 2 (usage)."""
    follow_dvc()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # Lightning installs its own console handler; without this every line prints twice.
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).propagate = False
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print(f"{USAGE}\npapers: {', '.join(paper_names())}", file=sys.stderr)
        return 2
    paper_name, stage_name = args
    try:
        paper = get_paper(paper_name)
        paper.stage(stage_name)
    except KeyError as err:
        print(f"{USAGE}\n{err.args[0]}", file=sys.stderr)
        return 2
    try:
        run_stage(paper_name, stage_name)
    except expected_errors() as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
