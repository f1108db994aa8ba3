"""The documented paper-scale commands: their `dvc exp run -S` overrides (Makefile variables)
apply to params.yaml as DVC applies them and select what the README says they select."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import yaml
from dvc.utils.hydra import apply_overrides

from esrepro.papers.ldos.generators import generated_sets
from esrepro.papers.ldos.silicon_sets import fetch_silicon_sets


def makefile_overrides(repo_root: Path, variable: str) -> list[str]:
    """The ``-S`` values of a Makefile variable (``NAME = -S a=1 \\`` continued lines)."""
    text = (repo_root / "Makefile").read_text(encoding="utf-8")
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{variable} ="))
    body = [lines[start].split("=", 1)[1]]
    while body[-1].rstrip().endswith("\\"):
        body[-1] = body[-1].rstrip()[:-1]
        start += 1
        body.append(lines[start])
    words = shlex.split(" ".join(body))
    assert words[::2] == ["-S"] * (len(words) // 2) and len(words) % 2 == 0, words
    return words[1::2]


def overridden_params(repo_root: Path, tmp_path: Path, variable: str) -> dict:
    params = tmp_path / "params.yaml"
    shutil.copy(repo_root / "params.yaml", params)
    apply_overrides(params, makefile_overrides(repo_root, variable))
    return yaml.safe_load(params.read_text(encoding="utf-8"))


def test_paper_scale_uses_every_material(repo_root: Path, tmp_path: Path) -> None:
    params = overridden_params(repo_root, tmp_path, "PAPER_SCALE")
    for paper in ("dosnp", "alignn_dos"):
        assert params[paper]["n_materials"] == 0 and params[paper]["max_sites"] == 0
    default = yaml.safe_load((repo_root / "params.yaml").read_text(encoding="utf-8"))
    # Same DFT settings and caches, so the default's products are reused; only how the farm
    # runs may differ (a longer time-out for the largest cells).
    assert {k: v for k, v in params["dft"].items() if k != "farm"} == {
        k: v for k, v in default["dft"].items() if k != "farm"
    }
    assert params["dft"]["farm"]["timeout_s"] >= default["dft"]["farm"]["timeout_s"]


def test_ldos_paper_scale_selects_every_bulk_mirrored_set(
    repo_root: Path, tmp_path: Path, mirror_dir: Path
) -> None:
    params = overridden_params(repo_root, tmp_path, "LDOS_PAPER_SCALE")
    cfg = params["ldos"]
    assert cfg["max_atoms"] == 216
    mirrored = fetch_silicon_sets(mirror_dir, tmp_path / "downloads")
    # Every named set exists and takes all its frames (0); the left-out ones are exactly the
    # correlated trajectory frames and the vacuum surface slabs (README, Makefile), and every
    # other set has a cell within max_atoms.
    assert set(cfg["mirrored_si"]) <= set(mirrored)
    assert all(n == 0 for n in cfg["mirrored_si"].values())
    assert set(mirrored) - set(cfg["mirrored_si"]) == {"rss_relaxation_trajectory", "surface_111"}
    assert all(
        any(len(a) <= cfg["max_atoms"] for a in mirrored[name]) for name in cfg["mirrored_si"]
    )
    # Generated sets keep the default's generator settings, with more structures.
    default = yaml.safe_load((repo_root / "params.yaml").read_text(encoding="utf-8"))["ldos"]
    sizes = {
        name: len(frames)
        for name, frames in generated_sets(cfg["generated"], int(cfg["seed"])).items()
    }
    assert sizes == {
        "si_diamond": 16, "si_beta_tin": 16, "si_liquid": 16, "carbon": 24, "sic": 24, "snsse": 24
    }
    assert cfg["generated"]["si_liquid"]["n_atoms"] == default["generated"]["si_liquid"]["n_atoms"]
    assert cfg["generated"]["sic"]["polytypes"] == ["3C", "2H", "4H", "6H"]
    assert cfg["dft"] == default["dft"] and cfg["grid"] == default["grid"]



def test_bandformer_paper_scale_selects_the_small_cells(repo_root: Path, tmp_path: Path) -> None:
    params = overridden_params(repo_root, tmp_path, "BANDFORMER_PAPER_SCALE")
    default = yaml.safe_load((repo_root / "params.yaml").read_text(encoding="utf-8"))
    cfg = params["bandformer"]
    assert cfg["n_materials"] == 0 and cfg["max_sites"] == 4
    # The default profile's band products (same settings) are reused.
    assert cfg["dft"] == default["bandformer"]["dft"]
    assert params["dft"]["farm"]["timeout_s"] >= default["dft"]["farm"]["timeout_s"]


def test_vae_gw_machine_scale_takes_the_whole_2d_set(repo_root: Path, tmp_path: Path) -> None:
    from esrepro.papers.vae_gw.structures import select_materials

    params = overridden_params(repo_root, tmp_path, "VAE_GW_MACHINE_SCALE")
    default = yaml.safe_load((repo_root / "params.yaml").read_text(encoding="utf-8"))
    cfg = params["vae_gw"]
    materials = select_materials(cfg["n_materials"], cfg["subset_seed"])
    assert len(materials) >= 150  # the machine scale
    trainable = [m for m in materials if not m.heldout]
    # About the paper's share kept out of VAE training (30 of 302).
    assert abs(cfg["vae"]["split"]["holdout_materials"] / len(trainable) - 30 / 302) < 0.01
    # Same G0W0 and wavefunction settings as the default, so its shipped products are reused.
    assert cfg["dft"] == default["vae_gw"]["dft"]
    assert cfg["wavefunctions"] == default["vae_gw"]["wavefunctions"]
    assert params["dft"]["farm"]["timeout_s"] >= default["dft"]["farm"]["timeout_s"]
