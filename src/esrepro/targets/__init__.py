"""Compare each paper's committed runs with the numbers it reports, and guard their provenance.

One job per module: :mod:`~esrepro.targets.schema` reads ``reports/paper_targets.yaml``,
:mod:`~esrepro.targets.lock` reads the hashes dvc.lock records, :mod:`~esrepro.targets.check`
checks every committed run against the bars of its scope, :mod:`~esrepro.targets.claims` judges
the papers' claims, :mod:`~esrepro.targets.render` prints (rich or Markdown; ``paper_vs_ours``
for the report notebooks), :mod:`~esrepro.targets.readme` keeps README's claims table,
:mod:`~esrepro.targets.snapshot` keeps a reference run, :mod:`~esrepro.targets.commands` holds
the CLI commands.
"""

from esrepro.strict_io import InputError, read_json
from esrepro.targets.check import PaperCheck, Row, RunCheck, check_paper, get_metric
from esrepro.targets.claims import ClaimResult, judge_claim
from esrepro.targets.commands import run_check_targets, run_claims, run_snapshot_reference
from esrepro.targets.lock import file_md5, lock_stages, read_dvc_lock, recorded_md5
from esrepro.targets.render import paper_vs_ours, render_check
from esrepro.targets.schema import (
    TARGETS_FILE,
    Claim,
    PaperTargets,
    Reference,
    Target,
    TargetsError,
    load_targets,
)
from esrepro.targets.snapshot import SnapshotError, snapshot_reference

__all__ = [
    "TARGETS_FILE",
    "Claim",
    "ClaimResult",
    "InputError",
    "PaperCheck",
    "PaperTargets",
    "Reference",
    "Row",
    "RunCheck",
    "SnapshotError",
    "Target",
    "TargetsError",
    "check_paper",
    "file_md5",
    "get_metric",
    "judge_claim",
    "load_targets",
    "lock_stages",
    "paper_vs_ours",
    "read_dvc_lock",
    "read_json",
    "recorded_md5",
    "render_check",
    "run_check_targets",
    "run_claims",
    "run_snapshot_reference",
    "snapshot_reference",
]
