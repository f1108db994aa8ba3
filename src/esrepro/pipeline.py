"""``dvc.yaml``, generated from the paper registry and checked against it.

Each stage of each paper (:mod:`esrepro.registry`) becomes a DVC stage ``<paper>_<stage>``
running ``python stages/run.py <paper> <stage>``. Its dependencies are

* its declared inputs (data),
* its code, found here: the module holding the stage's function, and every module of
  ``esrepro`` that module imports, transitively (package ``__init__`` files included, imports
  under ``if TYPE_CHECKING:`` left out, since they never run). In the stage's own module only the
  imports at its top level and in the stage function (and the module's functions it calls)
  count, so one stage does not depend on another's code; in every other module all imports do,
* the package data files (non-Python files of ``src/esrepro``) that code names, e.g.
  ``sources.yaml``, and any code the registry entry lists (``src/esrepro/dft``: its workers run
  in subprocesses, which imports do not show).

Its params are those the registry entry declares; :func:`check_params` verifies that they
cover every key the stage's typed config reads (except :data:`UNTRACKED_PARAMS`) and that each
is read. ``esrepro pipeline write`` writes the file; ``esrepro pipeline check`` (and a test)
fails when the committed file differs from what it would write.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

import esrepro
from esrepro.registry import RUNNER, Paper, Stage, all_papers
from esrepro.typed_config import covered

PACKAGE_DIR = Path(esrepro.__file__).resolve().parent
#: Where the package lives in the repository (paths in dvc.yaml are relative to its root).
PACKAGE_REL = "src/esrepro"
DVC_YAML = "dvc.yaml"

#: Params a stage may read without DVC tracking them, and why: none changes what it computes.
UNTRACKED_PARAMS: dict[str, str] = {
    "fetch.mirror": "where pinned files are copied from; their sha256 is checked either way",
    "dft.cache": "where the content-addressed DFT cache lives",
    "dft.seed_caches": "read-only caches in the same content-addressed format",
    "dft.farm": "how DFT runs (workers, MPI ranks, time-out), never part of the cache key",
}

HEADER = """\
# GENERATED from the paper registry (src/esrepro/papers/<paper>/paper.py): do not edit by hand.
# Regenerate with `esrepro pipeline write`; `esrepro pipeline check` (and the test suite) fails
# when this file differs from what the registry gives. Each stage depends on its inputs, on its
# code (the modules its function imports, found automatically) and on the params it declares.
#
# `dvc repro` rebuilds exactly what changed; `dvc exp run -S model.pooling=max` retrains DOSnp
# and ALIGNN-DOS without re-running DFT (the DFT stages depend on dft.settings only).
"""


# --------------------------------------------------------------------------- code dependencies


@cache
def module_file(name: str) -> Path | None:
    """The file of module ``esrepro...`` (a package's ``__init__.py``), None if none."""
    parts = name.split(".")
    if parts[0] != "esrepro":
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return base.with_suffix(".py") if base.with_suffix(".py").is_file() else None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(nodes: Iterable[ast.AST]) -> Iterator[ast.AST]:
    """Every node under ``nodes``, except the bodies of ``if TYPE_CHECKING:`` (never run)."""
    stack = list(nodes)[::-1]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            children: list[ast.AST] = [node.test, *node.orelse]
        else:
            children = list(ast.iter_child_nodes(node))
        stack.extend(children[::-1])


def _imports(nodes: Iterable[ast.AST], module: str) -> set[str]:
    """The ``esrepro`` modules the import statements under ``nodes`` of ``module`` load,
    with every package above them (Python runs each package's ``__init__`` first)."""
    package = module if module_file(module) and module_file(module).name == "__init__.py" else (
        module.rpartition(".")[0]
    )
    found: set[str] = set()
    for node in _walk(nodes):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            found.add(base)
            # `from pkg import name` loads the submodule pkg.name when there is one.
            found.update(f"{base}.{a.name}" for a in node.names if module_file(f"{base}.{a.name}"))
    out = set()
    for name in found:
        if module_file(name) is None:
            continue
        parts = name.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {m for m in out if module_file(m) is not None}


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


@cache
def module_imports(module: str) -> frozenset[str]:
    """Every ``esrepro`` module ``module`` may import: all its import statements, at any depth."""
    path = module_file(module)
    return frozenset(_imports(_tree(path).body, module) if path else ())


def function_imports(module: str, function: str) -> set[str]:
    """The ``esrepro`` modules importing ``module`` and calling ``function`` loads: imports at
    the module's top level (and in its classes), in the function, and in every function of the
    module the function (or the top level) names, transitively."""
    path = module_file(module)
    if path is None:
        raise ValueError(f"no module {module} under {PACKAGE_DIR}")
    tree = _tree(path)
    functions = {
        n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    if function not in functions:
        raise ValueError(f"{module} has no function {function}")
    top = [n for n in tree.body if not isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    reached: list[ast.AST] = list(top)
    todo = [function, *(n.id for n in _walk(top) if isinstance(n, ast.Name) and n.id in functions)]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        reached.append(functions[name])
        todo.extend(
            n.id for n in _walk([functions[name]]) if isinstance(n, ast.Name) and n.id in functions
        )
    return _imports(reached, module)


def closure(modules: Iterable[str]) -> set[str]:
    """``modules`` and every ``esrepro`` module they import, transitively."""
    done: set[str] = set()
    todo = list(modules)
    while todo:
        module = todo.pop()
        if module not in done:
            done.add(module)
            todo.extend(module_imports(module) - done)
    return done


def _rel(path: Path) -> str:
    return f"{PACKAGE_REL}/{path.relative_to(PACKAGE_DIR).as_posix()}"


@cache
def data_files(module: str) -> frozenset[str]:
    """Package data (non-Python files of ``src/esrepro``) that ``module`` names in a string,
    relative to the package or to the module's own directory (e.g. ``"sources.yaml"``)."""
    path = module_file(module)
    out = set()
    for node in ast.walk(_tree(path)):
        if (
            isinstance(node, ast.Constant) and isinstance(node.value, str)
            and 0 < len(node.value) < 200
        ):
            for base in (PACKAGE_DIR, path.parent):
                candidate = base / node.value
                try:
                    is_data = candidate.is_file() and candidate.suffix != ".py"
                except OSError:  # not a valid path at all
                    is_data = False
                if is_data and candidate.resolve().is_relative_to(PACKAGE_DIR):
                    out.add(_rel(candidate.resolve()))
    return frozenset(out)


def clear_caches() -> None:
    """Forget parsed modules (for a changed ``PACKAGE_DIR`` or edited files)."""
    for cached in (module_file, module_imports, data_files, _tree):
        cached.cache_clear()


def stage_code(stage: Stage) -> list[str]:
    """The code files ``stage`` depends on (see the module docstring), sorted."""
    direct = function_imports(stage.module, stage.function_name)
    modules = {stage.module} | closure(direct)
    files = {_rel(module_file(m)) for m in modules}
    files.update(f for m in modules for f in data_files(m))
    files.update(stage.code)
    # A listed directory covers the files under it.
    return sorted(f for f in files if not any(f.startswith(d + "/") for d in stage.code))


# --------------------------------------------------------------------------- dvc.yaml


def _out(output: Any) -> Any:
    return output.path if output.cache else {output.path: {"cache": False}}


def stage_entry(paper: Paper, stage: Stage) -> dict[str, Any]:
    """The dvc.yaml entry of one stage."""
    entry: dict[str, Any] = {"cmd": f"python {RUNNER} {paper.name} {stage.name}"}
    entry["deps"] = [*stage.inputs.values(), *stage.reads, RUNNER, *stage_code(stage)]
    if stage.params:
        entry["params"] = list(stage.params)
    metrics = [o for o in stage.outputs.values() if o.metric]
    outs = [o for o in stage.outputs.values() if not o.metric]
    if metrics:
        entry["metrics"] = [_out(o) for o in metrics]
    if outs:
        entry["outs"] = [_out(o) for o in outs]
    return entry


def dvc_document(papers: Iterable[Paper] | None = None) -> dict[str, Any]:
    """dvc.yaml as a mapping: every stage of every paper, then the papers' plots."""
    papers = list(all_papers() if papers is None else papers)
    doc: dict[str, Any] = {
        "stages": {p.dvc_name(s): stage_entry(p, s) for p in papers for s in p.stages}
    }
    plots = [plot for p in papers for plot in p.plots]
    if plots:
        doc["plots"] = plots
    return doc


class _Dumper(yaml.SafeDumper):
    """Indents list items under their key, as hand-written dvc.yaml files do."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def render(doc: Mapping[str, Any]) -> str:
    """dvc.yaml's text: the header, then the document with a blank line between stages."""
    body = yaml.dump(
        dict(doc), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100
    )
    lines: list[str] = []
    section = ""
    for line in body.splitlines():
        top_level = not line.startswith(" ")
        section = line if top_level else section
        stage_start = section == "stages:" and line.startswith("  ") and line[2] != " "
        if lines and (top_level or stage_start) and lines[-1] != "stages:":
            lines.append("")
        lines.append(line)
    return HEADER + "\n".join(lines) + "\n"


def write(root: Path) -> Path:
    """Write ``root/dvc.yaml`` from the registry; returns its path."""
    path = Path(root) / DVC_YAML
    path.write_text(render(dvc_document()), encoding="utf-8")
    return path


def _as_set(items: Iterable[Any]) -> set[str]:
    out = set()
    for item in items or []:
        if isinstance(item, Mapping):
            out.update(f"{k} {dict(v or {})}" if v else str(k) for k, v in item.items())
        else:
            out.add(str(item))
    return out


def compare(committed: Mapping[str, Any], generated: Mapping[str, Any]) -> list[str]:
    """How ``committed`` (a parsed dvc.yaml) differs from ``generated``: one line per stage
    and key, naming what is missing or extra."""
    problems = []
    mine = (committed or {}).get("stages") or {}
    theirs = generated.get("stages") or {}
    for name in theirs.keys() - mine.keys():
        problems.append(f"stage {name}: missing")
    for name in mine.keys() - theirs.keys():
        problems.append(f"stage {name}: not in the registry")
    for name in sorted(mine.keys() & theirs.keys()):
        a, b = mine[name] or {}, theirs[name]
        if a.get("cmd") != b.get("cmd"):
            problems.append(
                f"stage {name}: cmd is {a.get('cmd')!r}, the registry gives {b.get('cmd')!r}"
            )
        for key in ("deps", "params", "outs", "metrics"):
            have, want = _as_set(a.get(key)), _as_set(b.get(key))
            for item in sorted(want - have):
                problems.append(f"stage {name}: {key} lacks {item}")
            for item in sorted(have - want):
                problems.append(f"stage {name}: {key} has {item}, which the registry does not give")
    if (committed or {}).get("plots") != generated.get("plots"):
        problems.append("plots differ from the registry's")
    return problems


def check_dvc_yaml(root: Path) -> list[str]:
    """Differences between ``root/dvc.yaml`` and what :func:`write` would write."""
    path = Path(root) / DVC_YAML
    if not path.is_file():
        return [f"{path}: missing"]
    text = path.read_text(encoding="utf-8")
    generated = dvc_document()
    problems = compare(yaml.safe_load(text), generated)
    if not problems and text != render(generated):
        problems.append(f"{path}: same stages, different text (comments or layout)")
    return problems


def check_params(params: Mapping[str, Any], papers: Iterable[Paper] | None = None) -> list[str]:
    """Stages whose declared params do not cover what their config reads from ``params``
    (untracked ones aside), or declare a param their config does not read."""
    problems = []
    for paper in all_papers() if papers is None else papers:
        for stage in paper.stages:
            reads = paper.stage_reads(stage, params)
            declared = set(stage.params)
            for key in sorted(reads):
                if not covered(key, declared) and not covered(key, set(UNTRACKED_PARAMS)):
                    problems.append(
                        f"stage {paper.dvc_name(stage)} reads params.yaml {key} but does not "
                        "declare it in its params"
                    )
            for key in sorted(declared):
                if not any(covered(r, {key}) or covered(key, {r}) for r in reads):
                    problems.append(
                        f"stage {paper.dvc_name(stage)} declares params.yaml {key}, which its "
                        "config does not read"
                    )
    return problems


def run_pipeline_write(root: Path | None = None) -> int:
    """``esrepro pipeline write``: write dvc.yaml from the registry."""
    from esrepro.config import repo_root

    print(f"wrote {write(Path(root) if root else repo_root())}")
    return 0


def run_pipeline_check(root: Path | None = None) -> int:
    """``esrepro pipeline check``: 0 when dvc.yaml is what the registry gives and every stage
    declares the params its config reads; else 1, with one line per difference."""
    from esrepro.config import load_params, repo_root

    root = Path(root) if root else repo_root()
    problems = check_dvc_yaml(root) + check_params(load_params(root / "params.yaml"))
    for problem in problems:
        print(problem)
    if problems:
        print("dvc.yaml is out of date or a stage's params are wrong: fix the registry entry "
              "(src/esrepro/papers/<paper>/paper.py), then run `esrepro pipeline write`")
        return 1
    print(f"{root / DVC_YAML} matches the registry")
    return 0
