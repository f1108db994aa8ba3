"""Compare each paper's metrics with the numbers it reports, and guard their provenance.

One job per module: :mod:`~esrepro.targets.schema` reads ``reports/paper_targets.yaml``,
:mod:`~esrepro.targets.lock` reads the hashes dvc.lock records, :mod:`~esrepro.targets.check`
compares, :mod:`~esrepro.targets.render` prints, :mod:`~esrepro.targets.snapshot` keeps a
reference run, :mod:`~esrepro.targets.commands` holds the two CLI commands.
"""

from esrepro.strict_io import InputError, read_json
from esrepro.targets.check import PaperCheck, Row, check_paper, get_metric
from esrepro.targets.commands import run_check_targets, run_snapshot_reference
from esrepro.targets.lock import file_md5, lock_stages, read_dvc_lock, recorded_md5
from esrepro.targets.render import render_check
from esrepro.targets.schema import TARGETS_FILE, PaperTargets, Target, TargetsError, load_targets
from esrepro.targets.snapshot import SnapshotError, snapshot_reference

__all__ = [
    "TARGETS_FILE",
    "InputError",
    "PaperCheck",
    "PaperTargets",
    "Row",
    "SnapshotError",
    "Target",
    "TargetsError",
    "check_paper",
    "file_md5",
    "get_metric",
    "load_targets",
    "lock_stages",
    "read_dvc_lock",
    "read_json",
    "recorded_md5",
    "render_check",
    "run_check_targets",
    "run_snapshot_reference",
    "snapshot_reference",
]
