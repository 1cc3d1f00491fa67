"""Universal embeddings, charge heads and direct virials of the TACE model (small random
models, float64): O(3) invariance with fields and moments rotated as vectors (fixture README
§10.4), differentiability in the inputs, charge conservation and the uniform-charge sign."""

from __future__ import annotations

import functools

import ase
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tace_jax.data import atoms_to_graph_dict, collate, pad_graph
from tace_jax.models import TACE, Statistics, TACEConfig
from tace_jax.ops import lagrangian_charges, uniform_charges, vector_gate
from tace_jax.testing import Rep, assert_equivariant

SMALL = dict(
    atomic_numbers=(1, 6, 8),
    num_channel=8,
    lmax_node=2,
    lmax_edge=2,
    correlation=2,
    radial_hidden=(8,),
    readout_hidden=(4,),
    cutoff=3.5,
)
EMBED = dict(
    invariant_embeddings=(
        {"name": "level", "num_embeddings": 2},
        {"name": "spin_multiplicity", "num_embeddings": 3},
        "charges",
        "total_charge",
        "initial_collinear_magmoms",
        "temperature",
    ),
    equivariant_embeddings=(
        {"name": "electric_field", "normalizer": 0.5, "gate": "tanh", "linear": True},
        {"name": "magnetic_field", "gate": "silu"},
        "initial_noncollinear_magmoms",
    ),
    uie_readout=True,
)


def _atoms(periodic: bool, seed: int = 0) -> ase.Atoms:
    rng = np.random.default_rng(seed)
    if periodic:
        cell = np.array([[4.0, 0.3, 0.0], [0.2, 4.2, 0.1], [0.0, -0.4, 3.9]])
        frac = rng.uniform(size=(5, 3))
        return ase.Atoms(numbers=[8, 1, 1, 6, 8], scaled_positions=frac, cell=cell, pbc=True)
    return ase.Atoms(numbers=[6, 1, 1, 8, 1, 8], positions=rng.normal(scale=1.2, size=(6, 3)))


def _inputs(cfg: TACEConfig, n: int, rng) -> dict:
    values = {
        "level": np.array([1]),
        "spin_multiplicity": np.array([2]),
        "spin_on": np.array([1]),
        "charges": rng.normal(scale=0.3, size=n),
        "total_charge": np.array([1.0]),
        "initial_collinear_magmoms": rng.normal(size=n),
        "temperature": np.array([300.0]),
        "electric_field": rng.normal(scale=0.1, size=(1, 3)),
        "magnetic_field": rng.normal(scale=0.5, size=(1, 3)),
        "initial_noncollinear_magmoms": rng.normal(size=(n, 3)),
    }
    return {k: values[k] for k in cfg.input_names}


