"""Bodies of ``esrepro check-targets`` and ``esrepro snapshot-reference``: messages, exit codes.

A malformed input (YAML or JSON syntax, a wrong shape, an unknown key) is an
:class:`~esrepro.strict_io.InputError` naming the file, so ``check-targets`` can tell "cannot
check" (exit code 2) from a regression (exit code 1) instead of dying with a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from esrepro.config import repo_root
from esrepro.strict_io import InputError, read_json
from esrepro.targets.check import check_paper
from esrepro.targets.render import render_check
from esrepro.targets.schema import TARGETS_FILE, TargetsError, load_targets
from esrepro.targets.snapshot import SnapshotError, snapshot_reference


def run_check_targets(
    papers: Sequence[str] | None = None,
    *,
    root: Path | None = None,
    targets_path: Path | None = None,
    allow_missing_reference: bool = True,
    console: Console | None = None,
) -> int:
    """Check the given papers (all in the targets file by default); return an exit code.

    0 when every gate holds, 1 on any regression or hash mismatch, 2 when something cannot be
    checked: the targets file is malformed or names no such paper, or a paper's dvc.lock,
    provenance.json or metrics file cannot be parsed (the other papers are still checked).
    """
    root = Path(root) if root is not None else repo_root()
    if console is None:
        # CI logs are not terminals and rich would fall back to 80 columns, folding the table
        # into an unreadable column of fragments; a fixed width keeps one row per metric.
        console = Console()
        if not console.is_terminal:
            console = Console(width=160)
    try:
        all_targets = load_targets(targets_path or root / TARGETS_FILE)
        unknown = [p for p in papers or () if p not in all_targets]
        if unknown:
            raise TargetsError(f"unknown paper(s) {unknown}; known: {sorted(all_targets)}")
    except TargetsError as err:
        console.print(f"[bold red]error:[/bold red] {err}")
        return 2
    exit_code = 0
    for paper in papers or list(all_targets):
        try:
            check = check_paper(
                all_targets[paper], root, allow_missing_reference=allow_missing_reference
            )
        except InputError as err:
            console.print(f"[bold red]error:[/bold red] cannot check {paper!r}: {err}")
            exit_code = 2  # "cannot check" outranks a regression found in another paper
            continue
        render_check(check, all_targets[paper], console, root)
        if not check.ok:
            exit_code = max(exit_code, 1)
    verdict = {
        0: "[bold green]targets OK[/bold green]",
        1: "[bold red]targets FAILED[/bold red]",
        2: "[bold red]targets FAILED (some could not be checked)[/bold red]",
    }[exit_code]
    console.print(verdict)
    return exit_code


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
