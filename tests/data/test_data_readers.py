"""Readers (extxyz, xz, ase db, rMD17 npz, generic npz), units and the Structure record."""

from __future__ import annotations

import lzma

import ase
import ase.db
import ase.io
import ase.units
import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator

from tace_jax.data import (
    DataError,
    Structure,
    read_structures,
    resolve_units,
    structure_from_atoms,
    structure_to_atoms,
)

KCAL = ase.units.kcal / ase.units.mol


def _frames(n=3, seed=0, periodic=False):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        pos = np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]) + 0.01 * rng.normal(size=(3, 3))
        a = ase.Atoms("OH2", positions=pos + (2.0 if periodic else 0.0))
        if periodic:
            a.cell, a.pbc = np.diag([5.0, 6.0, 7.0]), True
        res = {"energy": -10.0 - k, "forces": rng.normal(size=(3, 3))}
        if periodic:
            res["stress"] = rng.normal(size=6)
        a.calc = SinglePointCalculator(a, **res)
        a.info["REF_dipole"] = rng.normal(size=3)
        a.info["level"] = k % 2
        out.append(a)
    return out


def test_extxyz_results_info_and_custom_keys(tmp_path):
    frames = _frames(periodic=True)
    path = tmp_path / "d.extxyz"
    ase.io.write(path, frames)
    ss = read_structures(path, dipole_key="REF_dipole", require=("energy", "forces", "stress"))
    assert len(ss) == 3
    for k, (s, a) in enumerate(zip(ss, frames)):
        assert s.source == (str(path), k)
        np.testing.assert_allclose(s.positions, a.positions)
        np.testing.assert_allclose(s.energy, a.calc.results["energy"])
        np.testing.assert_allclose(s.forces, a.calc.results["forces"])
        xx, yy, zz, yz, xz, xy = a.calc.results["stress"]
        np.testing.assert_allclose(s.stress, [[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
        # virials derived: W = -V sigma
        np.testing.assert_allclose(s.virials, -a.get_volume() * s.stress)
        np.testing.assert_allclose(s.dipole, a.info["REF_dipole"])
        assert s.level == k % 2
        assert s.pbc.all() and s.volume == pytest.approx(210.0)


def test_xz_compressed_and_index(tmp_path):
    path = tmp_path / "d.xyz"
    ase.io.write(path, _frames(4), format="extxyz")
    xz = tmp_path / "d.xyz.xz"
    xz.write_bytes(lzma.compress(path.read_bytes()))
    ss = read_structures(xz)
    assert len(ss) == 4 and ss[3].energy == pytest.approx(-13.0)
    sub = read_structures(path, index="1:3")
    assert [s.source[1] for s in sub] == [1, 2] and sub[0].energy == pytest.approx(-11.0)
    assert read_structures(path, index=-1)[0].source[1] == 3


def test_ase_db(tmp_path):
    path = tmp_path / "d.db"
    with ase.db.connect(path) as db:
        for k, a in enumerate(_frames(2)):
            db.write(a, level=1, weight=2.5, data={"charges_x": np.arange(3.0) + k})
    ss = read_structures(path, charges_key="charges_x")
    assert len(ss) == 2
    assert ss[1].level == 1 and ss[1].weight == 2.5
    np.testing.assert_allclose(ss[1].charges, [1.0, 2.0, 3.0])
    assert ss[0].energy == pytest.approx(-10.0)


def test_rmd17_npz_converts_kcal(tmp_path):
    rng = np.random.default_rng(1)
    coords, e, f = (
        rng.normal(size=(5, 3, 3)) * 2,
        rng.normal(size=5) * 100,
        rng.normal(size=(5, 3, 3)),
    )
    path = tmp_path / "rmd17_x.npz"
    np.savez(
        path, nuclear_charges=np.array([8, 1, 1], np.uint8), coords=coords, energies=e, forces=f
    )
    ss = read_structures(path)
    assert len(ss) == 5
    np.testing.assert_allclose([s.energy for s in ss], e * KCAL)
    np.testing.assert_allclose(ss[2].forces, f[2] * KCAL)
    np.testing.assert_allclose(ss[2].positions, coords[2])
    assert not ss[0].pbc.any()
    # explicit units win over the automatic rMD17 conversion
    ss_ev = read_structures(path, units={"energy": "eV"})
    np.testing.assert_allclose(ss_ev[0].energy, e[0])
    sub = read_structures(path, index="1::2")
    assert [s.source[1] for s in sub] == [1, 3]


def test_generic_npz_regular_and_ragged(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "g.npz"
    np.savez(
        path,
        numbers=[14, 14],
        positions=rng.uniform(0, 3, size=(3, 2, 3)),
        cell=np.eye(3) * 5.43,
        pbc=[True, True, True],
        energy=[1.0, 2.0, 3.0],
        forces=rng.normal(size=(3, 2, 3)),
        stress=rng.normal(size=(3, 6)),
        weight=[1.0, 0.5, 2.0],
    )
    ss = read_structures(path, units={"energy": "Hartree", "length": "Bohr"})
    b = ase.units.Bohr
    assert ss[2].energy == pytest.approx(3.0 * ase.units.Hartree)
    np.testing.assert_allclose(ss[1].cell, np.eye(3) * 5.43 * b)
    assert ss[1].weight == 0.5
    np.testing.assert_allclose(
        ss[0].stress[0, 0], np.load(path)["stress"][0, 0] * ase.units.Hartree / b**3
    )
    # ragged frames via n_atoms
    path2 = tmp_path / "r.npz"
    np.savez(
        path2,
        n_atoms=[1, 3],
        numbers=[1, 8, 1, 1],
        positions=rng.normal(size=(4, 3)) * 3,
        energy=[-0.5, -14.0],
        forces=rng.normal(size=(4, 3)),
    )
    ss = read_structures(path2)
    assert [s.n_atoms for s in ss] == [1, 3]
    np.testing.assert_allclose(ss[1].forces, np.load(path2)["forces"][1:])


def test_resolve_units():
    f = resolve_units({"energy": "kcal/mol", "length": "Bohr", "dipole": "Debye"})
    b = ase.units.Bohr
    assert f["energy"] == pytest.approx(KCAL)
    assert f["forces"] == pytest.approx(KCAL / b)
    assert f["stress"] == pytest.approx(KCAL / b**3)
    assert f["virials"] == pytest.approx(KCAL)
    assert f["dipole"] == pytest.approx(ase.units.Debye)
    assert resolve_units({"energy": "kJ/mol"})["energy"] == pytest.approx(
        ase.units.kJ / ase.units.mol
    )
    assert resolve_units({"polarizability": 0.5})["polarizability"] == 0.5
    with pytest.raises(DataError, match="unknown unit"):
        resolve_units({"energy": "furlong"})


def test_structure_stress_formats_and_roundtrip():
    cell = np.diag([2.0, 3.0, 4.0])
    voigt = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    s6 = Structure(numbers=[1], positions=[[0, 0, 0]], cell=cell, pbc=True, stress=voigt)
    s9 = Structure(
        numbers=[1], positions=[[0, 0, 0]], cell=cell, pbc=True, stress=s6.stress.ravel()
    )
    np.testing.assert_array_equal(s6.stress, s9.stress)
    np.testing.assert_array_equal(s6.stress, s6.stress.T)
    sv = Structure(numbers=[1], positions=[[0, 0, 0]], cell=cell, pbc=True, virials=s6.virials)
    np.testing.assert_allclose(sv.stress, s6.stress)
    with pytest.raises(ValueError):
        s6.positions[0, 0] = 1.0  # read-only
    s1 = Structure(numbers=[1], positions=[[0, 0, 0]], dipole=[[1.0, 2.0, 3.0]], energy=[-1.0])
    assert s1.dipole.shape == (3,) and s1.energy == -1.0  # singleton axes squeezed
    atoms = structure_to_atoms(s6.replace(energy=-1.0, forces=[[0.1, 0.2, 0.3]], level=2))
    back = structure_from_atoms(atoms)
    assert back.energy == -1.0 and back.level == 2
    np.testing.assert_allclose(back.stress, s6.stress)
    np.testing.assert_allclose(back.forces, [[0.1, 0.2, 0.3]])
