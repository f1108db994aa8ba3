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
#: ``--targets`` of the commands that read the targets file.
TargetsOption = Annotated[
    Path | None,
    typer.Option(
        "--targets", help="Targets file (default: reports/paper_targets.yaml).", dir_okay=False
    ),
]


@app.command("check-targets")
def check_targets(
    paper: Annotated[
        list[str] | None,
        typer.Option("--paper", help="Paper to check (repeatable; default: every paper)."),
    ] = None,
    output_format: Annotated[
        str,
        typer.Option("--format", help="Output: 'rich' (a terminal table) or 'markdown'."),
    ] = "rich",
    targets: TargetsOption = None,
    root: RootOption = None,
) -> None:
    """Check every committed run (default, partial/, reference/) against the bars of its scope.

    Exit 1 when a committed metrics file differs from the md5 recorded in dvc.lock (or in the
    snapshot's provenance.json), a bar or must_beat gating that run does not hold, or a reference
    run is missing that paper_targets.yaml does not declare pending; exit 2 when an input is
    malformed. Prints the paper / ours / ratio table, one line per pending reference, and the
    papers' claims (holds / fails / not resolved / missing), which never gate.
    """
    from esrepro.targets import run_check_targets

    raise typer.Exit(
        run_check_targets(paper or None, root=root, targets_path=targets, fmt=output_format)
    )


@app.command("claims")
def claims(
    write: Annotated[
        bool,
        typer.Option("--write", help="Write the table into README.md between its claims markers."),
    ] = False,
    check: Annotated[
        bool,
        typer.Option("--check", help="Exit 1 when README.md's claims table is stale."),
    ] = False,
    targets: TargetsOption = None,
    root: RootOption = None,
) -> None:
    """Every paper's claims with their verdicts, as the Markdown table README.md shows."""
    from esrepro.targets import run_claims

    raise typer.Exit(run_claims(root=root, targets_path=targets, write=write, check=check))


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


seed_app = typer.Typer(
    name="seed",
    help="The DFT products shipped with the repository (seeds/): status, pack, unpack, verify.",
    no_args_is_help=True,
)
app.add_typer(seed_app, name="seed")

SeedsOption = Annotated[
    Path | None,
    typer.Option("--seeds", help="Shipped-seed directory (default: seeds/ in the repository).",
                 file_okay=False),
]


@seed_app.command("status")
def seed_status(
    seeds: SeedsOption = None,
    table: Annotated[
        bool,
        typer.Option("--table/--no-table",
                     help="Count the DOSnp table's materials (reads the table and its POSCARs)."),
    ] = True,
    root: RootOption = None,
) -> None:
    """What the shipped seed holds per product kind, and how much of the DOSnp table is done.

    Per kind (ground states and band structures): archives, products, failures, bytes. For the
    DOSnp table: materials in the shipped seed, the writable cache and other seeds, and the
    finished prefix of the seeded order; the same for its band products, and how many of
    Bandformer's selection are finished, when params.yaml has a bandformer block. Exit 1 if an
    archive is missing or does not match the manifest.
    """
    from esrepro.dft.seeds import run_status

    raise typer.Exit(run_status(root, seeds, table=table))


@seed_app.command("pack")
def seed_pack(
    source: Annotated[
        list[Path] | None,
        typer.Option("--from", help="Cache directory to pack from, its bands/ folder "
                     "included (repeatable; default: params dft.cache and every plain "
                     "directory in dft.seed_caches).",
                     file_okay=False),
    ] = None,
    seeds: SeedsOption = None,
    table: Annotated[
        bool,
        typer.Option("--table/--no-table",
                     help="Label DOSnp products (band products too, with a bandformer block) "
                     "with their material ids (computes the table's cache keys from its "
                     "POSCARs)."),
    ] = True,
    root: RootOption = None,
) -> None:
    """Pack every product and failure the seed does not ship yet into new archives.

    Ground-state products come from a cache's top level, band products from its bands/
    folder; each settings/version combination is a kind of its own. Existing archives are
    never rewritten; the manifest gains the new ones. A damaged product
    or failure record stops the pack, naming it.
    """
    from esrepro.dft.seeds import run_pack

    raise typer.Exit(run_pack(root, seeds, sources=source, table=table))


@seed_app.command("unpack")
def seed_unpack(seeds: SeedsOption = None, root: RootOption = None) -> None:
    """Verify every archive against the manifest and unpack it now.

    The engine otherwise does this on first use; archives go to $XDG_CACHE_HOME/esrepro/seeds
    (default ~/.cache/esrepro/seeds).
    """
    from esrepro.dft.seeds import run_unpack

    raise typer.Exit(run_unpack(root, seeds))


@seed_app.command("verify")
def seed_verify(
    sample: Annotated[int, typer.Option("--sample", help="Products to recompute.", min=1)] = 3,
    kind: Annotated[
        str | None, typer.Option("--kind", help="Only this product kind (see `seed status`).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random sample.")] = 0,
    workers: Annotated[int, typer.Option("--workers", help="Concurrent GPAW runs.", min=1)] = 1,
    timeout_s: Annotated[
        float, typer.Option("--timeout-s", help="Time-out per recomputed product.")
    ] = 3600.0,
    seeds: SeedsOption = None,
    root: RootOption = None,
) -> None:
    """Recompute a random sample of shipped products and compare them with the shipped ones.

    Runs this machine's engine on each product's own structure and settings, and compares
    eigenvalues, E_F, band edges, gap and weights within the tolerances in docs/dft-cache.md
    (band products: SCF and path again; path eigenvalues, HOB, gap and E_F of metals;
    G0W0 products: relaxation, ground state and G0W0 again from the 2D set's input layer;
    relaxed structure, Kohn-Sham and quasiparticle energies, gaps and vacuum level).
    Exit 1 naming each product that differs.
    """
    from esrepro.dft.seed_verify import run_verify

    raise typer.Exit(
        run_verify(sample, kind=kind, seed=seed, root=root, seeds_dir=seeds, workers=workers,
                   timeout_s=timeout_s)
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
