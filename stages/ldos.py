"""DVC entry point for the LDOS stages: `python stages/ldos.py <stage>` (see dvc.yaml)."""

import logging
import sys

from esrepro.config import load_params
from esrepro.papers.ldos.pipeline import STAGES

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # Lightning installs its own console handler; without this every line prints twice.
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).propagate = False
    if len(sys.argv) != 2 or sys.argv[1] not in STAGES:
        sys.exit(f"usage: python stages/ldos.py {{{'|'.join(STAGES)}}}")
    STAGES[sys.argv[1]](load_params())
