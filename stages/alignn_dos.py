"""DVC entry point for the ALIGNN-DOS stages: `python stages/alignn_dos.py <stage>` (see dvc.yaml)."""

from esrepro.papers.alignn_dos.pipeline import STAGES
from esrepro.stage_cli import main

if __name__ == "__main__":
    main(STAGES, "stages/alignn_dos.py")
