"""Print a paper check: the paper / ours / ratio / bar / verdict table, warnings, failures."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from esrepro.targets.check import PaperCheck
from esrepro.targets.schema import PaperTargets


def _bar_text(bar: Mapping[str, float] | None) -> str:
    if not bar:
        return ""
    parts = []
    if "min" in bar:
        parts.append(f"≥ {bar['min']:g}")
    if "max" in bar:
        parts.append(f"≤ {bar['max']:g}")
    return " and ".join(parts)


def fmt_value(value: float | None, unit: str = "") -> str:
    """A number as the table shows it: whole numbers >= 10 without decimals, else 3 digits."""
    if value is None:
        return "—"
    text = f"{value:.0f}" if float(value).is_integer() and abs(value) >= 10 else f"{value:.3g}"
    return f"{text} {unit}".rstrip()


def render_check(
    check: PaperCheck, targets: PaperTargets, console: Console, root: Path | None = None
) -> None:
    """Print one paper's comparison table, data scale, warnings and failures."""
    shown: Path | None = check.metrics_file
    if shown is not None and root is not None and shown.is_relative_to(root):
        shown = shown.relative_to(root)
    table = Table(
        title=f"{targets.paper}: {targets.title}",
        caption=f"ours = {check.source} run ({shown})",
    )
    table.add_column("metric", overflow="fold")
    table.add_column("unit")
    for col in ("paper", "ours", "ratio"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("bar", overflow="fold")
    table.add_column("verdict", overflow="fold")
    for row in check.rows:
        t = row.target
        bar = _bar_text(t.bar)
        if t.must_beat:
            beat = "< " + ", ".join(t.must_beat)
            bar = f"{bar}; {beat}" if bar else beat
        if bar and not t.gated(check.source):
            bar += " (reference only)"
        style = "bold red" if row.failed else ("green" if row.verdict == "ok" else "dim")
        table.add_row(
            t.metric,
            t.unit,
            fmt_value(t.paper),
            fmt_value(row.ours),
            "—" if row.ratio is None else f"{row.ratio:.3f}",
            bar or "—",
            f"[{style}]{row.verdict}[/{style}]" + (f" ({row.detail})" if row.detail else ""),
        )
    if check.rows:
        console.print(table)
    else:
        console.print(f"[bold]{targets.paper}[/bold]: no metrics compared")
    paper_scale = (targets.data_scale.get("paper") or {}) if targets.data_scale else {}
    if check.rows:
        desc = ", ".join(f"{k} {v}" for k, v in paper_scale.items() if k not in ("where", "note"))
        console.print(
            f"data scale: paper: {desc or '—'} | ours ({check.source}): "
            f"{check.scale_metric} {fmt_value(check.scale_value)}"
        )
    for warning in check.warnings:
        console.print(Panel(warning, title="WARNING", border_style="bold yellow"))
    for failure in check.failures:
        console.print(f"[bold red]FAIL[/bold red] {failure}")


def paper_vs_ours(paper: str, root: Path) -> str:
    """STUB for the report notebooks (helper "reports"); helper "gate" writes the real one.

    The check-targets table of ``paper`` as Markdown (claims not yet listed).
    """
    from esrepro.targets.check import check_paper
    from esrepro.targets.schema import TARGETS_FILE, load_targets

    root = Path(root)
    targets = load_targets(root / TARGETS_FILE)[paper]
    check = check_paper(targets, root)
    lines = [
        f"Compared run: {check.source}.",
        "",
        "| metric | paper | ours | ratio | verdict |",
        "|---|---:|---:|---:|---|",
    ]
    for row in check.rows:
        ratio = "—" if row.ratio is None else f"{row.ratio:.3f}"
        lines.append(
            f"| {row.target.metric} | {fmt_value(row.target.paper, row.target.unit)} "
            f"| {fmt_value(row.ours, row.target.unit)} | {ratio} | {row.verdict} |"
        )
    return "\n".join(lines)
