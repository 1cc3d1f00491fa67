"""Potential: reference parity, finite differences, symmetries, padding, retracing, save/load.

float64 throughout (tests/conftest.py enables x64). Compilation dominates the run time, so the
tests share a few module-scoped potentials and reuse the same property tuples and budgets.
"""

from __future__ import annotations

import os

import ase
import ase.build
import flax.serialization
import jax
import numpy as np
import pytest

from tace_jax.data import NeighborListError, UnknownElementError
from tace_jax.inference import Potential, PotentialFormatError, bucket
from tace_jax.models import Statistics, TACEConfig
from tace_jax.testing import assert_equivariant

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures")
BASE = ("energy", "node_energy", "forces", "stress", "virials", "scalar_descriptor")
EDGE = ("edge_forces", "atomic_virials", "atomic_stresses")
TOL = 1e-9
SMALL = ("energy", "forces", "stress", "virials", "atomic_virials")


def _fixture(variant: str, npz_name: str | None = None):
    npz = os.path.join(FIXTURES, npz_name or f"tace_{variant}.npz")
    js = os.path.join(FIXTURES, f"tace_{variant}.json")
    z = dict(np.load(npz))
    names = sorted({k.split("/")[0] for k in z if "/" in k and k[:2] not in ("w/", "b/")})
    atoms = {
        s: ase.Atoms(
            numbers=z[f"{s}/numbers"],
            positions=z[f"{s}/positions"],
            cell=z[f"{s}/cell"],
            pbc=z[f"{s}/pbc"],
        )
        for s in names
    }
    return Potential.from_reference(npz, js, dtype="float64"), atoms, z


@pytest.fixture(scope="module")
def tiny():
    return _fixture("tiny_l2")


@pytest.fixture(scope="module")
def default():
    return _fixture("default", "tace_default_trim.npz")  # tio2 only (see make_default_trim.py)


@pytest.fixture(scope="module")
def small():
    """A small random model with ZBL and non-trivial statistics (fast to compile)."""
    cfg = TACEConfig(
        atomic_numbers=(1, 6, 8, 14),
        cutoff=4.0,
        num_layers=2,
        correlation=2,
        num_channel=4,
        lmax_node=1,
        lmax_edge=2,
        radial_hidden=(8,),
        readout_hidden=(4,),
    )
    e0 = np.array([[-1.1, -3.2, -4.3, -2.5]])
    stats = Statistics(e0, np.full((1, 4), 0.7), np.full((1, 4), 0.1), 6.0)
    return Potential.init(cfg, stats, jax.random.key(3), dtype="float64")


def _si(seed=1):
    atoms = ase.build.bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.set_cell(atoms.cell.array + [[0, 0, 0], [0.3, 0, 0], [0, -0.2, 0]], scale_atoms=True)
    atoms.rattle(0.1, seed=seed)
    return atoms


def _edge_index(res):
    return {
        (int(s), int(r), *map(int, np.rint(sh))): k
        for k, (s, r, sh) in enumerate(
            zip(res["edge_senders"], res["edge_receivers"], res["edge_shifts"])
        )
    }


def _parity(pot, atoms, z, props):
    names = list(atoms)
    results = pot.predict([atoms[s] for s in names], props)
    worst = {}
    for s, res in zip(names, results):
        for p in props:
            ref = z[f"{s}/{p}"]
            got = np.asarray(res[p])
            if p == "edge_forces":
                index = _edge_index(res)
                ei, sh = z[f"{s}/edge_index"], z[f"{s}/edge_shifts"]
                keys = [(int(a), int(b), *map(int, np.rint(c))) for a, b, c in zip(*ei, sh)]
                assert sorted(keys) == sorted(index), f"{s}: edge sets differ"
                got = got[[index[k] for k in keys]]
            err = float(np.abs(got.reshape(ref.shape) - ref).max())
            worst[p] = max(worst.get(p, 0.0), err)
            assert err <= TOL, f"{s}/{p}: max abs err {err:.2e}"
    return worst


def test_parity_tiny_l2(tiny):
    pot, atoms, z = tiny
    worst = _parity(pot, atoms, z, BASE)
    print("tiny_l2 parity", worst)


def test_parity_default(default):
    pot, atoms, z = default
    worst = _parity(pot, atoms, z, BASE + EDGE)
    print("default parity", worst)


@pytest.mark.slow
def test_parity_default_hessian(default, system="tio2"):
    pot, atoms, z = default
    n = len(atoms[system])
    h = pot.hessian(atoms[system], chunk_size=3 * n)
    ref = z[f"{system}/hessians"].reshape(n, 3, n, 3)
    err = np.abs(h - ref).max()
    print(f"default {system} hessian parity {err:.2e}")
    assert err <= TOL


