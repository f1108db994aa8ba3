"""Bodies of ``esrepro check-targets``, ``esrepro claims`` and ``esrepro snapshot-reference``.

A malformed input (YAML or JSON syntax, a wrong shape, an unknown key) is an
:class:`~esrepro.strict_io.InputError` naming the file, so ``check-targets`` can tell "cannot
check" (exit code 2) from a regression (exit code 1) instead of dying with a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.text import Text

from esrepro.config import repo_root
from esrepro.strict_io import InputError, read_json, read_text
from esrepro.targets.check import PaperCheck, check_paper
from esrepro.targets.readme import README_FILE, replace_claims_section
from esrepro.targets.render import claims_markdown, markdown_report, render_check
from esrepro.targets.schema import TARGETS_FILE, PaperTargets, TargetsError, load_targets
from esrepro.targets.snapshot import SnapshotError, snapshot_reference

#: Output formats of ``esrepro check-targets``.
FORMATS = ("rich", "markdown")


def _console(console: Console | None) -> Console:
    if console is None:
        # CI logs are not terminals and rich would fall back to 80 columns, folding the table
        # into an unreadable column of fragments; a fixed width keeps one row per metric.
        console = Console()
        if not console.is_terminal:
            console = Console(width=200)
    return console


def _load(
    papers: Sequence[str] | None, root: Path, targets_path: Path | None
) -> dict[str, PaperTargets]:
    all_targets = load_targets(targets_path or root / TARGETS_FILE)
    unknown = [p for p in papers or () if p not in all_targets]
    if unknown:
        raise TargetsError(f"unknown paper(s) {unknown}; known: {sorted(all_targets)}")
    return {p: all_targets[p] for p in papers or list(all_targets)}


def _check_all(
    targets: dict[str, PaperTargets], root: Path, errors: list[str]
) -> list[PaperCheck]:
    """Check each paper; a paper whose inputs cannot be parsed goes to ``errors`` instead."""
    checks = []
    for paper, entry in targets.items():
        try:
            checks.append(check_paper(entry, root))
        except InputError as err:
            errors.append(f"cannot check {paper!r}: {err}")
    return checks


def summary_line(checks: Sequence[PaperCheck], exit_code: int) -> str:
    """What the gate covered, so an all-green result cannot hide that nothing was gated."""
    runs = [r for c in checks for r in c.runs]
    n_files = sum(len(r.verified) for r in runs)
    n_gated = sum(r.n_gated for r in runs)
    pending = [c.paper for c in checks if c.reference_pending]
    stale = [f"{c.paper} {run}" for c in checks for run in c.stale_runs]
    covered = (
        f"{len(runs)} committed run(s) of {len(checks)} paper(s): {n_files} metrics file(s) "
        f"match their recorded md5, {n_gated} gated target check(s)"
        + (f"; reference pending: {', '.join(pending)}" if pending else "")
        + (f"; stale, integrity only: {', '.join(stale)}" if stale else "")
    )
    n_failed = sum(len(c.failures) for c in checks)
    return {
        0: f"targets OK: {covered}",
        1: f"targets FAILED: {n_failed} gate failure(s) over {covered}",
        2: f"targets FAILED (some could not be checked): {covered}",
    }[exit_code]


def run_check_targets(
    papers: Sequence[str] | None = None,
    *,
    root: Path | None = None,
    targets_path: Path | None = None,
    console: Console | None = None,
    fmt: str = "rich",
) -> int:
    """Check every committed run of the given papers (all by default); return an exit code.

    0 when every gate holds, 1 on any gate failure (integrity, a bar or must_beat of the run's
    scope, a reference declared committed but absent), 2 when something cannot be checked: the
    targets file is malformed or names no such paper, or a paper's dvc.lock, provenance.json or
    metrics file cannot be parsed (the other papers are still checked). Claims never change it.
    """
    root = Path(root) if root is not None else repo_root()
    console = _console(console)
    if fmt not in FORMATS:
        console.print(Text(f"error: unknown format {fmt!r}; choose one of {FORMATS}"))
        return 2
    try:
        targets = _load(papers, root, targets_path)
    except TargetsError as err:
        console.print(Text("error: ", style="bold red") + Text(str(err)))
        return 2
    errors: list[str] = []
    checks = _check_all(targets, root, errors)
    if fmt == "markdown":
        console.print(markdown_report(checks, root), markup=False, highlight=False, soft_wrap=True)
    else:
        render_check(checks, console, root)
    for error in errors:
        console.print(Text("error: ", style="bold red") + Text(error))
    exit_code = 2 if errors else (1 if any(not c.ok for c in checks) else 0)
    style = "bold green" if exit_code == 0 else "bold red"
    console.print(Text(summary_line(checks, exit_code), style=style))
    return exit_code


def run_claims(
    *,
    root: Path | None = None,
    targets_path: Path | None = None,
    write: bool = False,
    check: bool = False,
    console: Console | None = None,
) -> int:
    """``esrepro claims``: every paper's claims and verdicts as a Markdown table.

    Prints it; ``write`` puts it into README.md between the claims markers; ``check`` exits 1
    when README.md's table differs from it (2 when an input cannot be read).
    """
    root = Path(root) if root is not None else repo_root()
    console = _console(console)
    try:
        targets = _load(None, root, targets_path)
        errors: list[str] = []
        checks = _check_all(targets, root, errors)
        if errors:
            raise InputError("; ".join(errors))
        table = claims_markdown(checks)
        if not (write or check):
            console.print(table, markup=False, highlight=False, soft_wrap=True)
            return 0
        readme = root / README_FILE
        current = read_text(readme) if readme.is_file() else ""
        updated = replace_claims_section(current, table, readme)
    except InputError as err:
        console.print(Text("error: ", style="bold red") + Text(str(err)))
        return 2
    if check:
        if updated != current:
            console.print(Text(
                f"{readme}: the claims table is stale; run `esrepro claims --write`",
                style="bold red",
            ))
            return 1
        console.print(f"{README_FILE}: the claims table is current")
        return 0
    if updated != current:
        readme.write_text(updated, encoding="utf-8")
    console.print(f"{README_FILE}: claims table written")
    return 0


def run_snapshot_reference(
    paper: str,
    *,
    root: Path | None = None,
    wall_time_s: float | None = None,
    console: Console | None = None,
    name: str = "reference",
    force: bool = False,
) -> int:
    """CLI body of ``esrepro snapshot-reference``: snapshot and report; returns an exit code."""
    console = console or Console()
    try:
        provenance = snapshot_reference(
            paper, root=root, wall_time_s=wall_time_s, name=name, force=force
        )
        record = read_json(provenance)
    except (SnapshotError, InputError) as err:
        console.print(f"[bold red]error:[/bold red] {err}")
        return 1
    console.print(f"reference snapshot of {paper!r}: {len(record['files'])} file(s) + {provenance}")
    if record.get("dft_cost"):
        from esrepro.dft.cost import describe_cost

        console.print(describe_cost(record["dft_cost"]))
    return 0
