"""The papers this repository reproduces: one :class:`Paper` per ``esrepro.papers.<name>``.

A paper is a package ``src/esrepro/papers/<name>/`` whose module ``paper.py`` defines ``PAPER``:
its notebook and its stages, each naming the function it runs, the typed config
(:mod:`esrepro.typed_config`) that function takes, its inputs and outputs (paths passed to the
function as keyword arguments) and the params DVC tracks for it. ``dvc.yaml`` is generated from
these entries (:mod:`esrepro.pipeline`), every stage runs through one entry point
(:mod:`esrepro.stage_cli`), and the paper's targets are its entry in
``reports/paper_targets.yaml``.

``PAPER`` lives in ``paper.py``, not in the package's ``__init__``: every module of the package
imports the ``__init__``, so a registry entry there would make each stage's code (and its DVC
hash) depend on every other stage's declaration.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from esrepro.errors import ConfigError
from esrepro.typed_config import ParamsSource, parse, unread_keys

#: The command DVC runs for a stage: ``python stages/run.py <paper> <stage>``.
RUNNER = "stages/run.py"


@dataclass(frozen=True)
class Output:
    """A stage output. ``cache=False`` keeps it in git (reports); ``metric`` marks a DVC
    metrics file (``dvc metrics show/diff``)."""

    path: str
    cache: bool = True
    metric: bool = False


def report(path: str) -> Output:
    """An output committed to git (not DVC-cached): reports, figures, training curves."""
    return Output(path, cache=False)


#: Where every paper's targets are declared (esrepro.targets), and the code judging them: what a
#: report's "paper vs ours" section (:func:`esrepro.targets.render.paper_vs_ours`) reads besides
#: the run it renders.
TARGETS_FILE = "reports/paper_targets.yaml"
TARGETS_CODE = "src/esrepro/targets"


def shown_runs(paper: str, *snapshots: str) -> tuple[str, ...]:
    """The ``reads`` of ``paper``'s report stage: the targets file and the metrics of each
    committed snapshot (``partial``, ``reference``) its "paper vs ours" section shows beside the
    default run. A test checks that every committed snapshot is listed."""
    return (TARGETS_FILE, *(f"reports/{paper}/{name}/metrics.json" for name in snapshots))


def metric(path: str) -> Output:
    """A metrics file, committed to git."""
    return Output(path, cache=False, metric=True)


@dataclass(frozen=True)
class Stage:
    """One DVC stage of a paper.

    Args:
        name: the stage's name within the paper (DVC's is ``<paper>_<name>``).
        run: ``"module:function"`` of the function the stage runs; it is called as
            ``function(config, **inputs, **outputs, **scratch)`` (without ``config`` when
            ``config`` is None), every path resolved against the repository root.
        config: the frozen dataclass the function takes, parsed from the paper's params group.
        inputs: argument name -> path the stage reads (a DVC dependency).
        outputs: argument name -> :class:`Output` (a path: a DVC-cached output).
        scratch: argument name -> path the stage may keep between runs that is not an output
            (checkpoints of resumable fits, downloads): DVC does not track it.
        params: the dotted params DVC tracks: every key ``config`` reads must be covered
            (a test checks it), except :data:`esrepro.pipeline.UNTRACKED_PARAMS`.
        code: code DVC tracks beyond the modules the stage's function imports (found by
            :mod:`esrepro.pipeline`), e.g. a package run in worker processes.
        reads: files or folders the stage reads that are not arguments of its function (a DVC
            dependency all the same), e.g. what a report's "paper vs ours" section shows.
    """

    name: str
    run: str
    config: type | None
    inputs: Mapping[str, str] = field(default_factory=dict)
    outputs: Mapping[str, Output | str] = field(default_factory=dict)
    scratch: Mapping[str, str] = field(default_factory=dict)
    params: tuple[str, ...] = ()
    code: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        outputs = {k: v if isinstance(v, Output) else Output(v) for k, v in self.outputs.items()}
        object.__setattr__(self, "outputs", MappingProxyType(outputs))
        object.__setattr__(self, "inputs", MappingProxyType(dict(self.inputs)))
        object.__setattr__(self, "scratch", MappingProxyType(dict(self.scratch)))
        names = [*self.inputs, *self.outputs, *self.scratch]
        if len(names) != len(set(names)):
            raise ValueError(f"stage {self.name}: an argument name is used twice in {names}")
        if ":" not in self.run:
            raise ValueError(f"stage {self.name}: run must be 'module:function', got {self.run!r}")

    @property
    def module(self) -> str:
        return self.run.split(":", 1)[0]

    @property
    def function_name(self) -> str:
        return self.run.split(":", 1)[1]

    def function(self) -> Callable[..., Any]:
        """The stage's function (imports its module)."""
        return getattr(importlib.import_module(self.module), self.function_name)

    def paths(self) -> dict[str, str]:
        """Every path argument of the function: inputs, outputs and scratch."""
        return {
            **self.inputs, **{k: o.path for k, o in self.outputs.items()}, **self.scratch
        }


