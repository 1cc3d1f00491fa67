"""O(3) equivariance, padding/batching invariance, dtypes, special graphs and parameter counts
of the assembled TACE model (random initialisation, float64 unless stated)."""

from __future__ import annotations

import math

import ase
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tace_jax.data import atoms_to_graph_dict, collate, pad_graph
from tace_jax.models import TACE, Statistics, TACEConfig
from tace_jax.nn import interaction_paths, product_paths
from tace_jax.testing import Rep, assert_equivariant

HEADS = ("energy", "direct_forces", "direct_dipole", "direct_polarizability", "direct_virials")
SMALL = dict(
    num_channel=8,
    lmax_node=2,
    lmax_edge=2,
    correlation=2,
    radial_hidden=(8,),
    readout_hidden=(4,),
    cutoff=3.5,
)


def _atoms(periodic: bool, seed: int = 0) -> ase.Atoms:
    rng = np.random.default_rng(seed)
    if periodic:
        cell = np.array([[4.0, 0.3, 0.0], [0.2, 4.2, 0.1], [0.0, -0.4, 3.9]])
        frac = rng.uniform(size=(5, 3))
        return ase.Atoms(numbers=[8, 1, 1, 6, 8], scaled_positions=frac, cell=cell, pbc=True)
    pos = rng.normal(scale=1.2, size=(6, 3))
    return ase.Atoms(numbers=[6, 1, 1, 8, 1, 8], positions=pos)


def _graph(atoms_list, cfg, budgets=(16, 256, 3), charges=True):
    dicts = []
    for a in atoms_list:
        d = atoms_to_graph_dict(a, cfg.cutoff, cfg.atomic_numbers)
        if charges:
            d["extras"] = {"charges": np.linspace(-0.5, 0.5, len(a))}
        dicts.append(d)
    return pad_graph(collate(dicts), budgets)


def _model(targets=HEADS, **kw):
    cfg = TACEConfig(atomic_numbers=(1, 6, 8), targets=targets, **{**SMALL, **kw})
    stats = Statistics([[0.1, -0.2, 0.3]], [[1.1, 0.9, 1.2]], [[0.01, 0.02, -0.03]], 3.0)
    return cfg, TACE(cfg, stats)


