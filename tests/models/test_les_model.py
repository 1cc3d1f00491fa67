"""The LES term inside the TACE model (docs/theory.md §4): config, energy, derivatives, Born
charges, k-grid bucketing and the Potential API. Tiny float64 models."""

from __future__ import annotations

import json
import logging

import ase
import jax
import numpy as np
import pytest
from tace_testutils import load_fixture

from tace_jax.inference import Potential
from tace_jax.models.config import TACEConfig
from tace_jax.models.les import grow_kgrid
from tace_jax.models.statistics import Statistics
from tace_jax.models.tace import TACE
from tace_jax.testing import random_o3

TINY = dict(
    atomic_numbers=(1, 8), num_channel=8, radial_hidden=(8,), num_layers=1, correlation=2,
    lmax_node=1, lmax_edge=1, cutoff=3.5, zbl=False, les=True, les_output_scale=0.5,
)  # fmt: skip
CELL = np.array([[5.0, 0.0, 0.0], [0.6, 5.4, 0.0], [-0.4, 0.5, 5.8]])  # triclinic
FRAC = np.array(
    [[0.1, 0.1, 0.1], [0.25, 0.12, 0.08], [0.1, 0.28, 0.14],
     [0.6, 0.55, 0.5], [0.72, 0.6, 0.55], [0.58, 0.7, 0.45]]
)  # fmt: skip
MOL = np.array([[0.0, 0.0, 0.0], [0.96, 0.05, 0.0], [-0.25, 0.92, 0.1], [2.6, 0.3, 0.2]])


@pytest.fixture(scope="module")
def pot():
    return Potential.init(
        TACEConfig(**TINY), Statistics.default(2), jax.random.PRNGKey(3), dtype="float64"
    )


def _cell_atoms(cell=CELL, frac=FRAC):
    return ase.Atoms("OH2OH2", scaled_positions=frac, cell=cell, pbc=True)


def _mol():
    return ase.Atoms("OH2H", positions=MOL)


def test_config_fields_and_reference():
    cfg = TACEConfig(**TINY)
    back = TACEConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.les and back.les_norm_factor == 90.4756
    assert "latent_charges" in cfg.outputs
    for bad, match in [
        ({"les_sigma": 0.0}, "les_sigma"),
        ({"les_dl": -1.0}, "les_dl"),
        ({"les_charge_source": "fixed"}, "les_charge_source"),
        ({"les_charge_source": "lagrangian"}, "charge_head"),
        ({"les_output_scale": "x"}, "les_output_scale"),
        ({"les": 1}, "les"),
    ]:
        with pytest.raises(ValueError, match=match):
            TACEConfig(**{**TINY, **bad})
    _, meta = load_fixture("default")
    mc = json.loads(json.dumps(meta["model_config"]))
    mc["long_range"]["les"]["enable"] = True
    ref = TACEConfig.from_reference(mc, meta["atomic_numbers"])
    assert ref.les and ref.les_norm_factor == 90.0474 and ref.les_sigma == 1.0
    assert ref.les_dl == 2.0 and ref.les_remove_self_interaction and ref.les_output_scale is None
    mc["long_range"]["les"]["les_arguments"]["use_atomwise"] = True
    with pytest.raises(NotImplementedError, match="use_atomwise"):
        TACEConfig.from_reference(mc, meta["atomic_numbers"])


def test_readout_per_layer_and_grid_rule():
    cfg = TACEConfig(**{**TINY, "num_layers": 2})
    model = TACE(cfg, Statistics.default(2))
    from tace_jax.data.graph import single_atom_graph

    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), single_atom_graph(1))
    names = set(shapes["params"])
    assert {"les_readout_0_0", "les_readout_0_1"} <= names
    assert grow_kgrid(None, (3, 2, 4)) == (4, 2, 4)
    assert grow_kgrid((4, 2, 4), (4, 1, 3)) == (4, 2, 4)
    assert grow_kgrid((4, 2, 4), (5, 1, 3)) == (6, 2, 4)


