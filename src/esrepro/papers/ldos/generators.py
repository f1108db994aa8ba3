"""Seeded generators of the LDOS paper's structure kinds (Set A-D of the paper).

Diamond and beta-tin Si, liquid-like Si, carbon allotropes, SiC polytypes and Sn(S,Se) solid
solutions. Every generator is a pure function of ``(n, seed, size/shape parameters)``. Structure
``i`` is drawn from its own stream ``numpy.random.default_rng(SeedSequence([seed, i]))``, so it
does not depend on ``n`` (asking for more structures only appends) and every ``Atoms.info``
records ``generator``, ``seed``, ``index``, ``kind`` and the JSON ``params`` needed to rebuild it
with :func:`regenerate`. Every generated structure is checked to have no interatomic distance
(periodic images included) below its generator's documented ``min_distance``; a draw that
violates it is redrawn from the same stream (so the result stays deterministic). The mirrored
real-silicon sets are in :mod:`esrepro.papers.ldos.silicon_sets`.
"""

from __future__ import annotations

import inspect
import json
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.neighborlist import neighbor_list

from esrepro.checks import expect_int
from esrepro.errors import ConfigError
from esrepro.plain_json import plain_json

__all__ = [
    "GENERATED_SETS",
    "GENERATORS",
    "MIN_DISTANCE_A",
    "carbon_structures",
    "density_g_cm3",
    "derive_seed",
    "generated_sets",
    "min_interatomic_distance",
    "regenerate",
    "sic_polytypes",
    "silicon_beta_tin_supercells",
    "silicon_diamond_supercells",
    "silicon_liquid_like",
    "sn_s_se_solid_solutions",
]

# amu / A^3 -> g / cm^3 (1 amu = 1.66053906660e-24 g, 1 A^3 = 1e-24 cm^3).
_AMU_PER_A3_TO_G_PER_CM3 = 1.66053906660

# ---------------------------------------------------------------------------------------------
# Geometry checks
# ---------------------------------------------------------------------------------------------

# Closest allowed interatomic distance per generator family (A), checked with periodic images.
# Si: 0.85 x the diamond bond (2.35 A); liquid Si's g(r) starts near 2.1 A. C: the C-C triple
# bond (1.20 A) is the shortest C-C bond in any solid. SiC: between the C-C (1.54) and Si-C
# (1.89 A) bonds. Sn(S,Se): the shortest Sn-S bond in SnS is ~2.6 A; 2.3 A leaves room for
# strain and rattle while excluding unphysical overlaps.
MIN_DISTANCE_A: dict[str, float] = {"Si": 2.0, "C": 1.2, "SiC": 1.5, "SnSSe": 2.3}


def min_interatomic_distance(atoms: Atoms, cutoff: float = 4.0) -> float:
    """Smallest distance between two atoms, periodic images (and an atom's own images) included.

    Searches within ``cutoff`` and doubles it (up to 64 A) until a pair is found; ``inf`` when the
    structure has a single atom and no periodic direction.
    """
    while cutoff <= 64.0:
        distances = neighbor_list("d", atoms, cutoff)
        if len(distances):
            return float(distances.min())
        cutoff *= 2
    return float("inf")


def density_g_cm3(atoms: Atoms) -> float:
    """Mass density of a periodic cell in g/cm^3."""
    return float(atoms.get_masses().sum() / atoms.get_volume() * _AMU_PER_A3_TO_G_PER_CM3)


# ---------------------------------------------------------------------------------------------
# Seeded generators
# ---------------------------------------------------------------------------------------------

# A draw whose closest pair is below threshold is redrawn; this many failures means the
# parameters are unphysical (e.g. rattle far above thermal amplitudes), which is an error.
_MAX_REDRAWS = 200
# Random sequential addition of one atom gives up after this many rejected trial positions.
_MAX_INSERTION_TRIALS = 200_000


def _check_seed(seed: int) -> int:
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    return seed


def _stream(seed: int, index: int) -> np.random.Generator:
    # One stream per structure: structure i does not depend on how many are generated.
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


def _record(atoms: Atoms, generator: str, seed: int, index: int, kind: str, params: dict) -> None:
    # Flat scalars and a JSON string, so the record survives an extxyz round trip.
    atoms.info["generator"] = generator
    atoms.info["seed"] = seed
    atoms.info["index"] = index
    atoms.info["kind"] = kind
    atoms.info["params"] = json.dumps(plain_json(params), sort_keys=True)


