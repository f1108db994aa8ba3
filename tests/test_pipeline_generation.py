"""dvc.yaml is generated from the paper registry: the committed file must be what the registry
gives, each stage's deps must hold the code its function imports, and its params what its
config reads. The three gaps the hand-kept file had are caught."""

from __future__ import annotations

import dataclasses
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from esrepro import pipeline
from esrepro.pipeline import (
    check_dvc_yaml,
    check_params,
    compare,
    dvc_document,
    function_imports,
    render,
    stage_code,
)
from esrepro.registry import Paper, Stage, all_papers, get_paper, paper_names
from params_helpers import repo_params


def test_committed_dvc_yaml_is_what_the_registry_gives(repo_root: Path) -> None:
    # On failure: run `esrepro pipeline write` (after fixing the registry entry).
    assert check_dvc_yaml(repo_root) == []


def test_every_stage_declares_the_params_its_config_reads() -> None:
    assert check_params(repo_params()) == []


def test_stage_names_and_commands_stay_those_dvc_lock_knows(repo_root: Path) -> None:
    # `dvc exp run ldos_report` and the dvc.lock entries refer to these names.
    names = set(dvc_document()["stages"])
    assert {
        f"dosnp_{s}" for s in ("fetch", "dft", "featurize", "train", "evaluate", "cv", "report")
    } <= names
    assert {f"alignn_dos_{s}" for s in ("fetch", "dft", "featurize", "autoencoder", "train",
                                        "evaluate", "report")} <= names
    assert {
        f"ldos_{s}" for s in ("structures", "dft", "featurize", "learn", "evaluate", "report")
    } <= names
    entry = dvc_document()["stages"]["ldos_report"]
    assert entry["cmd"] == "python stages/run.py ldos report"
    assert {"reports/ldos/ldos.html": {"cache": False}} in entry["outs"]


def _without(doc: dict, stage: str, key: str, item: str) -> dict:
    """``doc`` with ``item`` removed from ``stage``'s ``key`` (as a hand edit would)."""
    doc = yaml.safe_load(yaml.safe_dump(doc))
    assert item in doc["stages"][stage][key], (stage, key, item)
    doc["stages"][stage][key].remove(item)
    return doc


@pytest.mark.parametrize(
    ("stage", "key", "item"),
    [
        # The gaps of the hand-kept dvc.yaml (issue 16): code that ran without being a dep ...
        ("alignn_dos_featurize", "deps", "src/esrepro/papers/alignn_dos/pipeline.py"),
        ("alignn_dos_dft", "deps", "src/esrepro/papers/alignn_dos/pipeline.py"),
        ("dosnp_featurize", "deps", "src/esrepro/splits.py"),
        # ... and a param read without being tracked.
        ("dosnp_featurize", "params", "dosnp.ecalj_ext"),
    ],
)
def test_a_dropped_dep_or_param_is_drift(tmp_path: Path, stage: str, key: str, item: str) -> None:
    generated = dvc_document()
    committed = _without(generated, stage, key, item)
    assert compare(committed, generated) == [f"stage {stage}: {key} lacks {item}"]
    (tmp_path / "dvc.yaml").write_text(render(committed))
    problems = check_dvc_yaml(tmp_path)
    assert problems == [f"stage {stage}: {key} lacks {item}"]
    (tmp_path / "dvc.yaml").write_text(render(generated))
    assert check_dvc_yaml(tmp_path) == []


def test_a_comment_or_layout_change_is_drift_too(tmp_path: Path) -> None:
    (tmp_path / "dvc.yaml").write_text(
        render(dvc_document()).replace("stages:\n", "stages:  # mine\n", 1)
    )
    assert check_dvc_yaml(tmp_path) == [
        f"{tmp_path / 'dvc.yaml'}: same stages, different text (comments or layout)"
    ]


def _replace_stage(paper: Paper, name: str, **changes: object) -> Paper:
    stages = tuple(dataclasses.replace(s, **changes) if s.name == name else s for s in paper.stages)
    return dataclasses.replace(paper, stages=stages)


def test_an_undeclared_param_read_by_the_config_is_reported() -> None:
    """The registry entry of dosnp_featurize without dosnp.ecalj_ext: its config reads it."""
    paper = get_paper("dosnp")
    params = tuple(p for p in paper.stage("featurize").params if p != "dosnp.ecalj_ext")
    broken = _replace_stage(paper, "featurize", params=params)
    assert check_params(repo_params(), [broken]) == [
        "stage dosnp_featurize reads params.yaml dosnp.ecalj_ext "
        "but does not declare it in its params"
    ]


