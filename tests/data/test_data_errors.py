"""Bad input gives a DataError naming the file, the frame and the field."""

from __future__ import annotations

import ase
import ase.io
import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator

from tace_jax.data import (
    DataError,
    GraphLoader,
    NeighborListError,
    Structure,
    UnknownElementError,
    read_structures,
)

WATER = np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])


def _write(path, n=3, forces_missing_at=None, symbols="OH2", nan_at=None, nan_field=None):
    frames = []
    for k in range(n):
        a = ase.Atoms(symbols, positions=WATER + 0.01 * k)
        res = {"energy": -1.0 - k}
        if k != forces_missing_at:
            res["forces"] = np.zeros((3, 3))
        if k == nan_at and nan_field == "forces":
            res["forces"][1, 2] = np.nan
        if k == nan_at and nan_field == "energy":
            res["energy"] = np.nan
        if k == nan_at and nan_field == "positions":
            a.positions[2, 0] = np.nan
        a.calc = SinglePointCalculator(a, **res)
        frames.append(a)
    ase.io.write(path, frames, format="extxyz")
    return str(path)


def _assert_names(err, path, frame, field):
    msg = str(err.value)
    assert str(path) in msg, msg
    assert f"frame {frame}" in msg, msg
    assert f"'{field}'" in msg, msg


def test_missing_forces(tmp_path):
    path = _write(tmp_path / "a.xyz", forces_missing_at=1)
    read_structures(path)  # fine when forces are not required
    with pytest.raises(DataError) as err:
        read_structures(path, require=("energy", "forces"))
    _assert_names(err, path, 1, "forces")


def test_unknown_element(tmp_path):
    path = _write(tmp_path / "a.xyz")
    with pytest.raises(DataError) as err:
        read_structures(path, atomic_numbers=[1, 6])
    _assert_names(err, path, 0, "numbers")
    assert "[8]" in str(err.value)
    ss = read_structures(path)
    with pytest.raises(UnknownElementError) as err:
        GraphLoader(ss, 3.0, [1, 6], 2)
    _assert_names(err, path, 0, "numbers")


@pytest.mark.parametrize("field", ["positions", "forces", "energy"])
def test_nan(tmp_path, field):
    path = _write(tmp_path / "a.xyz", nan_at=2, nan_field=field)
    with pytest.raises(DataError) as err:
        read_structures(path)
    _assert_names(err, path, 2, field)


def test_malformed_file(tmp_path):
    good = _write(tmp_path / "good.xyz")
    lines = open(good).read().splitlines()
    lines[2 * 5 + 3] = lines[2 * 5 + 3].replace("0.", "x.", 1)  # frame 2, first atom
    bad = tmp_path / "bad.xyz"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        read_structures(bad)
    assert str(bad) in str(err.value) and "frame 2" in str(err.value)
    assert "malformed" in str(err.value)
    truncated = tmp_path / "trunc.xyz"
    truncated.write_text("\n".join(lines[:9]) + "\n")
    with pytest.raises(DataError, match=r"trunc\.xyz, frame 1: malformed"):
        read_structures(truncated)
    npz = tmp_path / "bad.npz"
    npz.write_text("not a zip file")
    with pytest.raises(DataError, match=r"bad\.npz, frame 0: malformed npz"):
        read_structures(npz)


def test_empty_and_missing_file(tmp_path):
    empty = tmp_path / "empty.xyz"
    empty.write_text("")
    with pytest.raises(DataError, match=r"empty\.xyz: empty file"):
        read_structures(empty)
    with pytest.raises(DataError, match="file not found"):
        read_structures(tmp_path / "nope.xyz")
    e_npz = tmp_path / "e.npz"
    np.savez(e_npz, numbers=np.zeros(0, int), positions=np.zeros((0, 0, 3)))
    with pytest.raises(DataError, match="empty"):
        read_structures(e_npz)


def test_wrong_shapes(tmp_path):
    path = tmp_path / "w.npz"
    np.savez(path, numbers=[8, 1, 1], positions=np.stack([WATER] * 2), forces=np.zeros((2, 2, 3)))
    with pytest.raises(DataError) as err:
        read_structures(path)
    _assert_names(err, path, 0, "forces")
    with pytest.raises(DataError, match="'stress' must have 6"):
        Structure(numbers=[1], positions=[[0, 0, 0]], stress=np.zeros(4), source=("f", 3))
    np.savez(path, numbers=[8, 1, 1], coords=np.stack([WATER] * 2), energies=np.zeros(3))
    with pytest.raises(DataError) as err:
        read_structures(path)
    _assert_names(err, path, 0, "energy")


def test_overlapping_atoms(tmp_path):
    frames = [ase.Atoms("OH2", positions=WATER), ase.Atoms("OH2", positions=WATER)]
    frames[1].positions[2] = frames[1].positions[1] + 1e-5
    path = tmp_path / "o.xyz"
    ase.io.write(path, frames)
    with pytest.raises(DataError) as err:
        read_structures(path, min_distance=0.1)
    _assert_names(err, path, 1, "positions")
    ss = read_structures(path)
    with pytest.raises(NeighborListError) as err:
        GraphLoader(ss, 3.0, [1, 8], 1)
    _assert_names(err, path, 1, "positions")


def test_bad_level_and_weight():
    with pytest.raises(DataError, match=r"f, frame 4: field 'weight'"):
        Structure(numbers=[1], positions=[[0, 0, 0]], weight=-1.0, source=("f", 4))
    with pytest.raises(DataError, match=r"f, frame 4: field 'level'"):
        Structure(numbers=[1], positions=[[0, 0, 0]], level=-1, source=("f", 4))
