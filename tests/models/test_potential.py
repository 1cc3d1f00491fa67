"""Potential: reference parity, finite differences, symmetries, padding, retracing, save/load.

float64 throughout (tests/conftest.py enables x64). Compilation dominates the run time, so the
tests share a few module-scoped potentials and reuse the same property tuples and budgets.
"""

from __future__ import annotations

import functools
import os

import ase
import ase.build
import flax.serialization
import jax
import numpy as np
import pytest

from tace_jax.data import NeighborListError, UnknownElementError
from tace_jax.models import Potential, Statistics, TACEConfig
from tace_jax.models.potential import PotentialFormatError, bucket
from tace_jax.testing import assert_equivariant

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures")
BASE = ("energy", "node_energy", "forces", "stress", "virials", "scalar_descriptor")
EDGE = ("edge_forces", "atomic_virials", "atomic_stresses")
TOL = 1e-9


def _fixture(variant: str):
    npz = os.path.join(FIXTURES, f"tace_{variant}.npz")
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
    return _fixture("default")


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
@pytest.mark.parametrize("system", ["hcooh", "si8"])
def test_parity_default_hessian(default, system):
    pot, atoms, z = default
    n = len(atoms[system])
    h = pot.hessian(atoms[system], chunk_size=3 * n)
    ref = z[f"{system}/hessians"].reshape(n, 3, n, 3)
    assert np.abs(h - ref).max() <= TOL


def test_batching_padding_and_no_retrace(tiny):
    pot, atoms, z = tiny
    si8 = atoms["si8"]
    ref = pot.predict([atoms["hcooh"], si8], BASE)
    count = pot.trace_count
    one = pot.predict([atoms["hcooh"], si8], BASE, batch_size=1)
    for a, b in zip(ref, one):
        for p in BASE:
            np.testing.assert_allclose(a[p], b[p], atol=1e-12, rtol=0, err_msg=p)
    # bigger budgets: nothing changes
    graph = pot.graph_from_atoms([atoms["hcooh"], si8], budgets=(192, 640, 4))
    out = jax.tree.map(np.asarray, pot.compute(graph, BASE))
    ng = np.asarray(graph.node_graph)
    for k, r in enumerate(ref):
        np.testing.assert_allclose(out["energy"][k], r["energy"], atol=1e-12)
        np.testing.assert_allclose(out["forces"][ng == k], r["forces"], atol=1e-12)
        np.testing.assert_allclose(out["stress"][k], r["stress"], atol=1e-14)
    # same budgets, new positions: no retrace
    count = pot.trace_count
    moved = si8.copy()
    moved.rattle(0.01, seed=5)
    pot.predict(moved, BASE)
    after_first = pot.trace_count
    pot.predict(si8, BASE)
    pot.predict(moved, BASE)
    assert pot.trace_count == after_first <= count + 1


def test_invariances_and_supercell(tiny):
    pot, atoms, _ = tiny
    si8 = atoms["si8"]
    props = ("energy", "forces", "stress")
    ref = pot.predict(si8, props)
    rng = np.random.default_rng(0)
    moved = si8.copy()
    moved.positions += rng.normal(size=3) * 2.0
    moved.positions[2] += moved.cell[0] - moved.cell[2]
    wrapped = moved.copy()
    wrapped.wrap()
    perm = rng.permutation(len(si8))
    res = pot.predict([moved, wrapped, si8[perm]], props)
    for k, r in enumerate(res):
        order = perm if k == 2 else np.arange(len(si8))
        np.testing.assert_allclose(r["energy"], ref["energy"], atol=1e-10)
        np.testing.assert_allclose(r["forces"], ref["forces"][order], atol=1e-10)
        np.testing.assert_allclose(r["stress"], ref["stress"], atol=1e-12)
    sc = pot.predict(si8.repeat((2, 1, 1)), props)
    np.testing.assert_allclose(sc["energy"], 2 * ref["energy"], atol=1e-9)
    np.testing.assert_allclose(sc["forces"], np.tile(ref["forces"], (2, 1)), atol=1e-10)
    np.testing.assert_allclose(sc["stress"], ref["stress"], atol=1e-12)