def test_a_declared_param_no_config_reads_is_reported() -> None:
    paper = get_paper("dosnp")
    stage = paper.stage("fetch")
    broken = _replace_stage(paper, "fetch", params=(*stage.params, "dosnp.features"))
    assert check_params(repo_params(), [broken]) == [
        "stage dosnp_fetch declares params.yaml dosnp.features, which its config does not read"
    ]


def test_untracked_params_are_read_but_not_declared() -> None:
    """fetch.mirror and dft.cache/seed_caches/farm never change a stage's outputs."""
    paper = get_paper("dosnp")
    reads = paper.stage_reads(paper.stage("dft"), repo_params())
    assert {"dft.settings", "dft.farm", "dft.cache", "dft.seed_caches"} <= reads
    assert paper.stage("dft").params == ("dft.settings",)
    assert "fetch.mirror" in paper.stage_reads(paper.stage("fetch"), repo_params())


def test_stage_code_follows_the_stage_function_not_its_neighbours() -> None:
    code = {s.name: stage_code(s) for s in get_paper("dosnp").stages}
    # The code each stage runs, found from its imports (lazy ones inside the function too) ...
    assert "src/esrepro/splits.py" in code["featurize"]
    assert "src/esrepro/dft/ecalj.py" in code["featurize"]  # through ecalj_pdos, a helper it calls
    assert "src/esrepro/papers/dosnp/train.py" in code["train"]
    assert "src/esrepro/sources.yaml" in code["fetch"]  # package data named by esrepro.sources
    assert "src/esrepro/dft" in code["dft"] and not any(
        f.startswith("src/esrepro/dft/") for f in code["dft"]
    )
    # ... and not the code of the other stages in the same module.
    assert "src/esrepro/papers/dosnp/train.py" not in code["fetch"]
    assert "src/esrepro/papers/dosnp/cv.py" not in code["train"]
    assert "src/esrepro/reports.py" not in code["evaluate"]
    # The registry entry itself is not code a stage runs.
    assert not any(
        f.endswith("/paper.py") or f.endswith("/registry.py") for c in code.values() for f in c
    )


def test_import_walk_resolves_relative_and_package_imports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "esrepro"
    (package / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "a.py": "from .sub import b\nfrom . import c\n",
        "c.py": "import esrepro.d\n",
        "d.py": "",
        "e.py": "",
        "f.py": "",
        "data.yaml": "x: 1\n",
        "sub/__init__.py": "from esrepro import e\n",
        "sub/b.py": "from ..d import thing\n",
        "stage.py": textwrap.dedent('''\
            from typing import TYPE_CHECKING
            from esrepro import a
            if TYPE_CHECKING:
                from esrepro import f
            NAME = "data.yaml"

            def helper():
                from esrepro import c

            def run():
                helper()

            def other():
                from esrepro import f
        '''),
    }
    for name, text in files.items():
        (package / name).write_text(text)
    monkeypatch.setattr(pipeline, "PACKAGE_DIR", package)
    pipeline.clear_caches()
    try:
        direct = function_imports("esrepro.stage", "run")
        assert direct == {"esrepro", "esrepro.a", "esrepro.c"}  # not f: TYPE_CHECKING, other()
        assert pipeline.closure(direct) == {
            "esrepro", "esrepro.a", "esrepro.c", "esrepro.d", "esrepro.e", "esrepro.sub",
            "esrepro.sub.b",
        }
        stage = Stage("s", "esrepro.stage:run", None)
        assert "src/esrepro/data.yaml" in stage_code(stage)
        assert "src/esrepro/f.py" not in stage_code(stage)
    finally:
        monkeypatch.undo()
        pipeline.clear_caches()


def test_every_paper_is_registered_with_its_targets(repo_root: Path) -> None:
    from esrepro.targets import load_targets

    assert paper_names() == ["alignn_dos", "bandformer", "dosnp", "ldos", "vae_gw"]
    # dvc.yaml order, in which `dvc repro` runs independent stages: DOSnp's DFT stage computes
    # the structures both default profiles share, ALIGNN-DOS's finds them in the cache.
    assert [p.name for p in all_papers()] == ["bandformer", "dosnp", "alignn_dos", "ldos",
                                              "vae_gw"]
    assert list(dvc_document()["stages"]).index("dosnp_dft") < list(dvc_document()["stages"]).index(
        "alignn_dos_dft"
    )
    targets = load_targets(repo_root / "reports/paper_targets.yaml")
    for paper in all_papers():
        assert paper.name in targets
        assert (repo_root / paper.notebook).is_file()
        assert paper.stages[-1].name == "report"


