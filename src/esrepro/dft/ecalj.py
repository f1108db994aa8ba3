"""Parse ecalj partial-DOS files ``dos.isp<s>.site<nnn>.<ext>`` into the PDOS tensor.

File format (ecalj's PDOS post-processing, e.g. ``Samples/ReNcub/cprn``): one header line
starting with ``#`` ("#lm ordering. See the end of lmdos. relative to efermi"), then rows
``energy_ry  c_1 ... c_n`` with energies in Ry relative to E_F and n = (l_max+1)^2 columns of
states/Ry, ordered by l and, within l, by m = -l..l (the same real-harmonic order as GPAW, so
the first 16 columns are s, p, d, f without permutation). ``isp1``/``isp2`` are spin up/down
when nsp=2; with nsp=1 there is a single ``isp1`` file, taken as it is.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase.units import Rydberg

__all__ = ["EcaljPDOS", "ecalj_pdos_tensor", "find_site_files", "read_ecalj_pdos"]

_NAME = re.compile(r"^dos\.isp(?P<spin>\d+)\.site(?P<site>\d+)\.(?P<ext>.+)$")


@dataclass(frozen=True)
class EcaljPDOS:
    """One ecalj PDOS file: energies in eV relative to E_F, PDOS in states/eV per lm column."""

    energies_ev: np.ndarray  # (n_energy,)
    pdos: np.ndarray  # (n_energy, n_lm)
    spin: int
    site: int
    ext: str


def read_ecalj_pdos(path: str | Path) -> EcaljPDOS:
    """Read one ``dos.isp<s>.site<nnn>.<ext>`` file, converting Ry to eV.

    Raises ``ValueError`` naming the file (and line) for a bad name, header, row or column count.
    """
    path = Path(path)
    m = _NAME.match(path.name)
    if not m:
        raise ValueError(f"{path}: file name is not dos.isp<spin>.site<nnn>.<ext>")
    rows: list[list[float]] = []
    n_cols: int | None = None
    with path.open() as fh:
        header = fh.readline()
        if not header.startswith("#"):
            raise ValueError(f"{path}:1: expected a '#' header line, got {header[:60]!r}")
        for lineno, line in enumerate(fh, start=2):
            fields = line.split()
            if not fields:
                continue
            try:
                values = [float(f) for f in fields]
            except ValueError as exc:
                raise ValueError(f"{path}:{lineno}: non-numeric value ({exc})") from None
            if n_cols is None:
                n_cols = len(values)
                n_lm = n_cols - 1
                # (l_max+1)^2 columns; anything else means a truncated or foreign file.
                if n_lm < 1 or math.isqrt(n_lm) ** 2 != n_lm:
                    raise ValueError(f"{path}:{lineno}: {n_lm} lm columns is not (l_max+1)^2")
            elif len(values) != n_cols:
                raise ValueError(f"{path}:{lineno}: {len(values)} columns, expected {n_cols}")
            rows.append(values)
    if not rows:
        raise ValueError(f"{path}: no data rows")
    data = np.asarray(rows)
    energies_ry = data[:, 0]
    bad = np.flatnonzero(np.diff(energies_ry) <= 0)
    if bad.size:
        # +3: 1-based lines, header line, and diff index i refers to row i+1.
        raise ValueError(f"{path}:{bad[0] + 3}: energies are not strictly increasing")
    return EcaljPDOS(
        energies_ev=energies_ry * Rydberg,
        pdos=data[:, 1:] / Rydberg,  # states/Ry -> states/eV
        spin=int(m["spin"]),
        site=int(m["site"]),
        ext=m["ext"],
    )


def find_site_files(directory: str | Path, ext: str) -> dict[int, dict[int, Path]]:
    """Map ``site -> {spin -> path}`` for the ``dos.isp*.site*.<ext>`` files in ``directory``.

    Only the exact extension matches, so e.g. ``dos.isp1.site001.cprn.eps`` plots are ignored.
    """
    found: dict[int, dict[int, Path]] = {}
    for path in sorted(Path(directory).iterdir()):
        m = _NAME.match(path.name)
        if m and m["ext"] == ext and path.is_file():
            found.setdefault(int(m["site"]), {})[int(m["spin"])] = path
    return dict(sorted(found.items()))


def detect_extension(directory: str | Path) -> str:
    """The ``<ext>`` of the ``dos.isp*.site*.<ext>`` data files in ``directory``.

    ecalj names outputs after the ``ctrl.<ext>`` of the run; its plot scripts add files such as
    ``dos.isp1.site001.<ext>.eps`` beside them, so an extension that is another one plus a
    suffix is a derived file, not data. More than one remaining extension (two runs in one
    directory) is a ``ValueError`` asking for ``dosnp.ecalj_ext``.
    """
    exts = {
        m["ext"] for p in Path(directory).iterdir() if (m := _NAME.match(p.name)) and p.is_file()
    }
    data = {e for e in exts if not any(e.startswith(f"{other}.") for other in exts)}
    if len(data) != 1:
        raise ValueError(
            f"{directory}: expected dos.isp<s>.site<nnn>.<ext> files of one <ext>, found "
            f"{sorted(data) or 'none'}; set params.yaml dosnp.ecalj_ext to choose"
        )
    return data.pop()


def ecalj_pdos_tensor(
    directory: str | Path, ext: str, grid_ev: np.ndarray, n_channels: int = 16
) -> np.ndarray:
    """PDOS tensor ``(n_sites, n_channels, len(grid_ev))`` in states/eV, spin-summed.

    Each file is interpolated linearly onto ``grid_ev`` (eV relative to E_F), zero outside the
    file's energy range, and the spins of a site are added. Sites must be numbered 1..n and all
    carry the same set of spins, otherwise ``ValueError``.
    """
    grid = np.asarray(grid_ev, dtype=float)
    files = find_site_files(directory, ext)
    if not files:
        raise ValueError(f"{directory}: no dos.isp*.site*.{ext} files")
    sites = list(files)
    if sites != list(range(1, len(sites) + 1)):
        raise ValueError(f"{directory}: site numbers {sites} are not 1..{len(sites)}")
    spins = set(files[sites[0]])
    out = np.zeros((len(sites), n_channels, grid.size))
    for i, site in enumerate(sites):
        if set(files[site]) != spins:
            raise ValueError(
                f"{directory}: site {site} has spins {sorted(files[site])}, "
                f"site 1 has {sorted(spins)}"
            )
        for path in files[site].values():
            pdos = read_ecalj_pdos(path)
            if pdos.pdos.shape[1] < n_channels:
                raise ValueError(f"{path}: {pdos.pdos.shape[1]} lm columns < {n_channels} channels")
            for c in range(n_channels):
                out[i, c] += np.interp(grid, pdos.energies_ev, pdos.pdos[:, c], left=0.0, right=0.0)
    return out
