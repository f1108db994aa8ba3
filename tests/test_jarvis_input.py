"""esrepro.jarvis input validation: a bad edos_pdos file or id_prop.csv is an error naming the
file and the record (jid), never a bare exception or a silently accepted value."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.build import bulk

from esrepro.jarvis import N_BINS, read_alignn_samples, read_edos_pdos

MEMBER = "edos-up_pdos-elast_interp-8-18-2021.json"


def _record(jid: str, **atoms_overrides) -> dict:
    si = bulk("Si", "diamond", a=5.43)
    atoms = {"lattice_mat": si.cell.array.tolist(), "coords": si.get_scaled_positions().tolist(),
             "elements": si.get_chemical_symbols(), "cartesian": False}
    atoms.update(atoms_overrides)
    return {"jid": jid, "atoms": atoms, "edos_up": np.linspace(0.0, 1.0, N_BINS).tolist()}


def _write_json(path: Path, records: list[dict]) -> Path:
    path.write_text(json.dumps(records))  # json writes NaN as the (non-standard) token NaN
    return path


def _write_zip(path: Path, records: list[dict]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(MEMBER, json.dumps(records))
    return path


def _bad_record(path: Path, jid: str) -> str:
    return rf"^{re.escape(str(path))}: bad record {re.escape(jid)}: "


def test_valid_records_read_from_json_and_zip(tmp_path: Path) -> None:
    records = [_record("JVASP-1"), _record("JVASP-2")]
    for path in (
        _write_json(tmp_path / "e.json", records), _write_zip(tmp_path / "e.zip", records)
    ):
        read = read_edos_pdos(path)
        assert [r["jid"] for r in read] == ["JVASP-1", "JVASP-2"]
        assert (
            read[0]["atoms"].get_chemical_formula() == "Si2"
            and read[0]["edos_up"].shape == (N_BINS,)
        )


@pytest.mark.parametrize("cartesian", [False, True])
def test_atoms_written_by_jarvis_tools_read_back(tmp_path: Path, cartesian: bool) -> None:
    # A dict as jarvis-tools itself writes it (abc, angles, props, cartesian), fractional or
    # Cartesian: the structure comes back with the stored coordinates, unrounded.
    from jarvis.core.atoms import Atoms as JarvisAtoms

    ref = bulk("GaAs", "zincblende", a=5.6532)
    # A lattice with more than 5 decimals: jarvis-tools' own conversion rounds it.
    skew = [[0.0, 1.234567891e-3, 0.0], [0.0] * 3, [0.0] * 3]
    ref.set_cell(ref.cell.array + skew, scale_atoms=True)
    coords = ref.positions if cartesian else ref.get_scaled_positions()
    d = JarvisAtoms(lattice_mat=ref.cell.array, coords=coords, elements=ref.get_chemical_symbols(),
                    cartesian=cartesian).to_dict()
    assert set(d) >= {"abc", "angles", "props"}
    rec = {"jid": "JVASP-1", "atoms": d, "edos_up": np.linspace(0.0, 1.0, N_BINS).tolist()}
    (read,) = read_edos_pdos(_write_json(tmp_path / "e.json", [rec]))
    atoms = read["atoms"]
    assert atoms.get_chemical_symbols() == ["Ga", "As"] and atoms.pbc.all()
    np.testing.assert_allclose(atoms.cell.array, ref.cell.array, rtol=0, atol=1e-12)
    np.testing.assert_allclose(atoms.positions, ref.positions, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "flat",
    [
        # A zero row: ASE asserted (a bare AssertionError that named neither file nor record).
        [[0.0, 2.7, 2.7], [2.7, 0.0, 2.7], [0.0, 0.0, 0.0]],
        # Dependent rows (third = first + second): ASE accepted it.
        [[0.0, 2.7, 2.7], [2.7, 0.0, 2.7], [2.7, 2.7, 5.4]],
    ],
)
def test_singular_lattice_with_fractional_coords_names_file_and_record(
    tmp_path: Path, flat: list
) -> None:
    path = _write_json(
        tmp_path / "e.json", [_record("JVASP-1"), _record("JVASP-7", lattice_mat=flat)]
    )
    with pytest.raises(
        ValueError, match=_bad_record(path, "JVASP-7") + r"atoms has a zero-volume cell"
    ):
        read_edos_pdos(path)


def test_zero_volume_cartesian_cell_names_file_and_record(tmp_path: Path) -> None:
    # Cartesian coordinates never hit ASE's assertion; the record was accepted.
    flat = [[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 0.0]]
    rec = _record("JVASP-8", lattice_mat=flat, coords=[[0, 0, 0], [1.5, 1.5, 0]], cartesian=True)
    path = _write_json(tmp_path / "e.json", [rec])
    with pytest.raises(
        ValueError, match=_bad_record(path, "JVASP-8") + r"atoms has a zero-volume cell"
    ):
        read_edos_pdos(path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"lattice_mat": [[float("nan"), 0, 0], [0, 3, 0], [0, 0, 3]]},
            r"atoms has a non-finite \(NaN or inf\) cell",
        ),
        (
            {"coords": [[0, 0, 0], [0.25, float("nan"), 0.25]]},
            r"atoms has non-finite \(NaN or inf\) positions for atom\(s\) \[1\]",
        ),
        ({"coords": [[0, 0, 0], [0.001, 0, 0]]}, r"atoms has overlapping atoms: atoms 0 and 1 "),
    ],
)
def test_bad_structure_in_record_names_file_and_record(
    tmp_path: Path, overrides: dict, message: str
) -> None:
    path = _write_json(tmp_path / "e.json", [_record("JVASP-9", **overrides)])
    with pytest.raises(ValueError, match=_bad_record(path, "JVASP-9") + message):
        read_edos_pdos(path)


def test_nan_in_edos_up_names_file_and_record(tmp_path: Path) -> None:
    rec = _record("JVASP-3")
    rec["edos_up"][17] = float("nan")
    path = _write_json(tmp_path / "e.json", [_record("JVASP-1"), rec])
    with pytest.raises(
        ValueError,
        match=_bad_record(path, "JVASP-3") + r"edos_up has 1 non-finite .* first at bin 17",
    ):
        read_edos_pdos(path)


def test_empty_record_list_rejected(tmp_path: Path) -> None:
    for path in (_write_json(tmp_path / "e.json", []), _write_zip(tmp_path / "e.zip", [])):
        with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: no records"):
            read_edos_pdos(path)


def test_corrupt_zip_reported_as_bad_zip(tmp_path: Path) -> None:
    good = _write_zip(tmp_path / "good.zip", [_record("JVASP-1")] * 20).read_bytes()
    truncated = tmp_path / "truncated.zip"  # an interrupted download: no central directory
    truncated.write_bytes(good[: len(good) // 2])
    damaged = tmp_path / "damaged.zip"  # flipped bytes inside the compressed member
    middle = len(good) // 3
    damaged.write_bytes(
        good[:middle] + bytes(b ^ 0xFF for b in good[middle : middle + 16]) + good[middle + 16 :]
    )
    for path in (truncated, damaged):
        with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: bad zip file"):
            read_edos_pdos(path)


def test_bad_json_still_named_as_json(tmp_path: Path) -> None:
    path = tmp_path / "e.json"
    path.write_text('[{"jid": ')
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: not valid JSON"):
        read_edos_pdos(path)


def _id_prop(tmp_path: Path, rows: list[list[str]]) -> Path:
    ase.io.write(tmp_path / "POSCAR-JVASP-1.vasp", bulk("Si", "diamond", a=5.43), format="vasp")
    path = tmp_path / "id_prop.csv"
    path.write_text("".join(",".join(row) + "\n" for row in rows))
    return path


def test_alignn_samples_reject_nan_dos_and_an_empty_table(tmp_path: Path) -> None:
    values = ["0.5"] * N_BINS
    ok = _id_prop(tmp_path, [["POSCAR-JVASP-1.vasp", *values]])
    assert [r["jid"] for r in read_alignn_samples(ok)] == ["JVASP-1"]
    values[4] = "nan"
    bad = _id_prop(
        tmp_path, [["POSCAR-JVASP-1.vasp", *["0.5"] * N_BINS], ["POSCAR-JVASP-1.vasp", *values]]
    )
    with pytest.raises(
        ValueError,
        match=rf"^{re.escape(str(bad))}:2: bad DOS value for POSCAR-JVASP-1\.vasp: "
        r".*first at bin 4",
    ):
        read_alignn_samples(bad)
    empty = _id_prop(tmp_path, [])
    with pytest.raises(ValueError, match=rf"^{re.escape(str(empty))}: no records"):
        read_alignn_samples(empty)