def test_a_new_paper_is_one_package_and_one_registry_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package with config.py, pipeline.py and paper.py (as docs/adding-a-paper.md shows) is
    registered, its params group is checked, and its stages run through the one entry point."""
    import esrepro.papers
    from esrepro import config
    from esrepro.errors import ConfigError
    from esrepro.stage_cli import main

    package = tmp_path / "papers" / "toy"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""A toy paper."""\n')
    (package / "config.py").write_text(textwrap.dedent('''\
        from dataclasses import dataclass
        from esrepro.typed_config import param

        @dataclass(frozen=True)
        class FitConfig:
            scale: float = param(above=0.0)
            repeats: int = param(minimum=1)
    '''))
    (package / "pipeline.py").write_text(textwrap.dedent('''\
        import json

        def stage_fit(cfg, *, out):
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"value": cfg.scale * cfg.repeats}))
    '''))
    (package / "paper.py").write_text(textwrap.dedent('''\
        from esrepro.papers.toy import config
        from esrepro.registry import Paper, Stage, metric

        PAPER = Paper(
            name="toy", notebook="src/esrepro/notebooks/toy.ipynb",
            stages=(Stage("fit", "esrepro.papers.toy.pipeline:stage_fit", config.FitConfig,
                          outputs={"out": metric("reports/toy/metrics.json")},
                          params=("toy.scale", "toy.repeats")),),
        )
    '''))
    monkeypatch.setattr(
        esrepro.papers, "__path__", [*esrepro.papers.__path__, str(tmp_path / "papers")]
    )
    root = tmp_path / "repo"
    root.mkdir()
    monkeypatch.setenv("ESREPRO_ROOT", str(root))
    config.repo_root.cache_clear()
    try:
        assert "toy" in paper_names()
        paper = get_paper("toy")
        assert paper.dvc_stage_names() == ["toy_fit"]
        params = repo_params(toy={"scale": 1.5, "repeats": 2})
        assert check_params(params, [paper]) == []
        (root / "params.yaml").write_text(yaml.safe_dump(params))
        assert main(["toy", "fit"]) == 0
        assert (root / "reports/toy/metrics.json").read_text() == '{"value": 3.0}'
        with pytest.raises(ConfigError, match=r"^params.yaml toy.scael: unknown key"):
            paper.parse(repo_params(toy={"scale": 1.5, "repeats": 2, "scael": 1}))
    finally:
        config.repo_root.cache_clear()
        for name in [m for m in sys.modules if m.startswith("esrepro.papers.toy")]:
            del sys.modules[name]


def test_cli_lists_papers_and_checks_the_pipeline(repo_root: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from esrepro.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["papers", "--root", str(repo_root)])
    assert listed.exit_code == 0, listed.output
    assert (
        "dosnp: Takano et al., A Machine Learning Model for Predicting QSGW Band Gaps"
        in listed.output
    )
    assert (
        "stages:   ldos_structures, ldos_dft, ldos_featurize, ldos_learn, ldos_evaluate, "
        "ldos_report" in listed.output
    )
    checked = runner.invoke(app, ["pipeline", "check", "--root", str(repo_root)])
    assert checked.exit_code == 0, checked.output
    # A copy with a stale dvc.yaml fails and says how to fix it; `write` fixes it.
    (tmp_path / "params.yaml").write_text((repo_root / "params.yaml").read_text())
    stale = _without(dvc_document(), "dosnp_featurize", "params", "dosnp.ecalj_ext")
    (tmp_path / "dvc.yaml").write_text(render(stale))
    failed = runner.invoke(app, ["pipeline", "check", "--root", str(tmp_path)])
    assert failed.exit_code == 1
    assert "stage dosnp_featurize: params lacks dosnp.ecalj_ext" in failed.output
    assert "esrepro pipeline write" in failed.output
    assert runner.invoke(app, ["pipeline", "write", "--root", str(tmp_path)]).exit_code == 0
    assert runner.invoke(app, ["pipeline", "check", "--root", str(tmp_path)]).exit_code == 0


def test_report_stages_depend_on_every_run_their_paper_vs_ours_section_shows(
    repo_root: Path,
) -> None:
    # The section shows every committed snapshot beside the default run: a new snapshot not
    # listed in the report stage's `reads` would leave the rendered page stale.
    for paper in all_papers():
        report = next(s for s in paper.stages if s.name == "report")
        committed = {
            str(p.relative_to(repo_root))
            for name in ("partial", "reference")
            for p in [repo_root / "reports" / paper.name / name / "metrics.json"]
            if p.is_file()
        }
        listed = {r for r in report.reads if r.endswith("/metrics.json")}
        assert listed == committed, paper.name
        assert "reports/paper_targets.yaml" in report.reads
        assert "src/esrepro/targets" in report.code
