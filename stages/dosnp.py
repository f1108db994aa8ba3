"""DVC entry point for the DOSnp stages: `python stages/dosnp.py <stage>` (see dvc.yaml)."""

from esrepro.papers.dosnp.pipeline import STAGES
from esrepro.stage_cli import main

if __name__ == "__main__":
    main(STAGES, "stages/dosnp.py")
