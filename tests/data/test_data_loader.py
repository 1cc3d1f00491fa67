"""GraphLoader: fixed shapes, coverage, determinism, exact resume, padding, prefetch, caching."""

from __future__ import annotations

import os

import ase
import jax
import numpy as np
import pytest
from ase.neighborlist import neighbor_list as ase_neighbor_list

from tace_jax.data import (
    DataError,
    GraphLoader,
    NeighborCache,
    Structure,
    batch_structures,
    edge_vectors,
)

Z = [1, 8, 14]
CUTOFF = 3.0


def _data(n=23, seed=0):
    """Mixed molecules (no stress) and periodic Si crystals (with stress), ``energy = index``."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        if k % 4 == 3:
            a = ase.Atoms(
                "Si2",
                scaled_positions=[[0, 0, 0], [0.25, 0.25, 0.25]],
                cell=np.eye(3) * 3.2 + 0.05 * rng.normal(size=(3, 3)),
                pbc=True,
            )
            extra = {"stress": rng.normal(size=6)}
        else:
            nat = 3 * int(rng.integers(1, 4))
            a = ase.Atoms("OH2" * (nat // 3))
            a.positions = np.concatenate(
                [
                    np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]) + [2.5 * j, 0, 0]
                    for j in range(nat // 3)
                ]
            ) + 0.02 * rng.normal(size=(nat, 3))
            extra = {"charges": rng.normal(size=nat)} if k % 5 == 0 else {}
        out.append(
            Structure(
                numbers=a.numbers,
                positions=a.positions,
                cell=a.cell.array,
                pbc=a.pbc,
                energy=float(k),
                forces=rng.normal(size=(len(a), 3)),
                weight=1.0 + k % 3,
                level=k % 2,
                source=("mem", k),
                **extra,
            )
        )
    return out


def _ids(batch):
    return batch.targets["energy"][batch.graph_mask].astype(int).tolist()


def _same(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(la) == len(lb) and all(
        x.shape == y.shape and x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(la, lb)
    )


@pytest.fixture(scope="module")
def data():
    return _data()


def test_fixed_shapes_and_coverage(data):
    loader = GraphLoader(data, CUTOFF, Z, 4, seed=0, prefetch=0)
    n_b, e_b, g_b = loader.budgets
    assert n_b % 64 == 0 and e_b % 64 == 0 and g_b == 5
    for epoch in range(2):
        seen = []
        shapes = set()
        for batch in loader:
            leaves, treedef = jax.tree_util.tree_flatten(batch)
            shapes.add((str(treedef), tuple((x.shape, x.dtype.str) for x in leaves)))
            assert batch.budgets == loader.budgets
            seen += _ids(batch)
        assert sorted(seen) == list(range(len(data)))
        assert len(shapes) == 1  # one pytree layout and one set of shapes: one compile
        assert loader.epoch == epoch + 1 and loader.step == 0
    assert loader.properties == ("energy", "forces", "stress", "virials")
    traces = []

    @jax.jit
    def f(g):
        traces.append(1)
        return (g.targets["forces"] * g.node_mask[:, None]).sum() + g.targets["energy"].sum()

    for batch in loader:
        f(batch)
    assert len(traces) == 1  # every batch has the same shapes: a single compile


def test_padding_and_labels(data):
    batch = batch_structures(data[:5], CUTOFF, Z, dtype="float64")
    n_real = sum(s.n_atoms for s in data[:5])
    assert batch.node_mask.sum() == n_real and not batch.node_mask[n_real:].any()
    g_pad = batch.num_graphs - 1
    assert (batch.node_graph[n_real:] == g_pad).all()
    assert batch.graph_mask.tolist() == [True] * 5 + [False] * (batch.num_graphs - 5)
    pad_e = ~batch.edge_mask
    assert (batch.senders[pad_e] == batch.num_nodes - 1).all()
    assert (batch.receivers[pad_e] == batch.num_nodes - 1).all()
    assert (batch.shifts[pad_e] == 0).all()
    t = batch.targets
    assert t["weight"].tolist()[:6] == [1.0, 2.0, 3.0, 1.0, 2.0, 0.0]
    assert t["has_stress"].tolist()[:6] == [False, False, False, True, False, False]
    np.testing.assert_allclose(t["stress"][3], data[3].stress)
    np.testing.assert_allclose(t["virials"][3], data[3].virials)
    assert not t["has_energy"][g_pad] and (t["forces"][n_real:] == 0).all()
    np.testing.assert_allclose(t["forces"][:n_real], np.concatenate([s.forces for s in data[:5]]))
    assert batch.extras["level"].tolist()[:5] == [0, 1, 0, 1, 0]
    assert batch.extras["has_charges"].tolist()[:5] == [True, False, False, False, False]
    np.testing.assert_allclose(batch.extras["charges"][: data[0].n_atoms], data[0].charges)
    assert batch.positions.dtype == np.float64 and batch.species.dtype == np.int32
    # molecules carry a zero cell, the crystal its own
    assert (batch.cell[0] == 0).all()
    np.testing.assert_allclose(batch.cell[3], data[3].cell)
    # edges: the same distances as ase's neighbour list, per graph
    r = np.linalg.norm(np.asarray(edge_vectors(batch.positions, batch.cell, batch)), axis=1)
    for g, s in enumerate(data[:5]):
        sel = batch.edge_mask & (batch.node_graph[batch.receivers] == g)
        d_ase = ase_neighbor_list(
            "d", ase.Atoms(s.numbers, s.positions, cell=s.cell, pbc=s.pbc), CUTOFF
        )
        np.testing.assert_allclose(np.sort(r[sel]), np.sort(d_ase), atol=1e-10)
    assert (r[pad_e] == 0).all()


def test_deterministic_shuffle_and_exact_resume(data):
    def run(loader, epochs):
        return [[_ids(b) for b in loader] for _ in range(epochs)]

    a = run(GraphLoader(data, CUTOFF, Z, 3, seed=7, prefetch=0), 3)
    b = run(GraphLoader(data, CUTOFF, Z, 3, seed=7, prefetch=0), 3)
    assert a == b
    assert a[0] != a[1]  # reshuffled per epoch
    assert a[0] != run(GraphLoader(data, CUTOFF, Z, 3, seed=8, prefetch=0), 1)[0]
    # stop in the middle of epoch 1, save the state, resume in a fresh loader
    ref = GraphLoader(data, CUTOFF, Z, 3, seed=7, prefetch=2)
    full = [list(ref) for _ in range(3)]
    first = GraphLoader(data, CUTOFF, Z, 3, seed=7, prefetch=2)
    list(first)
    it = iter(first)
    for _ in range(4):
        next(it)
    it.close()
    state = first.state_dict()
    assert state == {"epoch": 1, "step": 4, "seed": 7}
    resumed = GraphLoader(data, CUTOFF, Z, 3, seed=7, prefetch=2)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(rest) == len(full[1]) - 4
    assert all(_same(x, y) for x, y in zip(rest, full[1][4:]))
    assert all(_same(x, y) for x, y in zip(list(resumed), full[2]))
    resumed.set_epoch(0, 0)
    assert all(_same(x, y) for x, y in zip(list(resumed), full[0]))


def test_prefetch_matches_no_prefetch(data):
    kw = dict(seed=3, packing="greedy")
    plain = list(GraphLoader(data, CUTOFF, Z, 3, prefetch=0, **kw))
    pre = list(GraphLoader(data, CUTOFF, Z, 3, prefetch=3, **kw))
    assert len(plain) == len(pre) and all(_same(x, y) for x, y in zip(plain, pre))


def test_greedy_packing_fits_budgets(data):
    loader = GraphLoader(data, CUTOFF, Z, 4, packing="greedy", shuffle=False, prefetch=0)
    fixed = GraphLoader(data, CUTOFF, Z, 4, shuffle=False, prefetch=0)
    n_b, e_b, g_b = loader.budgets
    seen = []
    for batch in loader:
        assert batch.node_mask.sum() <= n_b - 1 and batch.edge_mask.sum() <= e_b
        assert batch.graph_mask.sum() <= g_b - 1
        seen += _ids(batch)
    assert seen == list(range(len(data)))  # no shuffle: original order, each once
    assert loader.num_batches() <= fixed.num_batches() + 1
    tight = GraphLoader(data, CUTOFF, Z, 4, packing="greedy", budgets=(64, 256, 4), prefetch=0)
    assert sorted(sum((_ids(b) for b in tight), [])) == list(range(len(data)))
    with pytest.raises(DataError, match="does not fit budgets"):
        GraphLoader(data, CUTOFF, Z, 2, budgets=(8, 8, 3))


def test_drop_last_dtype_and_properties(data):
    loader = GraphLoader(
        data,
        CUTOFF,
        Z,
        5,
        drop_last=True,
        prefetch=0,
        dtype="float32",
        properties=("energy", "forces", "dipole"),
    )
    batches = list(loader)
    assert len(batches) == len(data) // 5
    b = batches[0]
    assert b.positions.dtype == np.float32 and b.targets["forces"].dtype == np.float32
    assert set(b.targets) == {
        "energy",
        "forces",
        "dipole",
        "has_energy",
        "has_forces",
        "has_dipole",
        "weight",
    }
    assert not b.targets["has_dipole"].any()
    with pytest.raises(DataError, match="unknown"):
        GraphLoader(data, CUTOFF, Z, 5, properties=("spin",))


def test_prefetch_errors_and_early_stop(data):
    def boom(graph):
        raise RuntimeError("transform failed")

    with pytest.raises(RuntimeError, match="transform failed"):
        list(GraphLoader(data, CUTOFF, Z, 2, prefetch=2, transform=boom))
    loader = GraphLoader(data, CUTOFF, Z, 1, prefetch=1, transform=lambda g: g.n_node)
    it = iter(loader)
    next(it)
    it.close()  # the worker thread must stop
    assert loader.step == 1


def test_disk_neighbor_cache(tmp_path, data):
    cache = NeighborCache(CUTOFF, directory=tmp_path)
    first = list(GraphLoader(data, CUTOFF, Z, 4, neighbor_cache=cache, shuffle=False, prefetch=0))
    files = os.listdir(tmp_path)
    assert len(files) == 1 and files[0].startswith("nl_")
    again = NeighborCache(CUTOFF, directory=tmp_path)
    again.compute(data)
    assert len(again) == len(data) and os.listdir(tmp_path) == files
    second = list(GraphLoader(data, CUTOFF, Z, 4, neighbor_cache=again, shuffle=False, prefetch=0))
    assert all(_same(x, y) for x, y in zip(first, second))
    NeighborCache(CUTOFF + 0.5, directory=tmp_path).compute(data)
    assert len(os.listdir(tmp_path)) == 2  # another cutoff, another file