def _random_strain(rng: np.random.Generator, max_strain: float) -> np.ndarray:
    """Symmetric strain tensor, each independent component uniform in [-max, max]."""
    upper = np.triu(rng.uniform(-max_strain, max_strain, size=(3, 3)))
    return upper + np.triu(upper, 1).T


def _perturbed(
    base: Atoms,
    rng: np.random.Generator,
    *,
    max_strain: float,
    rattle_std: float,
    min_distance: float,
    what: str,
) -> Atoms:
    """``base`` under a random homogeneous strain then a Gaussian rattle, redrawn until sane.

    The rattle (independent N(0, rattle_std^2) per Cartesian component) mimics thermal
    displacements: 0.05 A is about the room-temperature rms displacement of Si.
    """
    if max_strain < 0 or rattle_std < 0:
        raise ValueError("max_strain and rattle_std must be non-negative")
    for _ in range(_MAX_REDRAWS):
        atoms = base.copy()
        if max_strain > 0:
            eps = _random_strain(rng, max_strain)
            atoms.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
        if rattle_std > 0:
            atoms.positions = atoms.positions + rng.normal(0.0, rattle_std, size=(len(atoms), 3))
        atoms.wrap()
        if min_interatomic_distance(atoms) >= min_distance:
            return atoms
    raise RuntimeError(
        f"{what}: no draw in {_MAX_REDRAWS} had all distances >= {min_distance} A "
        f"(max_strain={max_strain}, rattle_std={rattle_std})"
    )


def _random_packing(
    symbol: str,
    n_atoms: int,
    density: float,
    min_distance: float,
    rng: np.random.Generator,
) -> Atoms:
    """``n_atoms`` uniform random positions in a cube at ``density`` (g/cm^3), rejecting any
    trial position closer than ``min_distance`` to an accepted atom (minimum image)."""
    probe = Atoms(symbol)
    mass = float(probe.get_masses()[0]) * n_atoms
    length = (mass * _AMU_PER_A3_TO_G_PER_CM3 / density) ** (1.0 / 3.0)
    if min_distance >= length / 2:
        # The minimum-image convention below is exact only for distances below L/2.
        raise ValueError(
            f"cell edge {length:.2f} A too small for min_distance {min_distance} A; use more atoms"
        )
    positions = np.empty((n_atoms, 3))
    for k in range(n_atoms):
        for _ in range(_MAX_INSERTION_TRIALS):
            trial = rng.uniform(0.0, length, size=3)
            delta = positions[:k] - trial
            delta -= length * np.round(delta / length)
            if k == 0 or np.einsum("ij,ij->i", delta, delta).min() >= min_distance**2:
                positions[k] = trial
                break
        else:
            raise RuntimeError(
                f"random packing of {n_atoms} {symbol} at {density} g/cm^3 with min distance "
                f"{min_distance} A jammed at atom {k}"
            )
    return Atoms(f"{symbol}{n_atoms}", positions=positions, cell=[length] * 3, pbc=True)


def _hexagonal_stacking(
    sequence: str, a: float, layer_spacing: float, lower: str, upper: str
) -> Atoms:
    """Tetrahedral bilayer stacking (wurtzite/zincblende family) along c.

    Each letter of ``sequence`` (A, B, C: in-plane sites (0,0), (1/3,2/3), (2/3,1/3)) is one
    bilayer: a ``lower`` atom at height i*h and an ``upper`` atom straight above it at
    (i + 3/4)*h, the ideal tetrahedral geometry (vertical bond 3h/4, c = len(sequence)*h).
    """
    sites = {"A": (0.0, 0.0), "B": (1.0 / 3.0, 2.0 / 3.0), "C": (2.0 / 3.0, 1.0 / 3.0)}
    n = len(sequence)
    cell = [[a, 0.0, 0.0], [-a / 2.0, a * np.sqrt(3.0) / 2.0, 0.0], [0.0, 0.0, n * layer_spacing]]
    symbols: list[str] = []
    scaled: list[tuple[float, float, float]] = []
    for i, letter in enumerate(sequence):
        u, v = sites[letter]
        symbols += [lower, upper]
        scaled += [(u, v, i / n), (u, v, (i + 0.75) / n)]
    return Atoms(symbols, scaled_positions=scaled, cell=cell, pbc=True)