def _setup(key, atoms_list, **kw):
    cfg = TACEConfig(**{**SMALL, **kw})
    stats = Statistics(
        [[0.1, -0.2, 0.3]] * cfg.num_levels,
        [[1.1, 0.9, 1.2]] * cfg.num_levels,
        [[0.01, 0.02, -0.03]] * cfg.num_levels,
        3.0,
    )
    model = TACE(cfg, stats)
    rng = np.random.default_rng(0)
    dicts = []
    for a in atoms_list:
        d = atoms_to_graph_dict(a, cfg.cutoff, cfg.atomic_numbers)
        d["extras"] = _inputs(cfg, len(a), rng)
        dicts.append(d)
    graph = pad_graph(collate(dicts), (16, 256, len(dicts) + 1))
    graph = graph.replace(extras=jax.tree.map(jnp.asarray, graph.extras))
    variables = jax.jit(model.init)(key, graph)
    leaves, tree = jax.tree.flatten(variables)
    keys = jax.random.split(key, len(leaves))
    leaves = [x + 0.1 * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
    return cfg, model, jax.tree.unflatten(tree, leaves), graph


@functools.cache
def _embed_model():
    """One molecule and one periodic cell with every embedding (shared by the tests)."""
    cfg, model, variables, graph = _setup(
        jax.random.key(7), [_atoms(False), _atoms(True, seed=1)], **EMBED
    )
    return cfg, variables, graph, jax.jit(model.apply)


def test_energy_invariant_with_rotated_fields(key):
    _, variables, graph, apply = _embed_model()

    def fn(positions, cell, e_field, b_field, magmoms):
        extras = {
            **graph.extras,
            "electric_field": e_field,
            "magnetic_field": b_field,
            "initial_noncollinear_magmoms": magmoms,
        }
        out = apply(variables, graph.replace(positions=positions, cell=cell, extras=extras))
        return {k: out[k] for k in ("energy", "node_energy", "scalar_descriptor")}

    ex = graph.extras
    args = (
        graph.positions,
        graph.cell,
        ex["electric_field"],
        ex["magnetic_field"],
        ex["initial_noncollinear_magmoms"],
    )
    vec = Rep(1, "vector")
    err = assert_equivariant(fn, key, args, in_ranks=(vec,) * 5, out_ranks=0, atol=1e-10)
    assert err < 1e-10
    # the inputs matter
    e0 = fn(*args)["energy"][:2]
    e1 = fn(*args[:2], 2 * args[2], args[3], args[4])["energy"][:2]
    e2 = fn(*args[:4], 0 * args[4])["energy"][:2]
    assert float(jnp.abs(e1 - e0).min()) > 1e-8 and float(jnp.abs(e2 - e0).min()) > 1e-8


def test_inputs_enter_differentiably():
    """∂E/∂(field, moments, charges) exist and equal central differences (H5 builds on it)."""
    _, variables, graph, apply = _embed_model()
    floats = {k: v for k, v in graph.extras.items() if jnp.issubdtype(v.dtype, jnp.floating)}
    ints = {k: v for k, v in graph.extras.items() if k not in floats}

    def energy(fl):
        return apply(variables, graph.replace(extras={**ints, **fl}))["energy"].sum()

    grads = jax.jit(jax.grad(energy))(floats)
    h = 1e-5
    for name in ("electric_field", "magnetic_field", "charges", "initial_noncollinear_magmoms"):
        idx = (1, 1) if floats[name].ndim == 2 else (7,)
        plus = {**floats, name: floats[name].at[idx].add(h)}
        minus = {**floats, name: floats[name].at[idx].add(-h)}
        fd = (energy(plus) - energy(minus)) / (2 * h)
        assert abs(float(grads[name][idx]) - float(fd)) < 1e-7, name
        assert float(jnp.abs(grads[name]).max()) > 1e-6, name


def test_integer_embedding_out_of_range_is_zero(key):
    """Documented behaviour inside jit: an index ≥ num_embeddings embeds as zeros."""
    spin_on = ({"name": "spin_on", "num_embeddings": 2},)
    _, model, variables, graph = _setup(key, [_atoms(False)], invariant_embeddings=spin_on)
    table = variables["params"]["uie"]["spin_on"]["table"]
    assert table.shape == (2, 8)
    zeroed = jax.tree_util.tree_map_with_path(
        lambda p, x: x * 0 if "table" in jax.tree_util.keystr(p) else x, variables
    )
    apply = jax.jit(model.apply)
    g = graph.replace(extras={"spin_on": jnp.array([5, 0], jnp.int32)})
    np.testing.assert_allclose(apply(variables, g)["energy"], apply(zeroed, g)["energy"], atol=0)


def test_tanh_gate_at_zero():
    x = jnp.zeros((2, 3, 4))
    gamma, beta = jnp.ones(4), jnp.zeros(4)
    assert float(jnp.abs(vector_gate(x, gamma, beta, "tanh")).max()) == 0.0
    g = jax.grad(lambda x: vector_gate(x, gamma, beta, "tanh").sum())(x)
    assert bool(jnp.all(jnp.isfinite(g)))
    x = jnp.arange(24.0).reshape(2, 3, 4) / 10
    n = jnp.sum(x * x, axis=1, keepdims=True) + 0.3
    np.testing.assert_allclose(
        vector_gate(x, gamma, 0.3 + beta, "tanh"), jnp.tanh(n) / n * x, rtol=1e-12
    )
    with pytest.raises(ValueError, match="gate"):
        vector_gate(x, gamma, beta, "relu")


@pytest.mark.parametrize("head", ["lagrangian", "uniform_distribution"])
def test_charge_heads_conserve_total_charge(head, key):
    atoms = [_atoms(False), _atoms(True, seed=1)]
    cfg, model, variables, graph = _setup(key, atoms, charge_head=head)
    assert cfg.input_names == ("total_charge",)
    graph = graph.replace(extras={"total_charge": jnp.array([1.0, -2.0, 0.0])})
    out = jax.jit(model.apply)(variables, graph)
    q = out["charges"]
    assert q.shape == (graph.num_nodes,)
    sums = jax.ops.segment_sum(q, graph.node_graph, graph.num_graphs)
    np.testing.assert_allclose(sums[:2], [1.0, -2.0], rtol=0, atol=1e-12)
    assert float(jnp.abs(q[11:]).max()) == 0.0  # padding atoms
    assert float(jnp.std(q[:6])) > 1e-4  # not a trivial uniform split


def test_uniform_charges_sign():
    """q_i = c_i + (Q − Σc)/N (v0.1.0 adds (Σc − Q)/N)."""
    c = jnp.array([1.0, 2.0, 3.0, 0.5, 0.0])
    node_graph = jnp.array([0, 0, 0, 1, 2])
    mask = jnp.array([True, True, True, True, False])
    q = uniform_charges(c, jnp.array([0.0, 1.0, 0.0]), node_graph, mask, 3)
    np.testing.assert_allclose(q, [-1.0, 0.0, 1.0, 1.0, 0.0], atol=1e-15)
    q = lagrangian_charges(
        c, jnp.array([1.0, 2.0, 4.0, 1.0, 1.0]), jnp.zeros(3), node_graph, mask, 3
    )
    lam = (0.0 + 1.0 + 1.0 + 0.75) / (1 + 0.5 + 0.25)
    np.testing.assert_allclose(q[:3], [lam - 1.0, (lam - 2.0) / 2, (lam - 3.0) / 4], atol=1e-12)
    np.testing.assert_allclose(q[3:], [0.0, 0.0], atol=1e-15)


def test_direct_virials_forward(key):
    atoms = [_atoms(False), _atoms(True, seed=1)]
    cfg, model, variables, graph = _setup(key, atoms, targets=("energy", "direct_virials"))
    out = jax.jit(model.apply)(variables, graph)
    v, s = out["direct_virials"], out["direct_stress"]
    assert v.shape == s.shape == (3, 3, 3)
    np.testing.assert_allclose(v, jnp.swapaxes(v, -1, -2), atol=1e-12)
    assert float(jnp.abs(v[:2]).max()) > 1e-4
    vol = abs(np.linalg.det(np.asarray(graph.cell[1])))
    np.testing.assert_allclose(s[1], -v[1] / vol, rtol=1e-12)
    assert float(jnp.abs(s[0]).max()) == 0.0 and float(jnp.abs(v[2]).max()) == 0.0
