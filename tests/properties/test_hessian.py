"""Hessians on the toy potential: symmetry, finite differences, chunking, random rows."""

from __future__ import annotations

import functools

import jax
import numpy as np

from tace_jax.properties import compute_properties, hessian, hessian_rows, split_hessian


def _forces(apply_fn, variables, graph):
    fn = jax.jit(functools.partial(compute_properties, apply_fn, properties=("forces",)))
    return lambda pos: np.asarray(fn(variables, graph.replace(positions=pos))["forces"])


def test_hessian_symmetric_and_matches_fd(apply_fn, toy_vars, build, si, mol):
    for atoms in (mol, si):
        graph = build(atoms)
        n = len(atoms)
        h = np.asarray(hessian(apply_fn, toy_vars, graph, chunk_size=5, num_atoms=n))
        assert h.shape == (n, 3, graph.num_nodes, 3)
        hh = h[:, :, :n].reshape(3 * n, 3 * n)
        np.testing.assert_allclose(hh, hh.T, atol=1e-12)
        assert np.abs(h[:, :, n:]).max() == 0.0
        forces = _forces(apply_fn, toy_vars, graph)
        pos, step = np.asarray(graph.positions), 1e-4
        fd = np.zeros((3 * n, 3 * n))
        for k in range(3 * n):
            d = np.zeros_like(pos)
            d[k // 3, k % 3] = step
            fd[k] = -(forces(pos + d) - forces(pos - d))[:n].reshape(-1) / (2 * step)
        np.testing.assert_allclose(hh, fd, atol=1e-6)


def test_hessian_chunks_batches_and_rows(apply_fn, toy_vars, build, si, mol, key):
    graph = build([mol, si])
    hess = jax.jit(
        functools.partial(hessian, apply_fn), static_argnames=("chunk_size", "num_atoms")
    )
    full = np.asarray(hess(toy_vars, graph, chunk_size=64))
    assert full.shape == (graph.num_nodes, 3, graph.num_nodes, 3)
    other = np.asarray(hess(toy_vars, graph, chunk_size=7, num_atoms=13))
    np.testing.assert_allclose(full[:13], other, atol=1e-12)
    assert np.abs(full[13:]).max() == 0.0
    blocks = split_hessian(full, graph)
    assert [b.shape for b in blocks] == [(5, 3, 5, 3), (8, 3, 8, 3)]
    for atoms, block in zip((mol, si), blocks):
        g1 = build(atoms)
        alone = np.asarray(hess(toy_vars, g1, chunk_size=64, num_atoms=len(atoms)))
        np.testing.assert_allclose(block, alone[:, :, : len(atoms)], atol=1e-12)
    # no coupling between graphs
    assert np.abs(full[:5, :, 5:13]).max() == 0.0
    out = jax.jit(functools.partial(hessian_rows, apply_fn, num_samples=3))(toy_vars, graph, key)
    rows, atom, xyz, mask = (np.asarray(out[k]) for k in ("rows", "atom", "xyz", "mask"))
    assert rows.shape == (graph.num_graphs, 3, graph.num_nodes, 3)
    np.testing.assert_array_equal(mask[:, 0], np.asarray(graph.graph_mask))
    first = [0, 5]
    for gi in range(2):
        for s in range(3):
            a = atom[gi, s]
            assert first[gi] <= a < first[gi] + (5, 8)[gi]
            np.testing.assert_allclose(rows[gi, s], full[a, xyz[gi, s]], atol=1e-12)
    assert np.abs(rows[-1]).max() == 0.0


def test_hessian_rows_differentiable(apply_fn, toy_vars, build, mol, key):
    graph = build(mol)

    def loss(v):
        return (hessian_rows(apply_fn, v, graph, key, num_samples=2)["rows"] ** 2).sum()

    grads = jax.jit(jax.grad(loss))(toy_vars)
    assert np.isfinite(np.asarray(grads["params"]["pair"])).all()
    assert np.abs(np.asarray(grads["params"]["pair"])).max() > 0