def test_batching_padding_retrace_invariances_fd(tiny):
    """One test so that the compiled shapes are shared (compilation dominates the time)."""
    pot, atoms, _ = tiny
    si8, hcooh = atoms["si8"], atoms["hcooh"]
    ref = pot.predict([hcooh, si8], BASE)  # same shape as the parity test
    one = pot.predict([hcooh, si8], BASE, batch_size=1)  # other budgets, no batching
    for a, b in zip(ref, one):
        for p in BASE:
            np.testing.assert_allclose(a[p], b[p], atol=1e-12, rtol=0, err_msg=p)
    # same budgets, new positions: no retrace
    count = pot.trace_count
    rng = np.random.default_rng(0)
    moved = si8.copy()
    moved.positions += rng.normal(size=3) * 2.0  # translation
    moved.positions[2] += moved.cell[0] - moved.cell[2]  # another periodic image
    wrapped = moved.copy()
    wrapped.wrap()
    perm = rng.permutation(len(si8))
    res = pot.predict([moved, wrapped, si8[perm]], BASE, batch_size=1)
    assert pot.trace_count == count, "same budgets must not retrace"
    for k, r in enumerate(res):
        order = perm if k == 2 else np.arange(len(si8))
        np.testing.assert_allclose(r["energy"], one[1]["energy"], atol=1e-10)
        np.testing.assert_allclose(r["forces"], one[1]["forces"][order], atol=1e-10)
        np.testing.assert_allclose(r["stress"], one[1]["stress"], atol=1e-12)
    sc = pot.predict(si8.repeat((2, 1, 1)), BASE)
    np.testing.assert_allclose(sc["energy"], 2 * one[1]["energy"], atol=1e-9)
    np.testing.assert_allclose(sc["forces"], np.tile(one[1]["forces"], (2, 1)), atol=1e-10)
    np.testing.assert_allclose(sc["stress"], one[1]["stress"], atol=1e-12)
    _fd_check(pot, si8, BASE)


