"""Splits: seeded random fraction, separate files, index files; bundled data."""

from __future__ import annotations

import ase.units
import numpy as np
import pytest

from tace_jax.data import (
    DataError,
    bundled_dataset_path,
    list_bundled_datasets,
    load_splits,
    random_split,
    read_indices,
    read_structures,
)


def _npz(path, n, offset=0.0):
    rng = np.random.default_rng(int(offset * 10))
    coords = np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]) + 0.01 * rng.normal(
        size=(n, 3, 3)
    )
    np.savez(
        path,
        numbers=[8, 1, 1],
        positions=coords,
        energy=np.arange(n) + offset,
        forces=np.zeros((n, 3, 3)),
    )
    return str(path)


def test_random_split_deterministic():
    tr, va = random_split(100, 0.1, seed=3)
    tr2, va2 = random_split(100, 0.1, seed=3)
    np.testing.assert_array_equal(tr, tr2)
    np.testing.assert_array_equal(va, va2)
    assert len(va) == 10 and len(tr) == 90
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(100))
    assert not np.array_equal(va, random_split(100, 0.1, seed=4)[1])
    assert len(random_split(5, 0.01)[1]) == 1  # at least one validation structure
    with pytest.raises(DataError):
        random_split(10, 1.5)


def test_load_splits_fraction_files_and_indices(tmp_path):
    train = _npz(tmp_path / "train.npz", 20)
    valid = _npz(tmp_path / "valid.npz", 5, offset=100.0)
    test = _npz(tmp_path / "test.npz", 4, offset=200.0)
    s = load_splits(train, valid_fraction=0.25, seed=1, test=test)
    assert len(s.train) == 15 and len(s.valid) == 5 and len(s.tests["test"]) == 4
    s2 = load_splits(train, valid_fraction=0.25, seed=1)
    assert [x.energy for x in s.valid] == [x.energy for x in s2.valid]
    assert {x.energy for x in s.train}.isdisjoint({x.energy for x in s.valid})
    s3 = load_splits(train, valid, test={"a": test, "b": [test, test]})
    assert len(s3.train) == 20 and [x.energy for x in s3.valid] == [100.0 + k for k in range(5)]
    assert len(s3.tests["b"]) == 8
    (tmp_path / "tr.txt").write_text("# train\n0 1 2\n3,4\n")
    np.save(tmp_path / "va.npy", np.array([10, 11]))
    s4 = load_splits(train, train_indices=tmp_path / "tr.txt", valid_indices=tmp_path / "va.npy")
    assert [x.energy for x in s4.train] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert [x.energy for x in s4.valid] == [10.0, 11.0]
    s5 = load_splits(train, valid_indices=[0, 1])
    assert len(s5.train) == 18
    with pytest.raises(DataError, match="out of range"):
        load_splits(train, valid_indices=[0, 99])
    with pytest.raises(DataError, match="share indices"):
        load_splits(train, train_indices=[0, 1], valid_indices=[1])
    (tmp_path / "bad.txt").write_text("1 2 x\n")
    with pytest.raises(DataError, match=r"bad\.txt: malformed index file"):
        read_indices(tmp_path / "bad.txt")


def test_bundled_rmd17_ethanol():
    assert list_bundled_datasets() == ["rmd17_ethanol_test", "rmd17_ethanol_train"]
    train = read_structures(
        bundled_dataset_path("rmd17_ethanol_train"), require=("energy", "forces")
    )
    test = read_structures(bundled_dataset_path("rmd17_ethanol_test"))
    assert len(train) == 1000 and len(test) == 200
    assert sorted(train[0].numbers.tolist()) == [1, 1, 1, 1, 1, 1, 6, 6, 8]
    raw = np.load(bundled_dataset_path("rmd17_ethanol_test"))
    kcal = ase.units.kcal / ase.units.mol
    np.testing.assert_allclose(test[7].energy, raw["energies"][7] * kcal)
    np.testing.assert_allclose(test[7].forces, raw["forces"][7] * kcal)
    assert -4300 < train[0].energy < -4100  # eV, not kcal/mol
    with pytest.raises(DataError, match="unknown bundled dataset"):
        bundled_dataset_path("nope")
