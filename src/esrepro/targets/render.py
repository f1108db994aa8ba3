"""Show checks: the paper-vs-ours table, the runs, the claims; as a rich table or Markdown.

One table for all papers, one row per target and committed run: paper, run, metric, unit, the
paper's value, ours, their ratio, the bar, our data scale on that run (``ours / paper``) and the
verdict. :func:`paper_vs_ours` gives one paper's table and claims as Markdown for its report
notebook; :func:`claims_markdown` gives every paper's claims for the README.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from esrepro.targets.check import PaperCheck, Row
from esrepro.targets.claims import VERDICTS, ClaimResult, range_text
from esrepro.targets.schema import PaperTargets

#: Columns of the targets table.
COLUMNS = (
    "paper", "run", "metric", "unit", "paper value", "ours", "ratio", "bar", "data scale",
    "verdict",
)
#: Columns of the claims table (README and reports).
CLAIM_COLUMNS = ("paper", "claim", "where", "judged on", "ours", "verdict")


def _bar_text(bar: Mapping[str, float] | None) -> str:
    return range_text(bar) if bar else ""


def fmt_value(value: float | None, unit: str = "") -> str:
    """A number as the table shows it: whole numbers >= 10 without decimals, else 3 digits."""
    if value is None:
        return "—"
    text = f"{value:.0f}" if float(value).is_integer() and abs(value) >= 10 else f"{value:.3g}"
    return f"{text} {unit}".rstrip()


def _scale_text(check: PaperCheck, value: float | None) -> str:
    if check.paper_scale is None:
        return fmt_value(value)
    return f"{fmt_value(value)} / {fmt_value(check.paper_scale)}"


def _gate_text(row: Row) -> str:
    t = row.target
    bar = _bar_text(t.bar)
    if t.must_beat:
        beat = "< " + ", ".join(t.must_beat)
        bar = f"{bar}; {beat}" if bar else beat
    if bar:
        bar += {"any": " (every run)", "reference": " (reference run)", "report": " (shown only)"}[
            t.scope
        ]
    return bar or "—"


def _verdict_text(row: Row) -> str:
    return row.verdict + (f" ({row.detail})" if row.detail else "")


def table_rows(checks: Sequence[PaperCheck]) -> list[tuple[Row | None, list[str]]]:
    """Cells of the targets table: per paper, per target, one row per committed run.

    Repeated paper and metric cells are left blank so each group reads as one block.
    """
    out: list[tuple[Row | None, list[str]]] = []
    for check in checks:
        runs = [r for r in check.runs if not r.integrity_only]
        first_of_paper = True
        for i, _ in enumerate(runs[0].rows if runs else []):
            for j, run in enumerate(runs):
                row = run.rows[i]
                t = row.target
                out.append((row, [
                    check.paper if first_of_paper else "",
                    run.run,
                    t.metric if j == 0 else "",
                    t.unit if j == 0 else "",
                    fmt_value(t.paper) if j == 0 else "",
                    fmt_value(row.ours),
                    "—" if row.ratio is None else f"{row.ratio:.3f}",
                    _gate_text(row) if j == 0 else "",
                    _scale_text(check, run.scale_value),
                    _verdict_text(row),
                ]))
                first_of_paper = False
    return out


def _style(row: Row | None) -> str:
    if row is None:
        return ""
    if row.failed:
        return "bold red"
    if row.verdict == "ok":
        return "green"
    if row.verdict.endswith("would fail"):
        return "yellow"
    return "dim"


def targets_table(checks: Sequence[PaperCheck]) -> Table:
    """The rich targets table of ``checks``."""
    table = Table(title="paper targets: every committed run against the bars of its scope")
    for col in COLUMNS:
        right = col in ("paper value", "ours", "ratio", "data scale")
        table.add_column(col, justify="right" if right else "left", overflow="fold")
    for n, (row, cells) in enumerate(table_rows(checks)):
        if cells[0] and n:
            table.add_section()  # a rule between papers
        verdict = Text(cells[-1], style=_style(row))
        table.add_row(*(Text(c) for c in cells[:-1]), verdict)
    return table


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def runs_lines(check: PaperCheck, root: Path | None = None) -> list[str]:
    """One line per committed run: where its metrics are, what was verified and gated."""
    lines = []
    for run in check.runs:
        shown = run.metrics_file
        if shown is not None and root is not None and shown.is_relative_to(root):
            shown = shown.relative_to(root)
        integrity = (
            f"md5 verified: {len(run.verified)} metrics file(s)" if run.verified
            else "md5 not verified"
        )
        gates = "integrity only (kept for the record)" if run.integrity_only else (
            f"{run.n_gated} target(s) gated"
        )
        state = "FAILED" if run.failures else "ok"
        lines.append(f"{check.paper} {run.run} run ({shown}): {integrity}; {gates}; {state}")
    return lines


def claim_cells(check: PaperCheck, result: ClaimResult) -> list[str]:
    """Cells of one claim: paper, statement (id), where, judged on, ours, verdict (detail)."""
    claim = result.claim
    statement = " ".join(claim.statement.split())
    note = f" Note: {' '.join(claim.note.split())}" if claim.note else ""
    verdict = result.verdict + (f" ({result.detail})" if result.detail else "")
    return [
        check.paper, f"{statement} [{claim.id}]{note}", " ".join(claim.where.split()),
        result.run or check.source, result.ours or "—", verdict,
    ]


def claims_rows(checks: Sequence[PaperCheck]) -> list[list[str]]:
    """Cells of every claim of ``checks``."""
    return [claim_cells(c, r) for c in checks for r in c.claims]


def claims_summary(checks: Sequence[PaperCheck]) -> str:
    """``n holds, n fails, ...`` over every claim of ``checks``."""
    results = [r for c in checks for r in c.claims]
    counts = [f"{sum(r.verdict == v for r in results)} {v}" for v in VERDICTS]
    return f"{len(results)} claim(s): " + ", ".join(counts)


def claims_markdown(checks: Sequence[PaperCheck]) -> str:
    """Every paper's claims with their verdicts, as the README shows them."""
    rows = claims_rows(checks)
    if not rows:
        return "No claims declared yet."
    return markdown_table(CLAIM_COLUMNS, rows) + "\n\n" + claims_summary(checks) + "."