def _as_repeat(repeat: Sequence[int]) -> tuple[int, int, int]:
    values = tuple(int(r) for r in repeat)
    if len(values) != 3 or min(values) < 1:
        raise ValueError(f"repeat must be three positive integers, got {repeat!r}")
    return values  # type: ignore[return-value]


# Literature lattice constants (A). Si diamond a = 5.431 (room temperature); C diamond
# a = 3.567; graphite (Bernal AB) a = 2.46, c = 6.71; lonsdaleite in the ideal hexagonal-diamond
# geometry with diamond's 1.545 A bond: a = 3.567/sqrt(2) = 2.522, c = a*sqrt(8/3) = 4.119;
# SiC a = 3.08, bilayer spacing 2.52 (4H c = 10.05, 6H c = 15.12), 3C zincblende a = 4.36.
SI_DIAMOND_A = 5.431
C_DIAMOND_A = 3.567
GRAPHITE_A, GRAPHITE_C = 2.46, 6.71
LONSDALEITE_A = C_DIAMOND_A / np.sqrt(2.0)
SIC_A, SIC_LAYER, SIC_3C_A = 3.08, 2.52, 4.36


def _perturbed_series(
    base: Atoms, n: int, seed: int, generator: str, kind: str, params: Mapping[str, Any]
) -> list[Atoms]:
    """``n`` strained and rattled copies of ``base`` (structure i from stream i of ``seed``),
    each recorded as made by ``generator`` with ``params`` (which hold the perturbation's
    ``max_strain``, ``rattle_std`` and ``min_distance``)."""
    out = []
    for i in range(n):
        atoms = _perturbed(
            base,
            _stream(seed, i),
            max_strain=params["max_strain"],
            rattle_std=params["rattle_std"],
            min_distance=params["min_distance"],
            what=generator,
        )
        _record(atoms, generator, seed, i, kind, params)
        out.append(atoms)
    return out


def silicon_diamond_supercells(
    n: int,
    seed: int,
    repeat: Sequence[int] = (2, 2, 2),
    max_strain: float = 0.03,
    rattle_std: float = 0.05,
    a: float = SI_DIAMOND_A,
    min_distance: float = MIN_DISTANCE_A["Si"],
) -> list[Atoms]:
    """``n`` diamond-Si supercells (conventional 8-atom cube x ``repeat``), each under a random
    symmetric strain (components within +-``max_strain``) and a Gaussian rattle."""
    seed, repeat = _check_seed(seed), _as_repeat(repeat)
    params = {
        "repeat": repeat,
        "max_strain": max_strain,
        "rattle_std": rattle_std,
        "a": a,
        "min_distance": min_distance,
    }
    base = bulk("Si", "diamond", a=a, cubic=True).repeat(repeat)
    return _perturbed_series(base, n, seed, "silicon_diamond_supercells", "diamond", params)


def _beta_tin_cell(symbol: str, a: float, c: float) -> Atoms:
    # beta-Sn (A5, I4_1/amd, origin choice 1): body-centred tetragonal lattice with the 2-atom
    # basis (0,0,0), (0,1/2,1/4); the conventional cell adds the centring (1/2,1/2,1/2).
    # Each atom has 4 neighbours at sqrt(a^2/4 + c^2/16) and 2 at c.
    basis = [(0.0, 0.0, 0.0), (0.0, 0.5, 0.25)]
    scaled = basis + [((x + 0.5) % 1.0, (y + 0.5) % 1.0, (z + 0.5) % 1.0) for x, y, z in basis]
    return Atoms(symbol * 4, scaled_positions=scaled, cell=[a, a, c], pbc=True)