def test_forces_stress_finite_differences(pot):
    atoms = [_mol(), _cell_atoms()]
    graph = pot.graph_from_atoms(atoms)
    res = pot.compute(graph, ("energy", "forces", "stress", "node_energy", "les_energy"))
    e, ne = np.asarray(res["energy"]), np.asarray(res["node_energy"])
    ng = np.asarray(graph.node_graph)
    for g in range(2):
        np.testing.assert_allclose(ne[(ng == g) & np.asarray(graph.node_mask)].sum(), e[g])
        assert abs(float(res["les_energy"][g])) > 1e-4  # the LES term is really there
    energy = jax.jit(pot.energy_fn(graph))
    x0, c0 = np.asarray(graph.positions), np.asarray(graph.cell)
    h, n = 1e-5, 4 + 6
    fd = np.zeros((n, 3))
    for i in range(n):
        for a in range(3):
            d = np.zeros_like(x0)
            d[i, a] = h
            fd[i, a] = -(float(energy(x0 + d, c0)) - float(energy(x0 - d, c0))) / (2 * h)
    np.testing.assert_allclose(np.asarray(res["forces"])[:n], fd, atol=1e-7, rtol=1e-6)
    # stress of the periodic graph (1): sigma = (1/V) dE/d(eps), symmetric strain
    vol = abs(np.linalg.det(CELL))
    on1 = (ng == 1)[:, None]
    for a, b in [(0, 0), (1, 2), (2, 2), (0, 1)]:
        eps = np.zeros((3, 3))
        eps[a, b] = eps[b, a] = h / 2 if a != b else h
        val = []
        for s in (1, -1):
            x = np.where(on1, x0 + s * x0 @ eps, x0)
            c = c0.copy()
            c[1] = c0[1] + s * c0[1] @ eps
            val.append(float(energy(x, c)))
        fd_s = (val[0] - val[1]) / (2 * h) / vol
        np.testing.assert_allclose(float(res["stress"][1][a, b]), fd_s, atol=1e-8, rtol=1e-6)