@dataclass(frozen=True)
class Paper:
    """A reproduced paper: its stages in pipeline order, its notebook and its targets.

    The paper's title, source and targets are its entry under ``papers`` in ``targets`` (one
    file for every paper). ``plots`` are DVC's top-level plot definitions for the paper.
    ``after`` names papers whose stages come first in dvc.yaml, so that ``dvc repro`` runs them
    first: a paper computing the same structures as another then finds its DFT products in the
    shared cache instead of computing them in its own stage. ``models`` are the stage outputs
    (files or folders) holding the trained models; a reference snapshot keeps a copy of them,
    so its networks load (``esrepro.training.load_model``) without training again. A paper
    whose models are too large to commit says why in ``models_left_out`` instead.
    """

    name: str
    stages: tuple[Stage, ...]
    notebook: str
    targets: str = TARGETS_FILE
    plots: tuple[Mapping[str, Any], ...] = ()
    after: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    models_left_out: str = ""

    def __post_init__(self) -> None:
        names = [s.name for s in self.stages]
        if len(names) != len(set(names)):
            raise ValueError(f"paper {self.name}: stage names repeat: {names}")
        outputs = {o.path for stage in self.stages for o in stage.outputs.values()}
        unknown = [m for m in self.models if m not in outputs]
        if unknown:
            raise ValueError(f"paper {self.name}: models {unknown} are no stage's output")

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"paper {self.name} has no stage {name!r} (stages: {self.stage_names()})")

    def stage_names(self) -> list[str]:
        return [s.name for s in self.stages]

    def dvc_name(self, stage: Stage | str) -> str:
        """The stage's name in dvc.yaml and dvc.lock: ``<paper>_<stage>``."""
        return f"{self.name}_{stage if isinstance(stage, str) else stage.name}"

    def dvc_stage_names(self) -> list[str]:
        return [self.dvc_name(s) for s in self.stages]

    def parse(self, params: Mapping[str, Any], file: str = "params.yaml") -> dict[str, Any]:
        """Every stage's config, parsed from ``params``; a key under the paper's group that no
        stage reads is an error naming it (a typo such as ``dosnp.train.lsos``)."""
        source = ParamsSource(params, file=file)
        configs = {
            s.name: parse(s.config, source, self.name) for s in self.stages if s.config is not None
        }
        unknown = unread_keys(params, self.name, source.reads)
        if unknown:
            raise ConfigError(
                f"{source.label(unknown[0])}: unknown key (no {self.name} stage reads it)"
            )
        return configs

    def stage_reads(self, stage: Stage, params: Mapping[str, Any]) -> set[str]:
        """The dotted params keys ``stage``'s config reads from ``params``."""
        source = ParamsSource(params)
        if stage.config is not None:
            parse(stage.config, source, self.name)
        return source.reads


def paper_names() -> list[str]:
    """Names of the registered papers: packages ``esrepro.papers.<name>`` with a ``paper``
    module (found without importing them)."""
    import esrepro.papers

    return sorted(
        info.name
        for info in pkgutil.iter_modules(esrepro.papers.__path__)
        if info.ispkg and importlib.util.find_spec(f"esrepro.papers.{info.name}.paper") is not None
    )


def get_paper(name: str) -> Paper:
    """The registry entry of paper ``name``; an unknown name is a ``KeyError`` listing them."""
    if name not in paper_names():
        raise KeyError(f"no paper {name!r}; registered: {', '.join(paper_names())}")
    paper = importlib.import_module(f"esrepro.papers.{name}.paper").PAPER
    if not isinstance(paper, Paper) or paper.name != name:
        raise TypeError(f"esrepro.papers.{name}.paper.PAPER must be a Paper named {name!r}")
    return paper


def all_papers() -> list[Paper]:
    """Every registered paper: in name order, except that a paper comes after those it names
    in ``after`` (the order of dvc.yaml, in which ``dvc repro`` runs independent stages)."""
    pending = {name: get_paper(name) for name in paper_names()}
    ordered: list[Paper] = []
    while pending:
        ready = [p for p in pending.values() if all(a not in pending for a in p.after)]
        if not ready:
            raise ValueError(f"papers name each other in 'after': {sorted(pending)}")
        ordered.append(pending.pop(min(p.name for p in ready)))
    return ordered


def run_papers(root: Path | None = None) -> int:
    """``esrepro papers``: each paper's name and title (from its targets file), stages,
    notebook and targets. Exit 1 when a paper has no entry in its targets file."""
    from esrepro.config import repo_root
    from esrepro.targets import load_targets

    root = Path(root) if root else repo_root()
    status = 0
    for paper in all_papers():
        entry = load_targets(root / paper.targets).get(paper.name)
        title = " ".join(entry.title.split()) if entry else "(no entry in the targets file)"
        print(f"{paper.name}: {title}")
        print(f"  stages:   {', '.join(paper.dvc_stage_names())}")
        print(f"  notebook: {paper.notebook}")
        n_targets = len(entry.targets) if entry else 0
        print(f"  targets:  {paper.targets} (papers.{paper.name}: {n_targets} targets)")
        status = status if entry else 1
    return status