def _fd_check(pot, atoms, h=1e-4, n_coords=6, seed=0):
    """Central differences of the energy vs forces (random coordinates) and virials."""
    graph = pot.graph_from_atoms(atoms)
    energy = jax.jit(pot.energy_fn(graph))
    out = jax.tree.map(np.asarray, pot.compute(graph, ("energy", "forces", "virials", "stress")))
    pos, cell = np.asarray(graph.positions), np.asarray(graph.cell)
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
            e = [
                energy(pos + s * pos @ eps, cell + s * cell @ eps if atoms.pbc.any() else cell)
                for s in (1.0, -1.0)
            ]
            virial[a, b] = -(e[0] - e[1]) / (2 * h)
    np.testing.assert_allclose(out["virials"][0], virial, atol=1e-7)
    if atoms.pbc.any():
        vol = abs(np.linalg.det(cell[0]))
        np.testing.assert_allclose(out["stress"][0], -virial / vol, atol=1e-8)
    else:
        assert np.abs(out["stress"]).max() == 0.0


def test_finite_differences(small, tiny):
    mol = ase.build.molecule("HCOOH")
    mol.rattle(0.05, seed=2)
    _fd_check(small, _si())
    _fd_check(small, mol)
    _fd_check(tiny[0], tiny[1]["si8"])


def test_equivariance_forces_stress_hessian(small, key):
    si = _si()
    props = ("energy", "forces", "stress", "virials", "atomic_virials")

    def model(positions, cell):
        atoms = ase.Atoms(si.numbers, positions=np.asarray(positions), cell=np.asarray(cell))
        atoms.pbc = True
        res = small.predict(atoms, props)
        h = small.hessian(atoms, chunk_size=12)
        res["hessian"] = np.transpose(h, (0, 2, 1, 3))
        return {k: np.asarray(v) for k, v in res.items()}

    ranks = {"energy": 0, "forces": 1, "stress": 2, "virials": 2, "atomic_virials": 2}
    ranks["hessian"] = 2
    err = assert_equivariant(
        model, key, (si.positions, si.cell.array), (1, 1), ranks, atol=1e-10, n_trials=2
    )
    assert err <= 1e-10


def test_hessian_symmetric_and_matches_fd(small):
    si = _si()
    n = len(si)
    h = small.hessian(si, chunk_size=12)
    assert h.shape == (n, 3, n, 3)
    hm = h.reshape(3 * n, 3 * n)
    np.testing.assert_allclose(hm, hm.T, atol=1e-10)
    graph = small.graph_from_atoms(si)
    forces = jax.jit(
        lambda pos: small.compute(graph.replace(positions=pos), ("energy", "forces"))["forces"]
    )
    pos, step = np.asarray(graph.positions), 1e-4
    for k in range(3 * n):
        d = np.zeros_like(pos)
        d[k // 3, k % 3] = step
        fd = -(np.asarray(forces(pos + d)) - np.asarray(forces(pos - d)))[:n] / (2 * step)
        np.testing.assert_allclose(hm[k], fd.reshape(-1), atol=1e-6)


def test_save_load_round_trip(small, tmp_path):
    path = tmp_path / "model.tace"
    small.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.tace"]
    loaded = Potential.load(path)
    assert loaded.config == small.config and loaded.statistics == small.statistics
    assert loaded.dtype == np.float64
    same = jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)),
                        loaded.variables, small.variables)
    assert all(jax.tree.leaves(same))
    f32 = Potential.load(path, dtype="float32")
    assert {x.dtype for x in jax.tree.leaves(f32.variables)} == {np.dtype("float32")}
    mol = ase.build.molecule("CH4")
    r64 = small.predict(mol, ("energy", "forces"))
    r32 = f32.predict(mol, ("energy", "forces"))
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


def test_properties_helpers(small):
    func = functools.partial(small.predict, properties=("energy",))
    res = func([ase.build.molecule("CH4"), _si()])
    assert set(res[0]) == {"energy"} and isinstance(res[1]["energy"], float)
    assert "Potential(" in repr(small) and small.num_params > 0
