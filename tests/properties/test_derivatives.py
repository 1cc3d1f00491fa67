"""compute_properties on the toy potential: finite differences, identities, routes, padding."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tace_jax.properties import compute_properties, strained

ALL = ("energy", "node_energy", "forces", "virials", "stress", "edge_forces")
ALL += ("atomic_virials", "atomic_stresses")


def _props(apply_fn, variables, graph, props=ALL, **kw):
    fn = jax.jit(functools.partial(compute_properties, apply_fn, properties=props, **kw))
    return jax.tree.map(np.asarray, fn(variables, graph))


def _energy(apply_fn, variables, graph):
    return float(np.asarray(apply_fn(variables, graph)["energy"])[0])


@pytest.mark.parametrize("system", ["si", "mol"])
def test_forces_and_stress_match_finite_differences(system, apply_fn, toy_vars, build, request):
    atoms = request.getfixturevalue(system)
    graph = build(atoms)
    out = _props(apply_fn, toy_vars, graph)
    n, h = len(atoms), 1e-5
    fd = np.zeros((n, 3))
    for i in range(n):
        for a in range(3):
            dx = np.zeros(graph.positions.shape)
            dx[i, a] = h
            ep = _energy(apply_fn, toy_vars, graph.replace(positions=graph.positions + dx))
            em = _energy(apply_fn, toy_vars, graph.replace(positions=graph.positions - dx))
            fd[i, a] = -(ep - em) / (2 * h)
    np.testing.assert_allclose(out["forces"][:n], fd, atol=1e-8)
    assert np.abs(out["forces"][n:]).max() == 0.0
    # virials: V = -dE/d(eps) under the symmetric strain
    fd_v = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            eps = np.zeros(graph.cell.shape)
            eps[0, a, b] = h
            ep = _energy(apply_fn, toy_vars, strained(graph, jnp.asarray(eps)))
            em = _energy(apply_fn, toy_vars, strained(graph, jnp.asarray(-eps)))
            fd_v[a, b] = -(ep - em) / (2 * h)
    np.testing.assert_allclose(out["virials"][0], fd_v, atol=1e-8)
    np.testing.assert_allclose(out["virials"][0], out["virials"][0].T, atol=1e-14)
    vol = abs(np.linalg.det(np.asarray(graph.cell[0])))
    if system == "si":
        np.testing.assert_allclose(out["stress"][0], -fd_v / vol, atol=1e-9)
        assert np.abs(out["stress"][0]).max() > 1e-4
    else:
        assert np.abs(out["stress"]).max() == 0.0
        assert np.abs(out["atomic_stresses"]).max() == 0.0
        x, f = np.asarray(graph.positions[:n]), out["forces"][:n]
        np.testing.assert_allclose(out["virials"][0], 0.5 * (x.T @ f + f.T @ x), atol=1e-12)


def test_identities_and_routes_agree(apply_fn, toy_vars, build, si, mol):
    graph = build([si, mol])
    out = _props(apply_fn, toy_vars, graph)
    s, r = np.asarray(graph.senders), np.asarray(graph.receivers)
    g = out["edge_forces"]
    f = np.zeros_like(out["forces"])
    np.add.at(f, s, g)
    np.subtract.at(f, r, g)
    np.testing.assert_allclose(out["forces"], f, atol=1e-12)
    ng = np.asarray(graph.node_graph)
    for k in range(2):
        w = out["atomic_virials"][ng == k].sum(0)
        np.testing.assert_allclose(w, out["virials"][k], atol=1e-12)
    vol = abs(np.linalg.det(np.asarray(graph.cell[0])))
    np.testing.assert_allclose(
        out["atomic_stresses"][ng == 0], -out["atomic_virials"][ng == 0] / vol
    )
    np.testing.assert_allclose(out["node_energy"].sum(), out["energy"].sum(), atol=1e-12)
    assert out["energy"][-1] == 0.0 and np.abs(out["virials"][-1]).max() == 0.0
    pos = _props(
        apply_fn, toy_vars, graph, ("energy", "forces", "virials", "stress"), method="positions"
    )
    for k in ("energy", "forces", "virials", "stress"):
        np.testing.assert_allclose(pos[k], out[k], atol=1e-12, err_msg=k)


def test_padding_and_batching_change_nothing(apply_fn, toy_vars, build, si, mol):
    single = [_props(apply_fn, toy_vars, build(a)) for a in (si, mol)]
    small = build([si, mol])
    big = build([si, mol], budgets=(small.num_nodes + 64, small.num_edges + 128, 5))
    for graph in (small, big):
        out = _props(apply_fn, toy_vars, graph)
        ng = np.asarray(graph.node_graph)
        for k, ref in enumerate(single):
            n = len((si, mol)[k])
            np.testing.assert_allclose(out["energy"][k], ref["energy"][0], atol=1e-12)
            for key in ("forces", "atomic_virials", "atomic_stresses", "node_energy"):
                np.testing.assert_allclose(out[key][ng == k], ref[key][:n], atol=1e-12)
            for key in ("virials", "stress"):
                np.testing.assert_allclose(out[key][k], ref[key][0], atol=1e-12)
        pad = ~np.asarray(graph.node_mask)
        assert np.abs(out["forces"][pad]).max() == 0.0
        assert np.abs(out["edge_forces"][~np.asarray(graph.edge_mask)]).max() == 0.0


def test_invariances(apply_fn, toy_vars, build, si, rng):
    ref = _props(apply_fn, toy_vars, build(si))
    n = len(si)
    # translation (periodic: wrapping changes images, not results)
    moved = si.copy()
    moved.positions += rng.normal(size=3) * 3.0
    # one atom shifted by a lattice vector, then everything wrapped
    moved.positions[3] += moved.cell[1] - 2 * moved.cell[2]
    out = _props(apply_fn, toy_vars, build(moved))
    np.testing.assert_allclose(out["energy"][0], ref["energy"][0], atol=1e-11)
    np.testing.assert_allclose(out["forces"][:n], ref["forces"][:n], atol=1e-11)
    np.testing.assert_allclose(out["stress"][0], ref["stress"][0], atol=1e-12)
    np.testing.assert_allclose(out["atomic_virials"][:n], ref["atomic_virials"][:n], atol=1e-11)
    moved.wrap()
    out = _props(apply_fn, toy_vars, build(moved))
    np.testing.assert_allclose(out["forces"][:n], ref["forces"][:n], atol=1e-11)
    np.testing.assert_allclose(out["stress"][0], ref["stress"][0], atol=1e-12)
    # permutation
    perm = rng.permutation(n)
    out = _props(apply_fn, toy_vars, build(si[perm]))
    np.testing.assert_allclose(out["energy"][0], ref["energy"][0], atol=1e-11)
    np.testing.assert_allclose(out["forces"][:n], ref["forces"][perm], atol=1e-11)
    np.testing.assert_allclose(out["atomic_virials"][:n], ref["atomic_virials"][perm], atol=1e-11)
    np.testing.assert_allclose(out["stress"][0], ref["stress"][0], atol=1e-12)


def test_supercell_is_extensive(apply_fn, toy_vars, build, si):
    ref = _props(apply_fn, toy_vars, build(si))
    sc = si.repeat((2, 1, 1))
    out = _props(apply_fn, toy_vars, build(sc))
    n = len(si)
    np.testing.assert_allclose(out["energy"][0], 2 * ref["energy"][0], atol=1e-10)
    np.testing.assert_allclose(out["forces"][:n], ref["forces"][:n], atol=1e-11)
    np.testing.assert_allclose(out["forces"][n : 2 * n], ref["forces"][:n], atol=1e-11)
    np.testing.assert_allclose(out["virials"][0], 2 * ref["virials"][0], atol=1e-10)
    np.testing.assert_allclose(out["stress"][0], ref["stress"][0], atol=1e-12)


def test_equivariance(apply_fn, toy_vars, build, si, key):
    from tace_jax.testing import assert_equivariant

    graph = build(si)
    props = ("energy", "forces", "stress", "virials", "atomic_virials", "edge_forces")
    fn = jax.jit(functools.partial(compute_properties, apply_fn, properties=props))

    def model(positions, cell):
        return fn(toy_vars, graph.replace(positions=positions, cell=cell))

    ranks = {"energy": 0, "forces": 1, "stress": 2, "virials": 2, "atomic_virials": 2}
    ranks["edge_forces"] = 1
    err = assert_equivariant(model, key, (graph.positions, graph.cell), (1, 1), ranks, atol=1e-10)
    assert err < 1e-10


def test_training_path_is_differentiable(apply_fn, toy_vars, build, si):
    graph = build(si)
    props = ("energy", "forces", "stress")

    def loss(variables):
        out = compute_properties(apply_fn, variables, graph, props, training=True)
        return jnp.sum(out["forces"] ** 2) + jnp.sum(out["stress"] ** 2) + out["energy"][0] ** 2

    loss = jax.jit(loss)
    grads = jax.jit(jax.grad(loss))(toy_vars)
    direction = jax.tree.map(lambda x: jnp.ones_like(x) * 0.1, toy_vars)
    direction["constants"] = jax.tree.map(jnp.zeros_like, toy_vars["constants"])
    h = 1e-6
    plus = jax.tree.map(lambda x, d: x + h * d, toy_vars, direction)
    minus = jax.tree.map(lambda x, d: x - h * d, toy_vars, direction)
    fd = (loss(plus) - loss(minus)) / (2 * h)
    ad = sum(jnp.sum(g * d) for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direction)))
    np.testing.assert_allclose(float(ad), float(fd), rtol=1e-6)
    # training=False blocks parameter gradients
    frozen = jax.grad(
        lambda v: jnp.sum(compute_properties(apply_fn, v, graph, props)["forces"] ** 2)
    )(toy_vars)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(frozen))


def test_bad_requests(apply_fn, toy_vars, build, mol):
    graph = build(mol)
    with pytest.raises(KeyError, match="polarizability"):
        compute_properties(apply_fn, toy_vars, graph, ("energy", "polarizability"))
    with pytest.raises(ValueError, match="method='edges'"):
        compute_properties(apply_fn, toy_vars, graph, ("edge_forces",), method="positions")
    out = compute_properties(apply_fn, toy_vars, graph, "energy")
    assert set(out) == {"energy"}
