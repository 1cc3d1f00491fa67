"""Dataset statistics against an independent numpy / ase recomputation."""

from __future__ import annotations

import ase
import numpy as np
import pytest
from ase.neighborlist import neighbor_list as ase_neighbor_list

from tace_jax.data import NeighborCache, Structure, compute_statistics
from tace_jax.train.prepare import to_model_statistics

Z = [1, 6, 8]
E0 = {0: np.array([-13.6, -1029.8, -2041.2]), 1: np.array([-12.0, -1000.0, -2000.0])}


def _data(n=40, seed=0, levels=(0,)):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        nat = int(rng.integers(2, 7))
        numbers = rng.choice(Z, size=nat)
        pos = rng.uniform(0, 2.0 * nat ** (1 / 3), size=(nat, 3))
        # keep atoms apart
        pos = pos + np.arange(nat)[:, None] * np.array([0.8, 0.0, 0.0])
        level = levels[k % len(levels)]
        counts = np.array([(numbers == z).sum() for z in Z])
        energy = counts @ E0[level] + 0.0 * rng.normal()
        forces = rng.normal(size=(nat, 3)) * (1 + numbers[:, None] / 8)
        out.append(
            Structure(numbers=numbers, positions=pos, energy=energy, forces=forces, level=level)
        )
    return out


def test_least_squares_recovers_e0():
    ss = _data(levels=(0, 1))
    st = compute_statistics(ss, Z, cutoff=3.0)
    for m in (0, 1):
        np.testing.assert_allclose(st["atomic_energies"][m], E0[m], rtol=1e-10, atol=1e-8)
        assert abs(st["mean_delta_energy_per_atom"][m]) < 1e-8
    assert st["num_structures"] == [20, 20]


def test_statistics_match_numpy():
    rng = np.random.default_rng(5)
    ss = [s.replace(energy=s.energy + rng.normal()) for s in _data(30, seed=3)]
    st = compute_statistics(
        ss,
        Z,
        cutoff=3.0,
        scale_type="rms_forces_by_element",
        shift_type="mean_delta_energy_per_atom",
    )
    counts = np.array([[(s.numbers == z).sum() for z in Z] for s in ss], float)
    energies = np.array([s.energy for s in ss])
    e0 = np.linalg.lstsq(counts, energies, rcond=None)[0]
    np.testing.assert_allclose(st["atomic_energies"][0], e0, rtol=1e-10)
    delta = np.mean((energies - counts @ e0) / counts.sum(1))
    np.testing.assert_allclose(st["mean_delta_energy_per_atom"][0], delta, rtol=1e-8)
    np.testing.assert_allclose(st["shift"][0], [delta] * 3, rtol=1e-8)
    f = np.concatenate([s.forces for s in ss])
    nums = np.concatenate([s.numbers for s in ss])
    np.testing.assert_allclose(st["rms_forces"][0], np.sqrt(np.mean(np.sum(f**2, 1))))
    per_el = [np.sqrt(np.mean(np.sum(f[nums == z] ** 2, 1))) for z in Z]
    np.testing.assert_allclose(st["scale"][0], per_el)
    # avg_num_neighbors with ase's neighbour list
    edges = sum(len(ase_neighbor_list("i", ase.Atoms(s.numbers, s.positions), 3.0)) for s in ss)
    assert edges > 0
    np.testing.assert_allclose(st["avg_num_neighbors"], edges / len(nums))
    glob = compute_statistics(ss, Z, neighbors=NeighborCache(3.0), scale_type="rms_forces")
    np.testing.assert_allclose(glob["scale"][0], [st["rms_forces"][0]] * 3)
    assert glob["shift"] == [[0.0, 0.0, 0.0]]


def test_given_e0_and_missing_elements():
    ss = [s for s in _data(30) if 8 not in s.numbers.tolist()]
    st = compute_statistics(ss, Z, cutoff=3.0, atomic_energies={"H": -1.0, 6: -2.0})
    assert st["atomic_energies"] == [[-1.0, -2.0, 0.0]]
    assert st["rms_forces_by_element"][0][2] != st["rms_forces_by_element"][0][2]  # NaN: no O
    assert st["scale"][0][2] == pytest.approx(st["rms_forces"][0])  # falls back to global
    ls = compute_statistics(ss, Z, cutoff=3.0)
    assert ls["atomic_energies"][0][2] == 0.0
    with pytest.raises(ValueError, match="no E0 given for element 6"):
        compute_statistics(ss, Z, cutoff=3.0, atomic_energies={1: -1.0})


def test_to_model_statistics():
    ss = _data(10)
    st = compute_statistics(ss, Z, cutoff=3.0, num_levels=2)
    assert len(st["scale"]) == 2
    stats = to_model_statistics(st)
    assert np.shape(stats.atomic_energies) == (2, 3)
    assert stats.avg_num_neighbors == pytest.approx(st["avg_num_neighbors"])