def _init(model, graph, key):
    variables = model.init(key, graph)
    # non-trivial biases and gates, so that every path matters
    leaves, tree = jax.tree.flatten(variables)
    keys = jax.random.split(key, len(leaves))
    leaves = [x + 0.1 * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
    return jax.tree.unflatten(tree, leaves)


@pytest.mark.parametrize("periodic", [False, True])
def test_model_equivariance(periodic, key):
    cfg, model = _model()
    graph = _graph([_atoms(periodic)], cfg)
    variables = _init(model, graph, key)
    apply = jax.jit(model.apply)

    def fn(positions, cell):
        out = apply(variables, graph.replace(positions=positions, cell=cell))
        return {k: out[k] for k in ("node_energy", "energy", "scalar_descriptor", *HEADS[1:])}

    out_ranks = {
        "node_energy": 0,
        "energy": 0,
        "scalar_descriptor": 0,
        "direct_forces": Rep(1, "vector"),
        "direct_dipole": Rep(1, "vector"),
        "direct_polarizability": Rep(2, "full"),
        "direct_virials": Rep(2, "full"),
    }
    out = fn(graph.positions, graph.cell)
    assert float(jnp.abs(out["direct_forces"]).max()) > 1e-3  # not trivially zero
    assert float(jnp.abs(out["direct_polarizability"]).max()) > 1e-3
    assert_equivariant(
        fn,
        key,
        (graph.positions, graph.cell),
        in_ranks=(Rep(1, "vector"), Rep(1, "vector")),
        out_ranks=out_ranks,
        atol=1e-10,
    )
    # rank-2 heads are symmetric: a0·δ/√3 + STF
    pol = out["direct_polarizability"][0]
    np.testing.assert_allclose(pol, pol.T, atol=1e-12)


def test_translation_and_permutation_invariance(key):
    cfg, model = _model(targets=("energy",))
    atoms = _atoms(False)
    graph = _graph([atoms], cfg, charges=False)
    variables = _init(model, graph, key)
    apply = jax.jit(model.apply)
    e0 = apply(variables, graph)["energy"][0]
    moved = atoms.copy()
    moved.positions += np.array([1.3, -2.0, 0.7])
    e1 = apply(variables, _graph([moved], cfg, charges=False))["energy"][0]
    perm = np.random.default_rng(1).permutation(len(atoms))
    e2 = apply(variables, _graph([atoms[perm]], cfg, charges=False))["energy"][0]
    np.testing.assert_allclose([e1, e2], [e0, e0], rtol=0, atol=1e-10)


def test_padding_batching_and_chunking(key):
    cfg, model = _model(targets=("energy", "direct_forces"))
    mols = [_atoms(False, 0), _atoms(True, 1), _atoms(False, 2)]
    g_small = _graph(mols, cfg, budgets=(24, 512, 4))
    variables = _init(model, g_small, key)
    apply = jax.jit(model.apply)
    out = apply(variables, g_small)
    g_big = _graph(mols, cfg, budgets=(40, 900, 7))
    out_big = apply(variables, g_big)
    n = int(np.asarray(g_small.node_mask).sum())
    np.testing.assert_allclose(out_big["energy"][:3], out["energy"][:3], rtol=0, atol=1e-11)
    np.testing.assert_allclose(out_big["node_energy"][:n], out["node_energy"][:n], atol=1e-11)
    assert np.all(np.asarray(out_big["node_energy"][n:]) == 0)
    assert np.all(np.asarray(out_big["energy"][3:]) == 0)
    for k, mol in enumerate(mols):  # batch == single runs
        single = apply(variables, _graph([mol], cfg, budgets=(24, 512, 4)))
        np.testing.assert_allclose(single["energy"][0], out["energy"][k], rtol=0, atol=1e-11)
    # chunked edge loop (lax.scan) == all edges at once
    chunked = TACE(model.config, model.statistics, edge_chunk=64)
    out_c = jax.jit(chunked.apply)(variables, g_small)
    unchunked = TACE(model.config, model.statistics, edge_chunk=None)
    out_u = jax.jit(unchunked.apply)(variables, g_small)
    for o in (out_c, out_u):
        np.testing.assert_allclose(o["node_energy"], out["node_energy"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(o["direct_forces"], out["direct_forces"], rtol=0, atol=1e-12)

    def forces(m):
        def e(pos):
            return m.apply(variables, g_small.replace(positions=pos))["energy"].sum()

        return jax.jit(jax.grad(e))(g_small.positions)

    np.testing.assert_allclose(forces(chunked), forces(unchunked), rtol=0, atol=1e-11)


def test_isolated_atom_energy_is_e0(key):
    cfg, model = _model(targets=("energy",))
    graph = _graph([ase.Atoms("O", positions=[[0, 0, 0]]), _atoms(False)], cfg, charges=False)
    variables = _init(model, graph, key)
    out = jax.jit(model.apply)(variables, graph)
    assert float(out["energy"][0]) == pytest.approx(0.3, abs=1e-14)  # E0 of O
    assert abs(float(out["energy"][1])) > 1e-6


def test_dtypes_and_variable_casting(key):
    cfg, model = _model(targets=("energy", "direct_forces"))
    g64 = _graph([_atoms(True)], cfg, charges=False)
    g32 = jax.tree.map(lambda x: x.astype(jnp.float32) if x.dtype == jnp.float64 else x, g64)
    variables = model.init(key, g32)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))
    out32 = jax.jit(model.apply)(variables, g32)
    assert all(v.dtype == jnp.float32 for v in out32.values())
    v64 = jax.tree.map(lambda x: x.astype(jnp.float64), variables)
    out64 = jax.jit(model.apply)(v64, g64)
    assert all(v.dtype == jnp.float64 for v in out64.values())
    np.testing.assert_allclose(out32["energy"], out64["energy"], rtol=1e-4, atol=1e-4)
    # float64 parameters applied to a float32 graph compute in float32
    out_mixed = jax.jit(model.apply)(v64, g32)
    assert out_mixed["energy"].dtype == jnp.float32


def test_multi_level_and_multi_head(key):
    cfg = TACEConfig(
        atomic_numbers=(1, 6, 8), num_levels=2, use_multi_head=True, **{**SMALL, "zbl": False}
    )
    stats = Statistics(
        [[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]], [[1.0] * 3, [2.0] * 3], [[0.0] * 3] * 2, 2.0
    )
    model = TACE(cfg, stats)
    mol = _atoms(False)
    dicts = []
    for level in (0, 1):
        d = atoms_to_graph_dict(mol, cfg.cutoff, cfg.atomic_numbers)
        d["extras"] = {"level": np.array([level])}
        dicts.append(d)
    graph = pad_graph(collate(dicts), (16, 256, 3))
    variables = _init(model, graph, key)
    out = jax.jit(model.apply)(variables, graph)
    e = np.asarray(out["energy"])
    assert abs(e[0] - e[1]) > 1e-6  # different heads and statistics
    # E = ΣE0[level] + σ·E_model + Σμ: zeroing every readout weight leaves ΣE0 (H3 C1 O2)
    zeroed = jax.tree_util.tree_map_with_path(
        lambda p, x: x * 0 if "readout" in jax.tree_util.keystr(p) else x, variables
    )
    out0 = jax.jit(model.apply)(zeroed, graph)
    np.testing.assert_allclose(out0["energy"][:2], [0.0, 3 * 1.0 + 2.0 + 2 * 3.0], atol=1e-12)


def _count_params(cfg: TACEConfig) -> int:
    graph = pad_graph(
        {
            "positions": np.zeros((1, 3)),
            "species": np.zeros(1, int),
            "numbers": np.array([cfg.atomic_numbers[0]]),
            "node_graph": np.zeros(1, int),
            "senders": np.zeros(0, int),
            "receivers": np.zeros(0, int),
            "shifts": np.zeros((0, 3)),
            "cell": np.zeros((1, 3, 3)),
            "pbc": np.zeros((1, 3), bool),
        },
        (2, 1, 2),
        dtype=np.float32,
    )
    model = TACE(cfg, Statistics.default(cfg.num_elements, cfg.num_levels))
    shapes = jax.eval_shape(model.init, jax.random.key(0), graph)
    return sum(math.prod(x.shape) for x in jax.tree.leaves(shapes))


def _formula(cfg: TACEConfig) -> int:
    """docs/theory.md §2.12 (energy head only)."""
    c, ch, zn, beta, t_layers = (
        cfg.num_channel,
        cfg.num_channel_hidden,
        cfg.num_elements,
        int(cfg.bias),
        cfg.num_layers,
    )
    total = zn * c
    for t in range(t_layers):
        l_in = cfg.input_ranks(t)
        paths = interaction_paths(l_in, cfg.lmax_edge, cfg.inter_l1l2)
        outs = cfg.output_ranks(t)
        total += len(l_in) * c * c + beta * c
        total += len(paths) * c * ch
        if t >= 1 or t_layers == 1:
            total += sum(zn * c * ch + beta * (l == 0) * zn * c for l in outs)
        widths = [cfg.num_radial_basis, *cfg.radial_hidden, c * len(paths)]
        total += sum(a * b for a, b in zip(widths[:-1], widths[1:]))
        _, counts = product_paths(
            cfg.lmax_edge, cfg.correlation, outs, cfg.prod_l1l2, cfg.prod_l3l1
        )
        for nu in range(1, cfg.correlation + 1):
            for l in outs:
                if counts[nu].get(l, 0):
                    total += zn * ch * ch * counts[nu][l] + beta * (l == 0) * zn * ch
        total += sum(ch * c for l in outs) + beta * (t == t_layers - 1) * c
    total += (t_layers - 1) * c + c * cfg.readout_hidden[0] + cfg.readout_hidden[0]
    return total


@pytest.mark.parametrize("zs,expected", [((1, 6, 8), 1_187_664), ((1, 6, 7, 8), 1_533_648)])
def test_parameter_count_reference_yaml(zs, expected):
    cfg = TACEConfig(atomic_numbers=zs)
    assert _count_params(cfg) == expected
    assert _formula(cfg) == expected


@pytest.mark.parametrize(
    "kw",
    [
        dict(num_layers=3, correlation=2, inter_l1l2="<=", prod_l1l2="<=", num_channel=16),
        dict(num_layers=1, correlation=4, lmax_edge=2, bias=False, num_channel=8),
        dict(num_layers=2, correlation=3, num_channel=8, num_channel_hidden=12, lmax_node=1),
    ],
)
def test_parameter_count_formula(kw):
    cfg = TACEConfig(atomic_numbers=(1, 8), **kw)
    assert _count_params(cfg) == _formula(cfg)
