"""The 2D monolayers of VAE-GW, built with ASE (C2DB, the paper's source, is not reachable).

The paper takes 302 C2DB monolayers of 3–4 atoms, metals and semiconductors. This set builds
the same families from prototypes: MX2 in the 2H (trigonal prismatic, mirror plane) and 1T
(octahedral, inversion) phases for M in `METALS` and X in `CHALCOGENS` (`ase.build.mx2`), their
Janus MXY variants, GaS-type M2X2 (4 atoms) and FeSe-type (PbO) M2X2 (4 atoms) layers: 156
materials. Lattice constants here are starting points only: the DFT engine relaxes the in-plane
lattice (`esrepro.dft.gw_engine`). Every structure is computed without spin polarisation (C2DB
treats the magnetic ones, e.g. 1T-VS2 and FeSe, spin-polarised).

Held out as in the paper (never in VAE or GW training): monolayer MoS2, WS2 and CrS2, in their
2H ground-state phase (`HELD_OUT`); their 1T polymorphs are other materials and stay in.

`ordered_materials(seed)` is the set in a fixed order: the held-out TMDs first (MoS2 leads:
the paper's figures are about it), then the others in a seeded random order, so a profile's
`n_materials` takes a prefix and a larger run only adds materials.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.build import mx2

METALS: tuple[str, ...] = ("Mo", "W", "Cr", "Ti", "Zr", "Hf", "V", "Nb", "Ta", "Sn", "Pd", "Pt")
CHALCOGENS: tuple[str, ...] = ("S", "Se", "Te")

#: The paper's held-out TMDs (excluded from VAE and GW training), as ids of this set.
HELD_OUT: tuple[str, ...] = ("MoS2-2H", "WS2-2H", "CrS2-2H")

#: Starting in-plane lattice constant (Å) of the MS2 monolayer of each metal: rounded PBE values
#: as tabulated by C2DB (Haastrup et al., 2D Mater. 5, 042002 (2018)) and Rasmussen & Thygesen
#: (J. Phys. Chem. C 119, 13169 (2015)), quoted to ~0.05 Å; one value for both phases (they
#: differ by 1-3%). The relaxation moves them to this engine's PBE minimum.
MS2_LATTICE: dict[str, float] = {
    "Mo": 3.18, "W": 3.18, "Cr": 3.04, "Ti": 3.41, "Zr": 3.69, "Hf": 3.64,
    "V": 3.18, "Nb": 3.35, "Ta": 3.35, "Sn": 3.70, "Pd": 3.55, "Pt": 3.57,
}
#: Lattice constants grow about additively with the chalcogen (same sources: MoS2/MoSe2/MoTe2
#: 3.18/3.32/3.55, TiS2/TiSe2/TiTe2 3.41/3.54/3.77 Å); a Janus MXY takes the mean of X and Y.
CHALCOGEN_INCREMENT: dict[str, float] = {"S": 0.0, "Se": 0.14, "Te": 0.37}
#: Starting X-X thickness over a (MoS2 2H: 3.13 / 3.18; TiS2 1T: 2.85 / 3.41).
THICKNESS_RATIO: dict[str, float] = {"2H": 0.98, "1T": 0.84}

#: GaS-type M2X2 (β-GaS monolayer, D3h: X-M-M-X, the M pair and the X pair each stacked along
#: z): starting a (Å; GaS 3.63, GaSe 3.82, InSe 4.09 from the same C2DB tables, rounded), the
#: M-M bond 2.45 Å and an X height over its M of 0.32 a.
GAS_TYPE_LATTICE: dict[str, float] = {
    "Al2S2": 3.57, "Al2Se2": 3.77, "Al2Te2": 4.13,
    "Ga2S2": 3.63, "Ga2Se2": 3.82, "Ga2Te2": 4.15,
    "In2S2": 3.94, "In2Se2": 4.09, "In2Te2": 4.42,
}
#: FeSe-type (tetragonal PbO, P4/nmm) M2X2: square lattice of M, X alternately above and below;
#: starting a (Å; FeSe 3.7 as in bulk β-FeSe) and X height 0.39 a.
FESE_TYPE_LATTICE: dict[str, float] = {"Fe2S2": 3.60, "Fe2Se2": 3.70, "Fe2Te2": 3.85}

#: The layer is built centred at z = 0 and then given this vacuum on each side (Å) unless a
#: caller asks for another (`Material2D.atoms(vacuum=...)`).
DEFAULT_VACUUM = 7.5


@dataclass(frozen=True)
class Material2D:
    """One monolayer of the set: a stable id, its prototype and its starting geometry."""

    id: str  # e.g. "MoS2-2H", "MoSSe-1T", "Ga2S2-GaS", "Fe2Se2-FeSe"
    prototype: str  # "MX2-2H", "MX2-1T", "MXY-2H", "MXY-1T", "GaS", "FeSe"
    formula: str  # reduced as written: "MoS2", "MoSSe", "Ga2S2"
    a: float  # starting in-plane lattice constant, Å
    heldout: bool = False

    @property
    def n_atoms(self) -> int:
        return len(self.atoms())

    def atoms(self, vacuum: float = DEFAULT_VACUUM) -> Atoms:
        """The monolayer with `vacuum` Å of empty space on each side (ASE's convention), periodic
        in-plane only (pbc = T, T, F: what GPAW's 2D Coulomb truncation expects)."""
        if vacuum <= 0:
            raise ValueError(f"vacuum must be positive, got {vacuum!r} Å")
        if self.prototype.startswith(("MX2-", "MXY-")):
            kind = self.prototype.split("-")[1]
            atoms = mx2(self.formula, kind=kind, a=self.a,
                        thickness=THICKNESS_RATIO[kind] * self.a, vacuum=vacuum)
        elif self.prototype == "GaS":
            atoms = _gas_type(self.formula, self.a, vacuum)
        elif self.prototype == "FeSe":
            atoms = _fese_type(self.formula, self.a, vacuum)
        else:  # pragma: no cover - the set is built below from these prototypes only
            raise ValueError(f"unknown prototype {self.prototype!r} of {self.id}")
        atoms.pbc = (True, True, False)
        atoms.info["material_id"] = self.id
        return atoms


def _gas_type(formula: str, a: float, vacuum: float) -> Atoms:
    symbols = Atoms(formula).get_chemical_symbols()  # M, M, X, X
    metal, chalcogen = symbols[0], symbols[2]
    half_mm, height = 2.45 / 2, 0.32 * a
    cell = [[a, 0, 0], [-a / 2, a * 3**0.5 / 2, 0], [0, 0, 1.0]]
    atoms = Atoms([metal, metal, chalcogen, chalcogen], cell=cell, pbc=(True, True, False))
    frac = np.array([[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0], [2 / 3, 1 / 3, 0]])
    positions = frac @ atoms.cell.array
    positions[:, 2] = [half_mm, -half_mm, half_mm + height, -half_mm - height]
    atoms.positions = positions
    atoms.center(vacuum, axis=2)
    return atoms


def _fese_type(formula: str, a: float, vacuum: float) -> Atoms:
    symbols = Atoms(formula).get_chemical_symbols()  # M, M, X, X
    height = 0.39 * a
    atoms = Atoms(symbols, cell=[a, a, 1.0], pbc=(True, True, False),
                  positions=[[0, 0, 0], [a / 2, a / 2, 0], [a / 2, 0, height], [0, a / 2, -height]])
    atoms.center(vacuum, axis=2)
    return atoms


def all_materials() -> list[Material2D]:
    """Every material of the set, in construction order (see `ordered_materials`)."""
    materials: list[Material2D] = []
    for kind in ("2H", "1T"):
        for metal in METALS:
            for x in CHALCOGENS:
                formula = f"{metal}{x}2"
                ident = f"{formula}-{kind}"
                a = MS2_LATTICE[metal] + CHALCOGEN_INCREMENT[x]
                materials.append(Material2D(ident, f"MX2-{kind}", formula, round(a, 3),
                                            heldout=ident in HELD_OUT))
            for i, x in enumerate(CHALCOGENS):
                for y in CHALCOGENS[i + 1:]:
                    formula = f"{metal}{x}{y}"
                    a = MS2_LATTICE[metal] + (CHALCOGEN_INCREMENT[x] + CHALCOGEN_INCREMENT[y]) / 2
                    materials.append(Material2D(f"{formula}-{kind}", f"MXY-{kind}", formula,
                                                round(a, 3)))
    for formula, a in GAS_TYPE_LATTICE.items():
        materials.append(Material2D(f"{formula}-GaS", "GaS", formula, a))
    for formula, a in FESE_TYPE_LATTICE.items():
        materials.append(Material2D(f"{formula}-FeSe", "FeSe", formula, a))
    return materials


def ordered_materials(seed: int = 0) -> list[Material2D]:
    """The set in its fixed order: `HELD_OUT` first (MoS2-2H leads), then the rest shuffled by
    `seed` (`random.Random(seed)`, so the order is the same on every machine)."""
    materials = all_materials()
    by_id = {m.id: m for m in materials}
    rest = [m.id for m in materials if m.id not in HELD_OUT]
    random.Random(seed).shuffle(rest)
    return [by_id[i] for i in (*HELD_OUT, *rest)]


def select_materials(n_materials: int, seed: int = 0) -> list[Material2D]:
    """The first `n_materials` of `ordered_materials(seed)` (0: all of them)."""
    if n_materials < 0:
        raise ValueError(f"n_materials must be >= 0, got {n_materials}")
    ordered = ordered_materials(seed)
    return ordered[:n_materials] if n_materials else ordered


def structures(materials: list[Material2D], vacuum: float = DEFAULT_VACUUM) -> dict[str, Atoms]:
    """id -> starting structure (`Material2D.atoms`), in the order given."""
    return {m.id: m.atoms(vacuum) for m in materials}