def test_invariances_and_supercell(pot, key):
    base = _cell_atoms()
    q = np.asarray(random_o3(key, inversion=True))
    rotated = ase.Atoms(base.numbers, positions=base.positions @ q.T, cell=CELL @ q.T, pbc=True)
    shifted = base.copy()
    shifted.positions += np.array([0.3, -1.1, 0.7])
    wrapped = base.copy()
    wrapped.positions[2] += CELL[1] - CELL[2]
    mol = _mol()
    mol_rot = ase.Atoms(mol.numbers, positions=mol.positions @ q.T + 1.5)
    structs = [base, rotated, shifted, wrapped, base * (2, 1, 1), mol, mol_rot]
    res = pot.predict(structs, properties=("energy", "les_energy"), batch_size=len(structs))
    e = np.array([r["energy"] for r in res])
    les = np.array([r["les_energy"] for r in res])
    np.testing.assert_allclose(e[1:4], e[0], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(les[1:4], les[0], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(e[4], 2 * e[0], rtol=1e-10)
    np.testing.assert_allclose(les[4], 2 * les[0], rtol=1e-10)
    np.testing.assert_allclose(e[6], e[5], rtol=1e-10, atol=1e-10)
    q_sc = res[4]["latent_charges"]
    np.testing.assert_allclose(q_sc, np.tile(res[0]["latent_charges"], 2), atol=1e-12)


def test_born_charges_molecule(pot):
    props = ("energy", "les_born_effective_charges")
    r = pot.predict(_mol(), properties=props)
    z = r["les_born_effective_charges"]
    assert z.shape == (4, 3, 3) and r["latent_charges"].shape == (4,)
    np.testing.assert_allclose(z.sum(0), 0.0, atol=1e-10)  # acoustic sum rule

    def dipole(x):
        qq = pot.predict(ase.Atoms("OH2H", positions=x), properties=("energy",))
        qq = qq["latent_charges"]
        return ((qq - qq.mean())[:, None] * x).sum(0)

    h = 1e-5
    fd = np.zeros((4, 3, 3))
    for i in range(4):
        for b in range(3):
            d = np.zeros((4, 3))
            d[i, b] = h
            fd[i, :, b] = (dipole(MOL + d) - dipole(MOL - d)) / (2 * h)
    np.testing.assert_allclose(z, fd, atol=1e-7)
    q = r["latent_charges"] - r["latent_charges"].mean()
    assert np.abs(z - np.eye(3) * q[:, None, None]).max() > 1e-4  # dq/dx contributes


def test_kgrid_no_recompile_then_realloc(pot, caplog):
    budgets = (16, 256, 2)
    props = ("energy", "forces", "stress")
    pot.compute(pot.graph_from_atoms(_cell_atoms(), budgets), props)
    n0 = pot.trace_count
    strained = CELL @ (np.eye(3) + np.diag([0.01, -0.005, 0.008]))
    pot.compute(pot.graph_from_atoms(_cell_atoms(strained), budgets), props)
    assert pot.trace_count == n0
    with caplog.at_level(logging.INFO, logger="tace_jax"):
        pot.compute(pot.graph_from_atoms(_cell_atoms(2.5 * CELL), budgets), props)
    assert pot.trace_count == n0 + 1
    assert any("reallocating" in rec.getMessage() for rec in caplog.records)


def test_save_load_round_trip(pot, tmp_path):
    path = tmp_path / "les.tace"
    pot.save(path)
    back = Potential.load(path)
    assert back.config == pot.config and back.config.les
    for a, b in zip(jax.tree.leaves(pot.variables), jax.tree.leaves(back.variables)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert {"latent_charges", "les_born_effective_charges"} <= set(back.available_properties())


def test_lagrangian_charge_source(key):
    cfg = TACEConfig(**{**TINY, "charge_head": "lagrangian", "les_charge_source": "lagrangian"})
    p = Potential.init(cfg, Statistics.default(2), key, dtype="float64")
    res = p.predict([_mol(), _cell_atoms()], properties=("energy", "les_energy"), total_charge=1.0)
    for r in res:
        np.testing.assert_allclose(r["latent_charges"], r["charges"], atol=1e-12)
        np.testing.assert_allclose(r["latent_charges"].sum(), 1.0, atol=1e-10)
        assert abs(r["les_energy"]) > 1e-4
    assert "les_readout_0_0" not in p.variables["params"]


def test_hessian_includes_les(pot):
    atoms = _mol()
    hess = pot.hessian(atoms).reshape(12, 12)
    h = 1e-5
    fd = np.zeros((12, 12))
    for k in range(12):
        d = np.zeros(12)
        d[k] = h
        fp = pot.predict(ase.Atoms("OH2H", positions=MOL + d.reshape(4, 3)), ("forces",))
        fm = pot.predict(ase.Atoms("OH2H", positions=MOL - d.reshape(4, 3)), ("forces",))
        fd[:, k] = -(fp["forces"] - fm["forces"]).ravel() / (2 * h)
    np.testing.assert_allclose(hess, fd, atol=1e-6)


def test_jax_md_energy_matches_predict(pot):
    atoms = _cell_atoms()
    system = pot.jax_md(atoms)
    nbrs = system.neighbor_fn.allocate(system.positions)
    e_md = float(jax.jit(system.energy_fn)(system.positions, nbrs))
    np.testing.assert_allclose(e_md, pot.predict(atoms, ("energy",))["energy"], rtol=1e-10)


def test_edges_route_includes_the_direct_cell_term(pot):
    """``compute_properties(method="edges")`` (the training default) gives the same virials as
    the strain route for a periodic LES model: the cell enters the energy directly."""
    from tace_jax.properties import compute_properties

    graph = pot.graph_from_atoms([_mol(), _cell_atoms()])
    static = pot._les_static(graph)
    apply = lambda v, g, edge_vecs=None: pot.apply_fn(v, g, edge_vecs=edge_vecs, **static)  # noqa: E731
    props = ("energy", "forces", "virials")
    a = jax.jit(lambda v, g: compute_properties(apply, v, g, props, method="edges"))
    b = jax.jit(lambda v, g: compute_properties(apply, v, g, props, method="positions"))
    ra, rb = a(pot.variables, graph), b(pot.variables, graph)
    np.testing.assert_allclose(ra["forces"], rb["forces"], atol=1e-10)
    np.testing.assert_allclose(ra["virials"], rb["virials"], atol=1e-10)
    assert float(np.abs(np.asarray(rb["virials"][1])).max()) > 1e-3