def _fd_check(pot, atoms, props, h=1e-5, n_coords=6, seed=0):
    """Central differences of the energy vs forces (random coordinates) and virials.

    Energies come from the same compiled function as the derivatives (no extra compile).
    """
    graph = pot.graph_from_atoms(atoms)
    out = jax.tree.map(np.asarray, pot.compute(graph, props))
    pos, cell = np.asarray(graph.positions), np.asarray(graph.cell)

    def energy(x, c=cell):
        return float(pot.compute(graph.replace(positions=x, cell=c), props)["energy"][0])

    rng = np.random.default_rng(seed)
    for k in rng.choice(3 * len(atoms), n_coords, replace=False):
        d = np.zeros_like(pos)
        d[k // 3, k % 3] = h
        fd = -(energy(pos + d) - energy(pos - d)) / (2 * h)
        assert abs(fd - out["forces"][k // 3, k % 3]) < 1e-7, (k, fd)
    virial = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            eps = np.zeros((3, 3))
            eps[a, b] = h / 2
            eps[b, a] += h / 2
            e = [energy(pos + s * pos @ eps, cell + s * cell @ eps) for s in (1.0, -1.0)]
            virial[a, b] = -(e[0] - e[1]) / (2 * h)
    np.testing.assert_allclose(out["virials"][0], virial, atol=1e-7)
    if atoms.pbc.any():
        vol = abs(np.linalg.det(cell[0]))
        np.testing.assert_allclose(out["stress"][0], -virial / vol, atol=1e-8)
    else:
        assert np.abs(out["stress"]).max() == 0.0


def _molecule():
    mol = ase.build.molecule("HCOOH")
    mol.rattle(0.05, seed=2)
    return mol


def test_small_model_fd_equivariance_hessian(small, key):
    """Finite differences, O(3) equivariance and the Hessian on a small random model."""
    _fd_check(small, _molecule(), SMALL)
    si = _si()
    _fd_check(small, si, SMALL)

    def model(positions, cell):
        atoms = ase.Atoms(si.numbers, positions=np.asarray(positions), cell=np.asarray(cell))
        atoms.pbc = True
        res = small.predict(atoms, SMALL)
        h = small.hessian(atoms, chunk_size=12)
        res["hessian"] = np.transpose(h, (0, 2, 1, 3))
        return {k: np.asarray(v) for k, v in res.items()}

    ranks = {"energy": 0, "forces": 1, "stress": 2, "virials": 2, "atomic_virials": 2}
    ranks["hessian"] = 2
    count = small.trace_count
    err = assert_equivariant(
        model, key, (si.positions, si.cell.array), (1, 1), ranks, atol=1e-10, n_trials=2
    )
    assert err <= 1e-10
    assert small.trace_count == count + 1  # the Hessian; rotated inputs reuse it
    # Hessian: symmetric and equal to finite differences of the forces
    n = len(si)
    hm = small.hessian(si, chunk_size=12).reshape(3 * n, 3 * n)
    np.testing.assert_allclose(hm, hm.T, atol=1e-10)
    graph = small.graph_from_atoms(si)
    pos, step = np.asarray(graph.positions), 1e-4

    def forces(x):
        return np.asarray(small.compute(graph.replace(positions=x), SMALL)["forces"])[:n]

    for k in range(3 * n):
        d = np.zeros_like(pos)
        d[k // 3, k % 3] = step
        fd = -(forces(pos + d) - forces(pos - d)) / (2 * step)
        np.testing.assert_allclose(hm[k], fd.reshape(-1), atol=1e-6)
    assert small.trace_count == count + 1


def test_save_load_round_trip(small, tmp_path):
    path = tmp_path / "model.tace"
    small.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.tace"]
    loaded = Potential.load(path)
    assert loaded.config == small.config and loaded.statistics == small.statistics
    assert loaded.dtype == np.float64
    same = jax.tree.map(
        lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)), loaded.variables, small.variables
    )
    assert all(jax.tree.leaves(same))
    assert "Potential(" in repr(loaded) and loaded.num_params == small.num_params > 0
    f32 = Potential.load(path, dtype="float32")
    assert {x.dtype for x in jax.tree.leaves(f32.variables)} == {np.dtype("float32")}
    mol = _molecule()
    r64 = small.predict(mol, SMALL)
    r32 = f32.predict(mol, SMALL)
    assert r32["forces"].dtype == np.float32
    np.testing.assert_allclose(r32["energy"], r64["energy"], rtol=1e-5)
    np.testing.assert_allclose(r32["forces"], r64["forces"], atol=1e-4)


def test_load_errors(small, tmp_path):
    path = tmp_path / "model.tace"
    small.save(path)
    data = bytearray(path.read_bytes())
    bad = tmp_path / "flipped.tace"
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(PotentialFormatError, match="flipped.tace"):
        Potential.load(bad)
    short = tmp_path / "short.tace"
    short.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(PotentialFormatError, match="short.tace"):
        Potential.load(short)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(PotentialFormatError, match="not"):
        Potential.load(text)
    payload = flax.serialization.msgpack_restore(path.read_bytes())
    payload["format_version"] = 99
    future = tmp_path / "future.tace"
    future.write_bytes(flax.serialization.msgpack_serialize(payload))
    with pytest.raises(PotentialFormatError, match="format_version 99"):
        Potential.load(future)
    with pytest.raises(FileNotFoundError):
        Potential.load(tmp_path / "missing.tace")


def test_bad_input(small):
    gold = ase.Atoms("AuH", positions=[[0, 0, 0], [0, 0, 1.5]])
    with pytest.raises(UnknownElementError, match=r"structure 1.*\[79\]"):
        small.predict([ase.build.molecule("CH4"), gold])
    nan = ase.build.molecule("CH4")
    nan.positions[2, 1] = np.nan
    with pytest.raises(NeighborListError, match="structure 0.*positions"):
        small.predict(nan)
    with pytest.raises(ValueError, match="unknown properties"):
        small.predict(ase.build.molecule("CH4"), ("energy", "polarizability"))


def test_bucket():
    assert bucket(1) == 64 and bucket(64) == 64 and bucket(65) == 128
    assert bucket(513) == 576
    sizes = [bucket(n) for n in range(1, 100_000, 97)]
    assert all(s % 64 == 0 for s in sizes)
    assert all(bucket(n) / n < 1.13 for n in range(600, 100_000, 101))
    assert len(set(sizes)) < 80


def test_direct_heads_are_split_per_structure():
    cfg = TACEConfig(
        atomic_numbers=(1, 6, 8),
        cutoff=3.0,
        num_layers=1,
        correlation=1,
        num_channel=2,
        lmax_node=2,
        lmax_edge=2,
        radial_hidden=(4,),
        readout_hidden=(2,),
        zbl=False,
        targets=("energy", "direct_forces", "direct_polarizability", "direct_virials"),
    )
    pot = Potential.init(cfg, Statistics.default(3), jax.random.key(0), dtype="float64")
    mols = [ase.build.molecule("CH4"), _molecule()]
    res = pot.predict(mols, ("energy", "forces"))
    for mol, r in zip(mols, res):
        n = len(mol)
        assert r["forces"].shape == r["direct_forces"].shape == (n, 3)
        assert r["direct_polarizability"].shape == r["direct_virials"].shape == (3, 3)
        assert np.abs(r["direct_forces"]).max() > 0