def render_check(
    checks: Sequence[PaperCheck], console: Console, root: Path | None = None
) -> None:
    """Print the targets table, then per paper its runs, reference note, claims and failures."""
    if any(c.rows for c in checks):
        console.print(targets_table(checks))
    for check in checks:
        console.print(Text(check.paper, style="bold"))
        for line in runs_lines(check, root):
            console.print(Text("  " + line))
        for note in check.notes:
            console.print(Text("  " + note, style="yellow"))
        for warning in check.warnings:
            console.print(Text("  WARNING " + warning, style="bold yellow"))
        if check.claims:
            table = Table(title=f"{check.paper} claims, each on the largest run holding its record")
            for col in CLAIM_COLUMNS[1:]:
                table.add_column(col, overflow="fold")
            for result in check.claims:
                style = {"holds": "green", "fails": "yellow", "not resolved": "dim"}.get(
                    result.verdict, "bold red"
                )
                cells = claim_cells(check, result)[1:]
                table.add_row(*(Text(c) for c in cells[:-1]), Text(cells[-1], style=style))
            console.print(table)
        for failure in check.failures:
            console.print(Text("  FAIL ", style="bold red") + Text(failure))


def markdown_report(checks: Sequence[PaperCheck], root: Path | None = None) -> str:
    """The same content as :func:`render_check`, as Markdown."""
    parts = [markdown_table(COLUMNS, [cells for _, cells in table_rows(checks)])]
    for check in checks:
        lines = [f"- {line}" for line in runs_lines(check, root)]
        lines += [f"- {note}" for note in check.notes]
        lines += [f"- WARNING {w}" for w in check.warnings]
        lines += [f"- **FAIL** {f}" for f in check.failures]
        parts.append(f"**{check.paper}**\n\n" + "\n".join(lines))
    if any(c.claims for c in checks):
        parts.append("**Claims**\n\n" + claims_markdown(checks))
    return "\n\n".join(parts) + "\n"


def paper_vs_ours(paper: str, root: Path | str | None = None) -> str:
    """One paper's "paper vs ours" table and claims as Markdown, for its report notebook.

    Reads ``reports/paper_targets.yaml`` and the paper's committed runs under ``root`` (the
    repository root by default). Hashes are not verified here: inside ``dvc repro`` the
    run's dvc.lock entry is written only after its stages finish; ``esrepro check-targets``
    verifies them.
    """
    from esrepro.config import repo_root
    from esrepro.targets.check import check_paper
    from esrepro.targets.schema import TARGETS_FILE, load_targets

    root = Path(root) if root is not None else repo_root()
    targets = load_targets(root / TARGETS_FILE)
    if paper not in targets:
        raise KeyError(f"no paper {paper!r} in {root / TARGETS_FILE}")
    check = check_paper(targets[paper], root, verify_hashes=False)
    return _paper_markdown(check, targets[paper])


def _paper_markdown(check: PaperCheck, targets: PaperTargets) -> str:
    cols = [i for i, c in enumerate(COLUMNS) if c != "paper"]
    rows = [[cells[i] for i in cols] for _, cells in table_rows([check])]
    scale = (targets.data_scale.get("ours") or {}).get("metric") or "n_materials"
    parts = [
        f"**{' '.join(targets.title.split())}**",
        markdown_table([COLUMNS[i] for i in cols], rows) if rows else "No committed run.",
        f"Data scale: ours ({scale}) / paper. Verdicts: *ok* / *REGRESSION* are gated on that "
        "run; *not gated* rows show how a bar meant for another run would fare.",
    ]
    if targets.reference.status == "pending":
        parts.append(f"Reference run pending: {targets.reference.reason}")
    if check.claims:
        claim_rows = [claim_cells(check, r)[1:] for r in check.claims]
        parts.append(
            "Claims of the paper, each judged on the largest run whose metrics hold its record "
            "(reference, else partial, else default):\n\n"
            + markdown_table(CLAIM_COLUMNS[1:], claim_rows)
        )
    failures = [f for f in check.failures if "md5" not in f]
    if failures:
        parts.append("Gate failures:\n\n" + "\n".join(f"- {f}" for f in failures))
    return "\n\n".join(parts) + "\n"