def silicon_beta_tin_supercells(
    n: int,
    seed: int,
    repeat: Sequence[int] = (2, 2, 4),
    max_strain: float = 0.03,
    rattle_std: float = 0.05,
    a: float = 4.92,
    c: float = 2.71,
    min_distance: float = MIN_DISTANCE_A["Si"],
) -> list[Atoms]:
    """``n`` beta-tin Si supercells (4-atom conventional tetragonal cell x ``repeat``; the default
    (2,2,4) gives 64 atoms), strained and rattled like :func:`silicon_diamond_supercells`.

    Default a = 4.92, c = 2.71 A (c/a = 0.551) describe metastable beta-tin near zero pressure
    (16.4 A^3/atom, 2.84 g/cm^3); the phase is observed above ~11 GPa, where a = 4.686,
    c = 2.585 A (Jamieson 1963; 14.2 A^3/atom). Pass those for the high-pressure geometry.
    """
    seed, repeat = _check_seed(seed), _as_repeat(repeat)
    params = {
        "repeat": repeat,
        "max_strain": max_strain,
        "rattle_std": rattle_std,
        "a": a,
        "c": c,
        "min_distance": min_distance,
    }
    base = _beta_tin_cell("Si", a, c).repeat(repeat)
    return _perturbed_series(base, n, seed, "silicon_beta_tin_supercells", "beta_tin", params)


def silicon_liquid_like(
    n: int,
    seed: int,
    n_atoms: int = 64,
    density: float = 2.57,
    min_distance: float = MIN_DISTANCE_A["Si"],
) -> list[Atoms]:
    """``n`` cubic cells of ``n_atoms`` Si at random positions at liquid-Si density
    (2.57 g/cm^3 at the melting point), no two atoms closer than ``min_distance``.

    Random sequential addition: a hard-sphere-like disorder, not an MD liquid, but with the
    liquid's density and without unphysical overlaps.
    """
    seed = _check_seed(seed)
    params = {"n_atoms": n_atoms, "density": density, "min_distance": min_distance}
    out = []
    for i in range(n):
        atoms = _random_packing("Si", n_atoms, density, min_distance, _stream(seed, i))
        _record(atoms, "silicon_liquid_like", seed, i, "liquid", params)
        atoms.info["density_g_cm3"] = density
        out.append(atoms)
    return out


CARBON_KINDS: tuple[str, ...] = ("diamond", "graphite", "lonsdaleite", "disordered")
# Supercell repeats of each kind's unit cell (8, 4, 4 atoms): 64, 16 and 32 atoms by default.
_CARBON_REPEATS: dict[str, tuple[int, int, int]] = {
    "diamond": (2, 2, 2),
    "graphite": (2, 2, 1),
    "lonsdaleite": (2, 2, 2),
}


def _carbon_unit(kind: str) -> Atoms:
    if kind == "diamond":
        return bulk("C", "diamond", a=C_DIAMOND_A, cubic=True)
    if kind == "graphite":
        # Bernal (AB) graphite, P6_3/mmc: layer A at z=1/4 on sites (0,0), (1/3,2/3); layer B at
        # z=3/4 on (0,0), (2/3,1/3). In-plane bond a/sqrt(3) = 1.42 A, interlayer c/2 = 3.355 A.
        cell = [
            [GRAPHITE_A, 0, 0],
            [-GRAPHITE_A / 2, GRAPHITE_A * np.sqrt(3) / 2, 0],
            [0, 0, GRAPHITE_C],
        ]
        scaled = [(0, 0, 0.25), (1 / 3, 2 / 3, 0.25), (0, 0, 0.75), (2 / 3, 1 / 3, 0.75)]
        return Atoms("C4", scaled_positions=scaled, cell=cell, pbc=True)
    if kind == "lonsdaleite":
        # Hexagonal diamond = 2H (AB) stacking of tetrahedral bilayers, ideal geometry.
        return _hexagonal_stacking(
            "AB", LONSDALEITE_A, LONSDALEITE_A * np.sqrt(2.0 / 3.0), "C", "C"
        )
    raise ValueError(f"unknown carbon kind {kind!r}; known: {CARBON_KINDS}")


