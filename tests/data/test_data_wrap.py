"""Positions are wrapped into the cell in float64 before the cast to the compute dtype."""

import ase
import jax
import numpy as np
import pytest

from tace_jax.data import Structure
from tace_jax.data.atoms_graph import atoms_to_graph_dict
from tace_jax.data.batch import BatchAssembler
from tace_jax.data.graph import wrap_positions


def _crystal(seed=0, far=(1000, -1000, 1000), atom=3):
    rng = np.random.default_rng(seed)
    cell = np.diag([5.0, 5.5, 6.0]) + 0.3 * rng.standard_normal((3, 3))
    a = ase.Atoms("Si8", scaled_positions=rng.random((8, 3)), cell=cell, pbc=True)
    b = a.copy()
    p = b.get_positions()
    p[atom] += np.asarray(far) @ cell
    b.set_positions(p)
    return a, b


def _edge_vectors_f32(d):
    x = np.asarray(d["positions"], np.float32)
    cell = np.asarray(d["cell"][0], np.float32)
    sh = np.asarray(d["shifts"], np.float32)
    return x[d["receivers"]] - x[d["senders"]] + sh @ cell


def _sorted_edges(d):
    vec = _edge_vectors_f32(d)
    order = np.lexsort((*vec.T.round(4), d["receivers"], d["senders"]))
    return vec[order]


def test_wrap_positions():
    a, b = _crystal()
    xa, na = wrap_positions(a.positions, a.cell.array, a.pbc)
    xb, nb = wrap_positions(b.positions, b.cell.array, b.pbc)
    assert not na.any() and np.array_equal(xa, a.positions)  # inside: bit for bit
    assert nb[3].tolist() == [1000, -1000, 1000] and not np.delete(nb, 3, 0).any()
    np.testing.assert_allclose(xb, xa, atol=1e-10)
    # non-periodic axes are never wrapped
    xc, nc = wrap_positions(b.positions, b.cell.array, [True, False, True])
    assert (nc[:, 1] == 0).all() and nc[3, 0] == 1000


def test_predict_graph_edges_identical_in_float32():
    a, b = _crystal()
    da = atoms_to_graph_dict(a, 3.0, [14])
    db = atoms_to_graph_dict(b, 3.0, [14])
    assert np.array_equal(da["senders"], db["senders"])
    np.testing.assert_allclose(_sorted_edges(db), _sorted_edges(da), atol=2e-6)
    assert np.abs(db["positions"][3]).max() < 20  # wrapped (float64), atom order kept
    np.testing.assert_array_equal(db["numbers"], da["numbers"])
    # edges are named in the frame of the given positions (predict's edge_shifts)
    x, cell = b.positions, b.cell.array
    r, snd = db["receivers"], db["senders"]
    given = x[r] - x[snd] + db["input_shifts"] @ cell
    used = db["positions"][r] - db["positions"][snd] + db["shifts"] @ cell
    np.testing.assert_allclose(given, used, atol=1e-9)
    assert np.array_equal(da["input_shifts"], da["shifts"])  # nothing wrapped: unchanged


def test_training_batch_edges_identical_in_float32():
    a, b = _crystal(seed=1)
    ss = [
        Structure(
            numbers=x.numbers, positions=x.positions, cell=x.cell.array, pbc=x.pbc, energy=0.0
        )
        for x in (a, b)
    ]
    asm = BatchAssembler(ss, 3.0, [14], dtype="float32")
    g = asm.assemble([0, 1])
    x, sh = np.asarray(g.positions), np.asarray(g.shifts)
    cell = np.asarray(g.cell)
    e = np.asarray(g.edge_mask)
    s, r = np.asarray(g.senders)[e], np.asarray(g.receivers)[e]
    gi = np.asarray(g.node_graph)[r]
    vec = x[r] - x[s] + np.einsum("ea,eab->eb", sh[e], cell[gi])
    n0 = int((gi == 0).sum())
    np.testing.assert_allclose(vec[n0:], vec[:n0], atol=2e-6)
    assert g.positions.dtype == np.float32 and np.abs(x).max() < 20


@pytest.mark.parametrize("far", [(1000, -1000, 1000)])
def test_float32_forces_far_image(far):
    from tace_jax import Potential
    from tace_jax.models import Statistics, TACEConfig

    cfg = TACEConfig(
        atomic_numbers=(14,),
        num_channel=8,
        radial_hidden=(8,),
        num_layers=1,
        correlation=2,
        lmax_node=1,
        lmax_edge=1,
        cutoff=3.0,
    )
    pot = Potential.init(cfg, Statistics.default(1), jax.random.key(0), dtype="float32")
    a, b = _crystal(far=far)
    ra, rb = pot.predict([a, b], ("energy", "forces"))
    assert np.abs(ra["forces"]).max() > 1e-3  # not trivially zero
    np.testing.assert_allclose(rb["forces"], ra["forces"], atol=1e-5, rtol=0)
    assert abs(ra["energy"] - rb["energy"]) < 1e-4
