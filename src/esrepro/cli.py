"""Command-line interface: ``esrepro <command>``.

Commands only parse options and call a ``run_*`` function that does the work and returns an
exit code, so every command is equally usable (and testable) from Python. The ``run_*`` modules
are imported inside the commands: some pull in heavy stacks (torch, GPAW), and ``--help`` or an
unrelated command should not pay for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="esrepro",
    help="Data-versioned reproductions of ML papers on electronic structure.",
    no_args_is_help=True,
    add_completion=False,
)

RootOption = Annotated[
    Path | None,
    typer.Option(
        "--root",
        help="Repository root (default: $ESREPRO_ROOT, else the nearest parent with params.yaml).",
        file_okay=False,
    ),
]


@app.command("check-targets")
def check_targets(
    paper: Annotated[
        list[str] | None,
        typer.Option("--paper", help="Paper to check (repeatable; default: every paper)."),
    ] = None,
    allow_missing_reference: Annotated[
        bool,
        typer.Option(
            "--allow-missing-reference/--require-reference",
            help=(
                "Without a committed reference run, check the default-profile metrics with a "
                "warning (default), or fail."
            ),
        ),
    ] = True,
    targets: Annotated[
        Path | None,
        typer.Option(
            "--targets", help="Targets file (default: reports/paper_targets.yaml).", dir_okay=False
        ),
    ] = None,
    root: RootOption = None,
) -> None:
    """Compare metrics with the paper (paper / ours / ratio / bar) and verify their hashes.

    Fails on a regression (a bar or must_beat that does not hold) and when a committed metrics
    file differs from the md5 recorded in dvc.lock (or in reference/provenance.json).
    """
    from esrepro.targets import run_check_targets

    raise typer.Exit(
        run_check_targets(
            paper or None,
            root=root,
            targets_path=targets,
            allow_missing_reference=allow_missing_reference,
        )
    )


@app.command("snapshot-reference")
def snapshot_reference(
    paper: Annotated[str, typer.Argument(help="Paper whose current outputs become the reference.")],
    wall_time_s: Annotated[
        float | None,
        typer.Option(
            "--wall-time-s",
            help="Wall time of the run (for a resumed run, the sum of its segments), recorded in "
            "provenance.json. The DFT core time is measured from the products either way.",
        ),
    ] = None,
    root: RootOption = None,
    name: Annotated[
        str,
        typer.Option(
            "--name",
            help="Folder under reports/PAPER/: 'reference' (what check-targets compares) or "
            "e.g. 'partial' for an interim subset of a paper-scale run.",
        ),
    ] = "reference",
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace an existing snapshot of that name (atomically); without it, refuse.",
        ),
    ] = False,
) -> None:
    """Snapshot PAPER's current pipeline outputs as its committed reference run.

    Copies reports/PAPER/{metrics.json, figures/*.png, PAPER.html, predictions.csv} into
    reports/PAPER/reference/ and writes provenance.json there (git commit, params, dvc.lock
    entries, wall time, machine). Refuses when metrics.json does not match dvc.lock, and when
    the snapshot folder already exists unless --force is given.
    """
    from esrepro.targets import run_snapshot_reference

    raise typer.Exit(
        run_snapshot_reference(
            paper, root=root, wall_time_s=wall_time_s, name=name, force=force
        )
    )


@app.command("papers")
def papers(root: RootOption = None) -> None:
    """List the registered papers: name, title, stages, notebook and targets."""
    from esrepro.registry import run_papers

    raise typer.Exit(run_papers(root))


pipeline_app = typer.Typer(
    help="dvc.yaml, generated from the paper registry.", no_args_is_help=True
)
app.add_typer(pipeline_app, name="pipeline")


@pipeline_app.command("write")
def pipeline_write(root: RootOption = None) -> None:
    """Write dvc.yaml from the registry (every stage's inputs, code, params and outputs)."""
    from esrepro.pipeline import run_pipeline_write

    raise typer.Exit(run_pipeline_write(root))


@pipeline_app.command("check")
def pipeline_check(root: RootOption = None) -> None:
    """Fail (exit 1) when dvc.yaml differs from what `esrepro pipeline write` would write, or a
    stage's declared params do not match what its config reads from params.yaml."""
    from esrepro.pipeline import run_pipeline_check

    raise typer.Exit(run_pipeline_check(root))


stage_app = typer.Typer(help="Run one stage of a paper (what DVC runs).", no_args_is_help=True)
app.add_typer(stage_app, name="stage")


@stage_app.command("run")
def stage_run(
    paper: Annotated[str, typer.Argument(help="Paper, e.g. dosnp (see `esrepro papers`).")],
    stage: Annotated[str, typer.Argument(help="Stage of the paper, e.g. featurize.")],
) -> None:
    """Run STAGE of PAPER with params.yaml, as `python stages/run.py PAPER STAGE` does
    (outside DVC: nothing records or caches its outputs)."""
    from esrepro.stage_cli import main as run_stage_main

    raise typer.Exit(run_stage_main([paper, stage]))


def main() -> None:
    """Entry point of the ``esrepro`` console script."""
    app()


if __name__ == "__main__":
    main()