def carbon_structures(
    n: int,
    seed: int,
    kinds: Sequence[str] = CARBON_KINDS,
    repeats: Mapping[str, Sequence[int]] | None = None,
    max_strain: float = 0.03,
    rattle_std: float = 0.03,
    disordered_atoms: int = 32,
    disordered_density: tuple[float, float] = (2.0, 3.0),
    min_distance: float = MIN_DISTANCE_A["C"],
) -> list[Atoms]:
    """``n`` carbon structures cycling through ``kinds`` (structure i is ``kinds[i % len]``).

    Crystalline kinds (diamond, Bernal graphite, lonsdaleite) are strained and rattled
    supercells; ``disordered`` is ``disordered_atoms`` random positions in a cube at a density
    drawn uniformly from ``disordered_density`` (g/cm^3, between graphite 2.26 and diamond 3.51)
    with no pair closer than ``min_distance``. The rattle default (0.03 A) is smaller than
    silicon's because C is lighter but far stiffer (room-temperature rms ~0.04 A in diamond).
    """
    seed = _check_seed(seed)
    kinds = tuple(kinds)
    reps = {k: _as_repeat(v) for k, v in {**_CARBON_REPEATS, **dict(repeats or {})}.items()}
    params = {
        "kinds": kinds,
        "repeats": reps,
        "max_strain": max_strain,
        "rattle_std": rattle_std,
        "disordered_atoms": disordered_atoms,
        "disordered_density": tuple(disordered_density),
        "min_distance": min_distance,
    }
    units = {k: _carbon_unit(k).repeat(reps[k]) for k in kinds if k != "disordered"}
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        rng = _stream(seed, i)
        if kind == "disordered":
            density = float(rng.uniform(*disordered_density))
            atoms = _random_packing("C", disordered_atoms, density, min_distance, rng)
            atoms.info["density_g_cm3"] = density
        else:
            atoms = _perturbed(
                units[kind],
                rng,
                max_strain=max_strain,
                rattle_std=rattle_std,
                min_distance=min_distance,
                what=f"carbon_structures[{kind}]",
            )
        _record(atoms, "carbon_structures", seed, i, kind, params)
        out.append(atoms)
    return out


SIC_POLYTYPES: dict[str, str] = {"2H": "AB", "4H": "ABCB", "6H": "ABCACB"}


def _sic_unit(polytype: str, a: float, layer_spacing: float, a_3c: float) -> Atoms:
    if polytype == "3C":
        # Zincblende primitive cell (2 atoms), = ABC stacking with a_hex = a_3c/sqrt(2).
        return bulk("SiC", "zincblende", a=a_3c)
    if polytype not in SIC_POLYTYPES:
        raise ValueError(f"unknown SiC polytype {polytype!r}; known: 3C, {sorted(SIC_POLYTYPES)}")
    return _hexagonal_stacking(SIC_POLYTYPES[polytype], a, layer_spacing, "Si", "C")


def sic_polytypes(
    n: int,
    seed: int,
    polytypes: Sequence[str] = ("3C", "2H", "4H", "6H"),
    repeat: Sequence[int] = (1, 1, 1),
    max_strain: float = 0.03,
    rattle_std: float = 0.04,
    a: float = SIC_A,
    layer_spacing: float = SIC_LAYER,
    a_3c: float = SIC_3C_A,
    min_distance: float = MIN_DISTANCE_A["SiC"],
) -> list[Atoms]:
    """``n`` SiC polytype cells cycling through ``polytypes``, strained and rattled.

    3C is the 2-atom zincblende primitive cell (a = 4.36 A); 2H (AB), 4H (ABCB) and 6H (ABCACB)
    are hexagonal cells of 4, 8 and 12 atoms with a = 3.08 A and Si-C bilayers
    ``layer_spacing`` = 2.52 A apart, times ``repeat``.
    """
    seed, repeat = _check_seed(seed), _as_repeat(repeat)
    polytypes = tuple(polytypes)
    params = {
        "polytypes": polytypes,
        "repeat": repeat,
        "max_strain": max_strain,
        "rattle_std": rattle_std,
        "a": a,
        "layer_spacing": layer_spacing,
        "a_3c": a_3c,
        "min_distance": min_distance,
    }
    units = {p: _sic_unit(p, a, layer_spacing, a_3c) for p in polytypes}
    out = []
    for i in range(n):
        polytype = polytypes[i % len(polytypes)]
        atoms = _perturbed(
            units[polytype].repeat(repeat),
            _stream(seed, i),
            max_strain=max_strain,
            rattle_std=rattle_std,
            min_distance=min_distance,
            what=f"sic_polytypes[{polytype}]",
        )
        _record(atoms, "sic_polytypes", seed, i, polytype, params)
        atoms.info["atoms_per_unit_cell"] = len(units[polytype])
        out.append(atoms)
    return out


