"""The command line every DVC stage entry point shares: `python stages/<paper>.py <stage>`."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any

from esrepro.config import load_params


def main(stages: Mapping[str, Callable[[dict[str, Any]], None]], script: str) -> None:
    """Run the stage named by ``sys.argv[1]`` with the repository's params; usage error else."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # Lightning installs its own console handler; without this every line prints twice.
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).propagate = False
    if len(sys.argv) != 2 or sys.argv[1] not in stages:
        sys.exit(f"usage: python {script} {{{'|'.join(stages)}}}")
    stages[sys.argv[1]](load_params())
