"""DVC's entry point for every stage: `python stages/run.py <paper> <stage>` (see dvc.yaml)."""

from esrepro.stage_cli import main

if __name__ == "__main__":
    raise SystemExit(main())