# Orthorhombic Pnma (No. 62) SnS-type cell, long axis a. Lattice constants (A): SnS
# a = 11.20, b = 3.98, c = 4.33; SnSe a = 11.50, b = 4.15, c = 4.44 (room-temperature
# experiment). Sn and the chalcogen sit on Wyckoff 4c (x, 1/4, z); the fractional coordinates
# are those of SnS in the Materials Project relaxation mp-2231 (as listed by phonondb,
# http://phonondb.mtl.kyoto-u.ac.jp/ph20180417/d002/mp-2231.html): Sn (0.11830, 1/4, 0.10672),
# S (0.85292, 1/4, 0.47754); experimental SnS values agree to ~0.01. They are kept for every
# composition (only the lattice follows Vegard's law).
SNS_LATTICE = (11.20, 3.98, 4.33)
SNSE_LATTICE = (11.50, 4.15, 4.44)
SNS_SN_XZ = (0.11830, 0.10672)
SNS_X_XZ = (0.85292, 0.47754)


def _pnma_4c(x: float, z: float) -> list[tuple[float, float, float]]:
    # The four 4c positions of Pnma: (x,1/4,z), (-x+1/2,3/4,z+1/2), (-x,3/4,-z), (x+1/2,1/4,-z+1/2).
    return [
        (x % 1.0, 0.25, z % 1.0),
        ((0.5 - x) % 1.0, 0.75, (z + 0.5) % 1.0),
        ((-x) % 1.0, 0.75, (-z) % 1.0),
        ((x + 0.5) % 1.0, 0.25, (0.5 - z) % 1.0),
    ]


def _sns_cell(lattice: Sequence[float]) -> Atoms:
    scaled = _pnma_4c(*SNS_SN_XZ) + _pnma_4c(*SNS_X_XZ)
    return Atoms("Sn4S4", scaled_positions=scaled, cell=list(lattice), pbc=True)


def sn_s_se_solid_solutions(
    n: int,
    seed: int,
    repeat: Sequence[int] = (1, 1, 1),
    x_range: tuple[float, float] = (0.0, 1.0),
    max_strain: float = 0.02,
    rattle_std: float = 0.03,
    min_distance: float = MIN_DISTANCE_A["SnSSe"],
) -> list[Atoms]:
    """``n`` SnS(1-x)Se(x) solid solutions on the 8-atom Pnma SnS-type cell x ``repeat``.

    Per structure a Se fraction ``x`` is drawn uniformly from ``x_range``; round(x * N_X) of
    the N_X chalcogen sites (chosen at random) become Se, the rest S. The lattice interpolates
    linearly (Vegard) between SnS and SnSe at the realised fraction; then strain and rattle.
    ``info`` records ``x_se_drawn``, ``x_se`` (realised), ``n_s`` and ``n_se``.
    """
    seed, repeat = _check_seed(seed), _as_repeat(repeat)
    lo, hi = float(x_range[0]), float(x_range[1])
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"x_range must satisfy 0 <= lo <= hi <= 1, got {x_range!r}")
    params = {
        "repeat": repeat,
        "x_range": (lo, hi),
        "max_strain": max_strain,
        "rattle_std": rattle_std,
        "min_distance": min_distance,
    }
    template = _sns_cell(SNS_LATTICE).repeat(repeat)
    chalcogen_sites = np.flatnonzero(template.numbers == 16)
    out = []
    for i in range(n):
        rng = _stream(seed, i)
        x_drawn = float(rng.uniform(lo, hi))
        n_se = int(round(x_drawn * len(chalcogen_sites)))
        x_se = n_se / len(chalcogen_sites)
        base = template.copy()
        symbols = np.array(base.get_chemical_symbols(), dtype=object)
        symbols[rng.permutation(chalcogen_sites)[:n_se]] = "Se"
        base.set_chemical_symbols(list(symbols))
        lattice = [
            (1 - x_se) * s + x_se * t for s, t in zip(SNS_LATTICE, SNSE_LATTICE, strict=True)
        ]
        base.set_cell(np.diag(lattice) @ np.diag(repeat), scale_atoms=True)
        atoms = _perturbed(
            base,
            rng,
            max_strain=max_strain,
            rattle_std=rattle_std,
            min_distance=min_distance,
            what="sn_s_se_solid_solutions",
        )
        _record(atoms, "sn_s_se_solid_solutions", seed, i, "SnS1-xSex", params)
        atoms.info.update(x_se_drawn=x_drawn, x_se=x_se, n_se=n_se, n_s=len(chalcogen_sites) - n_se)
        out.append(atoms)
    return out


