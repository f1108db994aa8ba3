"""DVC entry point for the LDOS stages: `python stages/ldos.py <stage>` (see dvc.yaml)."""

from esrepro.papers.ldos.pipeline import STAGES
from esrepro.stage_cli import main

if __name__ == "__main__":
    main(STAGES, "stages/ldos.py")