GENERATORS: dict[str, Callable[..., list[Atoms]]] = {
    f.__name__: f
    for f in (
        silicon_diamond_supercells,
        silicon_beta_tin_supercells,
        silicon_liquid_like,
        carbon_structures,
        sic_polytypes,
        sn_s_se_solid_solutions,
    )
}

# Set name in params -> generator.
GENERATED_SETS: dict[str, Callable[..., list[Atoms]]] = {
    "si_diamond": silicon_diamond_supercells,
    "si_beta_tin": silicon_beta_tin_supercells,
    "si_liquid": silicon_liquid_like,
    "carbon": carbon_structures,
    "sic": sic_polytypes,
    "snsse": sn_s_se_solid_solutions,
}


def regenerate(info: Mapping[str, Any]) -> Atoms:
    """Rebuild one generated structure from its recorded ``info`` (generator, seed, index,
    params)."""
    generator = GENERATORS[str(info["generator"])]
    kwargs = json.loads(str(info["params"]))
    kwargs["n"] = int(info["index"]) + 1  # streams are per index: the first index+1 suffice
    return generator(seed=int(info["seed"]), **kwargs)[int(info["index"])]


def derive_seed(seed: int, set_name: str) -> int:
    """Seed of one generated set: ``SeedSequence([seed, crc32(set_name)])``'s first 32-bit word.

    Each set's seed depends only on the master seed and its own name, so changing one set's size
    (or adding a set) leaves every other set unchanged.
    """
    sequence = np.random.SeedSequence([_check_seed(seed), zlib.crc32(set_name.encode())])
    return int(sequence.generate_state(1, dtype=np.uint32)[0])


def generated_sets(
    cfg: Mapping[str, Any], seed: int, label: str = "generated sets"
) -> dict[str, list[Atoms]]:
    """Generate the sets named in ``cfg`` (params-like): ``{set: n}`` or ``{set: {"n": n, **kw}}``.

    Known sets: ``si_diamond``, ``si_beta_tin``, ``si_liquid``, ``carbon``, ``sic``, ``snsse``;
    ``kw`` are passed to the set's generator. Each set is generated with ``derive_seed(seed,
    set)``; ``info`` also records ``set`` and ``set_seed`` (the master seed). Sets of size 0 are
    left out. An unknown set, size or keyword is a ``ConfigError`` naming ``<label>.<set>``
    (``label`` says where ``cfg`` came from, e.g. ``params.yaml ldos.generated``).
    """
    specs = {name: _generator_call(name, spec, f"{label}.{name}") for name, spec in cfg.items()}
    out: dict[str, list[Atoms]] = {}
    for name, (n, kwargs) in specs.items():
        if n == 0:
            continue
        structures = GENERATED_SETS[name](n, derive_seed(seed, name), **kwargs)
        for atoms in structures:
            atoms.info["set"] = name
            atoms.info["set_seed"] = int(seed)
        out[name] = structures
    return out


def _generator_call(name: str, spec: Any, label: str) -> tuple[int, dict[str, Any]]:
    """``(n, keyword arguments)`` of one generated set, checked against its generator."""
    if name not in GENERATED_SETS:
        raise ConfigError(f"{label}: unknown generated set; known: {sorted(GENERATED_SETS)}")
    kwargs = dict(spec) if isinstance(spec, Mapping) else {"n": spec}
    if "n" not in kwargs:
        raise ConfigError(f"{label}: missing the set size n")
    n = expect_int(kwargs.pop("n"), f"{label}.n", minimum=0)
    accepted = set(inspect.signature(GENERATED_SETS[name]).parameters) - {"n", "seed"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ConfigError(f"{label}.{unknown[0]}: unknown keyword; {name} takes {sorted(accepted)}")
    return n, kwargs

